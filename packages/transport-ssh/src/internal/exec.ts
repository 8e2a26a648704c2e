/**
 * Exec channels on pooled connections: opening one (no pty), and running a short command to completion (kill
 * scripts, removing shipped files).
 *
 * @internal
 */
import type { ExitStatus } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { ClientChannel } from "ssh2"
import type * as SshTarget from "../SshTarget.js"
import * as Pool from "./pool.js"

/**
 * Opens an exec channel on a pooled connection (no pty). `bind` runs synchronously in ssh2's callback, before
 * any further packet is parsed: a fast command's data, exit status and close may arrive in the same read.
 *
 * @internal
 */
export const openExec = (
  pooled: Pool.Pooled,
  command: string,
  bind: (channel: ClientChannel) => void
): Effect.Effect<ClientChannel, Pool.OpenFailure> =>
  Effect.suspend(() => {
    let opened: ClientChannel | undefined
    const open = Effect.async<ClientChannel, Pool.OpenFailure>((resume) => {
      let cancelled = false
      try {
        pooled.connection.client.exec(command, {}, (err, channel) => {
          if (cancelled) {
            if (!err) discard(channel)
            return
          }
          if (err) {
            resume(Effect.fail(Pool.classifyOpenError(err, pooled)))
            return
          }
          opened = channel
          bind(channel)
          resume(Effect.succeed(channel))
        })
      } catch (e) {
        resume(Effect.fail(Pool.classifyOpenError(e, pooled)))
      }
      return Effect.sync(() => {
        cancelled = true
      })
    })
    // interrupted after the channel opened (even right after): close it; the bootstrap then reads EOF and exits
    return Effect.uninterruptible(
      Effect.interruptible(open).pipe(
        Effect.onInterrupt(() => Effect.sync(() => opened !== undefined && discard(opened)))
      )
    )
  })

const discard = (channel: ClientChannel) => {
  channel.on("error", () => {})
  channel.resume()
  channel.stderr.resume()
  try {
    channel.end()
    channel.close()
  } catch {
    // connection gone
  }
}

/** Runs a short command on its own channel and collects its stdout (for kill scripts). @internal */
export const runCollect = (
  pool: Pool.Pool,
  target: SshTarget.SshTarget,
  command: string,
  options: { readonly prefer?: Pool.Pooled | undefined; readonly stdin?: string | undefined }
): Effect.Effect<{ readonly stdout: string; readonly status: ExitStatus | undefined }, TransportError> =>
  Effect.gen(function*() {
    const done = yield* Deferred.make<void>()
    let out = ""
    let status: ExitStatus | undefined
    const bind = (channel: ClientChannel) => {
      channel.on("error", () => {})
      channel.on("data", (d: Buffer) => {
        if (out.length < 65536) out += d.toString("utf8")
      })
      channel.stderr.on("data", () => {})
      channel.on("exit", (code: number | null | undefined, signal?: string) => {
        status = typeof code === "number"
          ? { _tag: "Exited", code }
          : { _tag: "Signaled", signal: normalizeSignal(signal) }
      })
      channel.on("close", () => Deferred.unsafeDone(done, Exit.void))
      channel.end(options.stdin ?? "")
    }
    return yield* Effect.acquireUseRelease(
      pool.withChannel(target, (p) => openExec(p, command, bind), { urgent: true, prefer: options.prefer }),
      ({ lease }) =>
        Effect.suspend(() => {
          const offClose = lease.pooled.connection.onClose(() => Deferred.unsafeDone(done, Exit.void))
          return Deferred.await(done).pipe(Effect.ensuring(Effect.sync(offClose)))
        }).pipe(Effect.map(() => ({ stdout: out, status }))),
      ({ lease, value: channel }) =>
        Effect.sync(() => {
          try {
            channel.close()
          } catch {
            // gone
          }
          lease.release()
        })
    )
  })

/** `SIGTERM` whether ssh2 says `TERM` or `SIGTERM`. @internal */
export const normalizeSignal = (signal: string | undefined): string =>
  signal === undefined || signal === "" ? "SIGUNKNOWN" : signal.startsWith("SIG") ? signal : `SIG${signal}`
