/**
 * The SSH transport (ssh2): pooled connections keyed by host, port, user, credentials and jump chain, channels per
 * connection kept below the server's MaxSessions, the core wrapper run over an exec channel (no pty) with stdin
 * carrying the script, secrets and the user's stdin, and kills over a second channel.
 *
 * @since 0.1.0
 */
import type { Target } from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Errors from "./internal/errors.js"
import * as Lifeline from "./internal/lifeline.js"
import * as LoginShell from "./internal/loginShell.js"
import * as Pool from "./internal/pool.js"
import * as Start from "./internal/start.js"
import * as SshTarget from "./SshTarget.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Executions' channels open at once per connection; keep it 2 below the servers' MaxSessions (OpenSSH: 10), for
   * the connection's lifeline and a kill channel. Default 8.
   */
  readonly maxChannelsPerConnection?: number | undefined
  /** Connections per host (and user, credentials, jump chain). Default 4. */
  readonly maxConnectionsPerHost?: number | undefined
  /** An unused connection is closed after this long. Default 30 seconds. */
  readonly idleTimeToLive?: Duration.DurationInput | undefined
  /** Defaults for targets that do not set their own. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  readonly readyTimeout?: Duration.DurationInput | undefined
  readonly keepalive?: SshTarget.Keepalive | undefined
  /** Refused channel opens (server session limit) tolerated in a row before `ChannelLimitReached`. Default 40. */
  readonly channelOpenAttempts?: number | undefined
  /**
   * How long the kill may take beyond the kill grace (the kill script over a second channel: KILL, then the check
   * that every process is gone) before `killConfirmed: false` is reported. Default 10 seconds.
   */
  readonly killTimeout?: Duration.DurationInput | undefined
  /**
   * After the script exited, how long its output may stay open with nothing written (a background process left
   * holding the pipe) before what is left of the execution is killed and the channel closed. Default 2 seconds.
   */
  readonly exitGrace?: Duration.DurationInput | undefined
  /**
   * Run an execution without the wrapper when it needs none (no run-as, a command or a short sh/bash script,
   * secrets without newlines) and the user's login shell is POSIX (asked once per user and host): the login shell
   * reads a one-line stage from stdin and `exec`s the program, no process in between. Default `true`; `false`
   * runs every execution through the full wrapper.
   */
  readonly direct?: boolean | undefined
  /**
   * The lifeline: one channel per pooled connection running a small `sh` loop on the host that ends the
   * connection's executions when the connection is gone (runcmd died, the network dropped): TERM, the kill grace,
   * KILL, by token and process group. It is one session of the connection (counted against `maxChannels`).
   * Default `true`; `false` leaves jobs running when the controller is lost (as `onControllerLoss: "continue"` does
   * for one job) and declares `terminatesOnControllerLoss: false`.
   */
  readonly lifeline?: boolean | undefined
}

/**
 * The capabilities of the SSH transport.
 *
 * @since 0.1.0
 * @category constants
 */
export const capabilities: Transport.Capabilities = {
  output: "live",
  cancel: "kills",
  secrets: true,
  stdin: true,
  runAs: true,
  native: false,
  files: true,
  terminatesOnControllerLoss: true
}

/**
 * Per target, whether the lifeline ends its job when runcmd is lost (`Transport.terminatesOnControllerLoss`): on a
 * POSIX host, whatever the login shell (a PowerShell one `exec`s the loop); not on a Windows host (`os: windows`,
 * or the `powershell` shell, Windows PowerShell). A Windows host that is neither declared is only found when the
 * login shell is probed, at run time: it gets no lifeline.
 *
 * @since 0.1.0
 * @category utils
 */
export const terminatesOnControllerLoss = (target: Target): boolean =>
  !isValidSsh(target) || (target.os !== "windows" && target.shell !== "powershell")

/**
 * The pooled connections behind a transport: for SFTP and for inspection.
 *
 * @since 0.1.0
 * @category tags
 */
export class SshConnections extends Context.Tag("@runcmd/transport-ssh/SshTransport/SshConnections")<
  SshConnections,
  SshConnections.Service
>() {}

/**
 * @since 0.1.0
 */
export declare namespace SshConnections {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    readonly transport: Transport.Transport
    /** @internal */
    readonly pool: Pool.Pool
    /** The connections' lifelines (absent with `lifeline: false`). @internal */
    readonly lifelines: Lifeline.Lifelines | undefined
    readonly stats: () => { readonly connections: number; readonly channels: number; readonly hosts: number }
  }
}

const toPoolOptions = (options: Options): Pool.PoolOptions => ({
  maxChannels: Math.max(1, options.maxChannelsPerConnection ?? 8),
  maxConnectionsPerHost: Math.max(1, options.maxConnectionsPerHost ?? 4),
  idleTimeToLive: Duration.decode(options.idleTimeToLive ?? Duration.seconds(30)),
  connectTimeout: Duration.decode(options.connectTimeout ?? SshTarget.defaultConnectTimeout),
  readyTimeout: Duration.decode(options.readyTimeout ?? SshTarget.defaultReadyTimeout),
  keepalive: options.keepalive ?? SshTarget.defaultKeepalive,
  channelOpenAttempts: Math.max(1, options.channelOpenAttempts ?? 40)
})

const isSsh = Schema.is(SshTarget.SshTarget)

/** Targets already validated: a target is checked once, not on every execution (its Schema check is costly). */
const validated = new WeakSet<object>()

const isValidSsh = (target: Target): target is SshTarget.SshTarget => {
  if (validated.has(target)) return true
  if (!isSsh(target)) return false
  validated.add(target)
  return true
}

/**
 * Builds the pool and the transport; the pool's connections close with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeConnections = (options: Options = {}): Effect.Effect<SshConnections.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => Pool.make(toPoolOptions(options))),
      (pool) => pool.shutdown
    )
    const settings: Start.Settings = {
      pool,
      killTimeout: Duration.decode(options.killTimeout ?? Duration.seconds(10)),
      exitGrace: Duration.decode(options.exitGrace ?? Duration.seconds(2)),
      direct: options.direct ?? true,
      loginShell: LoginShell.makeCache(pool),
      lifelines: options.lifeline === false ? undefined : Lifeline.make(pool)
    }
    const start = (target: Target, invocation: Transport.Invocation) =>
      Effect.suspend(() => {
        if (!isValidSsh(target)) {
          return Effect.fail(Errors.make("Unsupported", "delivery", `target ${target.id} is not a valid ssh target`))
        }
        if (invocation.source._tag === "Native") {
          return Effect.fail(
            Errors.make("Unsupported", "delivery", "the ssh transport runs commands and scripts, not native documents")
          )
        }
        return Start.start(settings, target, invocation)
      }).pipe(
        // no stack capture: it costs more than the rest of the span, once per execution
        Effect.withSpan("SshTransport.start", {
          attributes: { "runcmd.target.id": target.id, "runcmd.transport": Errors.TRANSPORT },
          captureStackTrace: false
        })
      )
    const transport = Transport.make({
      name: Errors.TRANSPORT,
      kinds: ["ssh"],
      capabilities: options.lifeline === false ? { ...capabilities, terminatesOnControllerLoss: false } : capabilities,
      terminatesOnControllerLoss,
      start
    })
    return { transport, pool, lifelines: settings.lifelines, stats: pool.stats }
  })

/**
 * The transport alone (its pool closes with the scope).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Transport.Transport, never, Scope.Scope> =>
  Effect.map(makeConnections(options), (c) => c.transport)

/**
 * The pooled connections as a layer (what `layer` builds on; SFTP needs it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConnections = (options: Options = {}): Layer.Layer<SshConnections> =>
  Layer.scoped(SshConnections, makeConnections(options))

/**
 * Registers the SSH transport for targets of kind `ssh` (and provides its connections for SFTP).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Transport.Registry | SshConnections, Transport.DuplicateTransport> =>
  Transport.layer(Effect.map(SshConnections, (c) => c.transport)).pipe(Layer.provideMerge(layerConnections(options)))

/**
 * `layer` with options read from `Config` (e.g. `Config.number("SSH_MAX_CHANNELS")`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<Transport.Registry | SshConnections, ConfigError.ConfigError | Transport.DuplicateTransport> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), (options) => layer(options)))

/**
 * Options from environment variables `RUNCMD_SSH_MAX_CHANNELS`, `RUNCMD_SSH_MAX_CONNECTIONS`,
 * `RUNCMD_SSH_IDLE_TTL`, `RUNCMD_SSH_CONNECT_TIMEOUT`, `RUNCMD_SSH_READY_TIMEOUT`, `RUNCMD_SSH_EXIT_GRACE`,
 * `RUNCMD_SSH_KILL_TIMEOUT`, `RUNCMD_SSH_LIFELINE` (boolean) (all optional).
 *
 * @since 0.1.0
 * @category Config
 */
export const configFromEnv: Config.Config<Options> = Config.all({
  maxChannelsPerConnection: Config.option(Config.integer("RUNCMD_SSH_MAX_CHANNELS")),
  maxConnectionsPerHost: Config.option(Config.integer("RUNCMD_SSH_MAX_CONNECTIONS")),
  idleTimeToLive: Config.option(Config.duration("RUNCMD_SSH_IDLE_TTL")),
  connectTimeout: Config.option(Config.duration("RUNCMD_SSH_CONNECT_TIMEOUT")),
  readyTimeout: Config.option(Config.duration("RUNCMD_SSH_READY_TIMEOUT")),
  exitGrace: Config.option(Config.duration("RUNCMD_SSH_EXIT_GRACE")),
  killTimeout: Config.option(Config.duration("RUNCMD_SSH_KILL_TIMEOUT")),
  lifeline: Config.option(Config.boolean("RUNCMD_SSH_LIFELINE"))
}).pipe(
  Config.map((o): Options => ({
    maxChannelsPerConnection: Option.getOrUndefined(o.maxChannelsPerConnection),
    maxConnectionsPerHost: Option.getOrUndefined(o.maxConnectionsPerHost),
    idleTimeToLive: Option.getOrUndefined(o.idleTimeToLive),
    connectTimeout: Option.getOrUndefined(o.connectTimeout),
    readyTimeout: Option.getOrUndefined(o.readyTimeout),
    exitGrace: Option.getOrUndefined(o.exitGrace),
    killTimeout: Option.getOrUndefined(o.killTimeout),
    lifeline: Option.getOrUndefined(o.lifeline)
  }))
)
