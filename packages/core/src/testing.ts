/**
 * Testing support (`@runcmd/core/testing`): the in-memory transport, a `TestClock` driver, and the transport
 * conformance suite every transport package runs against itself.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ExecutionPolicy from "./ExecutionPolicy.js"
import * as captureSink from "./internal/captureSink.js"
import * as internal from "./internal/inMemory.js"
import * as clock from "./internal/inMemoryClock.js"
import * as secretCanary from "./internal/secretCanary.js"
import type * as OutputSinks from "./OutputSinks.js"
import * as ScriptSources from "./ScriptSources.js"
import type { Target } from "./Target.js"
import * as Targets from "./Targets.js"
import type * as Transport from "./Transport.js"

// ---------------------------------------------------------------------------------------------------------------
// in-memory targets
// ---------------------------------------------------------------------------------------------------------------

/**
 * The target kind served by the in-memory transport: `{ kind: "memory", id, labels, os }`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const InMemoryTarget = internal.InMemoryTarget

/**
 * @since 0.1.0
 * @category models
 */
export type InMemoryTarget = internal.InMemoryTarget

/**
 * @since 0.1.0
 * @category constructors
 */
export const memoryTarget: (id: string, labels?: Record<string, string>) => InMemoryTarget = internal.memoryTarget

// ---------------------------------------------------------------------------------------------------------------
// behaviours
// ---------------------------------------------------------------------------------------------------------------

/**
 * One step of a simulated process. Without a terminal step (`exit`, `signal`, `fail`, `hang`) the process exits 0
 * after its last step.
 *
 * @since 0.1.0
 * @category models
 */
export type Step = internal.Step

/**
 * Step constructors:
 * - `stdout(data, { chunkSize })` / `stderr(...)`: write bytes (or UTF-8 text), optionally in chunks;
 * - `echoStdin(stream)`: write the invocation's stdin back; `emitWith(f)`: write chunks computed from the
 *   invocation (argv, env, cwd, secrets...);
 * - `sleep(duration)`: on the Effect clock (`TestClock` drives it);
 * - `exit(code)`, `signal("SIGKILL")`: end the process;
 * - `fail(reason, { phase, description, detail })`: the output stream (and exit) fail mid-run;
 * - `refuse(reason, ...)`: `start` itself fails (must be the first step; phase `delivery` by default);
 * - `loseExitStatus()`: the output ends normally but the exit status is missing (`ProtocolError`);
 * - `hang`: run until the execution's scope is closed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Step = internal.Step

/**
 * A simulated process: its steps plus how it starts, delivers and dies.
 *
 * @since 0.1.0
 * @category models
 */
export type Behaviour = internal.Behaviour

/**
 * A behaviour, bare steps, or a function of the target and invocation (e.g. to behave differently per
 * `invocation.attempt`).
 *
 * @since 0.1.0
 * @category models
 */
export type BehaviourInput = internal.BehaviourInput

// ---------------------------------------------------------------------------------------------------------------
// the in-memory transport
// ---------------------------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export type InMemoryOptions = internal.Options

/**
 * @since 0.1.0
 * @category models
 */
export type StartRecord = internal.StartRecord

/**
 * @since 0.1.0
 * @category models
 */
export type EndRecord = internal.EndRecord

/**
 * @since 0.1.0
 * @category models
 */
export type CancelRecord = internal.CancelRecord

/**
 * An in-memory transport and its log: `transport` is a core `Transport`; `starts`, `ends`, `cancels`,
 * `maxConcurrent` and `running` read the log; `setBehaviour`, `setDefault` and `reset` reconfigure it.
 *
 * @since 0.1.0
 * @category models
 */
export type InMemoryTransport = internal.InMemoryTransport

/**
 * The in-memory transport of the current layer (provided by {@link InMemoryTransport.layer}).
 *
 * @since 0.1.0
 * @category tags
 */
export const InMemory = internal.InMemory

/**
 * @since 0.1.0
 * @category tags
 */
export type InMemory = internal.InMemory

/**
 * `make(options)` builds an in-memory transport; `layer(options)` registers one in the `Transports` registry and
 * provides it as {@link InMemory}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RunPlan, Runner, ScriptSource } from "@runcmd/core"
 * import { InMemory, InMemoryTransport, memoryTarget, Step } from "@runcmd/core/testing"
 *
 * const layer = InMemoryTransport.layer({
 *   behaviours: { web1: [Step.stdout("ok\n"), Step.exit(0)], web2: [Step.refuse("ConnectRefused")] }
 * })
 * const program = Effect.gen(function*() {
 *   const report = yield* Runner.run(RunPlan.make({
 *     targets: [memoryTarget("web1"), memoryTarget("web2")],
 *     job: ScriptSource.job(ScriptSource.script("echo ok"))
 *   }))
 *   const starts = yield* (yield* InMemory).starts
 *   return { report, starts }
 * }).pipe(Effect.provide(layer))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const InMemoryTransport: {
  readonly make: (options?: InMemoryOptions) => Effect.Effect<InMemoryTransport>
  readonly layer: (
    options?: InMemoryOptions
  ) => Layer.Layer<Transport.Registry | InMemory, Transport.DuplicateTransport>
  readonly defaultCapabilities: Transport.Capabilities
} = {
  make: internal.make,
  layer: internal.layer,
  defaultCapabilities: internal.defaultCapabilities
}

// ---------------------------------------------------------------------------------------------------------------
// services: in-memory targets, fixed script sources, capture sinks, policy defaults
// ---------------------------------------------------------------------------------------------------------------

/**
 * A capture sink and what it kept: `sink` (add it to a plan's sinks, or provide it by a layer), `events` (every
 * event of every run, in order), `runIds`, `output(targetId, stream)` (a target's output as text) and `clear`.
 *
 * @since 0.1.0
 * @category models
 */
export type Captured = captureSink.Captured

/**
 * The capture sink of the current layer (provided by {@link CaptureSink.layer}).
 *
 * @since 0.1.0
 * @category tags
 */
export const CapturedOutput: typeof captureSink.CapturedOutput = captureSink.CapturedOutput

/**
 * @since 0.1.0
 * @category tags
 */
export type CapturedOutput = captureSink.CapturedOutput

/**
 * `make()` builds a capture sink; `layer` adds one to the `OutputSinks` in scope, so that it sees every run of the
 * program, and provides it as {@link CapturedOutput}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const CaptureSink: {
  readonly make: (name?: string) => Captured
  readonly layer: Layer.Layer<OutputSinks.OutputSinks | CapturedOutput>
} = { make: captureSink.make, layer: captureSink.layer }

/**
 * In-memory targets as a source of the `Targets` service: `memoryTarget`s (or any targets), or ids with labels
 * (`{ "web-1": { role: "web" } }`) made into `memoryTarget`s.
 *
 * @since 0.1.0
 * @category constructors
 */
export const InMemoryTargets: {
  readonly layer: (
    targets: ReadonlyArray<Target> | Readonly<Record<string, Readonly<Record<string, string>>>>
  ) => Layer.Layer<Targets.Targets>
} = {
  layer: (targets) =>
    Targets.layer(
      Array.isArray(targets)
        ? targets as ReadonlyArray<Target>
        : Object.entries(targets).map(([id, labels]) => internal.memoryTarget(id, { ...labels })),
      { name: "in-memory targets" }
    )
}

/**
 * Fixed scripts by location for the `ScriptSources` service (`{ "https://example.com/deploy.sh": "echo hi" }`,
 * `{ "s3://bucket/x.sh": "..." }`): no file system, no network (see `ScriptSources.layerFixed`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const FixedSources: {
  readonly layer: (scripts: Readonly<Record<string, string | Uint8Array>>) => Layer.Layer<ScriptSources.ScriptSources>
} = { layer: ScriptSources.layerFixed }

/**
 * @since 0.1.0
 * @category models
 */
export interface TestLayerOptions {
  /** The targets of the `Targets` service (see {@link InMemoryTargets}). */
  readonly targets: ReadonlyArray<Target> | Readonly<Record<string, Readonly<Record<string, string>>>>
  /** The in-memory transport's options (behaviours per target...). */
  readonly transport?: InMemoryOptions | undefined
  /** Fixed scripts (see {@link FixedSources}). */
  readonly scripts?: Readonly<Record<string, string | Uint8Array>> | undefined
  /** Policy defaults (the `layer` level, see `ExecutionPolicy.layer`). */
  readonly policy?: ExecutionPolicy.Overrides | undefined
}

/**
 * One layer for a test of a program written against the services: the in-memory transport (and {@link InMemory}),
 * in-memory targets, a capture sink ({@link CapturedOutput}), fixed script sources and policy defaults.
 *
 * @example
 * ```ts
 * const program = Runner.runJob(ScriptSource.job(ScriptSource.command("deploy")), { select: "role=web" })
 * it.effect("deploys the web hosts", () =>
 *   Effect.gen(function*() {
 *     const report = yield* drive(program)
 *     assert.strictEqual(report.summary.byOutcome.Succeeded, 2)
 *   }).pipe(Effect.provide(testLayer({ targets: { "web-1": { role: "web" }, "web-2": { role: "web" } } }))))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const testLayer = (
  options: TestLayerOptions
): Layer.Layer<
  | Transport.Registry
  | InMemory
  | Targets.Targets
  | OutputSinks.OutputSinks
  | CapturedOutput
  | ScriptSources.ScriptSources
  | ExecutionPolicy.Defaults,
  Transport.DuplicateTransport
> =>
  Layer.mergeAll(
    internal.layer(options.transport),
    InMemoryTargets.layer(options.targets),
    CaptureSink.layer,
    options.scripts === undefined ? ScriptSources.layerEmpty : ScriptSources.layerFixed(options.scripts),
    ExecutionPolicy.layer(options.policy ?? {})
  )

// ---------------------------------------------------------------------------------------------------------------
// TestClock
// ---------------------------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export type DriveOptions = clock.DriveOptions

/**
 * Runs an effect under `TestClock` to completion: advances the clock to each pending sleep in turn, only after
 * every fiber the effect started has settled. Dies with a `DriveError` on a deadlock (blocked, nothing scheduled)
 * or past the horizon (default 24 h of virtual time).
 *
 * @since 0.1.0
 * @category utils
 */
export const drive: <A, E, R>(effect: Effect.Effect<A, E, R>, options?: DriveOptions) => Effect.Effect<A, E, R> =
  clock.drive

/**
 * @since 0.1.0
 * @category errors
 */
export const DriveError = clock.DriveError

// ---------------------------------------------------------------------------------------------------------------
// conformance
// ---------------------------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export interface ConformanceOptions {
  /** `n` targets of this transport with distinct ids (the concurrency case asks for 6). */
  readonly targets: (n: number) => ReadonlyArray<Target>
  /**
   * The layer is the in-memory transport (it must also provide `InMemory`): each case configures it with the
   * behaviour equivalent to its script, and time is virtual (`TestClock`).
   */
  readonly simulated?: boolean | undefined
  /** Declared: output arrives while the script runs. Default: `capabilities.output === "live"`. */
  readonly liveOutput?: boolean | undefined
  /**
   * Declared: what closing an execution's scope achieves. Default: `capabilities.cancel`. With `"kills"`, the
   * process-tree cases (real transports) check from the target's process table that nothing of a killed execution
   * is left, a grandchild in a session of its own (`setsid`) ignoring TERM and HUP included, and that the kill is
   * reported confirmed; with `"best-effort"`, that a kill reported confirmed left nothing.
   */
  readonly cancel?: Transport.Capabilities["cancel"] | undefined
  /**
   * Declared: a service cap on output per stream (bytes). Default: `capabilities.maxInlineOutputBytes`. Output over
   * the cap must arrive as a whole part of the stream (its start, or its end: {@link ConformanceOptions.cappedOutputKeeps})
   * and the outcome must say the service cut it (`truncated`, `truncatedBy`).
   */
  readonly maxOutputBytes?: number | undefined
  /** Declared: which part of a stream over the cap the service keeps: `"first"` bytes (default) or `"last"` bytes. */
  readonly cappedOutputKeeps?: "first" | "last" | undefined
  /**
   * Declared: the service hands output back as text (e.g. a JSON string), so bytes that are not UTF-8 arrive as
   * U+FFFD; the byte-for-byte cases then expect the UTF-8 decoding of what the script wrote. Default `false`.
   */
  readonly textOutput?: boolean | undefined
  /** Declared: a death by a signal is reported as `Signaled` (default `true`); `false`: as `Failed{128+n}`. */
  readonly signals?: boolean | undefined
  /**
   * A target of this transport that cannot be reached (e.g. a closed loopback port). Omit when every target is
   * always reachable (the local transport): the case then asserts that a target is reached.
   */
  readonly unreachableTarget?: (() => Target) | undefined
  /**
   * Where the suite's POSIX `sh` helper jobs (process-table checks, cleanup) run for a target: default the target
   * itself. For targets that run PowerShell only (Windows instances of an emulator), a POSIX target of the same
   * transport on the same host, so the checks see the same process table.
   */
  readonly helperTarget?: ((target: Target) => Target) | undefined
  /** The per-execution timeout used by the timeout cases (default 2 s). */
  readonly timeout?: Duration.DurationInput | undefined
  /** The kill grace used by the cases (default 1 s). */
  readonly killGrace?: Duration.DurationInput | undefined
  /**
   * Slack allowed on top of the expected durations, and how long (beyond the kill grace) the process checks after
   * a kill poll the process table (default 5 s; 0 when simulated).
   */
  readonly margin?: Duration.DurationInput | undefined
  /** How long a grandchild holding the output pipe may hold the run after the script exited (default 30 s). */
  readonly pipeHoldLimit?: Duration.DurationInput | undefined
  /** Per-case vitest timeout in ms (default 60 000; 30 000 when simulated). */
  readonly testTimeout?: number | undefined
  /** Timeout for building the layer (default 60 s). */
  readonly layerTimeout?: Duration.DurationInput | undefined
}

/**
 * The transport conformance suite, as a vitest `describe` block. Await it at the top level of a test file: it
 * loads `@effect/vitest` only when called, so that this module (the in-memory transport) also works outside
 * vitest. Real transports run POSIX sh scripts on the targets `options.targets` gives; with `simulated: true` the
 * layer is the in-memory transport and each case configures it with the behaviour equivalent to its script.
 * Where a transport declares it cannot do something (`liveOutput`, output only at the end, `cancel`,
 * `maxOutputBytes`, `textOutput`, `signals`, capabilities `stdin`/`secrets`/`files`), the case asserts the declared
 * behaviour instead, and its title says so. The process-tree cases (real transports) check the target's process
 * table through helper jobs run by the transport itself: the targets need `setsid`, `grep` and `/proc` (else `ps`).
 * With `cancel: "none"` an ended execution keeps its target busy, so those checks run on a second target
 * (`options.targets(2)[1]`), which must see the first one's process table (an emulator on one host).
 *
 * @example
 * ```ts
 * // packages/transport-local/test/conformance.test.ts
 * import * as Target from "@runcmd/core/Target"
 * import { conformance } from "@runcmd/core/testing"
 * import * as LocalTransport from "@runcmd/transport-local/LocalTransport"
 *
 * await conformance("local", LocalTransport.layer(), {
 *   targets: (n) => Array.from({ length: n }, (_, i) => Target.local(`local-${i}`))
 * })
 * ```
 *
 * @since 0.1.0
 * @category conformance
 */
export const conformance = async <E>(
  name: string,
  transportLayer: Layer.Layer<Transport.Registry, E>,
  options: ConformanceOptions
): Promise<void> => {
  const suite = await import("./internal/conformance.js")
  suite.conformance(name, transportLayer, options)
}

/**
 * The PowerShell cases of the conformance suite, as a vitest `describe` block, for a real transport that runs jobs
 * with `interpreter: "powershell"`: exit codes (with `exit`, from the last native command, from a thrown error),
 * UTF-8 output, args/argv, env and stdin byte for byte, the working directory (a missing one is `SpawnFailed`), a
 * secret delivered over stdin and on no command line, and the whole process tree killed on a timeout and on a
 * cancel with the kill told truthfully. The checks on the target are POSIX sh helper jobs run by the same
 * transport (the targets need `/bin/sh`, `setsid` and `/proc`, as for {@link conformance}).
 *
 * @since 0.1.0
 * @category conformance
 */
export const conformancePowerShell = async <E>(
  name: string,
  transportLayer: Layer.Layer<Transport.Registry, E>,
  options: ConformanceOptions
): Promise<void> => {
  const suite = await import("./internal/conformancePowershell.js")
  suite.conformancePowerShell(name, transportLayer, options)
}

// ---------------------------------------------------------------------------------------------------------------
// secrets canary
// ---------------------------------------------------------------------------------------------------------------

/**
 * What {@link recordTelemetry} saw: every log line and span as text.
 *
 * @since 0.1.0
 * @category secrets canary
 */
export type Telemetry = secretCanary.Telemetry

/**
 * Runs an effect with a logger (every level) and a tracer that record each log line (message, annotations, cause)
 * and each span (name, attributes, events, the cause it failed with) as text, for {@link assertNoLeak}; the
 * effect's exit is returned, not raised.
 *
 * @example
 * ```ts
 * const [exit, telemetry] = yield* recordTelemetry(Runner.run(plan))
 * assertNoLeak([secret], { logs: telemetry.logs, spans: telemetry.spans, exit, requests: emulator.requests() })
 * ```
 *
 * @since 0.1.0
 * @category secrets canary
 */
export const recordTelemetry: <A, E, R>(
  effect: Effect.Effect<A, E, R>
) => Effect.Effect<readonly [Exit.Exit<A, E>, Telemetry], never, R> = secretCanary.recordTelemetry

/**
 * The forms a secret is looked for in: as is, JSON-escaped, URI-encoded, base64 (UTF-8 and UTF-16LE, as
 * PowerShell's `-EncodedCommand` carries it) and hex; forms shorter than 6 characters are left out.
 *
 * @since 0.1.0
 * @category secrets canary
 */
export const leakForms: (secret: string) => ReadonlyArray<string> = secretCanary.leakForms

/**
 * Throws an `AssertionError` naming the channel (a key of `channels`: "report", "logs", "requests"...) in which any
 * form of any of the secrets appears; values are searched as text (strings as they are, the rest as JSON).
 *
 * @since 0.1.0
 * @category secrets canary
 */
export const assertNoLeak: (secrets: ReadonlyArray<string>, channels: Record<string, unknown>) => void =
  secretCanary.assertNoLeak
