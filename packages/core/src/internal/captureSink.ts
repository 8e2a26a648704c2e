/**
 * The capture sink of `@runcmd/core/testing`: keeps every event of every run in memory.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { OutputSink } from "../OutputSink.js"
import * as OutputSinks from "../OutputSinks.js"
import type { RunEvent } from "../RunEvent.js"

/** @internal */
export interface Captured {
  /** The sink: add it to a plan's sinks, or provide it with `OutputSinks.layer`. */
  readonly sink: OutputSink
  /** Every event of every run, in order. */
  readonly events: Effect.Effect<ReadonlyArray<RunEvent>>
  /** The ids of the runs seen, in the order they opened the sink. */
  readonly runIds: Effect.Effect<ReadonlyArray<string>>
  /** The output of a target (all runs, all attempts) on a stream, decoded as UTF-8. */
  readonly output: (targetId: string, stream?: "stdout" | "stderr") => Effect.Effect<string>
  readonly clear: Effect.Effect<void>
}

/** @internal */
export class CapturedOutput extends Context.Tag("@runcmd/core/testing/CapturedOutput")<CapturedOutput, Captured>() {}

/** @internal */
export const make = (name = "capture"): Captured => {
  const events: Array<RunEvent> = []
  const runIds: Array<string> = []
  return {
    sink: {
      name,
      open: (run) =>
        Effect.sync(() => {
          runIds.push(run.runId)
          return { write: (event) => Effect.sync(() => void events.push(event)) }
        })
    },
    events: Effect.sync(() => [...events]),
    runIds: Effect.sync(() => [...runIds]),
    output: (targetId, stream = "stdout") =>
      Effect.sync(() => {
        const decoder = new TextDecoder()
        let text = ""
        for (const event of events) {
          if (event._tag === "Output" && event.chunk.targetId === targetId && event.chunk.stream === stream) {
            text += decoder.decode(event.chunk.bytes, { stream: true })
          }
        }
        return text + decoder.decode()
      }),
    clear: Effect.sync(() => {
      events.length = 0
      runIds.length = 0
    })
  }
}

/** @internal */
export const layer: Layer.Layer<OutputSinks.OutputSinks | CapturedOutput> = Layer.unwrapEffect(
  Effect.sync(() => {
    const captured = make()
    return Layer.merge(OutputSinks.layer(captured.sink), Layer.succeed(CapturedOutput, captured))
  })
)
