/**
 * Leaks, SSH: 100 timeouts and 100 cancels of executions whose children ignore TERM and HUP and escape with
 * `setsid`, against a loopback sshd; none of their processes is left in the process table (found by each
 * execution's marker, and as the SSH user's processes).
 */
import { afterEach, describe, it } from "@effect/vitest"
import { SshTransport } from "@runcmd/transport-ssh"
import * as Effect from "effect/Effect"
import { runLeakCase } from "../support/leaks.js"
import * as Sshd from "../support/sshd.js"

describe.skipIf(!Sshd.enabled())("leaks: ssh", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer({ maxSessions: 10 }), Sshd.layerOptions)((it) => {
    for (const path of ["timeout", "cancel"] as const) {
      it.effect(
        path === "timeout"
          ? "100 timeouts: TimedOut each, no process left"
          : "100 cancels: Cancelled each, no process left",
        () =>
          Effect.gen(function*() {
            const sshd = yield* Sshd.Server
            yield* runLeakCase({
              path,
              count: 100,
              targets: (env) =>
                Array.from({ length: 100 }, (_, i) => ({ ...sshd.target({ id: `ssh-${i}` }), env: env(i) })),
              // all at once: 13 connections × 8 channels against MaxSessions 10, every session taken (8 executions
              // and the lifeline, and what sshd has not freed yet), so the 100 kills go through the connections'
              // lifelines; the timeout is long enough for every execution to escape whatever the load, the cancel
              // comes once all escaped
              batch: 100,
              timeout: "15 seconds",
              // an upper bound (the check returns as soon as the table is clean): kills that outlive their budget on
              // a machine at load 100 still end their processes on the host
              settleMs: 30_000
            }).pipe(Effect.provide(SshTransport.layer({ maxConnectionsPerHost: 13 })))
          }),
        { timeout: 180_000 }
      )
    }
  })
})
