/**
 * The token bucket shared by every SSM call to one account and region: SSM's API limits are per account and
 * region, so every layer and target of a process draws from one bucket per key.
 *
 * @internal
 */
import * as Effect from "effect/Effect"

/** @internal */
export interface RateLimit {
  /** Tokens added per second. */
  readonly perSecond: number
  /** Bucket size: how many calls may go at once after a quiet time. */
  readonly burst: number
}

/** @internal */
export interface Limiter {
  readonly take: Effect.Effect<void>
  readonly rate: RateLimit
}

const make = (rate: RateLimit): Limiter => {
  let tokens = rate.burst
  let last: number | undefined
  // FIFO: each caller reserves the next token (possibly in the future) and sleeps until then
  const take = Effect.clockWith((clock) =>
    Effect.suspend(() => {
      const now = clock.unsafeCurrentTimeMillis()
      if (last !== undefined) tokens = Math.min(rate.burst, tokens + ((now - last) / 1000) * rate.perSecond)
      last = now
      tokens -= 1
      if (tokens >= 0) return Effect.void
      return Effect.sleep(Math.ceil((-tokens / rate.perSecond) * 1000))
    })
  )
  return { take, rate }
}

const shared = new Map<string, Limiter>()

/**
 * The limiter for `key` (account and region); the first caller's rate wins for the process's lifetime.
 *
 * @internal
 */
export const forKey = (key: string, rate: RateLimit): Limiter => {
  let limiter = shared.get(key)
  if (limiter === undefined) {
    limiter = make(rate)
    shared.set(key, limiter)
  }
  return limiter
}

/** A private limiter (tests). @internal */
export const unshared = make
