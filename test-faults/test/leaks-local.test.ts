/**
 * Leaks, local: 100 timeouts and 100 cancels of executions whose children ignore TERM and HUP and escape with
 * `setsid`; none of their processes is left in the process table.
 */
import { describe, it } from "@effect/vitest"
import * as Target from "@runcmd/core/Target"
import { LocalTransport } from "@runcmd/transport-local"
import * as Effect from "effect/Effect"
import { runLeakCase } from "../support/leaks.js"

const targets = (env: (i: number) => Record<string, string>) =>
  Array.from({ length: 100 }, (_, i) => ({ ...Target.local(`local-${i}`), env: env(i) }))

describe("leaks: local", () => {
  it.live(
    "100 timeouts: TimedOut each, no process left",
    () =>
      // all at once (no session limit locally), the timeout long enough for every execution to escape under load
      runLeakCase({ path: "timeout", count: 100, targets, batch: 100, timeout: "15 seconds" }).pipe(
        Effect.provide(LocalTransport.layer({ killTimeout: "10 seconds" }))
      ),
    { timeout: 240_000 }
  )

  it.live(
    "100 cancels: Cancelled each, no process left",
    () =>
      runLeakCase({ path: "cancel", count: 100, targets, batch: 100 }).pipe(
        Effect.provide(LocalTransport.layer({ killTimeout: "10 seconds" }))
      ),
    { timeout: 240_000 }
  )
})
