/** @internal */
import { type ErrorPhase, TransportError, type TransportErrorReason } from "@runcmd/core/TransportError"

/** @internal */
export const TRANSPORT = "local"

/**
 * A `TransportError` of this transport (core's `Transport.make` adds the target id).
 *
 * @internal
 */
export const make = (
  reason: TransportErrorReason,
  phase: ErrorPhase,
  description: string,
  extra: { readonly detail?: Record<string, unknown> | undefined; readonly cause?: unknown } = {}
): TransportError =>
  new TransportError({
    reason,
    transport: TRANSPORT,
    phase,
    description,
    ...(extra.detail === undefined ? {} : { detail: extra.detail }),
    ...(extra.cause === undefined ? {} : { cause: extra.cause })
  })

/** An I/O failure on one of the process's pipes. @internal */
export const io = (what: string) => (cause: unknown): TransportError =>
  make("OutputLost", "execution", `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
