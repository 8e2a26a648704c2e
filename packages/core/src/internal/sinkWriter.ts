/**
 * A buffered file writer for sinks: a fixed-size buffer per open file, written out when full, so memory stays
 * bounded whatever the output size (a file with a lot of output gets two large ones: one is written in the
 * background while the other fills). The first failure is returned (naming the file; a background write's by the
 * next call); later writes to a broken file are dropped, so that one bad file is reported once.
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
 * Larger buffers for the files that receive a lot of output, shared by the files of one sink: at most `count` files
 * hold them at once (two each), so memory stays bounded whatever the number of targets. Each write is a call into the thread pool; with
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
  cause?: unknown,
  /** The one file lost (the sink's other files go on); see `OutputSinkError.file`. */
  file?: string
): OutputSinkError =>
  new OutputSinkError({
    reason,
    sink,
    ...(cause === undefined
      ? { description }
      : { description: `${description}: ${messageOf(cause)}`, cause }),
    ...(file === undefined ? {} : { file })
  })

/** A missing directory (deleted during the run) fails every file of the sink: not one file's loss. */
const scopeOf = (file: string, fileScoped: boolean | undefined, cause: unknown): string | undefined =>
  fileScoped === true && (cause as NodeJS.ErrnoException | undefined)?.code !== "ENOENT" ? file : undefined

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
    /** One file among several of the sink: its errors name it (`OutputSinkError.file`), the others go on. */
    readonly fileScoped?: boolean | undefined
  }
): Effect.Effect<BufferedFile, OutputSinkError> =>
  Effect.tryPromise({
    try: () => fs.promises.open(file, options.flag),
    catch: (cause) =>
      sinkError(sink, options.reason, `cannot open ${file}`, cause, scopeOf(file, options.fileScoped, cause))
  }).pipe(
    Effect.uninterruptible,
    Effect.map((handle) =>
      make(sink, file, handle, options.bufferBytes ?? DEFAULT_BUFFER_BYTES, options.large, options.fileScoped)
    )
  )

const make = (
  sink: string,
  file: string,
  handle: fs.promises.FileHandle,
  initialCapacity: number,
  large: LargeBuffers | undefined,
  fileScoped: boolean | undefined
): BufferedFile => {
  let capacity = initialCapacity
  let buffer: Buffer | undefined
  let used = 0
  let closed = false
  /** Set by the first failure: later output is dropped, so that a bad file is reported once. */
  let broken = false
  /** A background write's failure, not yet returned to a caller. */
  let unreported: OutputSinkError | undefined
  /** Bytes written so far, and whether this file holds one of the large buffers. */
  let total = 0
  let grown = false
  /** Large buffers only: the write of the last full buffer, running while the next one fills, and that buffer. */
  let pending: Promise<void> | undefined
  let spare: Buffer | undefined

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

  const failure = (cause: unknown) => {
    broken = true
    return sinkError(sink, "WriteFailed", `cannot write ${file}`, cause, scopeOf(file, fileScoped, cause))
  }

  const writeFully = async (bytes: Uint8Array): Promise<void> => {
    let offset = 0
    while (offset < bytes.length) {
      const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset)
      if (bytesWritten <= 0) throw new Error("no progress writing")
      offset += bytesWritten
    }
  }

  const writeAll = (bytes: Uint8Array): Effect.Effect<void, OutputSinkError> =>
    Effect.tryPromise({ try: () => writeFully(bytes), catch: failure }).pipe(Effect.uninterruptible)

  /** Waits for the background write, if any, and returns its failure (once). */
  const settle: Effect.Effect<void, OutputSinkError> = Effect.suspend(() => {
    const running = pending
    if (running === undefined) {
      if (unreported === undefined) return Effect.void
      const error = unreported
      unreported = undefined
      return Effect.fail(error)
    }
    return Effect.flatMap(Effect.promise(() => running), () => {
      if (pending === running) pending = undefined
      return settle
    })
  })

  /**
   * A large file's full buffer: written in the background while the other buffer fills, so that the producer does
   * not wait for the disk (it waits when both are full). Waiting on each write stalled SSH output: the channel
   * paused, the remote's window ran out, and the chunks waiting meanwhile outlived two young-generation
   * collections, to be freed only by full ones (BENCHMARKS.md, throughput).
   */
  const rotate: Effect.Effect<void, OutputSinkError> = Effect.zipRight(
    settle,
    Effect.sync(() => {
      if (broken || used === 0 || buffer === undefined) return
      const full = buffer
      const bytes = full.subarray(0, used)
      buffer = spare ?? Buffer.allocUnsafe(capacity)
      spare = full.length === capacity ? full : undefined
      used = 0
      pending = writeFully(bytes).catch((cause) => {
        unreported = failure(cause)
      })
    })
  )

  const flush: Effect.Effect<void, OutputSinkError> = Effect.zipRight(
    settle,
    Effect.suspend(() => {
      if (broken || closed || used === 0 || buffer === undefined) return Effect.void
      const waiting = buffer.subarray(0, used)
      used = 0
      return writeAll(waiting)
    })
  )

  const makeRoom = (): Effect.Effect<void, OutputSinkError> => (grown ? rotate : flush)

  const write = (bytes: Uint8Array): Effect.Effect<void, OutputSinkError> =>
    Effect.suspend(() => {
      if (broken || closed || bytes.length === 0) return settle
      maybeGrow(bytes.length)
      if (bytes.length >= capacity) {
        return Effect.zipRight(flush, Effect.suspend(() => (broken ? Effect.void : writeAll(bytes))))
      }
      if (used + bytes.length > capacity) {
        return Effect.zipRight(makeRoom(), Effect.sync(() => copy(bytes)))
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
      if (broken || closed || text.length === 0) return settle
      const length = Buffer.byteLength(text, "utf8")
      if (length >= capacity) return write(Buffer.from(text, "utf8"))
      maybeGrow(length)
      const put = () => {
        used += ensureBuffer().write(text, used, "utf8")
      }
      if (used + length > capacity) return Effect.zipRight(makeRoom(), Effect.sync(put))
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
          spare = undefined
          if (grown) {
            grown = false
            large!.give()
          }
          // a background write still running (the flush was interrupted) ends before the file is closed
          const running = pending ?? Promise.resolve()
          return Effect.promise(() => running.then(() => handle.close()).catch(() => undefined))
        })
      )
    )
  })

  return { path: file, write, writeString, flush, close }
}

/** @internal */
export const parentDirectory = (file: string): string => path.dirname(path.resolve(file))
