/**
 * One effect at a time, cheaply when nobody waits.
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"

/**
 * Makes a function that runs effects one at a time, each after the one before has ended, like
 * `Semaphore.withPermits(1)`, but a call that finds the lock free takes no asynchronous step. Effect's semaphore
 * takes every permit through `async` (the fiber is suspended and resumed through its message queue even when the
 * permit is free): per output chunk that was ~10 KB of garbage, and with the sinks' own locks most of the young
 * generation's growth while streaming (the `throughput` benchmark in BENCHMARKS.md).
 *
 * Interruption: the effect runs interruptibly; the lock is released however it ends, also when the fiber is
 * interrupted while waiting just as the lock is handed to it.
 *
 * @internal
 */
export const makeSerialize: Effect.Effect<<A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>> = Effect
  .sync(() => {
    let busy = false
    /** Waiting callers in arrival order; `release` hands the lock to the first (it stays busy). */
    const waiters: Array<() => void> = []
    const releaseNow = () => {
      const next = waiters.shift()
      if (next === undefined) busy = false
      else next()
    }
    // inside the uninterruptible region: release as soon as the effect has ended, however it ended
    const thenRelease = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.flatMap(Effect.exit(self), (exit) => {
        releaseNow()
        return exit
      })
    const acquire = Effect.async<void>((resume) => {
      if (!busy) {
        busy = true
        return resume(Effect.void)
      }
      let handed = false
      const waiter = () => {
        handed = true
        resume(Effect.void)
      }
      waiters.push(waiter)
      return Effect.sync(() => {
        const i = waiters.indexOf(waiter)
        if (i >= 0) waiters.splice(i, 1)
        else if (handed) releaseNow() // handed over as the interruption came: pass it on
      })
    })
    return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.uninterruptibleMask((restore) => {
        if (busy) return Effect.zipRight(restore(acquire), thenRelease(restore(self)))
        busy = true
        return thenRelease(restore(self))
      })
  })
