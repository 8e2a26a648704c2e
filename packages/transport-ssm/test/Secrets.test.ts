/**
 * A secret delivered through Parameter Store reaches the script, and nothing else: no request body but the
 * PutParameter that stores it, no log (debug included), no span attribute or event, no report, no event, no error.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as RunReport from "@runcmd/core/RunReport"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import { assertNoLeak, recordTelemetry } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as SsmTransport from "../src/SsmTransport.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"

const SECRET = "CANARY-ssm-7f3a91"

describe("SSM secrets canary", () => {
  it.scopedLive(
    "a secret reaches the script and no request body but PutParameter's, log, span, event or report",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: 2 })
        // the transport's calls (the instances' own AWS CLI calls are not runcmd's)
        emulator.faults.throttle(0.2, [
          "SendCommand",
          "ListCommandInvocations",
          "GetCommandInvocation",
          "DescribeInstanceInformation",
          "PutParameter",
          "DeleteParameter"
        ])
        const plan = RunPlan.make({
          targets: emulator.targets(),
          job: ScriptSource.job(ScriptSource.script(`echo "token=$TOKEN"; echo "$TOKEN" >&2; exit 1`), {
            secrets: { TOKEN: Redacted.make(SECRET) }
          }),
          policy: { concurrency: 10 }
        })
        const layer = SsmTransport.layer(Harness.options(emulator, undefined, { secrets: { parameterStore: {} } }))
        const streamed: Array<string> = []
        yield* Runner.stream(plan).pipe(
          Stream.runForEach((e) => Effect.sync(() => streamed.push(JSON.stringify(e)))),
          Effect.provide(layer)
        )
        const [exit, { logs, spans }] = yield* recordTelemetry(Runner.run(plan).pipe(Effect.provide(layer)))
        const report = yield* exit
        const reportJson = RunReport.encodeJson(report)
        const bodies = emulator.requests().filter((r) => r.operation !== "PutParameter").map((r) => r.body)

        // the canary went through each channel: delivered, printed (then redacted), logged about, traced
        for (const o of report.outcomes) assert.strictEqual(o._tag, "Failed", JSON.stringify(o))
        assert.include(reportJson, "token=[REDACTED]")
        assert.isTrue(spans.some((s) => s.startsWith("SsmTransport.start ")))
        assert.isTrue(logs.some((l) => l.includes("ssm: SendCommand")))
        assert.isAbove(emulator.requests().filter((r) => r.fault === "throttle").length, 0)
        assert.strictEqual(
          emulator.requests().filter((r) => r.operation === "PutParameter" && r.status === 200).length,
          4,
          "a parameter per execution (two targets, two runs)"
        )
        assertNoLeak([SECRET], { report: reportJson, logs, spans, events: streamed, requests: bodies })
        assert.deepStrictEqual(emulator.parameters().stored, [])
      }),
    { timeout: 120_000 }
  )
})
