/**
 * A run plan: targets + job + policy + sinks. Decodable from JSON/YAML with precise errors.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as ExecutionPolicy from "./ExecutionPolicy.js"
import { InvalidPlan } from "./InvalidPlan.js"
import type { OutputSink } from "./OutputSink.js"
import { Job } from "./ScriptSource.js"
import * as Target from "./Target.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface RunPlan {
  readonly targets: ReadonlyArray<Target.Target>
  readonly job: Job
  readonly policy: ExecutionPolicy.ExecutionPolicy
  readonly sinks?: ReadonlyArray<OutputSink> | undefined
  /** Bytes of each stream kept in the report (head and tail halves); default 64 KiB. */
  readonly captureBytes?: number | undefined
  readonly runId?: string | undefined
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly targets: ReadonlyArray<Target.Target>
  readonly job: Job
  readonly policy?: Partial<ExecutionPolicy.ExecutionPolicy> | undefined
  readonly sinks?: ReadonlyArray<OutputSink> | undefined
  readonly captureBytes?: number | undefined
  readonly runId?: string | undefined
}): RunPlan => ({ ...options, policy: ExecutionPolicy.make(options.policy ?? {}) })

/**
 * The serialisable part of a plan, for the given target kinds.
 *
 * @since 0.1.0
 * @category schemas
 */
export const schema = (kinds: ReadonlyArray<Target.TargetSchema>) =>
  Schema.Struct({
    targets: Schema.Array(Target.union(kinds)),
    job: Job,
    policy: Schema.optionalWith(ExecutionPolicy.ExecutionPolicy, { default: () => ExecutionPolicy.defaults }),
    captureBytes: Schema.optional(Schema.Int.pipe(Schema.positive())),
    runId: Schema.optional(Schema.String)
  })

/**
 * Turns a decode failure into an `InvalidPlan` naming the first failing field and what was expected.
 *
 * @since 0.1.0
 * @category utils
 */
export const fromParseError = (error: ParseResult.ParseError, prefix = ""): InvalidPlan => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  const path = [prefix, ...(first?.path ?? []).map(String)].filter((s) => s !== "").join(".")
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : ""
  return new InvalidPlan({
    reason: "DecodeFailed",
    path,
    description: `${first?.message ?? "invalid value"}${more}`
  })
}

/**
 * Decodes a plan from unknown input (parsed JSON/YAML).
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (
  input: unknown,
  kinds: ReadonlyArray<Target.TargetSchema> = [Target.Local]
): Effect.Effect<RunPlan, InvalidPlan> =>
  Schema.decodeUnknown(schema(kinds))(input, { errors: "all", onExcessProperty: "error" }).pipe(
    Effect.mapError((e) => fromParseError(e))
  )
