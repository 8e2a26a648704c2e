/**
 * The WinRM transport: jobs on Windows hosts over WS-Management, the way pywinrm and Ansible drive them (the `cmd`
 * shell resource: Create shell → Command → Receive loop → Send → Signal terminate → Delete), each job run as the
 * core's PowerShell twin through `-EncodedCommand`. Basic over HTTPS, or NTLMv2 with message encryption over HTTP;
 * shells reused per target within MaxShellsPerUser; quota faults retried.
 *
 * @since 0.1.0
 */
import type { Target } from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Client from "./internal/client.js"
import * as Errors from "./internal/errors.js"
import * as Http from "./internal/http.js"
import * as Start from "./internal/start.js"
import * as WinRmTarget from "./WinRmTarget.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Shells open at once per target (and user) unless the target says (`maxShells`). Keep it within the hosts'
   * MaxShellsPerUser (Windows default 30). Default 5. */
  readonly maxShellsPerTarget?: number | undefined
  /** The bound of one Receive long poll (WS-Management `OperationTimeout`). Default 20 seconds. */
  readonly operationTimeout?: Duration.DurationInput | undefined
  /** TCP + TLS connect timeout. Default 10 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** How long the terminate of an execution ended early may take to be confirmed (`Done`). Default 10 seconds. */
  readonly killTimeout?: Duration.DurationInput | undefined
  /** Quota faults (MaxShellsPerUser, MaxConcurrentOperationsPerUser) tolerated in a row before `Throttled`. Default 10. */
  readonly quotaAttempts?: number | undefined
}

/**
 * The capabilities of the WinRM transport.
 *
 * @since 0.1.0
 * @category constants
 */
export const capabilities: Transport.Capabilities = {
  output: "live",
  cancel: "kills",
  secrets: true,
  stdin: true,
  runAs: false,
  native: false
}

const decodeTarget = Schema.decodeUnknownEither(WinRmTarget.WinRmTarget)

/** Targets already validated: checked once, not on every execution. */
const validated = new WeakSet<object>()

const check = (target: Target): Effect.Effect<WinRmTarget.WinRmTarget, TransportError> => {
  if (validated.has(target)) return Effect.succeed(target as WinRmTarget.WinRmTarget)
  if (target.kind !== "winrm" || !WinRmTarget.isWinRmTarget(target)) {
    return Effect.fail(Errors.make("Unsupported", "delivery", `target ${target.id} is not a valid winrm target`))
  }
  const decoded = decodeTarget(Schema.encodeSync(WinRmTarget.WinRmTarget)(target))
  if (decoded._tag === "Left") {
    return Effect.fail(
      Errors.make("Unsupported", "delivery", `target ${target.id}: ${decoded.left.message.split("\n").at(-1)?.trim()}`)
    )
  }
  const auth = target.auth
  if (auth.type === "kerberos" || auth.type === "credssp") {
    return Effect.fail(
      Errors.make(
        "Unsupported",
        "delivery",
        `${
          auth.type === "kerberos" ? "Kerberos" : "CredSSP"
        } authentication is not supported yet: use auth type ntlm ` +
          `(over http, messages encrypted) or basic (over https)`
      )
    )
  }
  validated.add(target)
  return Effect.succeed(target)
}

const clientKey = (target: WinRmTarget.WinRmTarget): string =>
  JSON.stringify([
    WinRmTarget.endpoint(target),
    target.auth.type,
    "user" in target.auth ? target.auth.user : "",
    "password" in target.auth ? hashOf(Redacted.value(target.auth.password)) : "",
    target.certificate ?? null,
    target.maxShells ?? null
  ])

/** Clients are shared by targets with the same endpoint and identity; the password is keyed by its hash. */
const hashOf = (s: string) => Crypto.createHash("sha256").update(s).digest("hex")

/**
 * Builds the transport; its clients (connections and idle shells) are closed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Transport.Transport, never, Scope.Scope> =>
  Effect.gen(function*() {
    const connectTimeoutMs = Duration.toMillis(Duration.decode(options.connectTimeout ?? Duration.seconds(10)))
    const clientOptions = (target: WinRmTarget.WinRmTarget): Client.ClientOptions => ({
      maxShells: target.maxShells ?? Math.max(1, options.maxShellsPerTarget ?? 5),
      operationTimeout: Duration.decode(options.operationTimeout ?? Duration.seconds(20)),
      quotaAttempts: Math.max(1, options.quotaAttempts ?? 10)
    })
    const opened = new Map<string, Client.Client>()
    const pending = new Map<string, Effect.Effect<Client.Client, TransportError>>()
    const client = (target: WinRmTarget.WinRmTarget): Effect.Effect<Client.Client, TransportError> =>
      Effect.suspend(() => {
        const key = clientKey(target)
        const existing = opened.get(key)
        if (existing !== undefined) return Effect.succeed(existing)
        let building = pending.get(key)
        if (building === undefined) {
          building = Effect.gen(function*() {
            const caFiles = target.certificate?.policy === "strict" ? target.certificate.ca : undefined
            const ca = caFiles !== undefined
              ? yield* Effect.try({
                try: () => caFiles.map((f) => Fs.readFileSync(f, "utf8")),
                catch: (error) =>
                  Errors.make(
                    "HostKeyRejected",
                    "delivery",
                    `certificate.ca: cannot read the CA file: ${(error as Error).message}`
                  )
              })
              : undefined
            const c = yield* Client.make(
              Http.settings(target, WinRmTarget.endpoint(target), ca, connectTimeoutMs),
              clientOptions(target)
            )
            opened.set(key, c)
            pending.delete(key)
            return c
            // built once however many executions ask at the same time
          }).pipe(Effect.cached, Effect.runSync)
          pending.set(key, building)
        }
        return building
      })
    yield* Effect.addFinalizer(() =>
      Effect.forEach([...opened.values()], (c) => c.close, { concurrency: 16, discard: true }).pipe(
        Effect.timeout(Duration.seconds(30)),
        Effect.ignore
      )
    )
    const settings: Start.Settings = {
      client,
      killTimeout: Duration.decode(options.killTimeout ?? Duration.seconds(10))
    }
    const start = (target: Target, invocation: Transport.Invocation) =>
      Effect.flatMap(check(target), (winrm) => {
        if (invocation.source._tag === "Native") {
          return Effect.fail(
            Errors.make(
              "Unsupported",
              "delivery",
              "the winrm transport runs commands and scripts, not native documents"
            )
          )
        }
        if (invocation.runAs !== undefined) {
          return Effect.fail(
            Errors.make(
              "Unsupported",
              "delivery",
              "the winrm transport runs as the target's user: runAs is not supported"
            )
          )
        }
        if (invocation.files !== undefined && invocation.files.length > 0) {
          return Effect.fail(Errors.make("Unsupported", "delivery", "the winrm transport does not ship files"))
        }
        return Start.start(settings, winrm, invocation)
      }).pipe(
        Effect.withSpan("WinRmTransport.start", {
          attributes: { "runcmd.target.id": target.id, "runcmd.transport": Errors.TRANSPORT },
          captureStackTrace: false
        })
      )
    return Transport.make({ name: Errors.TRANSPORT, kinds: ["winrm"], capabilities, start })
  })

/**
 * Registers the WinRM transport for targets of kind `winrm`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Transport.Registry, Transport.DuplicateTransport> =>
  Transport.layer(make(options))

/**
 * `layer` with options read from `Config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<Transport.Registry, ConfigError.ConfigError | Transport.DuplicateTransport> =>
  Transport.layer(Effect.flatMap(Config.unwrap(config), (options) => make(options)))

/**
 * Options from environment variables `RUNCMD_WINRM_MAX_SHELLS`, `RUNCMD_WINRM_OPERATION_TIMEOUT`,
 * `RUNCMD_WINRM_CONNECT_TIMEOUT`, `RUNCMD_WINRM_KILL_TIMEOUT` (all optional).
 *
 * @since 0.1.0
 * @category Config
 */
export const configFromEnv: Config.Config<Options> = Config.all({
  maxShellsPerTarget: Config.option(Config.integer("RUNCMD_WINRM_MAX_SHELLS")),
  operationTimeout: Config.option(Config.duration("RUNCMD_WINRM_OPERATION_TIMEOUT")),
  connectTimeout: Config.option(Config.duration("RUNCMD_WINRM_CONNECT_TIMEOUT")),
  killTimeout: Config.option(Config.duration("RUNCMD_WINRM_KILL_TIMEOUT"))
}).pipe(
  Config.map((o): Options => ({
    maxShellsPerTarget: Option.getOrUndefined(o.maxShellsPerTarget),
    operationTimeout: Option.getOrUndefined(o.operationTimeout),
    connectTimeout: Option.getOrUndefined(o.connectTimeout),
    killTimeout: Option.getOrUndefined(o.killTimeout)
  }))
)
