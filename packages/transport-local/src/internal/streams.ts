/**
 * Node streams as Effect streams, with backpressure (the readable is paused while the consumer is behind).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Readable, Writable } from "node:stream"
import type { TransportError } from "@runcmd/core/TransportError"

/** @internal */
export const fromReadable = (
  readable: Readable,
  onError: (cause: unknown) => TransportError
): Stream.Stream<Uint8Array, TransportError> =>
  Stream.async<Uint8Array, TransportError>((emit) => {
    let done = false
    const finish = () => {
      if (done) return
      done = true
      void emit.end()
    }
    readable.on("data", (chunk: Buffer) => {
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      const accepted = emit.single(bytes)
      readable.pause()
      void accepted.then(() => {
        if (!readable.destroyed) readable.resume()
      })
    })
    readable.once("end", finish)
    // destroyed (after the exit grace) without an end: what was read is all there is
    readable.once("close", finish)
    readable.once("error", (e) => {
      if (done) return
      done = true
      void emit.fail(onError(e))
    })
  }, 16)

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
