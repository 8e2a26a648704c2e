import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as fc from "fast-check"
import { makeSerialize } from "../src/internal/serialize.js"

/** An effect that records when it starts and ends, and checks that nothing else ran meanwhile. */
const tracker = () => {
  let inside = 0
  let overlaps = 0
  const log: Array<string> = []
  const step = <A, E, R>(name: string, body: Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        if (++inside > 1) overlaps++
        log.push(`${name}+`)
      }),
      () => body,
      () =>
        Effect.sync(() => {
          inside--
          log.push(`${name}-`)
        })
    )
  return { step, log, overlaps: () => overlaps }
}

describe("makeSerialize", () => {
  it.effect("runs effects one at a time, in the order they asked", () =>
    Effect.gen(function*() {
      const serialize = yield* makeSerialize
      const t = tracker()
      const gate = yield* Deferred.make<void>()
      const first = yield* Effect.fork(serialize(t.step("a", Deferred.await(gate))))
      yield* Effect.yieldNow()
      const rest = yield* Effect.forEach(["b", "c", "d"], (name) =>
        Effect.fork(serialize(t.step(name, Effect.yieldNow()))).pipe(Effect.zipLeft(Effect.yieldNow())))
      assert.deepStrictEqual(t.log, ["a+"])
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* Fiber.joinAll(rest)
      assert.deepStrictEqual(t.log, ["a+", "a-", "b+", "b-", "c+", "c-", "d+", "d-"])
      assert.strictEqual(t.overlaps(), 0)
    }))

  it.effect("releases the lock when the effect fails, dies or is interrupted", () =>
    Effect.gen(function*() {
      const serialize = yield* makeSerialize
      assert.deepStrictEqual(yield* Effect.flip(serialize(Effect.fail("boom"))), "boom")
      const died = yield* Effect.exit(serialize(Effect.die("defect")))
      assert.isTrue(Exit.isFailure(died))
      const running = yield* Effect.fork(serialize(Effect.never))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(running)
      assert.strictEqual(yield* serialize(Effect.succeed(42)), 42)
    }))

  it.effect("a caller interrupted while waiting leaves the queue; the next one gets the lock", () =>
    Effect.gen(function*() {
      const serialize = yield* makeSerialize
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(serialize(Deferred.await(gate)))
      yield* Effect.yieldNow()
      const ran: Array<string> = []
      const waiting = yield* Effect.fork(serialize(Effect.sync(() => ran.push("interrupted one"))))
      const next = yield* Effect.fork(serialize(Effect.sync(() => ran.push("next"))))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(next)
      assert.deepStrictEqual(ran, ["next"])
    }))

  it.live("never runs two at once and always ends free, whatever is interrupted when (property)", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ work: fc.nat(3), interruptAfter: fc.option(fc.nat(4)) }), {
            minLength: 1,
            maxLength: 25
          }),
          (callers) =>
            Effect.runPromise(Effect.gen(function*() {
              const serialize = yield* makeSerialize
              const t = tracker()
              const fibers = yield* Effect.forEach(
                callers,
                (c, i) => Effect.fork(serialize(t.step(String(i), Effect.repeatN(Effect.yieldNow(), c.work))))
              )
              // interrupt some callers after a few turns: while waiting, while running, or just as the lock is handed over
              yield* Effect.forEach(callers, (c, i) =>
                c.interruptAfter === null
                  ? Effect.void
                  : Effect.fork(
                    Effect.zipRight(Effect.repeatN(Effect.yieldNow(), c.interruptAfter), Fiber.interrupt(fibers[i]!))
                  ), { discard: true })
              yield* Effect.forEach(fibers, (f) => Effect.exit(Fiber.join(f)), { discard: true })
              assert.strictEqual(t.overlaps(), 0)
              // the lock is free at the end
              const last = yield* serialize(Effect.succeed("free")).pipe(Effect.timeout("1 second"))
              assert.strictEqual(last, "free")
            }))
        ),
        { numRuns: 200 }
      )
    ))
})
