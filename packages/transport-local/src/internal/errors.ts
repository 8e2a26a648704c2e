/** @internal */
import { forTransport, type TransportError } from "@runcmd/core/TransportError"

/** @internal */
export const TRANSPORT = "local"

/**
 * A `TransportError` of this transport (core's `Transport.make` adds the target id).
 *
 * @internal
 */
export const make = forTransport(TRANSPORT)

/** An I/O failure on one of the process's pipes. @internal */
export const io = (what: string) => (cause: unknown): TransportError =>
  make("OutputLost", "execution", `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
