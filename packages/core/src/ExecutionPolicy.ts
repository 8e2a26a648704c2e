/**
 * How a job runs: timeouts, kill grace, retries, concurrency, error budget, batches, run-as, working directory.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"

const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|millis|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)\s*$/i

/**
 * Parses `"30s"`, `"10m"`, `"1.5h"`, `"250ms"`, `"2 minutes"` or a number of milliseconds.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseDuration = (input: string | number): Option.Option<Duration.Duration> => {
  if (typeof input === "number") {
    return Number.isFinite(input) && input >= 0 ? Option.some(Duration.millis(input)) : Option.none()
  }
  const m = DURATION_RE.exec(input)
  if (m === null) return Option.none()
  const n = Number(m[1])
  const unit = m[2]!.toLowerCase()
  const ms = unit.startsWith("ms") || unit.startsWith("milli")
    ? n
    : unit.startsWith("s")
    ? n * 1000
    : unit.startsWith("m")
    ? n * 60_000
    : unit.startsWith("h")
    ? n * 3_600_000
    : n * 86_400_000
  return Option.some(Duration.millis(ms))
}

/**
 * A non-negative duration, written `"30s"`, `"10m"`, `"250ms"` or as milliseconds; encodes to milliseconds.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DurationText: Schema.Schema<Duration.Duration, string | number> = Schema.transformOrFail(
  Schema.Union(Schema.String, Schema.Number),
  Schema.DurationFromSelf,
  {
    strict: true,
    decode: (input, _, ast) =>
      Option.match(parseDuration(input), {
        onNone: () =>
          ParseResult.fail(
            new ParseResult.Type(
              ast,
              input,
              `expected a non-negative duration such as "30s", "10m", "250ms" or a number of milliseconds, got ${
                JSON.stringify(input)
              }`
            )
          ),
        onSome: ParseResult.succeed
      }),
    encode: (d) => ParseResult.succeed(Duration.toMillis(d))
  }
)

/**
 * A count (`5`) or a percentage of the targets (`"20%"`, at most 100%).
 *
 * @since 0.1.0
 * @category models
 */
export type Amount = number | `${number}%`

const amount = (what: string, min: number): Schema.Schema<Amount, number | string> =>
  Schema.Union(Schema.Number, Schema.String).pipe(
    Schema.filter((value) => {
      const expected = `${what} must be a whole number ≥ ${min} or a percentage like "20%" (${
        min === 0 ? "0%" : "above 0%"
      } to 100%), got ${JSON.stringify(value)}`
      if (typeof value === "number") return Number.isInteger(value) && value >= min ? undefined : expected
      const m = /^(\d+(?:\.\d+)?)%$/.exec(value)
      if (m === null) return expected
      const p = Number(m[1])
      return (p > 0 || (min === 0 && p === 0)) && p <= 100 ? undefined : expected
    })
  ) as unknown as Schema.Schema<Amount, number | string>

/**
 * @since 0.1.0
 * @category schemas
 */
export const Concurrency = amount("concurrency", 1)

/**
 * @since 0.1.0
 * @category schemas
 */
export const ErrorBudget = amount("max-errors", 0)

/**
 * @since 0.1.0
 * @category schemas
 */
export const BatchSize = amount("batch size", 1)

/**
 * Resolves a count or percentage against a number of targets (percentages round up, at least 1 where
 * `atLeastOne`).
 *
 * @since 0.1.0
 * @category utils
 */
export const resolveAmount = (value: Amount, total: number, atLeastOne: boolean): number => {
  const n = typeof value === "number" ? value : Math.ceil((Number(value.slice(0, -1)) / 100) * total)
  return atLeastOne ? Math.max(1, n) : n
}

/**
 * @since 0.1.0
 * @category schemas
 */
export const RunAsMethod = Schema.Literal("sudo", "su", "runuser", "doas")

/**
 * @since 0.1.0
 * @category schemas
 */
export const RunAs = Schema.Struct({
  user: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$/, {
    message: () => "run-as user must be a plain user name"
  })),
  method: Schema.optionalWith(RunAsMethod, { default: () => "sudo" as const }),
  password: Schema.optional(Schema.Redacted(Schema.String))
})

/**
 * @since 0.1.0
 * @category models
 */
export type RunAs = typeof RunAs.Type

/**
 * Retry of failures: how many times and with what exponential backoff. Only failures before delivery are
 * retried unless the policy is `idempotent`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Retry = Schema.Struct({
  times: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 100)), { default: () => 0 }),
  backoff: Schema.optionalWith(DurationText, { default: () => Duration.seconds(1) }),
  factor: Schema.optionalWith(Schema.Number.pipe(Schema.between(1, 10)), { default: () => 2 })
})

/**
 * The serialisable policy (decoded from JSON/YAML/flags).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ExecutionPolicy = Schema.Struct({
  /** Per-execution timeout; closes the execution's scope (TERM, grace, KILL). */
  timeout: Schema.optional(DurationText),
  /** Overall deadline for the whole run. */
  deadline: Schema.optional(DurationText),
  /** Time between TERM and KILL. */
  killGrace: Schema.optionalWith(DurationText, { default: () => Duration.seconds(5) }),
  retry: Schema.optionalWith(Retry, { default: () => ({ times: 0, backoff: Duration.seconds(1), factor: 2 }) }),
  concurrency: Schema.optionalWith(Concurrency, { default: () => 10 }),
  /** Failing outcomes tolerated; once exceeded, targets not yet started are `Skipped`. Unset: no budget. */
  maxErrors: Schema.optional(ErrorBudget),
  /** Rolling batches: run in waves of this many targets, a wave starting when the previous one is done. */
  batchSize: Schema.optional(BatchSize),
  runAs: Schema.optional(RunAs),
  cwd: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** A script that may have started is re-run on failure only when this is true. */
  idempotent: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/**
 * @since 0.1.0
 * @category models
 */
export interface ExecutionPolicy extends Schema.Schema.Type<typeof ExecutionPolicy> {
  /** A programmatic retry schedule; overrides `retry` when set (not serialisable). */
  readonly schedule?: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * The defaults: no timeout, 5 s kill grace, no retry, concurrency 10, no error budget.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaults: ExecutionPolicy = Schema.decodeUnknownSync(ExecutionPolicy)({})

/**
 * Builds a policy from partial (decoded) values.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (overrides: Partial<ExecutionPolicy> = {}): ExecutionPolicy => ({ ...defaults, ...overrides })

/**
 * The retry schedule the policy describes.
 *
 * @since 0.1.0
 * @category utils
 */
export const retrySchedule = (policy: ExecutionPolicy): Schedule.Schedule<unknown, unknown, never> =>
  policy.schedule ??
    Schedule.exponential(policy.retry.backoff, policy.retry.factor).pipe(
      Schedule.intersect(Schedule.recurs(policy.retry.times))
    )
