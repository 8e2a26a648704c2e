/**
 * Driving an effect under `TestClock` to completion, one pending sleep at a time, each only after every fiber
 * the effect started has settled (done or suspended). A blocked effect with no pending sleep is a deadlock.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberStatus from "effect/FiberStatus"
import * as Option from "effect/Option"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"

/** @internal */
export interface DriveOptions {
  /** Give up (a defect) when the effect has not finished this much virtual time after it started. */
  readonly horizon?: Duration.DurationInput | undefined
  /** Give up after this many clock steps (default 100 000). */
  readonly maxSteps?: number | undefined
}

/** @internal */
export class DriveError extends Error {
  override readonly name = "DriveError"
}

const macrotask = Effect.async<void>((resume) => {
  const timer = setTimeout(() => resume(Effect.void), 0)
  return Effect.sync(() => clearTimeout(timer))
})

const snapshot = (fibers: ReadonlyArray<Fiber.RuntimeFiber<unknown, unknown>>) =>
  Effect.forEach(fibers, (fiber) =>
    Effect.map(fiber.status, (status) => {
      if (FiberStatus.isDone(status)) return `${fiber.id().id}:done`
      if (FiberStatus.isSuspended(status)) return `${fiber.id().id}:suspended`
      return `${fiber.id().id}:running`
    })).pipe(Effect.map((list) => list.join(",")))

/** Waits until every tracked fiber is done or suspended, twice in a row across a macrotask. */
const settle = (
  supervisor: Supervisor.Supervisor<Array<Fiber.RuntimeFiber<any, any>>>,
  main: Fiber.RuntimeFiber<unknown, unknown>
) =>
  Effect.gen(function*() {
    let previous = ""
    for (let i = 0; i < 10_000; i++) {
      yield* macrotask
      const fibers = [main, ...(yield* supervisor.value)]
      const now = yield* snapshot(fibers)
      if (now === previous && !now.includes(":running")) return
      previous = now
    }
  })

/**
 * Runs `effect` under the `TestClock`, advancing the clock to each pending sleep in turn once everything else has
 * settled, until the effect completes. Dies with a `DriveError` if the effect blocks with no pending sleep
 * (a deadlock) or runs past the horizon.
 *
 * @internal
 */
export const drive = <A, E, R>(effect: Effect.Effect<A, E, R>, options: DriveOptions = {}): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const horizon = Duration.toMillis(options.horizon ?? Duration.hours(24))
    const maxSteps = options.maxSteps ?? 100_000
    const supervisor = yield* Supervisor.track
    const fiber = yield* Effect.fork(Effect.supervised(effect, supervisor))
    const startedAt = yield* TestClock.currentTimeMillis
    for (let step = 0;; step++) {
      yield* settle(supervisor, fiber)
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return yield* done.value
      const sleeps = yield* TestClock.sleeps()
      if (Chunk.isEmpty(sleeps)) {
        yield* Fiber.interrupt(fiber)
        return yield* Effect.die(
          new DriveError(
            "the effect is blocked and nothing is scheduled on the clock (a deadlock: e.g. output nobody reads)"
          )
        )
      }
      const next = Math.min(...Chunk.toReadonlyArray(sleeps))
      if (next - startedAt > horizon || step >= maxSteps) {
        yield* Fiber.interrupt(fiber)
        return yield* Effect.die(
          new DriveError(`the effect did not finish within ${horizon} ms of virtual time (${step} clock steps)`)
        )
      }
      yield* TestClock.setTime(next)
    }
  })
