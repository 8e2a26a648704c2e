/** @internal */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import * as Option from "effect/Option"

/** The launch the transport runs: core's POSIX wrapper. @internal */
export type Launch = ScriptRender.Launch

/** Whether a kill script's output says the processes are gone. @internal */
export const isKillConfirmed = (output: string): boolean =>
  Option.match(ScriptRender.parseKillResult(output), { onNone: () => false, onSome: (r) => r.gone })
