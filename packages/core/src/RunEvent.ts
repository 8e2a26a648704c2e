/**
 * Run events: what a run emits as it goes. The report is a fold over them.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { ErrorInfo, Outcome } from "./Outcome.js"
import { OutputChunk, OutputChunkJson } from "./OutputChunk.js"

const TargetRef = Schema.Struct({ id: Schema.String, kind: Schema.String })

/**
 * @since 0.1.0
 * @category schemas
 */
export class RunStarted extends Schema.TaggedClass<RunStarted>()("RunStarted", {
  runId: Schema.String,
  at: Schema.Number,
  targets: Schema.Array(TargetRef)
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Started extends Schema.TaggedClass<Started>()("Started", {
  targetId: Schema.String,
  attempt: Schema.Int,
  at: Schema.Number
}) {}

/**
 * Output of a target, already redacted.
 *
 * @since 0.1.0
 * @category schemas
 */
export class Output extends Schema.TaggedClass<Output>()("Output", { chunk: OutputChunk }) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Retrying extends Schema.TaggedClass<Retrying>()("Retrying", {
  targetId: Schema.String,
  /** The attempt that failed. */
  attempt: Schema.Int,
  at: Schema.Number,
  error: ErrorInfo
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Finished extends Schema.TaggedClass<Finished>()("Finished", {
  targetId: Schema.String,
  at: Schema.Number,
  outcome: Outcome
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Progress extends Schema.TaggedClass<Progress>()("Progress", {
  at: Schema.Number,
  total: Schema.Int,
  done: Schema.Int,
  /** Executions running now. */
  running: Schema.Int,
  counts: Schema.Record({ key: Schema.String, value: Schema.Int })
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class RunFinished extends Schema.TaggedClass<RunFinished>()("RunFinished", {
  runId: Schema.String,
  at: Schema.Number,
  interrupted: Schema.Boolean
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const RunEvent = Schema.Union(RunStarted, Started, Output, Retrying, Finished, Progress, RunFinished)

/**
 * @since 0.1.0
 * @category models
 */
export type RunEvent = typeof RunEvent.Type

/**
 * The JSON form of an event (chunk bytes as base64): one line per event in a JSONL log.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RunEventJson = Schema.Union(
  RunStarted,
  Started,
  Schema.TaggedStruct("Output", { chunk: OutputChunkJson }),
  Retrying,
  Finished,
  Progress,
  RunFinished
)
