import { assert, describe, it } from "@effect/vitest"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Effect from "effect/Effect"
import * as SsmTransport from "../src/SsmTransport.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"

describe("SsmTransport", () => {
  it.scopedLive("runs a script on emulated instances: output, exit codes", () =>
    Effect.gen(function*() {
      const emulator = yield* Emulator.make({ instances: 3 })
      const targets = emulator.targets()
      const report = yield* Runner.run(RunPlan.make({
        targets,
        job: ScriptSource.job(ScriptSource.script(`echo "hello $1 from $AWS_SSM_INSTANCE_ID"; echo err >&2; exit 3`), {
          args: ["world"]
        }),
        policy: { concurrency: 50 }
      })).pipe(Effect.provide(SsmTransport.layer(Harness.options(emulator))))
      assert.strictEqual(report.outcomes.length, 3)
      for (const [i, o] of report.outcomes.entries()) {
        assert.strictEqual(o._tag, "Failed", JSON.stringify(o))
        if (o._tag === "Failed") assert.strictEqual(o.exitCode, 3)
        assert.strictEqual(o.stdout.head, `hello world from ${emulator.instanceIds[i]}\n`)
        assert.strictEqual(o.stderr.head, "err\n")
      }
      assert.strictEqual(emulator.countByOperation().SendCommand, 1)
    }), { timeout: 60_000 })
})
