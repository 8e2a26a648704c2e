import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import * as ExecutionPolicy from "../src/ExecutionPolicy.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as ScriptSource from "../src/ScriptSource.js"
import * as Target from "../src/Target.js"
import * as Transport from "../src/Transport.js"

const started: Array<string> = []
const recording = (caps: Partial<Transport.Capabilities> = {}) =>
  Transport.layer(Effect.succeed(Transport.make({
    name: "recording",
    kinds: ["local"],
    capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: true, native: false, ...caps },
    start: (target, invocation) =>
      Effect.sync(() => {
        started.push(target.id)
        const text = invocation.source._tag === "Script" ? invocation.source.text : ""
        return { output: Stream.make({ stream: "stdout" as const, bytes: new TextEncoder().encode(text) }), exit: Effect.succeed(Transport.exited(0)) }
      })
  })))

const decodePolicy = (input: unknown) =>
  Schema.decodeUnknown(ExecutionPolicy.ExecutionPolicy)(input).pipe(Effect.mapError((e) => RunPlan.fromParseError(e, "policy")), Effect.flip)

const job = ScriptSource.job(ScriptSource.command("true"))

describe("bad input is refused before anything runs", () => {
  it.effect("a percentage over 100", () =>
    Effect.gen(function*() {
      const e = yield* decodePolicy({ concurrency: "150%" })
      assert.strictEqual(e.path, "policy.concurrency")
      assert.match(e.description, /100%/)
      const b = yield* decodePolicy({ maxErrors: "101%" })
      assert.strictEqual(b.path, "policy.maxErrors")
    }))

  it.effect("a zero concurrency and a negative timeout", () =>
    Effect.gen(function*() {
      const c = yield* decodePolicy({ concurrency: 0 })
      assert.strictEqual(c.path, "policy.concurrency")
      assert.match(c.description, /≥ 1/)
      const t = yield* decodePolicy({ timeout: "-5s" })
      assert.strictEqual(t.path, "policy.timeout")
      assert.match(t.description, /non-negative duration/)
      const u = yield* decodePolicy({ timeout: -1 })
      assert.strictEqual(u.path, "policy.timeout")
    }))

  it.effect("durations decode from text", () =>
    Effect.gen(function*() {
      const p = yield* Schema.decodeUnknown(ExecutionPolicy.ExecutionPolicy)({ timeout: "1.5m", deadline: "2h", killGrace: "250ms" })
      assert.strictEqual(Duration.toMillis(p.timeout!), 90_000)
      assert.strictEqual(Duration.toMillis(p.deadline!), 7_200_000)
      assert.strictEqual(Duration.toMillis(p.killGrace), 250)
    }))

  it.effect("an empty target list", () =>
    Effect.gen(function*() {
      const e = yield* Runner.run(RunPlan.make({ targets: [], job })).pipe(Effect.flip)
      assert.strictEqual(e.reason, "NoTargets")
    }).pipe(Effect.provide(recording())))

  it.effect("duplicate target ids, naming both", () =>
    Effect.gen(function*() {
      started.length = 0
      const e = yield* Runner.run(RunPlan.make({ targets: [Target.local("a"), Target.local("b"), Target.local("a")], job })).pipe(
        Effect.flip
      )
      assert.strictEqual(e.reason, "DuplicateTargetId")
      assert.strictEqual(e.path, "targets[2].id")
      assert.match(e.description, /targets\[0\]/)
      assert.deepStrictEqual(started, [])
    }).pipe(Effect.provide(recording())))

  it.effect("a target kind without a transport", () =>
    Effect.gen(function*() {
      const e = yield* Runner.run(
        RunPlan.make({ targets: [Target.local("a"), { kind: "ssh", id: "b", labels: {}, os: "linux" }], job })
      ).pipe(Effect.flip)
      assert.strictEqual(e.reason, "NoTransportForKind")
      assert.strictEqual(e.path, "targets[1].kind")
      assert.match(e.description, /known: local/)
    }).pipe(Effect.provide(recording())))

  it.effect("secrets on a transport without a secure channel", () =>
    Effect.gen(function*() {
      const e = yield* Runner.run(
        RunPlan.make({
          targets: [Target.local("a")],
          job: ScriptSource.job(ScriptSource.command("true"), { secrets: { T: Redacted.make("x") } })
        })
      ).pipe(Effect.flip)
      assert.strictEqual(e.reason, "UnsupportedByTransport")
      assert.strictEqual(e.path, "job.secrets")
    }).pipe(Effect.provide(recording({ secrets: false }))))

  it.effect("a plan that does not decode names the field", () =>
    Effect.gen(function*() {
      const e = yield* RunPlan.decode({
        targets: [{ kind: "local", id: "a" }],
        job: { source: { _tag: "Command", argv: ["true"] } },
        policy: { concurrency: "0%" }
      }).pipe(Effect.flip)
      assert.strictEqual(e.path, "policy.concurrency")
      const k = yield* RunPlan.decode({ targets: [{ kind: "nope", id: "a" }], job: { source: { _tag: "Command", argv: ["x"] } } })
        .pipe(Effect.flip)
      assert.strictEqual(k.path, "targets.0")
      assert.match(k.description, /unknown target kind "nope"; known kinds: local/)
      const s = yield* RunPlan.decode({ targets: [{ kind: "local", id: "has space" }], job: { source: { _tag: "Command", argv: ["x"] } } })
        .pipe(Effect.flip)
      assert.strictEqual(s.path, "targets.0.id")
    }))

  it.effect("an unreadable script file", () =>
    Effect.gen(function*() {
      const e = yield* Runner.run(RunPlan.make({ targets: [Target.local("a")], job: ScriptSource.job(new ScriptSource.File({ path: "/nonexistent/x.sh" })) }))
        .pipe(Effect.flip)
      assert.strictEqual(e.reason, "FileUnreadable")
      assert.match(e.description, /\/nonexistent\/x\.sh/)
    }).pipe(Effect.provide(Layer.merge(recording(), NodeContext.layer))))

  it.effect("a script file is read, its shebang picks the interpreter", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-file-"))
      const file = path.join(dir, "s.sh")
      fs.writeFileSync(file, "#!/bin/bash\necho hi\n")
      const report = yield* Runner.run(RunPlan.make({ targets: [Target.local("a")], job: ScriptSource.job(new ScriptSource.File({ path: file })) }))
      fs.rmSync(dir, { recursive: true })
      assert.strictEqual(report.outcomes[0]!.stdout.head, "#!/bin/bash\necho hi\n")
    }).pipe(Effect.provide(Layer.merge(recording(), NodeContext.layer))))

  it.scoped("a URL whose sha256 does not match is refused, a matching one runs", () =>
    Effect.gen(function*() {
      const body = "echo from-url\n"
      const server = yield* Effect.acquireRelease(
        Effect.async<http.Server>((resume) => {
          const s = http.createServer((_, res) => res.end(body))
          s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
        }),
        (s) => Effect.async<void>((resume) => {
          s.close(() => resume(Effect.void))
        })
      )
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/s.sh`
      started.length = 0
      const bad = yield* Runner.run(
        RunPlan.make({ targets: [Target.local("a")], job: ScriptSource.job(new ScriptSource.Url({ url, sha256: "0".repeat(64) })) })
      ).pipe(Effect.flip)
      assert.strictEqual(bad.reason, "ChecksumMismatch")
      assert.strictEqual(bad.path, "job.source.sha256")
      assert.deepStrictEqual(started, [])
      const sha256 = crypto.createHash("sha256").update(body).digest("hex")
      const ok = yield* Runner.run(RunPlan.make({ targets: [Target.local("a")], job: ScriptSource.job(new ScriptSource.Url({ url, sha256 })) }))
      assert.strictEqual(ok.outcomes[0]!._tag, "Succeeded")
      assert.strictEqual(ok.outcomes[0]!.stdout.head, body)
    }).pipe(Effect.provide(Layer.merge(recording(), NodeHttpClient.layerUndici))))
})
