/**
 * SFTP sessions on pooled connections (for `Sftp` and for shipping the job's files).
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type { SFTPWrapper } from "ssh2"
import type * as SshTarget from "../SshTarget.js"
import * as Errors from "./errors.js"
import * as Pool from "./pool.js"

const openSftp = (pooled: Pool.Pooled): Effect.Effect<SFTPWrapper, Pool.OpenFailure> =>
  Effect.suspend(() => {
    let opened: SFTPWrapper | undefined
    const open = Effect.async<SFTPWrapper, Pool.OpenFailure>((resume) => {
      let cancelled = false
      try {
        pooled.connection.client.sftp((err, sftp) => {
          if (cancelled) {
            if (!err) sftp.end()
            return
          }
          if (err) {
            const failure = Pool.classifyOpenError(err, pooled)
            resume(Effect.fail(
              failure._tag === "Failed"
                ? {
                  _tag: "Failed",
                  error: Errors.make(
                    "Unsupported",
                    "delivery",
                    `the SFTP subsystem is not available on ${pooled.connection.label}: ${err.message}`,
                    { cause: err }
                  )
                }
                : failure
            ))
            return
          }
          sftp.on("error", () => {})
          opened = sftp
          resume(Effect.succeed(sftp))
        })
      } catch (e) {
        resume(Effect.fail(Pool.classifyOpenError(e, pooled)))
      }
      return Effect.sync(() => {
        cancelled = true
      })
    })
    return Effect.uninterruptible(
      Effect.interruptible(open).pipe(Effect.onInterrupt(() => Effect.sync(() => opened?.end())))
    )
  })

/**
 * Runs `f` with an SFTP session on a pooled connection to `target`; the session ends afterwards.
 *
 * @internal
 */
export const withSftpOn = <A, E>(
  pool: Pool.Pool,
  target: SshTarget.SshTarget,
  f: (sftp: SFTPWrapper) => Effect.Effect<A, E>
): Effect.Effect<A, E | TransportError> =>
  Effect.acquireUseRelease(
    pool.withChannel(target, openSftp),
    ({ value }) => f(value),
    ({ lease, value }) =>
      // the channel slot is free once the server closed the session (bounded wait)
      Effect.async<void>((resume) => {
        let done = false
        const finish = () => {
          if (done) return
          done = true
          clearTimeout(timer)
          lease.release()
          resume(Effect.void)
        }
        const timer = setTimeout(finish, 2000)
        value.once("close", finish)
        try {
          value.end()
        } catch {
          finish()
        }
        if (!lease.pooled.connection.isOpen()) finish()
      })
  )
