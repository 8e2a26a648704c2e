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
        return Transport.fromStream({
          output: Stream.make({ stream: "stdout" as const, bytes: new TextEncoder().encode(text) }),
          exit: Effect.succeed(Transport.exited(0))
        })
      })
  })))

const decodePolicy = (input: unknown) =>
  Schema.decodeUnknown(ExecutionPolicy.ExecutionPolicy)(input).pipe(
    Effect.mapError((e) => RunPlan.fromParseError(e, "policy")),
    Effect.flip
  )

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
      const p = yield* Schema.decodeUnknown(ExecutionPolicy.ExecutionPolicy)({
        timeout: "1.5m",
        deadline: "2h",
        killGrace: "250ms"
      })
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
      const e = yield* Runner.run(
        RunPlan.make({ targets: [Target.local("a"), Target.local("b"), Target.local("a")], job })
      ).pipe(
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
      const k = yield* RunPlan.decode({
        targets: [{ kind: "nope", id: "a" }],
        job: { source: { _tag: "Command", argv: ["x"] } }
      })
        .pipe(Effect.flip)
      assert.strictEqual(k.path, "targets.0")
      assert.match(k.description, /unknown target kind "nope"; known kinds: local/)
      const s = yield* RunPlan.decode({
        targets: [{ kind: "local", id: "has space" }],
        job: { source: { _tag: "Command", argv: ["x"] } }
      })
        .pipe(Effect.flip)
      assert.strictEqual(s.path, "targets.0.id")
    }))

  it.effect("an unreadable script file", () =>
    Effect.gen(function*() {
      const e = yield* Runner.run(
        RunPlan.make({
          targets: [Target.local("a")],
          job: ScriptSource.job(new ScriptSource.File({ path: "/nonexistent/x.sh" }))
        })
      )
        .pipe(Effect.flip)
      assert.strictEqual(e.reason, "FileUnreadable")
      assert.match(e.description, /\/nonexistent\/x\.sh/)
    }).pipe(Effect.provide(Layer.merge(recording(), NodeContext.layer))))

  it.effect("a script file is read, its shebang picks the interpreter", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-file-"))
      const file = path.join(dir, "s.sh")
      fs.writeFileSync(file, "#!/bin/bash\necho hi\n")
      const report = yield* Runner.run(
        RunPlan.make({ targets: [Target.local("a")], job: ScriptSource.job(new ScriptSource.File({ path: file })) })
      )
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
        (s) =>
          Effect.async<void>((resume) => {
            s.close(() => resume(Effect.void))
          })
      )
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/s.sh`
      started.length = 0
      const bad = yield* Runner.run(
        RunPlan.make({
          targets: [Target.local("a")],
          job: ScriptSource.job(new ScriptSource.Url({ url, sha256: "0".repeat(64) }))
        })
      ).pipe(Effect.flip)
      assert.strictEqual(bad.reason, "ChecksumMismatch")
      assert.strictEqual(bad.path, "job.source.sha256")
      assert.deepStrictEqual(started, [])
      const sha256 = crypto.createHash("sha256").update(body).digest("hex")
      const ok = yield* Runner.run(
        RunPlan.make({ targets: [Target.local("a")], job: ScriptSource.job(new ScriptSource.Url({ url, sha256 })) })
      )
      assert.strictEqual(ok.outcomes[0]!._tag, "Succeeded")
      assert.strictEqual(ok.outcomes[0]!.stdout.head, body)
    }).pipe(Effect.provide(Layer.merge(recording(), NodeHttpClient.layerUndici))))
})

describe("files shipped with the job", () => {
  const invocations: Array<Transport.Invocation> = []
  const shipping = Transport.layer(Effect.succeed(Transport.make({
    name: "shipping",
    kinds: ["local"],
    capabilities: {
      output: "live",
      cancel: "kills",
      secrets: true,
      stdin: true,
      runAs: true,
      native: false,
      files: true
    },
    start: (_target, invocation) =>
      Effect.sync(() => {
        invocations.push(invocation)
        return Transport.fromStream({ output: Stream.empty, exit: Effect.succeed(Transport.exited(0)) })
      })
  })))
  const withFiles = (
    files: ReadonlyArray<ScriptSource.JobFile>,
    options: Partial<Omit<ScriptSource.Job, "source">> = {}
  ) =>
    RunPlan.make({
      targets: [Target.local("a")],
      job: ScriptSource.job(ScriptSource.command("true"), { ...options, files })
    })

  it.effect("a transport that does not ship files refuses them", () =>
    Effect.gen(function*() {
      const e = yield* Runner.run(withFiles([{ name: "a.txt", content: "x" }])).pipe(Effect.flip)
      assert.strictEqual(e.reason, "UnsupportedByTransport")
      assert.strictEqual(e.path, "job.files")
      assert.match(e.description, /does not support shipping files/)
    }).pipe(Effect.provide(recording())))

  it.effect("bad names, collisions, content and path, RUNCMD_FILES, run-as: named, before anything runs", () =>
    Effect.gen(function*() {
      const refused = (plan: RunPlan.RunPlan) => Runner.run(plan).pipe(Effect.flip)
      for (const name of ["../etc/passwd", "/abs", "a/../b", "./a", "a//b", "", "a b", "a/"]) {
        const e = yield* refused(withFiles([{ name, content: "x" }]))
        assert.strictEqual(e.path, "job.files[0].name", name)
        assert.match(e.description, /relative path/)
      }
      const same = yield* refused(withFiles([{ name: "a", content: "x" }, { name: "a", content: "y" }]))
      assert.strictEqual(same.path, "job.files[1].name")
      const nested = yield* refused(withFiles([{ name: "conf/a.ini", content: "x" }, { name: "conf", content: "y" }]))
      assert.match(nested.description, /collides with job\.files\[0\]/)
      const both = yield* refused(withFiles([{ name: "a", content: "x", path: "/etc/hostname" }]))
      assert.strictEqual(both.path, "job.files[0]")
      const neither = yield* refused(withFiles([{ name: "a" }]))
      assert.match(neither.description, /exactly one/)
      const env = yield* refused(withFiles([{ name: "a", content: "x" }], { env: { RUNCMD_FILES: "/tmp" } }))
      assert.strictEqual(env.path, "job.env.RUNCMD_FILES")
      const runAs = yield* refused(RunPlan.make({
        targets: [Target.local("a")],
        job: ScriptSource.job(ScriptSource.command("true"), { files: [{ name: "a", content: "x" }] }),
        policy: { runAs: { user: "nobody", method: "sudo" } }
      }))
      assert.strictEqual(runAs.path, "job.files")
      assert.match(runAs.description, /run-as/)
      assert.strictEqual(invocations.length, 0, "nothing was started")
      // through the plan's schema, the name is checked as it is decoded
      const decoded = yield* RunPlan.decode({
        targets: [{ kind: "local", id: "a" }],
        job: { source: { _tag: "Command", argv: ["true"] }, files: [{ name: "../x", content: "x" }] }
      }).pipe(Effect.flip)
      assert.strictEqual(decoded.path, "job.files.0.name")
    }).pipe(Effect.provide(shipping)))

  it.effect("files given by path are read when the plan is prepared (an unreadable one is FileUnreadable)", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-files-test-"))
      try {
        const local = path.join(dir, "tool.sh")
        fs.writeFileSync(local, "#!/bin/sh\necho hi\n")
        invocations.length = 0
        yield* Runner.run(withFiles([
          { name: "bin/tool.sh", path: local, mode: 0o700 },
          { name: "data", content: Uint8Array.of(0, 1, 255) },
          { name: "note.txt", content: "ünï ✓" }
        ]))
        const files = invocations[0]!.files!
        assert.deepStrictEqual(files.map((f) => [f.name, f.mode]), [["bin/tool.sh", 0o700], ["data", 0o600], [
          "note.txt",
          0o600
        ]])
        assert.strictEqual(new TextDecoder().decode(files[0]!.bytes), "#!/bin/sh\necho hi\n")
        assert.deepStrictEqual([...files[1]!.bytes], [0, 1, 255])
        assert.strictEqual(new TextDecoder().decode(files[2]!.bytes), "ünï ✓")
        const e = yield* Runner.run(withFiles([{ name: "x", path: path.join(dir, "missing") }])).pipe(Effect.flip)
        assert.strictEqual(e.reason, "FileUnreadable")
        assert.strictEqual(e.path, "job.files[0].path")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }).pipe(Effect.provide(Layer.merge(shipping, NodeContext.layer))))
})
