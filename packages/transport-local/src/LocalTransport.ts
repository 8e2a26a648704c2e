/**
 * The local transport: runs executions on this machine with `child_process`, each in its own session, and kills
 * what an execution started when its scope closes early (`internal/start.ts` says how).
 *
 * @since 0.1.0
 */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import * as Transport from "@runcmd/core/Transport"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Errors from "./internal/errors.js"
import * as Lifeline from "./internal/lifeline.js"
import * as registry from "./internal/registry.js"
import * as Start from "./internal/start.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * After the wrapper exited, how long descendants may keep stdout/stderr open; then the groups and every token
   * carrier are killed and the pipes closed. Default 2 seconds.
   */
  readonly exitGrace?: Duration.DurationInput | undefined
  /**
   * How long the kill may take beyond the kill grace (the KILL, then the check that every process is gone) before
   * `killConfirmed: false` is reported. Default 2 seconds.
   */
  readonly killTimeout?: Duration.DurationInput | undefined
  /** The base environment of every execution (the job's env and secrets are added to it). Default: `process.env`. */
  readonly env?: { readonly [name: string]: string | undefined } | undefined
  /** The bootstrap shell of the wrapper. Default `/bin/sh`. */
  readonly shell?: string | undefined
  /**
   * Spawn the program itself when the wrapper would have nothing to do (no run-as, a `Command` or a `sh`/`bash`
   * script: `ScriptRender.direct`). Default `true`; `false` runs every execution through the wrapper.
   */
  readonly direct?: boolean | undefined
  /**
   * The program that runs PowerShell scripts (`interpreter: "powershell"`): PowerShell 7's `pwsh`, started in a
   * session of its own with core's PowerShell twin on its stdin (`ScriptRender.powershellProcess`). Default `pwsh`,
   * found on PATH.
   */
  readonly powershell?: string | undefined
  /** Target kinds served. Default `["local"]`. */
  readonly kinds?: ReadonlyArray<string> | undefined
  /**
   * The lifeline: one watchdog process per layer that ends the executions still running when this process dies by
   * any means (SIGKILL included): TERM, the kill grace, KILL, by process group and token. Default `true`; `false`
   * leaves them running then (as `onControllerLoss: "continue"` does for one job) and declares
   * `terminatesOnControllerLoss: false`.
   */
  readonly lifeline?: boolean | undefined
}

/**
 * The capabilities of the local transport.
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
 * @since 0.1.0
 * @category constants
 */
export const name = Errors.TRANSPORT

const unsupported = (description: string) => Errors.make("Unsupported", "delivery", description)

/**
 * Builds the transport. Its scope owns the executions it starts: when it closes, those still alive are killed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Transport.Transport, never, Scope.Scope> =>
  Effect.gen(function*() {
    const owner = Symbol("runcmd/transport-local")
    const lifeline = options.lifeline === false || process.platform === "win32"
      ? undefined
      : yield* Effect.acquireRelease(Effect.sync(Lifeline.make), (l) => l.close(1000))
    const settings: Start.Settings = {
      exitGrace: Duration.decode(options.exitGrace ?? Duration.seconds(2)),
      killTimeout: Duration.decode(options.killTimeout ?? Duration.seconds(2)),
      env: options.env ?? process.env,
      shell: options.shell ?? "/bin/sh",
      direct: options.direct ?? true,
      owner,
      powershell: options.powershell,
      lifeline
    }
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (registry.entriesOf(owner).length === 0) return
        registry.signalLive("SIGTERM", owner)
        for (let i = 0; i < 20 && registry.entriesOf(owner).length > 0; i++) {
          yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
        }
        registry.signalLive("SIGKILL", owner)
      }).pipe(Effect.withSpan("LocalTransport.shutdown"))
    )
    return Transport.make({
      name,
      kinds: options.kinds ?? ["local"],
      capabilities: lifeline === undefined ? { ...capabilities, terminatesOnControllerLoss: false } : capabilities,
      start: (target, invocation) =>
        Effect.suspend(() => {
          if (process.platform === "win32") {
            return Effect.fail(unsupported("the local transport runs the POSIX wrapper; Windows is not supported yet"))
          }
          if (invocation.source._tag === "Native") {
            return Effect.fail(unsupported("the local transport cannot run a Native source"))
          }
          // the target's env is in the invocation already (core merges it)
          return Start.start(settings, target, invocation)
        }).pipe(
          // no stack capture: it costs more than the rest of a cheap execution's span
          Effect.withSpan("LocalTransport.start", {
            attributes: { "runcmd.target.id": target.id, "runcmd.transport": name },
            captureStackTrace: false
          })
        )
    })
  })

/**
 * The local transport, registered in the `Transport.Registry` under kind `local`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Transport.Registry, Transport.DuplicateTransport> =>
  Transport.layer(make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<Transport.Registry, ConfigError.ConfigError | Transport.DuplicateTransport> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), (options) => layer(options)))

/**
 * Options from the environment: `RUNCMD_LOCAL_EXIT_GRACE`, `RUNCMD_LOCAL_KILL_TIMEOUT` (durations),
 * `RUNCMD_LOCAL_SHELL`, `RUNCMD_LOCAL_POWERSHELL`, `RUNCMD_LOCAL_LIFELINE` (boolean) (all optional).
 *
 * @since 0.1.0
 * @category Config
 */
export const configFromEnv: Config.Config<Options> = Config.all({
  exitGrace: Config.option(Config.duration("RUNCMD_LOCAL_EXIT_GRACE")),
  killTimeout: Config.option(Config.duration("RUNCMD_LOCAL_KILL_TIMEOUT")),
  shell: Config.option(Config.string("RUNCMD_LOCAL_SHELL")),
  powershell: Config.option(Config.string("RUNCMD_LOCAL_POWERSHELL")),
  lifeline: Config.option(Config.boolean("RUNCMD_LOCAL_LIFELINE"))
}).pipe(
  Config.map((o): Options => ({
    exitGrace: Option.getOrUndefined(o.exitGrace),
    killTimeout: Option.getOrUndefined(o.killTimeout),
    shell: Option.getOrUndefined(o.shell),
    powershell: Option.getOrUndefined(o.powershell),
    lifeline: Option.getOrUndefined(o.lifeline)
  }))
)

/**
 * Live executions started by any local transport in this process (for diagnostics and tests).
 *
 * @since 0.1.0
 * @category utils
 */
export const liveExecutions = (): number => registry.size()

/**
 * Renders what the transport would run (for --dry-run): the wrapper, with secrets as [REDACTED].
 *
 * @since 0.1.0
 * @category utils
 */
export const preview = ScriptRender.preview
