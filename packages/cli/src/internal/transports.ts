/**
 * The transports the CLI carries: local (the embedded default) and SSH, each loaded only when a run needs it
 * (`--help`, `inventory check` and `report` load neither).
 *
 * @since 0.1.0
 * @internal
 */
import * as Target from "@runcmd/core/Target"
import type * as Transport from "@runcmd/core/Transport"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * The target kinds an inventory may use (the SSH target's schema is loaded with the inventory, not before).
 *
 * @internal
 */
export const kinds: Effect.Effect<ReadonlyArray<Target.TargetSchema>> = Effect.promise(() =>
  import("@runcmd/transport-ssh/SshTarget")
).pipe(Effect.map((SshTarget) => [Target.Local, SshTarget.SshTarget]))

/**
 * A transport that could not be set up.
 *
 * @internal
 */
export class TransportSetupError extends Data.TaggedError("TransportSetupError")<{ readonly message: string }> {}

const load = <A>(name: string, module: () => Promise<A>): Effect.Effect<A, TransportSetupError> =>
  Effect.tryPromise({
    try: module,
    catch: (cause) =>
      new TransportSetupError({
        message: `cannot load the ${name} transport: ${cause instanceof Error ? cause.message : String(cause)}`
      })
  })

/**
 * The local transport (it brings execa).
 *
 * @internal
 */
export const localLayer: Layer.Layer<Transport.Registry, TransportSetupError | Transport.DuplicateTransport> = Layer
  .unwrapEffect(
    load("local", () => import("@runcmd/transport-local/LocalTransport")).pipe(
      Effect.map((LocalTransport) => LocalTransport.layer())
    )
  )

/**
 * The SSH transport, loaded only for runs that have SSH targets (it brings the ssh2 client).
 *
 * @internal
 */
export const sshLayer: Layer.Layer<Transport.Registry, TransportSetupError | Transport.DuplicateTransport> = Layer
  .unwrapEffect(
    load("SSH", () => import("@runcmd/transport-ssh/SshTransport")).pipe(
      Effect.map((SshTransport) => SshTransport.layer())
    )
  )

/**
 * The transports for these targets (SSH only when an SSH target is among them).
 *
 * @internal
 */
export const layerFor = (
  targets: ReadonlyArray<Target.Target>
): Layer.Layer<Transport.Registry, TransportSetupError | Transport.DuplicateTransport> =>
  targets.some((t) => t.kind === "ssh") ? Layer.merge(localLayer, sshLayer) : localLayer
