/**
 * The managed run commands on a target, as Effects (what `runcmd azure run-commands list|show|delete` calls): list
 * them, show one with its instance view (state, exit code, the last 4 KB of output), delete one (waiting until it
 * is gone; that also ends its script).
 *
 * @since 0.1.0
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { AzureTarget } from "./AzureTarget.js"
import * as AzureTransport from "./AzureTransport.js"
import * as Address from "./internal/address.js"
import * as Arm from "./internal/arm.js"

/**
 * A managed run command as shown.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunCommandInfo {
  readonly name: string
  readonly provisioningState: string | undefined
  readonly executionState: string | undefined
  readonly exitCode: number | undefined
  readonly startTime: Date | undefined
  readonly endTime: Date | undefined
  /** The last 4 KB of stdout / stderr (instance view). */
  readonly output: string | undefined
  readonly error: string | undefined
  readonly executionMessage: string | undefined
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RunCommands
  extends Context.Tag("@runcmd/transport-azure/RunCommands")<RunCommands, RunCommands.Service>()
{}

/**
 * @since 0.1.0
 */
export declare namespace RunCommands {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    readonly list: (target: AzureTarget) => Effect.Effect<ReadonlyArray<RunCommandInfo>, TransportError>
    readonly show: (target: AzureTarget, name: string) => Effect.Effect<RunCommandInfo, TransportError>
    readonly delete: (target: AzureTarget, name: string) => Effect.Effect<void, TransportError>
  }
}

const info = (rc: Address.RunCommandView): RunCommandInfo => ({
  name: rc.name ?? "",
  provisioningState: rc.provisioningState,
  executionState: rc.instanceView?.executionState,
  exitCode: rc.instanceView?.exitCode,
  startTime: rc.instanceView?.startTime,
  endTime: rc.instanceView?.endTime,
  output: rc.instanceView?.output,
  error: rc.instanceView?.error,
  executionMessage: rc.instanceView?.executionMessage
})

const call = <A>(what: string, f: (signal: AbortSignal) => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => Arm.fromRest(e, "delivery", what) })

/**
 * The service over ARM with `options`' credential and endpoint.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: AzureTransport.Options = {}): Effect.Effect<RunCommands.Service> =>
  Effect.map(AzureTransport.makeArm(options), (arm): RunCommands.Service => {
    const api = (target: AzureTarget) => {
      const address = Address.of(target)
      return { address, calls: Address.calls(arm.clients.get(address.subscription), address) }
    }
    return {
      list: (target) => {
        const { address, calls } = api(target)
        return call(`listing the run commands of ${address.describe}`, (s) => calls.list(true, s)).pipe(
          Effect.map((all) => all.map(info)),
          Effect.withSpan("RunCommands.list", { attributes: { "runcmd.target.id": target.id } })
        )
      },
      show: (target, name) => {
        const { address, calls } = api(target)
        return call(`reading run command ${name} of ${address.describe}`, (s) => calls.get(name, s)).pipe(
          Effect.map(info),
          Effect.withSpan("RunCommands.show", { attributes: { "runcmd.target.id": target.id } })
        )
      },
      delete: (target, name) => {
        const { address, calls } = api(target)
        return call(`deleting run command ${name} of ${address.describe}`, (s) => calls.remove(name, 1000, s)).pipe(
          Effect.withSpan("RunCommands.delete", { attributes: { "runcmd.target.id": target.id } })
        )
      }
    }
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: AzureTransport.Options = {}): Layer.Layer<RunCommands> =>
  Layer.effect(RunCommands, make(options))

/**
 * The managed run commands on `target`, with their instance views.
 *
 * @since 0.1.0
 * @category accessors
 */
export const list = (target: AzureTarget): Effect.Effect<ReadonlyArray<RunCommandInfo>, TransportError, RunCommands> =>
  Effect.flatMap(RunCommands, (s) => s.list(target))

/**
 * One managed run command with its instance view (`TargetNotFound` when there is none by that name).
 *
 * @since 0.1.0
 * @category accessors
 */
export const show = (target: AzureTarget, name: string): Effect.Effect<RunCommandInfo, TransportError, RunCommands> =>
  Effect.flatMap(RunCommands, (s) => s.show(target, name))

/**
 * Deletes a managed run command (ending its script if it runs) and waits until it is gone.
 *
 * @since 0.1.0
 * @category accessors
 */
const del = (target: AzureTarget, name: string): Effect.Effect<void, TransportError, RunCommands> =>
  Effect.flatMap(RunCommands, (s) => s.delete(target, name))

export {
  /**
   * Deletes a managed run command (ending its script if it runs) and waits until it is gone.
   *
   * @since 0.1.0
   * @category accessors
   */
  del as delete
}
