import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as OutputChunk from "../src/OutputChunk.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as RunReport from "../src/RunReport.js"
import * as ScriptSource from "../src/ScriptSource.js"
import * as Target from "../src/Target.js"
import * as Transport from "../src/Transport.js"

const fake = Transport.layer(Effect.succeed(Transport.make({
  name: "fake",
  kinds: ["local"],
  capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: true, native: false },
  start: (target) =>
    Effect.succeed({
      output: Stream.fromIterable([OutputChunk.stdout(`hello from ${target.id} s3cr`), OutputChunk.stdout("et!\n")]).pipe(
        Stream.tap(() => Effect.sleep(Duration.millis(10)))
      ),
      exit: target.id.endsWith("2") ? Effect.succeed(Transport.exited(3)) : Effect.succeed(Transport.exited(0))
    })
})))

describe("Runner smoke", () => {
  it.effect("runs, redacts across chunks, reports", () =>
    Effect.gen(function*() {
      const plan = RunPlan.make({
        targets: [Target.local("t1"), Target.local("t2")],
        job: ScriptSource.job(ScriptSource.command("true"), { secrets: { TOKEN: Redacted.make("s3cret") } })
      })
      const fiber = yield* Effect.fork(Runner.run(plan))
      yield* TestClock.adjust(Duration.seconds(1))
      const report = yield* Fiber.join(fiber)
      assert.deepStrictEqual(report.summary.byOutcome.Succeeded, 1)
      assert.deepStrictEqual(report.summary.byOutcome.Failed, 1)
      assert.strictEqual(report.outcomes[0]!.stdout.head, "hello from t1 [REDACTED]!\n")
      assert.deepStrictEqual(RunReport.failedTargets(report), ["t2"])
    }).pipe(Effect.provide(fake)))
})
