/**
 * Outcome: how each target ended. One union for every transport.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { ErrorPhase, TransportErrorReason } from "./TransportError.js"

/**
 * A bounded capture of one stream: the head, the tail, and what was dropped between them. Text is decoded as
 * UTF-8 incrementally (a character split across chunks stays whole) and redacted.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Captured = Schema.Struct({
  head: Schema.String,
  tail: Schema.String,
  totalBytes: Schema.Number,
  /** Bytes are missing: dropped between head and tail by runcmd (`droppedBytes`), or cut by the service. */
  truncated: Schema.Boolean,
  droppedBytes: Schema.Number,
  /** Set when the service cut the stream before runcmd saw it: why, and how to get all of it. */
  truncatedBy: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Captured = typeof Captured.Type

/**
 * @since 0.1.0
 * @category constructors
 */
export const emptyCapture: Captured = { head: "", tail: "", totalBytes: 0, truncated: false, droppedBytes: 0 }

/**
 * The whole captured text (head, a marker where bytes were dropped, tail).
 *
 * @since 0.1.0
 * @category utils
 */
export const capturedText = (c: Captured): string => {
  const text = c.droppedBytes > 0 ? `${c.head}\n…[${c.droppedBytes} bytes dropped]…\n${c.tail}` : c.head + c.tail
  return c.truncatedBy === undefined ? text : `${text}\n…[truncated: ${c.truncatedBy}]`
}

/**
 * A capture marked as cut by the service (see `Transport.OutputTruncation`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const truncatedBy = (c: Captured, reason: string): Captured => ({ ...c, truncated: true, truncatedBy: reason })

/**
 * The serialisable form of the error behind a failure.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorInfo = Schema.Struct({
  reason: Schema.Union(TransportErrorReason, Schema.Literal("Timeout", "Interrupted", "BudgetExhausted", "Deadline")),
  transport: Schema.String,
  phase: ErrorPhase,
  message: Schema.String,
  detail: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})

/**
 * @since 0.1.0
 * @category models
 */
export type ErrorInfo = typeof ErrorInfo.Type

const common = {
  targetId: Schema.String,
  kind: Schema.String,
  /** Executions started for this target (0 when skipped or refused before any start). */
  attempts: Schema.Int,
  startedAt: Schema.optional(Schema.Number),
  endedAt: Schema.optional(Schema.Number),
  durationMs: Schema.Number,
  stdout: Captured,
  stderr: Captured
}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Succeeded extends Schema.TaggedClass<Succeeded>()("Succeeded", { ...common }) {}

/**
 * Exited with a non-zero code: the code is data, not an error.
 *
 * @since 0.1.0
 * @category schemas
 */
export class Failed extends Schema.TaggedClass<Failed>()("Failed", { ...common, exitCode: Schema.Int }) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Signaled extends Schema.TaggedClass<Signaled>()("Signaled", { ...common, signal: Schema.String }) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class TimedOut extends Schema.TaggedClass<TimedOut>()("TimedOut", {
  ...common,
  phase: ErrorPhase,
  /** The process group is known to be gone. */
  killConfirmed: Schema.Boolean,
  /** Which limit fired: the per-execution timeout or the run's deadline. */
  limit: Schema.Literal("timeout", "deadline")
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Cancelled extends Schema.TaggedClass<Cancelled>()("Cancelled", {
  ...common,
  /** The remote process is known to be gone. */
  confirmed: Schema.Boolean
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Unreachable extends Schema.TaggedClass<Unreachable>()("Unreachable", { ...common, error: ErrorInfo }) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Rejected extends Schema.TaggedClass<Rejected>()("Rejected", { ...common, error: ErrorInfo }) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class TransportFailed extends Schema.TaggedClass<TransportFailed>()("TransportFailed", {
  ...common,
  error: ErrorInfo,
  remoteState: Schema.Literal("unknown")
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export class Skipped extends Schema.TaggedClass<Skipped>()("Skipped", {
  ...common,
  why: Schema.Literal("BudgetExhausted", "Cancelled", "Deadline")
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const Outcome = Schema.Union(
  Succeeded,
  Failed,
  Signaled,
  TimedOut,
  Cancelled,
  Unreachable,
  Rejected,
  TransportFailed,
  Skipped
)

/**
 * @since 0.1.0
 * @category models
 */
export type Outcome = typeof Outcome.Type

/**
 * @since 0.1.0
 * @category models
 */
export type OutcomeTag = Outcome["_tag"]

/**
 * Every outcome tag, in report order.
 *
 * @since 0.1.0
 * @category utils
 */
export const tags: ReadonlyArray<OutcomeTag> = [
  "Succeeded",
  "Failed",
  "Signaled",
  "TimedOut",
  "Cancelled",
  "Unreachable",
  "Rejected",
  "TransportFailed",
  "Skipped"
]

/**
 * Outcomes that count against the error budget (everything but success, cancellation and skipping).
 *
 * @since 0.1.0
 * @category utils
 */
export const isFailure = (o: Outcome): boolean =>
  o._tag !== "Succeeded" && o._tag !== "Skipped" && o._tag !== "Cancelled"

/**
 * Builds an outcome without re-validating its fields (the Runner's hot path; its fields are typed already).
 * Equivalent to `new cls(props, true)`, without the class constructor's schema bookkeeping.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsafeMake = <A extends Outcome>(
  cls: { readonly prototype: A; readonly _tag: A["_tag"] },
  props: Omit<A, "_tag">
): A => Object.assign(Object.create(cls.prototype), props, { _tag: cls._tag })
