/**
 * Output sinks: where a run's events (and so its output) go.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { RunEvent } from "./RunEvent.js"
import type { Target } from "./Target.js"

/**
 * @since 0.1.0
 * @category errors
 */
export class OutputSinkError extends Schema.TaggedError<OutputSinkError>("@runcmd/core/OutputSinkError")(
  "OutputSinkError",
  {
    reason: Schema.Literal("OpenFailed", "WriteFailed"),
    sink: Schema.String,
    description: Schema.String,
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.sink}: ${this.reason}: ${this.description}`
  }
}

/**
 * What a sink sees of the run when it opens.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunInfo {
  readonly runId: string
  readonly targets: ReadonlyArray<Target>
}

/**
 * An open sink: receives every event, in order, output already redacted.
 *
 * @since 0.1.0
 * @category models
 */
export interface SinkHandle {
  readonly write: (event: RunEvent) => Effect.Effect<void, OutputSinkError>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface OutputSink {
  readonly name: string
  /** Opened once per run; the scope closes (flushing files) after the last event. */
  readonly open: (run: RunInfo) => Effect.Effect<SinkHandle, OutputSinkError, Scope.Scope>
}
