/**
 * The events sink: a JSONL log of every run event (chunk bytes as base64).
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { OutputSink, OutputSinkError } from "../OutputSink.js"
import { type RunEvent, RunEventJson } from "../RunEvent.js"
import { makeDirectory, openBuffered, parentDirectory, sinkError } from "./sinkWriter.js"

/** @internal */
export type EventsOptions =
  | { readonly path: string; readonly bufferBytes?: number | undefined }
  | { readonly write: (line: string) => void }

const encode = Schema.encode(RunEventJson)

/** @internal */
export const events = (options: EventsOptions): OutputSink => {
  const name = "path" in options ? `events:${options.path}` : "events"
  const toLine = (event: RunEvent): Effect.Effect<string, OutputSinkError> =>
    encode(event).pipe(
      Effect.mapBoth({
        onFailure: (cause) => sinkError(name, "WriteFailed", `cannot encode a ${event._tag} event`, cause),
        onSuccess: (json) => `${JSON.stringify(json)}\n`
      })
    )
  return {
    name,
    open: () =>
      Effect.gen(function*() {
        if (!("path" in options)) {
          const write = options.write
          return {
            write: (event: RunEvent) =>
              Effect.flatMap(toLine(event), (line) =>
                Effect.try({
                  try: () => write(line),
                  catch: (cause) => sinkError(name, "WriteFailed", "the event writer failed", cause)
                }))
          }
        }
        yield* makeDirectory(name, parentDirectory(options.path))
        const out = yield* openBuffered(name, options.path, {
          flag: "w",
          reason: "OpenFailed",
          bufferBytes: options.bufferBytes
        })
        yield* Effect.addFinalizer(() => out.close.pipe(Effect.timeout("30 seconds"), Effect.ignore))
        return {
          write: (event: RunEvent) =>
            Effect.flatMap(toLine(event), (line) => out.writeString(line)).pipe(
              // a finished target's events reach the file promptly (a log others may follow)
              Effect.zipRight(event._tag === "Finished" || event._tag === "RunFinished" ? out.flush : Effect.void)
            )
        }
      }).pipe(Effect.withSpan("OutputSink.events.open"))
  }
}
