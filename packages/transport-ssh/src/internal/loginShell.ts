/**
 * Whether the login shell of a target's user is a POSIX shell: the direct launch (`ScriptRender.directShell`,
 * no wrapper process) hands its constant command line to the login shell itself, which must understand `read`,
 * `while` and `eval`. Asked once per user, host and port by running a command only a POSIX shell prints from;
 * csh, tcsh and fish fail it, and then every execution takes the full wrapper, which starts with `/bin/sh -c`
 * and runs under any login shell.
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type { Client, ClientChannel } from "ssh2"
import type * as SshTarget from "../SshTarget.js"
import type * as Pool from "./pool.js"

/** `case` is POSIX syntax that csh/tcsh (`case: Not in switch.`) and fish refuse. @internal */
export const PROBE = "case x in x) printf '%s\\n' runcmd-posix ;; esac"

const ANSWER = "runcmd-posix\n"

/**
 * Runs the probe on one connection: `true` for the exact answer, `false` when the shell ran it and answered
 * otherwise, `undefined` when no answer came (an error, a timeout): ask again next time.
 *
 * @internal
 */
export const probe = (client: Client, timeoutMs = 10_000): Effect.Effect<boolean | undefined> =>
  Effect.async<boolean | undefined>((resume) => {
    let done = false
    let channel: ClientChannel | undefined
    let exited = false
    const finish = (answer: boolean | undefined) => {
      if (done) return
      done = true
      clearTimeout(timer)
      resume(Effect.succeed(answer))
    }
    const timer = setTimeout(() => {
      channel?.close()
      finish(undefined)
    }, timeoutMs)
    try {
      client.exec(PROBE, (err, stream) => {
        if (err) return finish(undefined)
        channel = stream
        let out = ""
        stream.on("data", (d: Buffer) => {
          if (out.length < 256) out += d.toString("latin1")
        })
        stream.stderr.resume()
        stream.on("exit", () => (exited = true))
        stream.on("error", () => finish(undefined))
        stream.on("close", () => finish(out === ANSWER ? true : exited ? false : undefined))
        stream.end()
      })
    } catch {
      finish(undefined)
    }
  })

/**
 * The answers of one transport, per user, host and port: the first execution on a target asks (over a pooled
 * connection, within the channel cap), concurrent ones on the same target wait for its answer, and failures (the
 * connection's own: auth, timeouts) are that target's execution's failure. An unanswered probe is asked again.
 *
 * @internal
 */
export const makeCache = (pool: Pool.Pool) => {
  const answers = new Map<string, boolean>()
  // per target object: two targets of one host may differ in credentials or jump chain, and so in their errors
  const pending = new WeakMap<SshTarget.SshTarget, Effect.Effect<boolean | undefined, TransportError>>()
  return (target: SshTarget.SshTarget): Effect.Effect<boolean, TransportError> =>
    Effect.suspend(() => {
      const key = `${target.user}@${target.host}:${target.port}`
      const known = answers.get(key)
      if (known !== undefined) return Effect.succeed(known)
      let ask = pending.get(target)
      if (ask === undefined) {
        ask = Effect.runSync(Effect.cached(
          pool.withChannel(target, (pooled) => probe(pooled.connection.client)).pipe(
            Effect.map(({ lease, value }) => {
              lease.release()
              if (value !== undefined) answers.set(key, value)
              return value
            }),
            Effect.ensuring(Effect.sync(() => pending.delete(target)))
          )
        ))
        pending.set(target, ask)
      }
      return Effect.map(ask, (answer) => answer === true)
    })
}
