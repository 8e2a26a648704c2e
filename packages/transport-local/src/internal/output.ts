/**
 * stdout and stderr of one process, pushed to the consumer's `emit` (the Transport contract's `pump`): what
 * arrived while the consumer was busy is coalesced per stream into one chunk, and the pipes are paused while too
 * much is buffered, so a fast producer costs one `emit` per batch and bounded memory.
 *
 * @internal
 */
import type { RawChunk } from "@runcmd/core/OutputChunk"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type { Readable } from "node:stream"

type Name = RawChunk["stream"]

/** Above this many buffered bytes the pipes are paused; they resume once the consumer took everything. */
const HIGH_WATER = 1024 * 1024
/** The largest chunk one `emit` gets. */
const BATCH_MAX = 512 * 1024

/** @internal */
export interface Output {
  /** Feeds a pipe into the buffer; its `end`/`close` ends the stream, an `error` fails the output. */
  readonly attach: (name: Name, readable: Readable, onError: (cause: unknown) => TransportError) => void
  readonly push: (name: Name, bytes: Uint8Array) => void
  readonly end: (name: Name) => void
  readonly fail: (error: TransportError) => void
  readonly ended: () => boolean
  /** Stops reading: the pipes are left flowing into nothing (a blocked writer must not outlive a kill). */
  readonly detach: () => void
  readonly pump: (emit: (chunk: RawChunk) => Effect.Effect<void>) => Effect.Effect<void, TransportError>
}

/** @internal */
export const make = (): Output => {
  const queue: Array<RawChunk> = []
  let buffered = 0
  const open = { stdout: true, stderr: true }
  let failure: TransportError | undefined
  let wake: (() => void) | undefined
  const readables: Array<Readable> = []
  let paused = false
  let detached = false

  const notify = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const push = (stream: Name, bytes: Uint8Array) => {
    if (detached || bytes.length === 0) return
    queue.push({ stream, bytes })
    buffered += bytes.length
    if (buffered > HIGH_WATER && !paused) {
      paused = true
      for (const r of readables) r.pause()
    }
    notify()
  }
  const end = (stream: Name) => {
    open[stream] = false
    notify()
  }

  /** Takes the first chunk, joined with the chunks of the same stream queued right behind it. */
  const take = (): RawChunk => {
    const first = queue.shift()!
    let size = first.bytes.length
    let n = 0
    while (n < queue.length && queue[n]!.stream === first.stream && size + queue[n]!.bytes.length <= BATCH_MAX) {
      size += queue[n]!.bytes.length
      n++
    }
    let chunk = first
    if (n > 0) {
      const bytes = new Uint8Array(size)
      bytes.set(first.bytes)
      let offset = first.bytes.length
      for (const next of queue.splice(0, n)) {
        bytes.set(next.bytes, offset)
        offset += next.bytes.length
      }
      chunk = { stream: first.stream, bytes }
    }
    buffered -= size
    if (paused && queue.length === 0) {
      paused = false
      for (const r of readables) if (!r.destroyed) r.resume()
    }
    return chunk
  }

  const next: Effect.Effect<RawChunk | undefined, TransportError> = Effect.suspend(() => {
    if (queue.length > 0) return Effect.succeed(take())
    if (failure !== undefined) return Effect.fail(failure)
    if (!open.stdout && !open.stderr) return Effect.succeed(undefined)
    return Effect.async<RawChunk | undefined, TransportError>((resume) => {
      wake = () => resume(next)
      return Effect.sync(() => {
        wake = undefined
      })
    })
  })

  return {
    attach: (name, readable, onError) => {
      readables.push(readable)
      readable.on("data", (chunk: Buffer) => push(name, new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)))
      readable.once("end", () => end(name))
      // destroyed (after the exit grace) without an end: what was read is all there is
      readable.once("close", () => end(name))
      readable.once("error", (cause) => {
        if (!open[name]) return
        failure ??= onError(cause)
        end(name)
      })
    },
    push,
    end,
    fail: (error) => {
      failure ??= error
      notify()
    },
    ended: () => !open.stdout && !open.stderr,
    detach: () => {
      detached = true
      for (const r of readables) {
        r.removeAllListeners("data")
        if (!r.destroyed) r.resume()
      }
    },
    pump: (emit) =>
      Effect.gen(function*() {
        for (;;) {
          const chunk = yield* next
          if (chunk === undefined) return
          yield* emit(chunk)
        }
      })
  }
}
