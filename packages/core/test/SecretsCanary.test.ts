import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as OutputChunk from "../src/OutputChunk.js"
import * as OutputSink from "../src/OutputSink.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as RunReport from "../src/RunReport.js"
import * as ScriptSource from "../src/ScriptSource.js"
import * as Target from "../src/Target.js"
import { assertNoLeak, recordTelemetry } from "../src/testing.js"
import * as Transport from "../src/Transport.js"
import { TransportError } from "../src/TransportError.js"

const SECRET = "CANARY-s3cr3t-7f1e"
const PASSWORD = "become-pa55-9c2d"
const encoded = Buffer.from(SECRET).toString("base64").replace(/=+$/, "")

// a transport that prints the secrets in every way a script could, and fails with them in its errors
const leaky = Transport.layer(Effect.succeed(Transport.make({
  name: "leaky",
  kinds: ["local"],
  capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: true, native: false },
  start: (target) => {
    if (target.id === "broken") {
      return Effect.fail(
        new TransportError({
          reason: "ConnectionLost",
          transport: "leaky",
          phase: "delivery",
          description: `lost while sending ${SECRET}`,
          detail: { echoed: PASSWORD, nested: { value: `x${SECRET}x` } }
        })
      )
    }
    const half = SECRET.length / 2
    return Effect.succeed(Transport.fromStream({
      output: Stream.make(
        OutputChunk.stdout(`token=${SECRET.slice(0, half)}`),
        OutputChunk.stdout(`${SECRET.slice(half)}\n`),
        OutputChunk.stderr(`b64=${encoded}\npassword=${PASSWORD}\n`),
        OutputChunk.stdout(`partial ${SECRET.slice(0, 5)}`)
      ),
      exit: Effect.succeed(Transport.exited(0))
    }))
  }
})))

describe("secrets canary", () => {
  it.scoped("a secret reaches no sink, error, log, span or report", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-canary-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const consoleOut: Array<string> = []
      const plan = RunPlan.make({
        targets: [Target.local("ok"), Target.local("broken")],
        job: ScriptSource.job(ScriptSource.command("true"), { secrets: { TOKEN: Redacted.make(SECRET) } }),
        policy: {
          runAs: { user: "deploy", method: "sudo", password: Redacted.make(PASSWORD) },
          schedule: Schedule.recurs(1)
        },
        sinks: [
          OutputSink.file({ dir: path.join(dir, "per-target"), layout: "per-target" }),
          OutputSink.file({ dir: path.join(dir, "jsonl"), layout: "jsonl" }),
          OutputSink.console({ mode: "prefixed", write: (s) => consoleOut.push(s) }),
          OutputSink.console({ mode: "grouped", write: (s) => consoleOut.push(s) }),
          OutputSink.events({ path: path.join(dir, "events.jsonl") })
        ]
      })
      const streamed: Array<string> = []
      yield* Runner.stream(plan).pipe(Stream.runForEach((e) => Effect.sync(() => streamed.push(JSON.stringify(e)))))
      const [exit, { logs, spans }] = yield* recordTelemetry(Runner.run(plan))
      assert.isTrue(Exit.isSuccess(exit))
      const report = Exit.isSuccess(exit) ? exit.value : yield* Effect.die("the run failed")
      const reportJson = RunReport.encodeJson(report)
      const files = (d: string): Array<string> =>
        fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
          e.isDirectory() ? files(path.join(d, e.name)) : [fs.readFileSync(path.join(d, e.name), "latin1")]
        )
      const everything = [reportJson, ...files(dir), ...consoleOut, ...logs, ...spans, ...streamed].join("\n")

      // the canary really went through each channel
      assert.strictEqual(report.outcomes[0]!._tag, "Succeeded")
      assert.strictEqual(report.outcomes[1]!._tag, "TransportFailed")
      assert.strictEqual(report.outcomes[1]!.attempts, 2)
      assert.include(everything, "token=[REDACTED]")
      assert.include(everything, "lost while sending [REDACTED]")
      assert.isTrue(logs.some((l) => l.includes("retrying broken")))
      assert.isTrue(spans.some((s) => s.startsWith("Runner.run ")))
      assert.isTrue(spans.some((s) => s.startsWith("Runner.execute ")))
      assert.include(reportJson, "partial CANAR")
      assertNoLeak([SECRET, PASSWORD], {
        report: reportJson,
        files: files(dir),
        console: consoleOut,
        logs,
        spans,
        streamed
      })
      assert.isTrue(Option.isNone(Option.fromNullable(everything.match(new RegExp(SECRET)))))
    }).pipe(Effect.provide(Layer.merge(leaky, NodeContext.layer))))

  it.effect("the canary's check fails on each form a secret leaks in, naming the channel", () =>
    Effect.gen(function*() {
      const [exit, telemetry] = yield* recordTelemetry(
        Effect.logDebug("sending").pipe(
          Effect.annotateLogs("header", `Bearer ${Buffer.from(SECRET).toString("base64")}`),
          Effect.zipRight(Effect.fail(new Error(`refused ${encodeURIComponent(PASSWORD)}`))),
          Effect.withSpan("call", { attributes: { body: JSON.stringify({ token: SECRET }) } })
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.throws(() => assertNoLeak([SECRET], { logs: telemetry.logs }), /leaked into logs \(as an encoded form\)/)
      assert.throws(() => assertNoLeak([SECRET], { spans: telemetry.spans }), /leaked into spans/)
      assert.throws(() => assertNoLeak([PASSWORD], { spans: telemetry.spans }), /leaked into spans/)
      assert.throws(() => assertNoLeak([PASSWORD], { exit }), /leaked into exit/)
      assert.throws(() =>
        assertNoLeak(["pässwörd-ü"], { body: Buffer.from("pässwörd-ü", "utf16le").toString("base64") })
      )
      assert.doesNotThrow(() => assertNoLeak([SECRET], { other: "nothing here", n: [1, 2] }))
    }))
})
