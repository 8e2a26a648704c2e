/**
 * A local PowerShell execution: `pwsh` (found on PATH, or the configured program) started as the leader of its own
 * process group with the token in its environment, running core's constant bootstrap; the twin, the secrets and
 * the job's stdin go over stdin (`ScriptRender.powershellProcess`), the twin's protocol line is removed from
 * stderr, and the supervision (exit, exit grace, kill by group and token, confirmation) is the wrapper's.
 *
 * @internal
 */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Target } from "@runcmd/core/Target"
import type { Invocation, RawExecution } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as cp from "node:child_process"
import * as Errors from "./errors.js"
import type { Selector } from "./processes.js"
import { type Settings, spawned, superviseDriven } from "./start.js"

/** The program run for PowerShell scripts when none is configured: `pwsh` on PATH. @internal */
export const DEFAULT_PROGRAM = "pwsh"

/** Whether the invocation is a PowerShell script (run by `pwsh`, not by the POSIX wrapper). @internal */
export const isPowerShell = (invocation: Invocation): boolean =>
  invocation.source._tag === "Script" && invocation.source.interpreter === "powershell"

/** @internal */
export const start = (
  settings: Settings,
  program: string,
  target: Target,
  invocation: Invocation,
  /** Tells the layer's watchdog about the execution (by its token, then its process group). */
  watch: (token: string) => Effect.Effect<{ readonly group: (pgid: number) => void }, never, Scope.Scope>
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const launch = yield* Effect.try({
      try: () => ScriptRender.powershellProcess(invocation, { transport: Errors.TRANSPORT }),
      catch: (cause) =>
        Errors.make("Unsupported", "delivery", `cannot render the PowerShell script: ${String(cause)}`, { cause })
    })
    const watched = yield* watch(launch.token)
    const notFound = (cause: unknown) =>
      Errors.make(
        "SpawnFailed",
        "delivery",
        `cannot start ${program} for a PowerShell script: ${
          cause instanceof Error ? cause.message : String(cause)
        } (install PowerShell 7 or set the local transport's \`powershell\` option / RUNCMD_LOCAL_POWERSHELL)`,
        { cause, detail: { program } }
      )
    const child = yield* Effect.try({
      try: () =>
        cp.spawn(program, launch.args, {
          detached: true,
          // the token in pwsh's own initial environment too: a kill sweep finds the process itself by it
          env: { ...settings.env, [launch.tokenVariable]: launch.token },
          stdio: ["pipe", "pipe", "pipe"]
        }),
      catch: notFound
    })
    const failure = yield* spawned(child)
    if (failure !== undefined) return yield* notFound(failure)
    const pid = child.pid!
    watched.group(pid)
    const selector = (): Selector => ({ groups: [pid], token: { variable: launch.tokenVariable, value: launch.token } })
    return yield* superviseDriven(settings, target, invocation, child, selector, launch)
  })
