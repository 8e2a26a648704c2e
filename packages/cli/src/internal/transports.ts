/**
 * The transports the CLI carries: local (the embedded default) and SSH.
 *
 * @since 0.1.0
 * @internal
 */
import * as Target from "@runcmd/core/Target"
import type * as Transport from "@runcmd/core/Transport"
import * as LocalTransport from "@runcmd/transport-local/LocalTransport"
import * as SshTarget from "@runcmd/transport-ssh/SshTarget"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * The target kinds an inventory may use.
 *
 * @internal
 */
export const kinds: ReadonlyArray<Target.TargetSchema> = [Target.Local, SshTarget.SshTarget]

/**
 * A transport that could not be set up.
 *
 * @internal
 */
export class TransportSetupError extends Data.TaggedError("TransportSetupError")<{ readonly message: string }> {}

/**
 * The SSH transport, loaded only for runs that have SSH targets (it brings the ssh2 client).
 *
 * @internal
 */
export const sshLayer: Layer.Layer<Transport.Transports, TransportSetupError> = Layer.unwrapEffect(
  Effect.tryPromise({
    try: () => import("@runcmd/transport-ssh/SshTransport"),
    catch: (cause) =>
      new TransportSetupError({
        message: `cannot load the SSH transport: ${cause instanceof Error ? cause.message : String(cause)}`
      })
  }).pipe(Effect.map((SshTransport) => SshTransport.layer()))
)

/**
 * The transports for these targets (SSH only when an SSH target is among them).
 *
 * @internal
 */
export const layerFor = (
  targets: ReadonlyArray<Target.Target>
): Layer.Layer<Transport.Transports, TransportSetupError> => {
  const local = LocalTransport.layer()
  return targets.some((t) => t.kind === "ssh") ? Layer.merge(local, sshLayer) : local
}
