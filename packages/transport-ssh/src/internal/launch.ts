/**
 * How one SSH execution starts: the direct launch through the login shell (`ScriptRender.directShell`) when the
 * wrapper would have nothing to do and the user's login shell is POSIX; the PowerShell twin for PowerShell scripts
 * (and for commands under a Windows PowerShell login shell); core's POSIX wrapper otherwise, through `/bin/sh`
 * explicitly under a Linux PowerShell login shell (`powershell.ts`).
 *
 * @internal
 */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Invocation } from "@runcmd/core/Transport"
import { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Errors from "./errors.js"
import * as LoginShell from "./loginShell.js"
import * as PowerShell from "./powershell.js"

/**
 * What an execution needs of a launch: the command line for the exec channel, the stdin/stderr driver, the kill
 * script and the exit's meaning. The wrapper launch is one; the direct shell launch is adapted to it.
 *
 * @internal
 */
export type Launch =
  & Pick<ScriptRender.WrapperLaunch, "commandLine" | "drive" | "pgidNow" | "killScript" | "interpretExit">
  // for the lifeline (absent: the execution is not told to it): the token, and the group once reported
  & Partial<Pick<ScriptRender.WrapperLaunch, "token" | "pgid">>
  & {
    /** The kill as a POSIX `sh` script, for the lifeline to run (absent: the kill needs a channel of its own). */
    readonly lifelineKill?: ScriptRender.WrapperLaunch["killScript"] | undefined
  }

/** @internal */
export interface Options {
  /** Use the direct launch when the invocation allows it (no wrapper process on the server). */
  readonly direct: boolean
  /** The target user's login shell (declared, or asked once per connection key; see `loginShell.ts`). */
  readonly loginShell: Effect.Effect<LoginShell.Answer, TransportError>
}

const wrapperOnly: Options = { direct: false, loginShell: Effect.succeed(LoginShell.posix) }

/** @internal */
export const choose = (invocation: Invocation, options: Options = wrapperOnly): Effect.Effect<Launch, TransportError> =>
  Effect.flatMap(options.loginShell, (login) =>
    Effect.try({
      try: () => {
        if (PowerShell.isPowerShell(invocation)) return PowerShell.launch(invocation, login)
        if (PowerShell.isPowerShellShell(login)) {
          if (!login.windows) return PowerShell.throughSh(wrapperLaunch(invocation))
          if (invocation.source._tag === "Command") return PowerShell.launch(invocation, login)
          throw PowerShell.refusedOnWindows(invocation, login)
        }
        const shell = options.direct && login.shell === "posix"
          ? ScriptRender.directShell(invocation, { transport: Errors.TRANSPORT })
          : Option.none()
        return Option.isSome(shell) ? fromDirectShell(shell.value) : wrapper(invocation)
      },
      catch: (cause) =>
        cause instanceof TransportError
          ? cause
          : Errors.make("Unsupported", "delivery", `cannot render the job: ${String(cause)}`, { cause })
    }))

const wrapperLaunch = (invocation: Invocation) => ScriptRender.wrapper(invocation, { transport: Errors.TRANSPORT })

const wrapper = (invocation: Invocation): Launch => {
  const launch = wrapperLaunch(invocation)
  return { ...launch, lifelineKill: launch.killScript }
}

/**
 * The direct shell launch as an execution drives it: stdin gets the stage, the secret lines and the job's stdin
 * (forked: a program that writes before it reads must not wait for us), stderr only loses the launch's own
 * failure line; no PGID is reported (sshd made the session; the kill script finds it by the token).
 */
const fromDirectShell = (shell: ScriptRender.DirectShellLaunch): Launch => ({
  commandLine: shell.commandLine,
  drive: (io) =>
    Effect.as(
      Effect.forkScoped(
        Effect.zipRight(io.writeStdin(shell.input()), io.endStdin).pipe(
          Effect.catchAllCause(() => Effect.ignore(io.endStdin))
        )
      ),
      io.stderr.pipe(
        Stream.map(shell.filterStderr),
        Stream.concat(Stream.sync(shell.flushStderr)),
        Stream.filter((bytes) => bytes.length > 0)
      )
    ),
  pgidNow: Effect.succeedNone,
  token: shell.token,
  killScript: shell.killScript,
  lifelineKill: shell.killScript,
  interpretExit: shell.interpretExit
})

/** Whether a kill script's output says the processes are gone. @internal */
export const isKillConfirmed = (output: string): boolean =>
  Option.match(ScriptRender.parseKillResult(output), { onNone: () => false, onSome: (r) => r.gone })
