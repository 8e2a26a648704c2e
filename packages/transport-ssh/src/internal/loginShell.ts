/**
 * What the login shell of a target's user is: the exec channel's command line is handed to it. A POSIX shell runs
 * the direct launch (`ScriptRender.directShell`, no wrapper process: it must understand `read`, `while` and
 * `eval`) and the wrapper; PowerShell (`pwsh`, as Windows OpenSSH can be configured, or Windows PowerShell 5.1)
 * runs PowerShell's bootstrap (`ScriptRender.powershellProcess`) and, on Linux, the POSIX wrapper through
 * `/bin/sh` explicitly. Declared on the target (`shell`) or asked once per user, host and port: first a command
 * only a POSIX shell prints from (csh, tcsh, fish and PowerShell fail it), then, if that failed, one only
 * PowerShell prints from (its edition and platform). Anything else (csh, fish, cmd.exe) takes the full POSIX
 * wrapper, which starts with `/bin/sh -c` and runs under any login shell that can start a program.
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

/** PowerShell syntax (no double quotes: Windows OpenSSH passes it on to `pwsh -c`); a POSIX shell refuses it. @internal */
export const POWERSHELL_PROBE =
  "Write-Output ('runcmd-ps:' + $PSVersionTable.PSEdition + ':' + [Environment]::OSVersion.Platform)"

/**
 * A login shell: `posix`, PowerShell 7 (`pwsh`, edition Core) or Windows PowerShell 5.1 (`powershell`, edition
 * Desktop), or `other`; and whether it runs on Windows.
 *
 * @internal
 */
export interface Answer {
  readonly shell: "posix" | "pwsh" | "powershell" | "other"
  readonly windows: boolean
}

/** @internal */
export const posix: Answer = { shell: "posix", windows: false }

/** What a declared `shell` of a target says (PowerShell 5.1 is Windows only; pwsh is assumed on the target's os). @internal */
export const declared = (target: SshTarget.SshTarget): Answer | undefined => {
  switch (target.shell) {
    case undefined:
      return undefined
    case "posix":
      return posix
    case "powershell":
      return { shell: "powershell", windows: true }
    case "pwsh":
      return { shell: "pwsh", windows: target.os === "windows" }
  }
}

/** Parses the PowerShell probe's output. @internal */
export const parsePowerShellAnswer = (out: string): Answer | undefined => {
  const m = /^runcmd-ps:(\w*):(\w+)\r?\n$/.exec(out)
  if (m === null) return undefined
  return { shell: m[1] === "Desktop" ? "powershell" : "pwsh", windows: m[2] === "Win32NT" }
}

/**
 * Runs the probe on one connection: `true` for the exact answer, `false` when the shell ran it and answered
 * otherwise, `undefined` when no answer came (an error, a timeout): ask again next time.
 *
 * @internal
 */
export const probe = (client: Client, timeoutMs = 10_000): Effect.Effect<boolean | undefined> =>
  Effect.map(ask(client, PROBE, timeoutMs), (out) => out === undefined ? undefined : out === ANSWER)

/**
 * Asks the login shell what it is: the POSIX probe, then (when the shell ran it and answered otherwise) the
 * PowerShell probe; `undefined` when no answer came. Each may take `timeoutMs` (default 30 s: PowerShell starts
 * in a second or two, much longer on a loaded host).
 *
 * @internal
 */
export const probeShell = (client: Client, timeoutMs = 30_000): Effect.Effect<Answer | undefined> =>
  Effect.flatMap(probe(client, timeoutMs), (isPosix) => {
    if (isPosix === undefined) return Effect.succeed(undefined)
    if (isPosix) return Effect.succeed(posix)
    return Effect.map(
      ask(client, POWERSHELL_PROBE, timeoutMs),
      (out) => out === undefined ? undefined : parsePowerShellAnswer(out) ?? { shell: "other", windows: false }
    )
  })

/** Runs `command` on an exec channel: its stdout once the channel closed after an exit, else undefined. */
const ask = (client: Client, command: string, timeoutMs: number): Effect.Effect<string | undefined> =>
  Effect.async<string | undefined>((resume) => {
    let done = false
    let channel: ClientChannel | undefined
    let exited = false
    const finish = (answer: string | undefined) => {
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
      client.exec(command, (err, stream) => {
        if (err) return finish(undefined)
        channel = stream
        let out = ""
        stream.on("data", (d: Buffer) => {
          if (out.length < 256) out += d.toString("latin1")
        })
        stream.stderr.resume()
        stream.on("exit", () => (exited = true))
        stream.on("error", () => finish(undefined))
        stream.on("close", () => finish(exited ? out : undefined))
        stream.end()
      })
    } catch {
      finish(undefined)
    }
  })

/**
 * The answers of one transport, per user, host and port: a declared `shell` is taken as is; otherwise the first
 * execution on a target asks (over a pooled connection, within the channel cap), concurrent ones on the same
 * target wait for its answer, and failures (the connection's own: auth, timeouts) are that target's execution's
 * failure. An unanswered probe is asked again.
 *
 * @internal
 */
export const makeCache = (pool: Pool.Pool) => {
  const answers = new Map<string, Answer>()
  // per target object: two targets of one host may differ in credentials or jump chain, and so in their errors
  const pending = new WeakMap<SshTarget.SshTarget, Effect.Effect<Answer | undefined, TransportError>>()
  return (target: SshTarget.SshTarget): Effect.Effect<Answer, TransportError> =>
    Effect.suspend(() => {
      const given = declared(target)
      if (given !== undefined) return Effect.succeed(given)
      const key = `${target.user}@${target.host}:${target.port}`
      const known = answers.get(key)
      if (known !== undefined) return Effect.succeed(known)
      let asking = pending.get(target)
      if (asking === undefined) {
        asking = Effect.runSync(Effect.cached(
          pool.withChannel(target, (pooled) => probeShell(pooled.connection.client)).pipe(
            Effect.map(({ lease, value }) => {
              lease.release()
              if (value !== undefined) answers.set(key, value)
              return value
            }),
            Effect.ensuring(Effect.sync(() => pending.delete(target)))
          )
        ))
        pending.set(target, asking)
      }
      // unanswered: this execution takes the full wrapper (it runs under any login shell that starts programs)
      return Effect.map(asking, (answer) => answer ?? { shell: "other", windows: false })
    })
}
