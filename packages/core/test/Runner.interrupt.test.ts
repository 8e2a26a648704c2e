import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import type * as RunReport from "../src/RunReport.js"
import * as ScriptSource from "../src/ScriptSource.js"
import { drive, InMemory, InMemoryTransport, memoryTarget, Step } from "../src/testing.js"
import * as Transport from "../src/Transport.js"
import { TransportError } from "../src/TransportError.js"

const plan = RunPlan.make({
  targets: [memoryTarget("t0"), memoryTarget("t1"), memoryTarget("t2")],
  job: ScriptSource.job(ScriptSource.script("work")),
  policy: { concurrency: 1 }
})
const hanging = InMemoryTransport.layer({ behaviours: { t0: [Step.stdout("started\n"), Step.hang] } })
const tags = (report: RunReport.RunReport) => report.outcomes.map((o) => o._tag)

const assertPartial = (report: RunReport.RunReport) => {
  assert.isTrue(report.interrupted)
  assert.deepStrictEqual(tags(report), ["Cancelled", "Skipped", "Skipped"])
  const first = report.outcomes[0]!
  assert.isTrue(first._tag === "Cancelled" && first.confirmed)
  assert.strictEqual(first.stdout.head, "started\n")
  const second = report.outcomes[1]!
  assert.isTrue(second._tag === "Skipped" && second.why === "Cancelled")
}

describe("Runner: the partial report of an interrupted run", () => {
  it.effect("an interrupted Runner.run hands its partial report to onInterrupt, after the kill", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const received = yield* Deferred.make<RunReport.RunReport>()
      const fiber = yield* Runner.run(plan, { onInterrupt: (report) => Deferred.succeed(received, report) }).pipe(
        Effect.fork
      )
      yield* TestClock.adjust(Duration.seconds(5))
      assert.strictEqual(yield* memory.running, 1)
      yield* Fiber.interrupt(fiber)
      const report = yield* Deferred.await(received)
      assertPartial(report)
      assert.strictEqual(yield* memory.running, 0)
      assert.strictEqual((yield* memory.cancels).length, 1)
    }).pipe(Effect.provide(hanging)))

  it.effect("a timeout around Runner.run still gives the report to onInterrupt", () =>
    Effect.gen(function*() {
      let received: RunReport.RunReport | undefined
      const result = yield* drive(
        Runner.run(plan, { onInterrupt: (report) => Effect.sync(() => void (received = report)) }).pipe(
          Effect.timeoutOption(Duration.minutes(1))
        )
      )
      assert.isTrue(Option.isNone(result))
      assert.isDefined(received)
      assertPartial(received!)
      assert.strictEqual(received!.durationMs, 60_000)
    }).pipe(Effect.provide(hanging)))

  it.scoped("Runner.start: cancel returns the partial report; report awaits a run that ends by itself", () =>
    Effect.gen(function*() {
      const handle = yield* Runner.start(plan)
      yield* TestClock.adjust(Duration.seconds(1))
      const report = yield* handle.cancel
      assertPartial(report)
      assert.strictEqual(report.runId, handle.runId)
      // cancelling again, or awaiting, gives the same report
      assert.strictEqual(yield* handle.cancel, report)
      assert.strictEqual(yield* handle.report, report)

      const done = yield* Runner.start(RunPlan.make({ ...plan, targets: [memoryTarget("ok")] }))
      const finished = yield* done.report
      assert.isFalse(finished.interrupted)
      assert.deepStrictEqual(tags(finished), ["Succeeded"])
    }).pipe(Effect.provide(hanging)))

  it.effect("closing Runner.start's scope cancels the run and reports through onInterrupt", () =>
    Effect.gen(function*() {
      const received = yield* Deferred.make<RunReport.RunReport>()
      yield* Effect.scoped(
        Effect.gen(function*() {
          yield* Runner.start(plan, { onInterrupt: (report) => Deferred.succeed(received, report) })
          yield* TestClock.adjust(Duration.seconds(1))
        })
      )
      assertPartial(yield* Deferred.await(received))
    }).pipe(Effect.provide(hanging)))
})

describe("Transport.make", () => {
  it.effect("stamps the target id on errors from start, the pump and the exit", () =>
    Effect.gen(function*() {
      const fail = (description: string) =>
        new TransportError({ reason: "ConnectionLost", transport: "t", phase: "execution", description })
      const make = (where: "start" | "pump" | "exit") =>
        Transport.make({
          name: "t",
          kinds: ["memory"],
          capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: false, native: false },
          start: () =>
            where === "start" ? Effect.fail(fail(where)) : Effect.succeed({
              pump: () => (where === "pump" ? Effect.fail(fail(where)) : Effect.void),
              exit: where === "exit" ? Effect.fail(fail(where)) : Effect.succeed(Transport.exited(0))
            })
        })
      const invocation: Transport.Invocation = {
        runId: "r",
        attempt: 1,
        source: ScriptSource.command("true"),
        args: [],
        env: {},
        secrets: {},
        killGrace: Duration.seconds(1)
      }
      for (const where of ["start", "pump", "exit"] as const) {
        const failure = yield* Effect.flip(make(where).run(memoryTarget("web-7"), invocation))
        assert.strictEqual(failure.targetId, "web-7", where)
        assert.strictEqual(failure.description, where)
        assert.include(failure.message, "on web-7")
      }
    }))
})
