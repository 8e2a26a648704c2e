/**
 * The Azure Run Command transport (`@azure/arm-compute`): targets `azure-vm` and `azure-vmss-vm`.
 *
 * - **Managed run commands** (the default): one `runCommands/{name}` resource per execution, its name derived from
 *   the run, the target and the attempt (a retried PUT never runs twice), `asyncExecution`, secrets only as
 *   `protectedParameters`, the instance view polled at an adaptive interval honouring `Retry-After`, the exit code
 *   from the instance view and the launch, deleted after completion (unless `retain`), and deleted then confirmed
 *   gone when the execution is ended early (a timeout, a cancel): `killConfirmed` only then. With a storage
 *   container (`storage.containerUrl`, a container SAS URL with `racw`) the output goes to append blobs tailed while
 *   the script runs (nothing capped); without one, the instance view keeps the last 4 KB per stream and the outcome
 *   says so (`truncated`, with `truncatedBy` naming the cap and the fix).
 * - **Action run commands** (`mode: "action"`): `POST runCommand`, one at a time per VM (a per-VM lock; a 409 from
 *   someone else's is retried with backoff until `busyTimeout`, then `TargetBusy`), no secrets (no secure channel),
 *   output only at the end, the last 4 KB per stream (flagged `truncatedBy` when cut), and no cancel
 *   (`killConfirmed: false`).
 * - Every ARM request of a subscription goes through one rate limiter: at most `maxInFlightPerSubscription` at once;
 *   paced when ARM's `x-ms-ratelimit-remaining-subscription-*` headers say the bucket runs low, before a 429; after a
 *   429 every request waits for its `Retry-After`; a throttled poll never fails a command.
 * - A stopped or deallocated VM is `Unreachable` (`NotManaged`) before anything is sent (`preflight`).
 * - Linux VMs run core's self-contained `sh` launch; Windows VMs core's PowerShell launch.
 *
 * @since 0.1.0
 */
import type { TokenCredential } from "@azure/core-auth"
import type { Target } from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as AzureTarget from "./AzureTarget.js"
import * as ArmInternal from "./internal/arm.js"
import * as Blobs from "./internal/blobs.js"
import * as Execution from "./internal/execution.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Any `TokenCredential`. Default: `DefaultAzureCredential` from `@azure/identity` (production only). */
  readonly credential?: TokenCredential | undefined
  /** The ARM endpoint. Default `https://management.azure.com`. */
  readonly endpoint?: string | undefined
  /** A CA certificate (PEM) to trust for the endpoint (the emulator's). */
  readonly ca?: string | undefined
  /** `managed` (default) or `action`. */
  readonly mode?: "managed" | "action" | undefined
  /** Where managed run commands write their whole output (and where large scripts go). */
  readonly storage?: { readonly containerUrl: Redacted.Redacted<string> | string } | undefined
  /** The first poll interval, grown by half each poll up to `pollMax`. Default 1 second. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** Default 10 seconds. */
  readonly pollMax?: Duration.DurationInput | undefined
  /** Keep managed run commands (and their output blobs) after completion. Default false. */
  readonly retain?: boolean | undefined
  /** `timeoutInSeconds` of managed run commands: the service's own limit (runcmd's timeout applies anyway). Default 6 h. */
  readonly serviceTimeout?: Duration.DurationInput | undefined
  /** Check the power state before sending anything. Default true. */
  readonly preflight?: boolean | undefined
  /** Scripts (with their inline files) larger than this go through a blob (managed, with storage). Default 256 KiB. */
  readonly inlineScriptBytes?: number | undefined
  /** How long deleting an ended-early run command may take before `killConfirmed: false`. Default 2 minutes. */
  readonly deleteTimeout?: Duration.DurationInput | undefined
  /** How long action mode retries a 409 (another run command in progress) before `TargetBusy`. Default 10 minutes. */
  readonly busyTimeout?: Duration.DurationInput | undefined
  /** ARM requests in flight per subscription. Default 32. */
  readonly maxInFlightPerSubscription?: number | undefined
  /** The service's output cap per stream (what makes output count as truncated). Default 4096. */
  readonly outputCapBytes?: number | undefined
  /**
   * Managed run commands only: the account the service runs scripts as (`runAsUser`), instead of root / SYSTEM.
   * The default way to run as someone else is runcmd's own (the policy's `runAs`, a wrapper in the script), which
   * works where the service's does not (domain users, Linux distributions whose agent drops it).
   */
  readonly runAsUser?: string | undefined
  /** The password of `runAsUser` (needed on Windows VMs): a secret, sent only as the PUT body's `runAsPassword`. */
  readonly runAsPassword?: Redacted.Redacted<string> | undefined
}

/**
 * The options cannot work (a SAS without the permissions the output needs, an expired SAS).
 *
 * @since 0.1.0
 * @category errors
 */
export class AzureConfigError extends Data.TaggedError("AzureConfigError")<{
  readonly reason: "InvalidStorage" | "InvalidOption"
  readonly field: string
  readonly description: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.field}: ${this.description}`
  }
}

/**
 * What the transport can do in each mode.
 *
 * @since 0.1.0
 * @category constants
 */
export const capabilities = (
  mode: "managed" | "action",
  options: { readonly storage?: boolean | undefined } = {}
): Transport.Capabilities =>
  mode === "managed"
    ? {
      output: options.storage === true ? "polled" : "final",
      cancel: "kills",
      ...(options.storage === true ? {} : { maxInlineOutputBytes: 4096 }),
      secrets: true,
      stdin: true,
      runAs: true,
      native: false,
      files: true
    }
    : {
      output: "final",
      cancel: "none",
      maxInlineOutputBytes: 4096,
      secrets: false,
      stdin: true,
      runAs: true,
      native: false,
      files: true
    }

const defaultCredential = (): Effect.Effect<TokenCredential> =>
  Effect.promise(async () => {
    const identity = await import("@azure/identity")
    return new identity.DefaultAzureCredential()
  })

/**
 * The shared ARM clients and rate limiters of a transport, for `RunCommands` and discovery too.
 *
 * @since 0.1.0
 * @category models
 */
export interface Arm {
  /** @internal */
  readonly clients: ArmInternal.Clients
  /**
   * Per subscription: requests sent, 429s answered, time waited after them, and requests paced because ARM's
   * `x-ms-ratelimit-remaining-*` headers said the bucket ran low (and the time they waited).
   */
  readonly stats: (subscription: string) => {
    readonly requests: number
    readonly throttled: number
    readonly waitedMs: number
    readonly paced: number
    readonly pacedMs: number
  }
}

/**
 * ARM clients for the options' credential and endpoint (one per subscription, with its rate limiter).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeArm = (options: Options = {}): Effect.Effect<Arm> =>
  Effect.gen(function*() {
    const credential = options.credential ?? (yield* defaultCredential())
    const clients = ArmInternal.makeClients({
      credential,
      endpoint: options.endpoint,
      ca: options.ca,
      maxInFlight: Math.max(1, options.maxInFlightPerSubscription ?? 32),
      defaultRetryAfterMs: 1000
    })
    return { clients, stats: (s) => clients.limiter(s).stats() }
  })

const isAzure = AzureTarget.isAzureTarget

/**
 * Builds the transport. Fails with `AzureConfigError` when the storage SAS cannot carry the output.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Transport.Transport, AzureConfigError> =>
  Effect.gen(function*() {
    const mode = options.mode ?? "managed"
    const containerUrl = options.storage === undefined
      ? undefined
      : Redacted.isRedacted(options.storage.containerUrl)
      ? Redacted.value(options.storage.containerUrl)
      : options.storage.containerUrl
    if (containerUrl !== undefined) {
      if (mode === "action") {
        return yield* Effect.fail(
          new AzureConfigError({
            reason: "InvalidOption",
            field: "storage",
            description: "action run commands cannot write to blobs; use mode: managed for storage output"
          })
        )
      }
      const problem = Blobs.sasProblem(containerUrl)
      if (problem !== undefined) {
        return yield* Effect.fail(
          new AzureConfigError({ reason: "InvalidStorage", field: "storage.containerUrl", description: problem })
        )
      }
    }
    if (options.runAsPassword !== undefined && options.runAsUser === undefined) {
      return yield* Effect.fail(
        new AzureConfigError({
          reason: "InvalidOption",
          field: "runAsPassword",
          description: "a runAsPassword needs the runAsUser it belongs to"
        })
      )
    }
    if (options.runAsUser !== undefined && (mode === "action" || options.runAsUser.trim() === "")) {
      return yield* Effect.fail(
        new AzureConfigError({
          reason: "InvalidOption",
          field: "runAsUser",
          description: mode === "action"
            ? "action run commands run as root (Linux) or SYSTEM (Windows); use mode: managed for runAsUser, or the " +
              "policy's runAs"
            : "runAsUser is empty; give an account of the VMs, or leave it out"
        })
      )
    }
    const arm = yield* makeArm(options)
    const settings: Execution.Settings = {
      mode,
      clients: arm.clients,
      storage: containerUrl === undefined ? undefined : Blobs.container(containerUrl),
      pollInitial: Duration.decode(options.pollInterval ?? Duration.seconds(1)),
      pollMax: Duration.decode(options.pollMax ?? Duration.seconds(10)),
      retain: options.retain ?? false,
      serviceTimeoutSeconds: Math.ceil(
        Duration.toSeconds(Duration.decode(options.serviceTimeout ?? Duration.hours(6)))
      ),
      preflight: options.preflight ?? true,
      inlineScriptBytes: options.inlineScriptBytes ?? 256 * 1024,
      deleteTimeout: Duration.decode(options.deleteTimeout ?? Duration.minutes(2)),
      busyTimeout: Duration.decode(options.busyTimeout ?? Duration.minutes(10)),
      outputCapBytes: options.outputCapBytes ?? 4096,
      runAs: options.runAsUser === undefined ? undefined : { user: options.runAsUser, password: options.runAsPassword },
      locks: new Map(),
      locations: new Map()
    }
    const start = (target: Target, invocation: Transport.Invocation) =>
      Effect.suspend(() => {
        if (!isAzure(target)) {
          return Effect.fail(
            ArmInternal.error("Unsupported", "delivery", `target ${target.id} is not a valid azure target`)
          )
        }
        if (invocation.source._tag === "Native") {
          return Effect.fail(
            ArmInternal.error("Unsupported", "delivery", "the azure transport runs commands and scripts")
          )
        }
        return Execution.start(settings, target, invocation)
      }).pipe(
        Effect.withSpan("AzureTransport.start", {
          attributes: {
            "runcmd.target.id": target.id,
            "runcmd.transport": ArmInternal.TRANSPORT,
            "runcmd.azure.mode": mode
          },
          captureStackTrace: false
        })
      )
    return Transport.make({
      name: ArmInternal.TRANSPORT,
      kinds: ["azure-vm", "azure-vmss-vm"],
      capabilities: capabilities(mode, { storage: containerUrl !== undefined }),
      start
    })
  })

/**
 * Registers the Azure transport for `azure-vm` and `azure-vmss-vm` targets.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Transport.Registry, AzureConfigError | Transport.DuplicateTransport> => Transport.layer(make(options))

/**
 * Options from environment variables: `RUNCMD_AZURE_MODE` (`managed`|`action`), `RUNCMD_AZURE_STORAGE_CONTAINER_URL`
 * (a container SAS URL, read as a secret), `RUNCMD_AZURE_ENDPOINT`, `RUNCMD_AZURE_POLL_INTERVAL`,
 * `RUNCMD_AZURE_RETAIN`, `RUNCMD_AZURE_RUN_AS_USER`, `RUNCMD_AZURE_RUN_AS_PASSWORD` (a secret) (all optional). The
 * credential is `DefaultAzureCredential`.
 *
 * @since 0.1.0
 * @category Config
 */
export const configFromEnv: Config.Config<Options> = Config.all({
  mode: Config.option(Config.literal("managed", "action")("RUNCMD_AZURE_MODE")),
  storage: Config.option(Config.redacted("RUNCMD_AZURE_STORAGE_CONTAINER_URL")),
  endpoint: Config.option(Config.string("RUNCMD_AZURE_ENDPOINT")),
  pollInterval: Config.option(Config.duration("RUNCMD_AZURE_POLL_INTERVAL")),
  retain: Config.option(Config.boolean("RUNCMD_AZURE_RETAIN")),
  runAsUser: Config.option(Config.string("RUNCMD_AZURE_RUN_AS_USER")),
  runAsPassword: Config.option(Config.redacted("RUNCMD_AZURE_RUN_AS_PASSWORD"))
}).pipe(
  Config.map((o): Options => ({
    mode: Option.getOrUndefined(o.mode),
    storage: Option.match(o.storage, { onNone: () => undefined, onSome: (containerUrl) => ({ containerUrl }) }),
    endpoint: Option.getOrUndefined(o.endpoint),
    pollInterval: Option.getOrUndefined(o.pollInterval),
    retain: Option.getOrUndefined(o.retain),
    runAsUser: Option.getOrUndefined(o.runAsUser),
    runAsPassword: Option.getOrUndefined(o.runAsPassword)
  }))
)

/**
 * `layer` with options read from `Config` (default {@link configFromEnv}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<Options> = configFromEnv
): Layer.Layer<Transport.Registry, ConfigError.ConfigError | AzureConfigError | Transport.DuplicateTransport> =>
  Layer.unwrapEffect(Effect.map(config, (options) => layer(options)))
