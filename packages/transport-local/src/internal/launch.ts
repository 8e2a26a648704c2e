/** @internal */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Invocation } from "@runcmd/core/Transport"
import * as Option from "effect/Option"
import * as Errors from "./errors.js"

/**
 * How one execution starts: the program itself (`ScriptRender.direct`) when the wrapper would have nothing to do
 * (no run-as, a command or a sh/bash script), core's POSIX wrapper otherwise.
 *
 * @internal
 */
export type Launch =
  | { readonly _tag: "Direct"; readonly launch: ScriptRender.DirectLaunch }
  | { readonly _tag: "Wrapper"; readonly launch: ScriptRender.WrapperLaunch }

/** @internal */
export const choose = (invocation: Invocation, options: { readonly direct: boolean }): Launch => {
  const direct = options.direct ? ScriptRender.direct(invocation) : Option.none()
  return Option.isSome(direct)
    ? { _tag: "Direct", launch: direct.value }
    : { _tag: "Wrapper", launch: ScriptRender.wrapper(invocation, { transport: Errors.TRANSPORT }) }
}
