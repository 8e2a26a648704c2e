/**
 * The file sink: raw bytes per target and stream, or one JSONL file of decoded text.
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as path from "node:path"
import type { StreamName } from "../OutputChunk.js"
import type { OutputSink, OutputSinkError, SinkHandle } from "../OutputSink.js"
import type { RunEvent } from "../RunEvent.js"
import { type BufferedFile, makeDirectory, makeLargeBuffers, openBuffered } from "./sinkWriter.js"
import { makeUtf8Decoder, type Utf8Decoder } from "./utf8.js"

/** @internal */
export interface FileOptions {
  readonly dir: string
  readonly layout: "per-target" | "jsonl"
  readonly bufferBytes?: number | undefined
}

const STREAMS: ReadonlyArray<StreamName> = ["stdout", "stderr"]

/**
 * A file name for a target id: characters outside `[A-Za-z0-9._@+=-]` are percent-encoded (so `a/b` is `a%2Fb`
 * and two ids never share a file), and `.`/`..` are encoded too.
 *
 * @internal
 */
export const fileNameOf = (targetId: string): string => {
  const encoded = targetId.replace(
    /[^A-Za-z0-9._@+=-]/gu,
    (c) => [...Buffer.from(c, "utf8")].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("")
  )
  return encoded === "." || encoded === ".." ? encoded.replace(/\./g, "%2E") : encoded
}

/** Closes every file left open when the sink's scope closes, bounded in time, ignoring failures. */
const closeAll = (files: () => Iterable<BufferedFile>) =>
  Effect.suspend(() => Effect.forEach([...files()], (f) => Effect.ignore(f.close), { discard: true })).pipe(
    Effect.timeout("30 seconds"),
    Effect.ignore
  )

/** @internal */
export const file = (options: FileOptions): OutputSink => {
  const name = `file:${options.dir}`
  return {
    name,
    open: () =>
      Effect.gen(function*() {
        yield* makeDirectory(name, options.dir)
        return options.layout === "jsonl"
          ? yield* openJsonl(name, options)
          : yield* openPerTarget(name, options)
      }).pipe(Effect.withSpan("OutputSink.file.open", { attributes: { dir: options.dir, layout: options.layout } }))
  }
}

const discard = (file: string): BufferedFile => ({
  path: file,
  write: () => Effect.void,
  writeString: () => Effect.void,
  flush: Effect.void,
  close: Effect.void
})

const openPerTarget = Effect.fnUntraced(function*(name: string, options: FileOptions) {
  /** Open files by path; a path once created is reopened for appending (output after Finished). */
  const open = new Map<string, BufferedFile>()
  const created = new Set<string>()
  /** Files that could not be opened: reported once, then their output is dropped. */
  const failed = new Set<string>()
  const large = makeLargeBuffers()
  yield* Effect.addFinalizer(() => closeAll(() => open.values()))

  /** File paths by stream and target id: computed once, not per chunk. */
  const paths = { stdout: new Map<string, string>(), stderr: new Map<string, string>() }
  const pathOf = (targetId: string, stream: StreamName): string => {
    let file = paths[stream].get(targetId)
    if (file === undefined) {
      file = path.join(options.dir, `${fileNameOf(targetId)}.${stream}`)
      paths[stream].set(targetId, file)
    }
    return file
  }

  const fileFor = (targetId: string, stream: StreamName): Effect.Effect<BufferedFile, OutputSinkError> => {
    const file = pathOf(targetId, stream)
    const current = open.get(file)
    if (current !== undefined) return Effect.succeed(current)
    if (failed.has(file)) return Effect.succeed(discard(file))
    const flag = created.has(file) ? "a" : "w"
    created.add(file)
    return openBuffered(name, file, {
      flag,
      reason: "WriteFailed",
      bufferBytes: options.bufferBytes,
      large,
      fileScoped: true
    }).pipe(
      Effect.tapBoth({
        onFailure: () => Effect.sync(() => failed.add(file)),
        onSuccess: (f) => Effect.sync(() => open.set(file, f))
      })
    )
  }

  const closeTarget = (targetId: string) =>
    Effect.forEach(STREAMS, (stream) =>
      Effect.flatMap(fileFor(targetId, stream), (f) => {
        open.delete(f.path)
        paths[stream].delete(targetId)
        return f.close
      }), { discard: true })

  const write = (event: RunEvent): Effect.Effect<void, OutputSinkError> => {
    switch (event._tag) {
      case "Output":
        return Effect.flatMap(fileFor(event.chunk.targetId, event.chunk.stream), (f) => f.write(event.chunk.bytes))
      case "Finished":
        // both files exist for every finished target, even one that wrote nothing
        return closeTarget(event.targetId)
      case "RunFinished":
        return Effect.forEach([...open.values()], (f) => f.flush, { discard: true })
      default:
        return Effect.void
    }
  }
  return { write } satisfies SinkHandle
})

const openJsonl = Effect.fnUntraced(function*(name: string, options: FileOptions) {
  const out = yield* openBuffered(name, path.join(options.dir, "output.jsonl"), {
    flag: "w",
    reason: "OpenFailed",
    bufferBytes: options.bufferBytes,
    large: makeLargeBuffers(undefined, 1)
  })
  yield* Effect.addFinalizer(() => closeAll(() => [out]))
  /** One decoder per target and stream, with the last sequence number seen. */
  const decoders = new Map<string, { readonly decoder: Utf8Decoder; seq: number }>()
  const key = (targetId: string, stream: StreamName) => `${stream}:${targetId}`

  const line = (targetId: string, stream: StreamName, seq: number, at: number, text: string) =>
    out.writeString(`${JSON.stringify({ targetId, stream, seq, at, text })}\n`)

  const write = (event: RunEvent): Effect.Effect<void, OutputSinkError> => {
    switch (event._tag) {
      case "Output": {
        const { at, bytes, seq, stream, targetId } = event.chunk
        let state = decoders.get(key(targetId, stream))
        if (state === undefined) {
          state = { decoder: makeUtf8Decoder(), seq }
          decoders.set(key(targetId, stream), state)
        }
        state.seq = seq
        return line(targetId, stream, seq, at, state.decoder.decode(bytes))
      }
      case "Finished":
        return Effect.forEach(STREAMS, (stream) => {
          const state = decoders.get(key(event.targetId, stream))
          if (state === undefined) return Effect.void
          decoders.delete(key(event.targetId, stream))
          // an incomplete character at the end of the stream, as U+FFFD, tagged with the last chunk's seq
          const rest = state.decoder.end()
          return rest === "" ? Effect.void : line(event.targetId, stream, state.seq, event.at, rest)
        }, { discard: true }).pipe(Effect.zipRight(out.flush))
      case "RunFinished":
        return out.flush
      default:
        return Effect.void
    }
  }
  return { write } satisfies SinkHandle
})
