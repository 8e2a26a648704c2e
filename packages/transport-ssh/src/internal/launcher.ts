/** @internal */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Invocation } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type * as SshTarget from "../SshTarget.js"
import * as Errors from "./errors.js"
import type * as Launch from "./launch.js"

/** The wrapper launch for one invocation on one target. @internal */
export const launch = (invocation: Invocation, target: SshTarget.SshTarget): Effect.Effect<Launch.Launch, TransportError> =>
  Effect.try({
    try: () => ScriptRender.posix(invocation, { transport: Errors.TRANSPORT }),
    catch: (e) =>
      Errors.make("Unsupported", "delivery", `cannot render the wrapper: ${(e as Error).message}`, {
        targetId: target.id,
        cause: e
      })
  })
