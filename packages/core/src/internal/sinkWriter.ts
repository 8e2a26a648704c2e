/**
 * A buffered file writer for sinks: a fixed-size buffer per open file, written out when full, so memory stays
 * bounded whatever the output size. The first failure is returned (naming the file); later writes to a broken
 * file are dropped, so that one bad file is reported once.
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { OutputSinkError } from "../OutputSink.js"

/** @internal */
export const DEFAULT_BUFFER_BYTES = 64 * 1024

/**
 * Larger buffers for the files that receive a lot of output, shared by the files of one sink: at most `count` at
 * once, so memory stays bounded whatever the number of targets. Each write is a call into the thread pool; with
 * large output, writing 1 MiB at a time instead of 64 KiB (or the chunk size) costs a fraction of the CPU.
 *
 * @internal
 */
export interface LargeBuffers {
  readonly bytes: number
  readonly take: () => boolean
  readonly give: () => void
}

/** @internal */
export const makeLargeBuffers = (bytes = 1024 * 1024, count = 16): LargeBuffers => {
  let free = count
  return {
    bytes,
    take: () => {
      if (free === 0) return false
      free--
      return true
    },
    give: () => {
      free++
    }
  }
}

/** @internal */
export interface BufferedFile {
  readonly path: string
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, OutputSinkError>
  readonly writeString: (text: string) => Effect.Effect<void, OutputSinkError>
  readonly flush: Effect.Effect<void, OutputSinkError>
  /** Flushes and closes; the file cannot be written afterwards. */
  readonly close: Effect.Effect<void, OutputSinkError>
}

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** @internal */
export const sinkError = (
  sink: string,
  reason: "OpenFailed" | "WriteFailed",
  description: string,
  cause?: unknown
): OutputSinkError =>
  new OutputSinkError(
    cause === undefined
      ? { reason, sink, description }
      : { reason, sink, description: `${description}: ${messageOf(cause)}`, cause }
  )

/**
 * Creates a directory (and its parents).
 *
 * @internal
 */
export const makeDirectory = (sink: string, dir: string): Effect.Effect<void, OutputSinkError> =>
  Effect.tryPromise({
    try: () => fs.promises.mkdir(dir, { recursive: true }),
    catch: (cause) => sinkError(sink, "OpenFailed", `cannot create the directory ${dir}`, cause)
  }).pipe(Effect.asVoid)

/**
 * Opens a file for buffered writing. `flag` is `w` (truncate) or `a` (append); an open failure has the given
 * reason (`OpenFailed` when opened with the sink, `WriteFailed` when opened on first output).
 *
 * @internal
 */
export const openBuffered = (
  sink: string,
  file: string,
  options: {
    readonly flag: "w" | "a"
    readonly reason: "OpenFailed" | "WriteFailed"
    readonly bufferBytes?: number | undefined
    /** Where a file that receives a lot of output gets a larger buffer from (none: the buffer keeps its size). */
    readonly large?: LargeBuffers | undefined
  }
): Effect.Effect<BufferedFile, OutputSinkError> =>
  Effect.tryPromise({
    try: () => fs.promises.open(file, options.flag),
    catch: (cause) => sinkError(sink, options.reason, `cannot open ${file}`, cause)
  }).pipe(
    Effect.uninterruptible,
    Effect.map((handle) => make(sink, file, handle, options.bufferBytes ?? DEFAULT_BUFFER_BYTES, options.large))
  )

const make = (
  sink: string,
  file: string,
  handle: fs.promises.FileHandle,
  initialCapacity: number,
  large: LargeBuffers | undefined
): BufferedFile => {
  let capacity = initialCapacity
  let buffer: Buffer | undefined
  let used = 0
  let broken = false
  let closed = false
  /** Bytes written so far, and whether this file holds one of the large buffers. */
  let total = 0
  let grown = false

  // a chunk as large as the buffer, or a few buffers' worth of output: from now on, buffer (and write) 1 MiB at once
  const maybeGrow = (incoming: number) => {
    total += incoming
    if (grown || large === undefined || large.bytes <= capacity) return
    if (incoming < capacity && total < 4 * capacity) return
    if (!large.take()) return
    grown = true
    capacity = large.bytes
  }

  /** The buffer, at the current capacity (keeping what it holds). */
  const ensureBuffer = (): Buffer => {
    if (buffer === undefined) buffer = Buffer.allocUnsafe(capacity)
    else if (buffer.length < capacity) {
      const bigger = Buffer.allocUnsafe(capacity)
      buffer.copy(bigger, 0, 0, used)
      buffer = bigger
    }
    return buffer
  }

  const writeAll = (bytes: Uint8Array): Effect.Effect<void, OutputSinkError> =>
    Effect.tryPromise({
      try: async () => {
        let offset = 0
        while (offset < bytes.length) {
          const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset)
          if (bytesWritten <= 0) throw new Error("no progress writing")
          offset += bytesWritten
        }
      },
      catch: (cause) => {
        broken = true
        return sinkError(sink, "WriteFailed", `cannot write ${file}`, cause)
      }
    }).pipe(Effect.uninterruptible)

  const flush: Effect.Effect<void, OutputSinkError> = Effect.suspend(() => {
    if (broken || closed || used === 0 || buffer === undefined) return Effect.void
    const pending = buffer.subarray(0, used)
    used = 0
    return writeAll(pending)
  })

  const write = (bytes: Uint8Array): Effect.Effect<void, OutputSinkError> =>
    Effect.suspend(() => {
      if (broken || closed || bytes.length === 0) return Effect.void
      maybeGrow(bytes.length)
      if (bytes.length >= capacity) return Effect.zipRight(flush, Effect.suspend(() => writeAll(bytes)))
      if (used + bytes.length > capacity) {
        return Effect.zipRight(flush, Effect.sync(() => copy(bytes)))
      }
      copy(bytes)
      return Effect.void
    })

  const copy = (bytes: Uint8Array) => {
    ensureBuffer().set(bytes, used)
    used += bytes.length
  }

  const writeString = (text: string): Effect.Effect<void, OutputSinkError> =>
    Effect.suspend(() => {
      if (broken || closed || text.length === 0) return Effect.void
      const length = Buffer.byteLength(text, "utf8")
      if (length >= capacity) return write(Buffer.from(text, "utf8"))
      maybeGrow(length)
      const put = () => {
        used += ensureBuffer().write(text, used, "utf8")
      }
      if (used + length > capacity) return Effect.zipRight(flush, Effect.sync(put))
      put()
      return Effect.void
    })

  const close: Effect.Effect<void, OutputSinkError> = Effect.suspend(() => {
    if (closed) return Effect.void
    return flush.pipe(
      Effect.ensuring(
        Effect.suspend(() => {
          closed = true
          buffer = undefined
          if (grown) {
            grown = false
            large!.give()
          }
          return Effect.promise(() => handle.close().catch(() => undefined))
        })
      )
    )
  })

  return { path: file, write, writeString, flush, close }
}

/** @internal */
export const parentDirectory = (file: string): string => path.dirname(path.resolve(file))
