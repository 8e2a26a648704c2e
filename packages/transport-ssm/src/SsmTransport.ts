/**
 * The AWS Systems Manager Run Command transport (`@aws-sdk/client-ssm`): targets of kind `ssm` run core's
 * self-contained launch through `AWS-RunShellScript` (Linux) or the PowerShell launch through
 * `AWS-RunPowerShellScript` (Windows); `Native` sources name another document and its parameters.
 *
 * - Fan-out: executions of one job that start within `batchWindow` go in batches of up to 50 instances per
 *   `SendCommand` (runcmd's concurrency, batches and error budget stay client-side: give the policy a concurrency
 *   of 50 or more to fill them); a pre-flight `DescribeInstanceInformation` per batch turns `ConnectionLost`,
 *   `Inactive` or unknown instances into `Unreachable` before anything is sent.
 * - Calls: one token bucket per account and region shared by everything in the process, exponential backoff with
 *   full jitter on `ThrottlingException` (a throttled poll never fails an execution), status by one
 *   `ListCommandInvocations` per batch per poll at an adaptive interval, output read once per finished target.
 * - Policy: the execution's scope closing early (timeout, cancel) sends `CancelCommand` and waits for the service
 *   to report the end (`killConfirmed` only then); a runcmd timeout before the instance picked the command up is
 *   `TimedOut{phase: "delivery"}`, after it `TimedOut{phase: "execution"}`. SSM's own `TimeoutSeconds` (delivery)
 *   and `executionTimeout` come from the options; `DeliveryTimedOut` is `Unreachable` (`ConnectTimeout`).
 * - Secrets: refused (`Rejected`) unless Parameter Store delivery is enabled (a SecureString per execution, deleted
 *   when it ends); files inline up to 32 KiB, beyond it
 *   through S3 (pre-signed GET) when a files bucket is set; output capped at 24,000 characters per stream by the
 *   service unless an output bucket is set (then read whole from S3).
 *
 * @since 0.1.0
 */
import { S3Client } from "@aws-sdk/client-s3"
import { SSMClient, type SSMClientConfig } from "@aws-sdk/client-ssm"
import * as Inventory from "@runcmd/core/Inventory"
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type * as Target from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import { TransportError } from "@runcmd/core/TransportError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { TRANSPORT } from "./internal/calls.js"
import { type Connection, type EngineConfig, INLINE_CAP, makeEngine, MAX_BATCH } from "./internal/engine.js"
import * as Importer from "./internal/importer.js"
import * as Limiter from "./internal/limiter.js"
import * as SsmTarget from "./SsmTarget.js"

/**
 * AWS credentials, or a provider of them (any of the SDK's).
 *
 * @since 0.1.0
 * @category models
 */
export type Credentials = NonNullable<SSMClientConfig["credentials"]>

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Credentials for every target; default: the SDK's default chain (or the target's `profile`). */
  readonly credentials?: Credentials | undefined
  /** An SSM endpoint (emulators, VPC endpoints); default: the SDK's (`AWS_ENDPOINT_URL_SSM` is honoured). */
  readonly endpoint?: string | undefined
  /** An S3 endpoint for output and files (path-style addressing is used with it). */
  readonly s3Endpoint?: string | undefined
  /** Credentials for S3 when they differ from SSM's (an S3-compatible store). Default: SSM's. */
  readonly s3Credentials?: Credentials | undefined
  /**
   * Poll each running execution's output (`GetCommandInvocation`) at the poll interval and pass on what is new
   * (`output: "polled"`), so that output before a timeout or a cancel is kept and `cancelWhen` can watch it. It
   * costs one request per running target per poll; the SSM agent may report output only when the command ends.
   * Default `false`: output is read once, when the execution has finished (`output: "final"`).
   */
  readonly streamOutput?: boolean | undefined
  /** Full output: the bucket SSM writes each command's stdout/stderr to; read whole instead of the capped text. */
  readonly outputBucket?: string | undefined
  /** Key prefix in the output bucket. Default `runcmd/output`. */
  readonly outputPrefix?: string | undefined
  /** Files larger than the inline limit go through this bucket (pre-signed GET, deleted after). Default: none. */
  readonly filesBucket?: string | undefined
  /** Key prefix for shipped files. Default `runcmd/files`. */
  readonly filesPrefix?: string | undefined
  /** Files and stdin inline in the command up to this many bytes. Default 32 KiB. */
  readonly maxInlineBytes?: number | undefined
  /**
   * Secrets: by default a job with secrets is `Rejected` (SSM stores commands and parameters in clear). With
   * `parameterStore`, each execution's secrets go to its own SecureString parameter
   * (`<prefix>/<run>/<batch>/<instance id>`, prefix default `/runcmd/secrets`), fetched on the instance (default:
   * the instance's AWS CLI, `aws ssm get-parameter --with-decryption`; the instance profile needs `ssm:GetParameter`
   * and `kms:Decrypt`) and deleted when that execution ends, also after a kill, a timeout or an interruption.
   */
  readonly secrets?:
    | {
      readonly parameterStore: {
        readonly prefix?: string | undefined
        readonly kmsKeyId?: string | undefined
        /**
         * A shell command printing the parameter's value (default: the AWS CLI). `parameterName` is a shell word
         * (quoted already: put it in as it is) that expands on the instance to the execution's parameter name; it
         * ends with `$AWS_SSM_INSTANCE_ID`, which the SSM agent sets for every command it runs.
         */
        readonly fetchCommand?: ((parameterName: string, region: string) => string) | undefined
        /**
         * The same on Windows instances: a PowerShell pipeline printing the value (default: the AWS CLI, `aws ssm
         * get-parameter`). `parameterName` is a PowerShell expression giving the execution's parameter name.
         */
        readonly fetchPowerShell?: ((parameterName: string, region: string) => string) | undefined
      }
    }
    | undefined
  /** SSM's delivery timeout (`TimeoutSeconds`, 30 s to 30 days). Default 10 minutes. */
  readonly deliveryTimeout?: Duration.DurationInput | undefined
  /**
   * SSM's own `executionTimeout` (up to 48 h). Keep it above the policy's timeout: runcmd's timeout cancels and
   * reports `TimedOut`; SSM's ends the command as a transport failure. Default 1 hour.
   */
  readonly executionTimeout?: Duration.DurationInput | undefined
  /** Status polls: from `min`, growing by half while nothing changes, up to `max`. Default 250 ms to 2 s. */
  readonly pollInterval?: {
    readonly min?: Duration.DurationInput | undefined
    readonly max?: Duration.DurationInput | undefined
  } | undefined
  /** How long a new batch waits for more executions of the same job. Default 25 ms. */
  readonly batchWindow?: Duration.DurationInput | undefined
  /** Instances per `SendCommand` (1 to 50). Default 50. */
  readonly batchSize?: number | undefined
  /** How long an invocation may be missing after `SendCommand` (`InvocationDoesNotExist`). Default 30 s. */
  readonly invocationWindow?: Duration.DurationInput | undefined
  /** After `CancelCommand`, how long to wait for the service to report the end. Default 30 s. */
  readonly cancelConfirmTimeout?: Duration.DurationInput | undefined
  /** Check `PingStatus` before sending. Default `true`. */
  readonly preflight?: boolean | undefined
  /** Calls per second and burst of the shared token bucket (per account and region). Default 20/s, burst 40. */
  readonly rateLimit?: { readonly perSecond: number; readonly burst: number } | undefined
  /** Backoff after throttling: full jitter up to `base·2^n`, at most `max`. Default 100 ms and 5 s. */
  readonly backoff?: {
    readonly base?: Duration.DurationInput | undefined
    readonly max?: Duration.DurationInput | undefined
  } | undefined
  /** Called once per API request (by operation name), e.g. to count calls. */
  readonly onCall?: ((operation: string) => void) | undefined
}

/**
 * Why options are refused (`field` names the option).
 *
 * @since 0.1.0
 * @category errors
 */
export class SsmOptionsError extends Schema.TaggedError<SsmOptionsError>("@runcmd/transport-ssm/SsmOptionsError")(
  "SsmOptionsError",
  { reason: Schema.Literal("InvalidOption"), field: Schema.String, description: Schema.String }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `ssm option ${this.field}: ${this.description}`
  }
}

/**
 * The capabilities for the given options: output is polled (`streamOutput`) or final; cancel is best-effort (the service reports the end);
 * secrets are accepted and delivered through Parameter Store when enabled, else each execution is `Rejected` saying
 * why; the inline cap only without an output bucket.
 *
 * @since 0.1.0
 * @category constants
 */
export const capabilities = (options: Options = {}): Transport.Capabilities => ({
  output: options.streamOutput === true ? "polled" : "final",
  cancel: "best-effort",
  // jobs with secrets are taken, and each execution is Rejected with the reason unless Parameter Store is enabled
  secrets: true,
  stdin: true,
  runAs: true,
  native: true,
  files: true,
  ...(options.outputBucket === undefined ? { maxInlineOutputBytes: INLINE_CAP } : {})
})

const seconds = (d: Duration.DurationInput | undefined, fallback: number) =>
  d === undefined ? fallback : Math.ceil(Duration.toSeconds(Duration.decode(d)))

const ms = (d: Duration.DurationInput | undefined, fallback: number) =>
  d === undefined ? fallback : Duration.toMillis(Duration.decode(d))

// the name is a shell word expanding to the execution's parameter name on the instance
const defaultFetch = (name: string, region: string) =>
  `aws ssm get-parameter --region ${
    ScriptRender.quote(region)
  } --name ${name} --with-decryption --query Parameter.Value --output text`

// the name is a PowerShell expression; the CLI's output lines are the value's lines
const defaultFetchPowerShell = (name: string, region: string) =>
  `& aws ssm get-parameter --region '${
    region.replace(/'/g, "''")
  }' --name ${name} --with-decryption --query Parameter.Value --output text`

/** Checks the options and fills in the defaults. */
const engineConfig = (options: Options): Effect.Effect<EngineConfig, SsmOptionsError> =>
  Effect.gen(function*() {
    const bad = (field: string, description: string) =>
      Effect.fail(new SsmOptionsError({ reason: "InvalidOption", field, description }))
    const delivery = seconds(options.deliveryTimeout, 600)
    if (delivery < 30 || delivery > 2_592_000) {
      return yield* bad("deliveryTimeout", "SSM takes 30 seconds to 30 days (TimeoutSeconds)")
    }
    const execution = seconds(options.executionTimeout, 3600)
    if (execution < 1 || execution > 172_800) {
      return yield* bad("executionTimeout", "SSM takes 1 second to 48 hours (executionTimeout)")
    }
    const batchSize = options.batchSize ?? MAX_BATCH
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH) {
      return yield* bad("batchSize", "SendCommand takes 1 to 50 instance ids")
    }
    const pollMin = ms(options.pollInterval?.min, 250)
    const pollMax = ms(options.pollInterval?.max, 2000)
    if (pollMin <= 0 || pollMax < pollMin) return yield* bad("pollInterval", "0 < min <= max")
    const rate = options.rateLimit
    if (rate !== undefined && (!(rate.perSecond > 0) || !(rate.burst >= 1))) {
      return yield* bad("rateLimit", "perSecond > 0 and burst >= 1")
    }
    const store = options.secrets?.parameterStore
    return {
      deliveryTimeoutSeconds: delivery,
      executionTimeoutSeconds: execution,
      pollMin,
      pollMax,
      batchWindow: Duration.decode(options.batchWindow ?? Duration.millis(25)),
      batchSize,
      invocationWindowMs: ms(options.invocationWindow, 30_000),
      cancelConfirmTimeout: Duration.decode(options.cancelConfirmTimeout ?? Duration.seconds(30)),
      preflight: options.preflight ?? true,
      output: options.outputBucket === undefined
        ? undefined
        : { bucket: options.outputBucket, prefix: options.outputPrefix ?? "runcmd/output" },
      files: options.filesBucket === undefined
        ? undefined
        : { bucket: options.filesBucket, prefix: options.filesPrefix ?? "runcmd/files" },
      maxInlineBytes: options.maxInlineBytes ?? ScriptRender.SELF_CONTAINED_MAX_INLINE_BYTES,
      secrets: store === undefined ? undefined : {
        prefix: store.prefix ?? "/runcmd/secrets",
        kmsKeyId: store.kmsKeyId,
        fetchCommand: store.fetchCommand ?? defaultFetch,
        fetchPowerShell: store.fetchPowerShell ?? defaultFetchPowerShell
      },
      backoff: {
        base: Duration.decode(options.backoff?.base ?? Duration.millis(100)),
        max: Duration.decode(options.backoff?.max ?? Duration.seconds(5))
      },
      streamOutput: options.streamOutput === true,
      onCall: options.onCall
    }
  })

const s3Config = (options: Options, region: string, credentials: SSMClientConfig["credentials"]) =>
  new S3Client({
    region,
    ...(credentials === undefined ? {} : { credentials }),
    ...(options.s3Endpoint === undefined ? {} : { endpoint: options.s3Endpoint, forcePathStyle: true }),
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1
  })

/**
 * A transport whose clients (one per region and profile) are built on first use and destroyed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Transport.Transport, SsmOptionsError, Scope.Scope> =>
  makeWith(options, (target) => {
    const config: SSMClientConfig = {
      region: target.region,
      maxAttempts: 1,
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      ...(options.credentials === undefined && target.profile !== undefined ? { profile: target.profile } : {}),
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint })
    }
    return { key: `${target.region}|${target.profile ?? ""}`, make: () => new SSMClient(config), owned: true }
  })

/**
 * A transport on a caller-owned `SSMClient` (its region and credentials serve every target; it is not destroyed).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeFromClient = (
  client: SSMClient,
  options: Options = {}
): Effect.Effect<Transport.Transport, SsmOptionsError, Scope.Scope> =>
  makeWith(options, () => ({ key: "client", make: () => client, owned: false }))

const makeWith = (
  options: Options,
  clientFor: (target: SsmTarget.SsmTarget) => { key: string; make: () => SSMClient; owned: boolean }
): Effect.Effect<Transport.Transport, SsmOptionsError, Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* engineConfig(options)
    const scope = yield* Effect.scope
    const engine = yield* makeEngine(config, scope)
    const connections = new Map<string, Connection>()
    const owned: Array<{ destroy: () => void }> = []
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const c of owned) c.destroy()
      })
    )
    const rate = options.rateLimit ?? { perSecond: 20, burst: 40 }
    const connectionFor = (target: SsmTarget.SsmTarget): Effect.Effect<Connection> =>
      Effect.promise(async () => {
        const spec = clientFor(target)
        const existing = connections.get(spec.key)
        if (existing !== undefined) return existing
        const ssm = spec.make()
        if (spec.owned) owned.push(ssm)
        const region = spec.owned ? target.region : await ssm.config.region()
        const endpointKey = options.endpoint ?? (spec.owned ? "aws" : `client-${connections.size}`)
        let s3: S3Client | undefined
        const connection: Connection = {
          key: spec.key,
          region,
          ssm,
          s3: () => {
            if (s3 === undefined) {
              s3 = s3Config(options, region, options.s3Credentials ?? options.credentials ?? ssm.config.credentials)
              owned.push(s3)
            }
            return s3
          },
          limiter: Limiter.forKey(`${endpointKey}|${target.profile ?? "default"}|${region}`, rate)
        }
        connections.set(spec.key, connection)
        return connection
      })
    return Transport.make({
      name: TRANSPORT,
      kinds: ["ssm"],
      capabilities: capabilities(options),
      start: (target, invocation) =>
        Effect.gen(function*() {
          if (!SsmTarget.isSsmTarget(target)) {
            return yield* new TransportError({
              reason: "Unsupported",
              transport: TRANSPORT,
              phase: "delivery",
              description: `the ssm transport serves kind ssm, not ${target.kind}`
            })
          }
          const ssmTarget = target as SsmTarget.SsmTarget
          const connection = yield* connectionFor(ssmTarget)
          return yield* engine.start(connection, ssmTarget, invocation)
        })
    })
  })

/**
 * The transport as a layer (registers kind `ssm`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Transport.Registry, SsmOptionsError | Transport.DuplicateTransport> => Transport.layer(make(options))

/**
 * The transport on a caller-owned `SSMClient`, as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromClient = (
  client: SSMClient,
  options: Options = {}
): Layer.Layer<Transport.Registry, SsmOptionsError | Transport.DuplicateTransport> =>
  Transport.layer(makeFromClient(client, options))

/**
 * Options from environment variables (all optional): `RUNCMD_SSM_ENDPOINT`, `RUNCMD_SSM_S3_ENDPOINT`,
 * `RUNCMD_SSM_OUTPUT_BUCKET`, `RUNCMD_SSM_OUTPUT_PREFIX`, `RUNCMD_SSM_FILES_BUCKET`, `RUNCMD_SSM_SECRETS`
 * (`parameter-store` enables Parameter Store delivery), `RUNCMD_SSM_PARAMETER_PREFIX`,
 * `RUNCMD_SSM_DELIVERY_TIMEOUT`, `RUNCMD_SSM_EXECUTION_TIMEOUT`, `RUNCMD_SSM_PREFLIGHT` (`false`),
 * `RUNCMD_SSM_RATE` (calls per second).
 *
 * @since 0.1.0
 * @category Config
 */
export const configFromEnv: Config.Config<Options> = Config.all({
  endpoint: Config.option(Config.string("RUNCMD_SSM_ENDPOINT")),
  s3Endpoint: Config.option(Config.string("RUNCMD_SSM_S3_ENDPOINT")),
  outputBucket: Config.option(Config.string("RUNCMD_SSM_OUTPUT_BUCKET")),
  outputPrefix: Config.option(Config.string("RUNCMD_SSM_OUTPUT_PREFIX")),
  filesBucket: Config.option(Config.string("RUNCMD_SSM_FILES_BUCKET")),
  secrets: Config.option(Config.literal("parameter-store", "reject")("RUNCMD_SSM_SECRETS")),
  parameterPrefix: Config.option(Config.string("RUNCMD_SSM_PARAMETER_PREFIX")),
  deliveryTimeout: Config.option(Config.duration("RUNCMD_SSM_DELIVERY_TIMEOUT")),
  executionTimeout: Config.option(Config.duration("RUNCMD_SSM_EXECUTION_TIMEOUT")),
  preflight: Config.option(Config.boolean("RUNCMD_SSM_PREFLIGHT")),
  rate: Config.option(Config.number("RUNCMD_SSM_RATE"))
}).pipe(
  Config.map((c): Options => ({
    endpoint: Option.getOrUndefined(c.endpoint),
    s3Endpoint: Option.getOrUndefined(c.s3Endpoint),
    outputBucket: Option.getOrUndefined(c.outputBucket),
    outputPrefix: Option.getOrUndefined(c.outputPrefix),
    filesBucket: Option.getOrUndefined(c.filesBucket),
    secrets: Option.getOrUndefined(c.secrets) === "parameter-store"
      ? { parameterStore: { prefix: Option.getOrUndefined(c.parameterPrefix) } }
      : undefined,
    deliveryTimeout: Option.getOrUndefined(c.deliveryTimeout),
    executionTimeout: Option.getOrUndefined(c.executionTimeout),
    preflight: Option.getOrUndefined(c.preflight),
    rateLimit: Option.match(c.rate, {
      onNone: () => undefined,
      onSome: (perSecond) => ({ perSecond, burst: Math.max(1, Math.ceil(perSecond * 2)) })
    })
  }))
)

/**
 * The transport with options from a `Config` (default {@link configFromEnv}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<Options> = configFromEnv
): Layer.Layer<Transport.Registry, ConfigError.ConfigError | SsmOptionsError | Transport.DuplicateTransport> =>
  Layer.unwrapEffect(Effect.map(config, (options) => layer(options)))

/**
 * Options of the discovery ({@link discover}, the `ssm` importer).
 *
 * @since 0.1.0
 * @category models
 */
export type DiscoverOptions = Importer.DiscoverOptions

/**
 * The managed instances of a region whose tags match (`DescribeInstanceInformation` with `tag:` filters, all
 * pages) as `ssm` targets: id = the instance id, labels = its tags, os from its platform. Only `Online` instances
 * unless `pingStatus` says otherwise.
 *
 * @since 0.1.0
 * @category discovery
 */
export const discover: (
  options: DiscoverOptions,
  client?: { readonly credentials?: Credentials | undefined; readonly endpoint?: string | undefined }
) => Effect.Effect<ReadonlyArray<SsmTarget.SsmTarget>, TransportError> = Importer.discover

/**
 * The inventory importer for entries such as
 *
 * ```yaml
 * imports:
 *   - ssm: { region: eu-west-1, tags: { role: web } }
 *     labels: { env: prod }
 * ```
 *
 * (through `DescribeInstanceInformation`; credentials from the SDK's default chain or the entry's `profile`).
 *
 * @since 0.1.0
 * @category discovery
 */
export const importer: Inventory.Importer = Importer.make()

/**
 * An importer with its own endpoint or credentials (emulators, tests).
 *
 * @since 0.1.0
 * @category discovery
 */
export const makeImporter: (
  client?: { readonly credentials?: Credentials | undefined; readonly endpoint?: string | undefined }
) => Inventory.Importer = Importer.make

/**
 * The `ssm` importer as a layer, for `Targets.layerInventory` and `Inventory.load` in its scope.
 *
 * @since 0.1.0
 * @category discovery
 */
export const layerImporter = (
  client?: { readonly credentials?: Credentials | undefined; readonly endpoint?: string | undefined }
): Layer.Layer<Inventory.Importers> => Inventory.layerImporter(Importer.make(client))

/**
 * The target kinds this package adds (for `Inventory.load(file, [...kinds])`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const kinds: ReadonlyArray<Target.TargetSchema> = [SsmTarget.SsmTarget]
