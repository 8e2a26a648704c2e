/** @internal */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import * as Option from "effect/Option"

/**
 * What an execution needs of a launch: the command line for the exec channel, the stdin/stderr driver, the kill
 * script and the exit's meaning. Core's POSIX wrapper is one; a direct shell launch (no wrapper process) is
 * adapted to it in `launcher.ts`.
 *
 * @internal
 */
export type Launch = Pick<ScriptRender.Launch, "commandLine" | "drive" | "pgidNow" | "killScript" | "interpretExit">

/** Whether a kill script's output says the processes are gone. @internal */
export const isKillConfirmed = (output: string): boolean =>
  Option.match(ScriptRender.parseKillResult(output), { onNone: () => false, onSome: (r) => r.gone })
