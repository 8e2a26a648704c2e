/**
 * The local transport: runs executions on this machine with `child_process`, each in its own session. A command
 * or a sh/bash script without run-as is spawned directly (its env, secrets and token in its environment, never
 * in argv); anything else runs the core POSIX wrapper, the wrapper, secrets and the user's stdin written to its
 * stdin. Closing an execution's scope early TERMs the execution's groups and every process carrying its token,
 * waits for the observed exit up to the kill grace, then KILLs and confirms.
 *
 * @since 0.1.0
 */
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
import type * as Scope from "effect/Scope"
import * as internal from "./internal/execution.js"
import * as registry from "./internal/registry.js"

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
  /** How long to wait for the processes to be gone after the KILL before reporting `killConfirmed: false`. Default 2 s. */
  readonly killWait?: Duration.DurationInput | undefined
  /** The base environment of every execution (the job's env and secrets are added to it). Default: `process.env`. */
  readonly env?: { readonly [name: string]: string | undefined } | undefined
  /** The bootstrap shell of the wrapper. Default `/bin/sh`. */
  readonly shell?: string | undefined
  /**
   * Spawn the program itself, in a new session with the job's env, secrets and token in its environment, when
   * the wrapper has nothing else to do: no run-as, a `Command` or a `sh`/`bash` script (`ScriptRender.direct`).
   * Default `true`; `false` runs every execution through the wrapper.
   */
  readonly direct?: boolean | undefined
  /** Target kinds served. Default `["local"]`. */
  readonly kinds?: ReadonlyArray<string> | undefined
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
  files: true
}

/**
 * @since 0.1.0
 * @category constants
 */
export const name = "local"

const unsupported = (target: Target.Target, description: string) =>
  new TransportError({ reason: "Unsupported", transport: name, phase: "delivery", targetId: target.id, description })

/**
 * Builds the transport. Its scope owns the executions it starts: when it closes, those still alive are killed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Transport.Transport, never, Scope.Scope> =>
  Effect.gen(function*() {
    const owner = Symbol("runcmd/transport-local")
    const settings: internal.Settings = {
      exitGrace: Duration.decode(options.exitGrace ?? Duration.seconds(2)),
      killWait: Duration.decode(options.killWait ?? Duration.seconds(2)),
      env: options.env ?? process.env,
      shell: options.shell ?? "/bin/sh",
      direct: options.direct ?? true,
      owner
    }
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (registry.entriesOf(owner).length === 0) return
        registry.signalLive("SIGTERM", owner)
        for (let i = 0; i < 20 && registry.entriesOf(owner).length > 0; i++) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
        registry.signalLive("SIGKILL", owner)
      }).pipe(Effect.withSpan("LocalTransport.shutdown"))
    )
    return Transport.make({
      name,
      kinds: options.kinds ?? ["local"],
      capabilities,
      start: (target, invocation) =>
        Effect.suspend(() => {
          if (process.platform === "win32") {
            return Effect.fail(unsupported(target, "the local transport runs the POSIX wrapper; Windows is not supported yet"))
          }
          if (invocation.source._tag === "Native") {
            return Effect.fail(unsupported(target, "the local transport cannot run a Native source"))
          }
          if (invocation.source._tag === "Script" && invocation.source.interpreter === "powershell") {
            return Effect.fail(unsupported(target, "PowerShell scripts are not supported by the local transport on POSIX"))
          }
          const targetEnv = (target as Partial<Target.Local>).env
          const merged = targetEnv === undefined ? invocation : { ...invocation, env: { ...targetEnv, ...invocation.env } }
          return internal.start(settings, target, merged)
        }).pipe(
          // no stack capture: it costs more than the rest of a cheap execution's span
          Effect.withSpan("LocalTransport.start", { attributes: { targetId: target.id }, captureStackTrace: false })
        )
    })
  })

/**
 * The local transport, registered in the `Transports` registry under kind `local`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Transport.Registry, Transport.DuplicateTransport> => Transport.layer(make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<Options>
): Layer.Layer<Transport.Registry, ConfigError.ConfigError | Transport.DuplicateTransport> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), (options) => layer(options)))

/**
 * Options from the environment: `RUNCMD_LOCAL_EXIT_GRACE`, `RUNCMD_LOCAL_KILL_WAIT` (durations),
 * `RUNCMD_LOCAL_SHELL` (all optional).
 *
 * @since 0.1.0
 * @category Config
 */
export const configFromEnv: Config.Config<Options> = Config.all({
  exitGrace: Config.option(Config.duration("RUNCMD_LOCAL_EXIT_GRACE")),
  killWait: Config.option(Config.duration("RUNCMD_LOCAL_KILL_WAIT")),
  shell: Config.option(Config.string("RUNCMD_LOCAL_SHELL"))
}).pipe(
  Config.map((o): Options => ({
    exitGrace: Option.getOrUndefined(o.exitGrace),
    killWait: Option.getOrUndefined(o.killWait),
    shell: Option.getOrUndefined(o.shell)
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
