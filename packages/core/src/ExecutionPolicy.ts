/**
 * How a job runs: timeouts, kill grace, retries, concurrency, error budget, batches, run-as, working directory.
 *
 * A policy is built from levels, each setting some fields; for every field the highest level that sets it wins
 * (field by field: a plan that sets `timeout` keeps the layer's `concurrency`; `retry` is merged by its own
 * fields):
 *
 * | level (highest first) | where it comes from | how it is given |
 * |---|---|---|
 * | flag | the CLI's flags (`--concurrency`, `--timeout`, ...) | `resolve({ flags })` |
 * | plan | the program's own policy for this job | `Runner.runJob(job, { policy })`, `resolve({ plan })` |
 * | inventory | policy defaults that come with the targets | `resolve({ inventory })` |
 * | layer | the {@link Defaults} service: {@link layer} or {@link layerConfig} (`RUNCMD_*` variables) | provided |
 * | built-in | {@link defaults}: no timeout, 5 s kill grace, no retry, concurrency 10, no error budget, jobs end with the controller (`onControllerLoss: "terminate"`) | always |
 *
 * `onControllerLoss` has one more level, above all of these: a target's own `onControllerLoss` field (an
 * inventory target's, e.g. the one host whose migration must finish whatever happens to runcmd) decides for that
 * target ({@link forTarget}).
 *
 * `Runner.run(plan)` takes a `RunPlan` whose policy is complete already (`RunPlan.make` fills in the built-in
 * defaults): it does not read the {@link Defaults} service. `Runner.runJob` and {@link current} do.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"

const DURATION_RE =
  /^\s*(\d+(?:\.\d+)?)\s*(ms|millis|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)\s*$/i

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
 * What happens to a running job when the controller (the runcmd process, or its connection to the target) is lost
 * without cancelling it: a SIGKILL, a crash, an OOM kill, a dropped network. `terminate` (the default): the job is
 * ended (TERM, the kill grace, KILL, its whole process tree) by the transport's lifeline; `continue`: it is left
 * running (it must not need its output pipes: writes to them fail once nobody reads). A cancel (Ctrl-C, a timeout,
 * an interrupted run) always kills, whatever this says. Transports that cannot terminate on controller loss
 * (cloud services run jobs by themselves) say so in `Transport.Capabilities.terminatesOnControllerLoss`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const OnControllerLoss = Schema.Literal("terminate", "continue")

/**
 * @since 0.1.0
 * @category models
 */
export type OnControllerLoss = typeof OnControllerLoss.Type

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
  idempotent: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /** What happens to a running job when the controller dies without cancelling it ({@link OnControllerLoss}). */
  onControllerLoss: Schema.optionalWith(OnControllerLoss, { default: () => "terminate" as const })
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
 * The defaults: no timeout, 5 s kill grace, no retry, concurrency 10, no error budget, `onControllerLoss:
 * "terminate"`.
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
 * The `onControllerLoss` of one target: its own field when it sets one, else the policy's.
 *
 * @since 0.1.0
 * @category utils
 */
export const forTarget = (
  policy: Pick<ExecutionPolicy, "onControllerLoss">,
  target: { readonly onControllerLoss?: OnControllerLoss | undefined }
): OnControllerLoss => target.onControllerLoss ?? policy.onControllerLoss

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

// ---------------------------------------------------------------------------------------------------------------
// levels, precedence and the Defaults service
// ---------------------------------------------------------------------------------------------------------------

/**
 * Some fields of a policy, as one level sets them (see the table in the module's documentation). A field left out
 * (or `undefined`) is not set at this level: the next level down decides it.
 *
 * @since 0.1.0
 * @category models
 */
export type Overrides =
  & { readonly [K in Exclude<keyof ExecutionPolicy, "retry">]?: ExecutionPolicy[K] | undefined }
  & { readonly retry?: Partial<ExecutionPolicy["retry"]> | undefined }

/**
 * The levels of a policy, by name (see the table in the module's documentation).
 *
 * @since 0.1.0
 * @category models
 */
export interface Levels {
  readonly flags?: Overrides | undefined
  readonly plan?: Overrides | undefined
  readonly inventory?: Overrides | undefined
  readonly layer?: Overrides | undefined
}

const mergeTwo = (base: Overrides, over: Overrides | undefined): Overrides => {
  if (over === undefined) return base
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue
    out[key] = key === "retry" ? { ...base.retry, ...definedOnly(value as Record<string, unknown>) } : value
  }
  return out as Overrides
}

const definedOnly = (value: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = v
  return out
}

/**
 * Merges levels given lowest first: for each field the last level that sets it wins (`retry` by its own fields).
 *
 * @since 0.1.0
 * @category utils
 */
export const merge = (...levels: ReadonlyArray<Overrides | undefined>): Overrides => levels.reduce(mergeTwo, {})

/**
 * The policy of the given levels over the built-in {@link defaults}: flag > plan > inventory > layer > built-in.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (levels: Levels): ExecutionPolicy =>
  merge(defaults, levels.layer, levels.inventory, levels.plan, levels.flags) as ExecutionPolicy

/**
 * The policy defaults in scope: the `layer` level of {@link resolve}. Absent, the built-in {@link defaults} apply.
 *
 * @since 0.1.0
 * @category tags
 */
export class Defaults extends Context.Tag("@runcmd/core/ExecutionPolicy/Defaults")<Defaults, Overrides>() {}

/**
 * Provides policy defaults. Built where other defaults are in scope, it overrides them field by field.
 *
 * @example
 * ```ts
 * const program = Runner.runJob(job, { select: "role=web" }).pipe(
 *   Effect.provide(ExecutionPolicy.layer({ concurrency: 5, timeout: Duration.minutes(2) }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (overrides: Overrides): Layer.Layer<Defaults> =>
  Layer.effect(
    Defaults,
    Effect.map(Effect.serviceOption(Defaults), (outer) => merge(Option.getOrUndefined(outer), overrides))
  )

/** A text config decoded by `schema`, the error naming the key (`Invalid data at RUNCMD_TIMEOUT: ...`). */
const fromText = <A>(key: string, decode: (text: string) => Either.Either<A, ParseResult.ParseError>) =>
  Config.option(
    Config.string(key).pipe(Config.mapOrFail((text) =>
      Either.mapLeft(
        decode(text.trim()),
        (error) => ConfigError.InvalidData([], ParseResult.TreeFormatter.formatErrorSync(error))
      )
    ))
  )

const amountText = (schema: Schema.Schema<Amount, number | string>) => {
  const decode = Schema.decodeUnknownEither(schema)
  return (text: string) => decode(/^\d+$/.test(text) ? Number(text) : text)
}

/**
 * The policy defaults from configuration (every variable optional; a value that does not decode fails with a
 * `ConfigError` naming its key):
 *
 * | variable | field | example |
 * |---|---|---|
 * | `RUNCMD_CONCURRENCY` | `concurrency` | `5`, `20%` |
 * | `RUNCMD_TIMEOUT` | `timeout` | `30s` |
 * | `RUNCMD_DEADLINE` | `deadline` | `10m` |
 * | `RUNCMD_KILL_GRACE` | `killGrace` | `5s` |
 * | `RUNCMD_RETRY` | `retry.times` | `2` |
 * | `RUNCMD_RETRY_BACKOFF` | `retry.backoff` | `1s` |
 * | `RUNCMD_MAX_ERRORS` | `maxErrors` | `2`, `10%` |
 * | `RUNCMD_BATCH` | `batchSize` | `5`, `25%` |
 * | `RUNCMD_IDEMPOTENT` | `idempotent` | `true` |
 * | `RUNCMD_CWD` | `cwd` | `/srv/app` |
 * | `RUNCMD_RUN_AS` | `runAs.user` | `deploy` |
 * | `RUNCMD_BECOME_METHOD` | `runAs.method` (with `RUNCMD_RUN_AS`) | `sudo` |
 * | `RUNCMD_ON_CONTROLLER_LOSS` | `onControllerLoss` | `terminate`, `continue` |
 *
 * @since 0.1.0
 * @category layers
 */
export const configFromEnv: Config.Config<Overrides> = Config.all({
  concurrency: fromText("RUNCMD_CONCURRENCY", amountText(Concurrency)),
  timeout: fromText("RUNCMD_TIMEOUT", Schema.decodeUnknownEither(DurationText)),
  deadline: fromText("RUNCMD_DEADLINE", Schema.decodeUnknownEither(DurationText)),
  killGrace: fromText("RUNCMD_KILL_GRACE", Schema.decodeUnknownEither(DurationText)),
  retryTimes: fromText(
    "RUNCMD_RETRY",
    Schema.decodeUnknownEither(Schema.NumberFromString.pipe(Schema.compose(Schema.Int.pipe(Schema.between(0, 100)))))
  ),
  retryBackoff: fromText("RUNCMD_RETRY_BACKOFF", Schema.decodeUnknownEither(DurationText)),
  maxErrors: fromText("RUNCMD_MAX_ERRORS", amountText(ErrorBudget)),
  batchSize: fromText("RUNCMD_BATCH", amountText(BatchSize)),
  idempotent: Config.option(Config.boolean("RUNCMD_IDEMPOTENT")),
  cwd: fromText("RUNCMD_CWD", Schema.decodeUnknownEither(Schema.String.pipe(Schema.minLength(1)))),
  runAsUser: fromText("RUNCMD_RUN_AS", Schema.decodeUnknownEither(RunAs.fields.user)),
  becomeMethod: fromText("RUNCMD_BECOME_METHOD", Schema.decodeUnknownEither(RunAsMethod)),
  onControllerLoss: fromText("RUNCMD_ON_CONTROLLER_LOSS", Schema.decodeUnknownEither(OnControllerLoss))
}).pipe(Config.map((c): Overrides => {
  const retry = definedOnly({
    times: Option.getOrUndefined(c.retryTimes),
    backoff: Option.getOrUndefined(c.retryBackoff)
  })
  const fields = definedOnly({
    concurrency: Option.getOrUndefined(c.concurrency),
    timeout: Option.getOrUndefined(c.timeout),
    deadline: Option.getOrUndefined(c.deadline),
    killGrace: Option.getOrUndefined(c.killGrace),
    maxErrors: Option.getOrUndefined(c.maxErrors),
    batchSize: Option.getOrUndefined(c.batchSize),
    idempotent: Option.getOrUndefined(c.idempotent),
    cwd: Option.getOrUndefined(c.cwd),
    onControllerLoss: Option.getOrUndefined(c.onControllerLoss),
    runAs: Option.isSome(c.runAsUser)
      ? { user: c.runAsUser.value, method: Option.getOrElse(c.becomeMethod, () => "sudo" as const) }
      : undefined
  })
  return Object.keys(retry).length === 0 ? fields : { ...fields, retry }
}))

/**
 * Provides policy defaults read from configuration ({@link configFromEnv} unless another `Config` is given); fails
 * with the `ConfigError` naming the key of a value that does not decode.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<Overrides> = configFromEnv
): Layer.Layer<Defaults, ConfigError.ConfigError> => Layer.unwrapEffect(Effect.map(config, layer))

/**
 * The policy for a job: the given levels over the {@link Defaults} in scope (the `layer` level) and the built-in
 * defaults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const current: (levels?: Omit<Levels, "layer">) => Effect.Effect<ExecutionPolicy> = Effect.fn(
  "ExecutionPolicy.current"
)(function*(levels?: Omit<Levels, "layer">) {
  const layered = yield* Effect.serviceOption(Defaults)
  return resolve({ ...levels, layer: Option.getOrUndefined(layered) })
})
