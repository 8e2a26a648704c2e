/**
 * The process's stdin: writes with backpressure, and the end.
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type { Writable } from "node:stream"

/** @internal */
export const write = (writable: Writable, bytes: Uint8Array, onError: (cause: unknown) => TransportError) =>
  Effect.async<void, TransportError>((resume) => {
    if (writable.destroyed || writable.writableEnded) {
      resume(Effect.fail(onError(new Error("stdin is closed"))))
      return
    }
    writable.write(bytes, (err) => resume(err ? Effect.fail(onError(err)) : Effect.void))
  })

/** @internal */
export const end = (writable: Writable) =>
  Effect.sync(() => {
    if (!writable.destroyed && !writable.writableEnded) writable.end()
  })
