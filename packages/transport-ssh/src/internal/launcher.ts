/** @internal */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Invocation } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as SshTarget from "../SshTarget.js"
import * as Errors from "./errors.js"
import type * as Launch from "./launch.js"

/** @internal */
export interface LaunchOptions {
  /** Use the direct launch when the invocation allows it (no wrapper process on the server). */
  readonly direct: boolean
  /** Whether the target user's login shell is POSIX (asked once per connection key; see `loginShell.ts`). */
  readonly posixLoginShell: Effect.Effect<boolean, TransportError>
}

const wrapperOnly: LaunchOptions = { direct: false, posixLoginShell: Effect.succeed(false) }

/**
 * The launch for one invocation on one target: the direct shell launch when nothing needs the wrapper (no
 * run-as, a command or a short sh/bash script) and the login shell can run it; core's POSIX wrapper otherwise.
 *
 * @internal
 */
export const launch = (
  invocation: Invocation,
  target: SshTarget.SshTarget,
  options: LaunchOptions = wrapperOnly
): Effect.Effect<Launch.Launch, TransportError> =>
  Effect.suspend(() => {
    const shell = options.direct
      ? ScriptRender.directShell(invocation, { transport: Errors.TRANSPORT })
      : Option.none()
    if (Option.isNone(shell)) return wrapper(invocation, target)
    return Effect.flatMap(
      options.posixLoginShell,
      (posix) => posix ? Effect.succeed(fromShell(shell.value)) : wrapper(invocation, target)
    )
  })

const wrapper = (invocation: Invocation, target: SshTarget.SshTarget): Effect.Effect<Launch.Launch, TransportError> =>
  Effect.try({
    try: () => ScriptRender.posix(invocation, { transport: Errors.TRANSPORT }),
    catch: (e) =>
      Errors.make("Unsupported", "delivery", `cannot render the wrapper: ${(e as Error).message}`, {
        targetId: target.id,
        cause: e
      })
  })

/**
 * The direct shell launch as an execution drives it: stdin gets the stage, the secret lines and the job's stdin
 * (forked: a program that writes before it reads must not wait for us), stderr only loses the launch's own
 * failure line; no PGID is reported (sshd made the session; the kill script finds it by the token).
 */
const fromShell = (shell: ScriptRender.ShellLaunch): Launch.Launch => ({
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
  killScript: shell.killScript,
  interpretExit: shell.interpretExit
})
