/**
 * The Transport contract: a transport implements `start` and core derives the rest.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import type { RunAs } from "./ExecutionPolicy.js"
import type { OutputChunk, RawChunk } from "./OutputChunk.js"
import type { ResolvedSource } from "./ScriptSource.js"
import type { Target } from "./Target.js"
import type { TransportError } from "./TransportError.js"

/**
 * Everything a transport needs to run one execution on one target.
 *
 * @since 0.1.0
 * @category models
 */
export interface Invocation {
  readonly runId: string
  /** 1 for the first execution on a target, 2 for its first retry... */
  readonly attempt: number
  readonly source: ResolvedSource
  readonly args: ReadonlyArray<string>
  readonly env: { readonly [name: string]: string }
  /** Deliver over the transport's secure channel (stdin for local/SSH); never in argv or script text. */
  readonly secrets: { readonly [name: string]: Redacted.Redacted<string> }
  readonly stdin?: Uint8Array | undefined
  readonly cwd?: string | undefined
  readonly runAs?: RunAs | undefined
  /** Time between TERM and KILL when the execution's scope closes early. */
  readonly killGrace: Duration.Duration
  /** The per-execution timeout, for services that want one of their own (the Runner enforces it anyway). */
  readonly timeout?: Duration.Duration | undefined
  /**
   * Files to put in a private directory (0700) before the process starts, named to it by `FILES_ENV` in its
   * environment, and to remove when it has ended (transports with `capabilities.files`).
   */
  readonly files?: ReadonlyArray<ShippedFile> | undefined
}

/**
 * A file of the job's, read and checked by the Runner: `name` is a safe relative path (`ScriptSource.FileName`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ShippedFile {
  readonly name: string
  readonly bytes: Uint8Array
  readonly mode: number
}

/**
 * The environment variable that names the directory of the job's files.
 *
 * @since 0.1.0
 * @category models
 */
export const FILES_ENV = "RUNCMD_FILES"

/**
 * How the process ended.
 *
 * @since 0.1.0
 * @category models
 */
export type ExitStatus =
  | { readonly _tag: "Exited"; readonly code: number }
  | { readonly _tag: "Signaled"; readonly signal: string }

/**
 * @since 0.1.0
 * @category constructors
 */
export const exited = (code: number): ExitStatus => ({ _tag: "Exited", code })

/**
 * @since 0.1.0
 * @category constructors
 */
export const signaled = (signal: string): ExitStatus => ({ _tag: "Signaled", signal })

/**
 * What a transport can and cannot do; the Runner and the conformance suite adapt to it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Capabilities {
  /** `live`: chunks as produced; `polled`: in batches some time later; `final`: only after the exit. */
  readonly output: "live" | "polled" | "final"
  /** `kills`: closing the scope kills the process group and confirms it; `best-effort`: asks, may not confirm. */
  readonly cancel: "kills" | "best-effort" | "none"
  /** A service cap on inline output per stream (bytes), if any; beyond it output is truncated by the service. */
  readonly maxInlineOutputBytes?: number | undefined
  /** The transport has a secure channel for secrets. */
  readonly secrets: boolean
  readonly stdin: boolean
  readonly runAs: boolean
  /** Sources accepted beyond Command and Script (e.g. `Native`). */
  readonly native: boolean
  /** The transport ships the job's files (`Invocation.files`); absent: it does not. */
  readonly files?: boolean | undefined
}

/**
 * What a transport's `start` returns. Closing the scope `start` ran in ends the process (TERM, grace, KILL).
 * Output is given either as a `Stream` (`output`) or as a push loop (`pump`), whichever fits the transport;
 * core derives the other. `pump` avoids a stream per execution, which matters for cheap executions.
 *
 * @since 0.1.0
 * @category models
 */
export type RawExecution = RawExecutionBase & (
  | {
    /** stdout and stderr chunks, in order per stream; ends when both streams are fully drained. */
    readonly output: Stream.Stream<RawChunk, TransportError>
    readonly pump?: undefined
  }
  | {
    readonly output?: undefined
    /** Calls `emit` for every chunk, in order per stream, awaiting it (backpressure); completes when both
     * streams are fully drained. Called at most once. */
    readonly pump: (emit: (chunk: RawChunk) => Effect.Effect<void>) => Effect.Effect<void, TransportError>
  }
)

/**
 * @since 0.1.0
 * @category models
 */
export interface RawExecutionBase {
  /** The exit status; never 0 when the status is missing (fail with `TransportError` instead). */
  readonly exit: Effect.Effect<ExitStatus, TransportError>
  /** Read after the scope closed early: whether the process group is known to be gone. */
  readonly killConfirmed?: Effect.Effect<boolean> | undefined
}

/**
 * An execution as the Runner sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Execution {
  /** The output as a stream. Consume either `output` or `pump`, once. */
  readonly output: Stream.Stream<OutputChunk, TransportError>
  /** The output pushed to `emit` (cheaper than the stream for small executions). */
  readonly pump: (emit: (chunk: OutputChunk) => Effect.Effect<void>) => Effect.Effect<void, TransportError>
  /** Resolves only after `output` has been fully drained. */
  readonly exit: Effect.Effect<ExitStatus, TransportError>
  readonly killConfirmed: Effect.Effect<boolean>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface StartOptions {
  readonly name: string
  /** Target kinds this transport serves (`ssh`, `local`...). */
  readonly kinds: ReadonlyArray<string>
  readonly capabilities: Capabilities
  readonly start: (target: Target, invocation: Invocation) => Effect.Effect<RawExecution, TransportError, Scope.Scope>
}

/**
 * The collected result of {@link Transport.run}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Collected {
  readonly exit: ExitStatus
  readonly stdout: Uint8Array
  readonly stderr: Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Transport {
  readonly name: string
  readonly kinds: ReadonlyArray<string>
  readonly capabilities: Capabilities
  /** Starts one execution; the returned output is stamped with target id, per-stream seq and time. */
  readonly start: (target: Target, invocation: Invocation) => Effect.Effect<Execution, TransportError, Scope.Scope>
  /** Runs to completion and collects both streams (unbounded: for small outputs and tests). */
  readonly run: (target: Target, invocation: Invocation) => Effect.Effect<Collected, TransportError>
}

/**
 * Builds a Transport from its one primitive, `start`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: StartOptions): Transport => {
  const start = (target: Target, invocation: Invocation) =>
    Effect.gen(function*() {
      const raw = yield* options.start(target, invocation)
      const clock = yield* Effect.clock
      // a plain latch: a Deferred per execution costs more than the rest of this wrapper
      let drained = false
      const waiters: Array<() => void> = []
      const done = Effect.sync(() => {
        drained = true
        for (const wake of waiters.splice(0)) wake()
      })
      const awaitDrained = Effect.suspend(() =>
        drained ? Effect.void : Effect.async<void>((resume) => {
          waiters.push(() => resume(Effect.void))
        })
      )
      const seq = { stdout: 0, stderr: 0 }
      const stamp = (chunk: RawChunk): OutputChunk => ({
        targetId: target.id,
        stream: chunk.stream,
        seq: seq[chunk.stream]++,
        bytes: chunk.bytes,
        at: clock.unsafeCurrentTimeMillis()
      })
      const pump = (emit: (chunk: OutputChunk) => Effect.Effect<void>): Effect.Effect<void, TransportError> =>
        Effect.ensuring(
          raw.pump !== undefined
            ? raw.pump((chunk) => emit(stamp(chunk)))
            : Stream.runForEach(raw.output, (chunk) => emit(stamp(chunk))),
          done
        )
      const output: Stream.Stream<OutputChunk, TransportError> = raw.pump === undefined
        ? raw.output.pipe(Stream.map(stamp), Stream.ensuring(done))
        : Stream.unwrapScoped(
          Effect.gen(function*() {
            const queue = yield* Effect.acquireRelease(
              Queue.bounded<Take.Take<OutputChunk, TransportError>>(16),
              Queue.shutdown
            )
            yield* pump((chunk) => Queue.offer(queue, Take.of(chunk))).pipe(
              Effect.exit,
              Effect.flatMap((exit) => Queue.offer(queue, Exit.isSuccess(exit) ? Take.end : Take.failCause(exit.cause))),
              Effect.forkScoped
            )
            return Stream.fromQueue(queue).pipe(Stream.flattenTake)
          })
        )
      const execution: Execution = {
        output,
        pump,
        exit: Effect.zipRight(awaitDrained, raw.exit),
        killConfirmed: raw.killConfirmed ?? Effect.succeed(false)
      }
      return execution
    })
  const run = (target: Target, invocation: Invocation) =>
    Effect.scoped(
      Effect.gen(function*() {
        const execution = yield* start(target, invocation)
        const stdout: Array<OutputChunk> = []
        const stderr: Array<OutputChunk> = []
        yield* execution.pump((chunk) =>
          Effect.sync(() => {
            if (chunk.stream === "stdout") stdout.push(chunk)
            else stderr.push(chunk)
          })
        )
        const exit = yield* execution.exit
        return { exit, stdout: concat(stdout), stderr: concat(stderr) }
      })
    )
  return { name: options.name, kinds: options.kinds, capabilities: options.capabilities, start, run }
}

const concat = (chunks: ReadonlyArray<OutputChunk>): Uint8Array => {
  let size = 0
  for (const c of chunks) size += c.bytes.length
  const out = new Uint8Array(size)
  let offset = 0
  for (const c of chunks) {
    out.set(c.bytes, offset)
    offset += c.bytes.length
  }
  return out
}

/**
 * The registry routing targets to transports by kind. Transport layers register themselves into it, so one run
 * can mix kinds.
 *
 * @since 0.1.0
 * @category tags
 */
export class Transports extends Context.Tag("@runcmd/core/Transport/Transports")<Transports, Transports.Service>() {}

/**
 * @since 0.1.0
 */
export declare namespace Transports {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    readonly get: (kind: string) => Option.Option<Transport>
    readonly kinds: () => ReadonlyArray<string>
    readonly register: (transport: Transport) => Effect.Effect<void, never, Scope.Scope>
  }
}

/**
 * An empty registry. It is one value, so layers that each provide it share one registry when built together.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRegistry: Layer.Layer<Transports> = Layer.sync(Transports, () => {
  const byKind = new Map<string, Transport>()
  return {
    get: (kind) => Option.fromNullable(byKind.get(kind)),
    kinds: () => [...byKind.keys()].sort(),
    register: (transport) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          for (const kind of transport.kinds) byKind.set(kind, transport)
        }),
        () =>
          Effect.sync(() => {
            for (const kind of transport.kinds) {
              if (byKind.get(kind) === transport) byKind.delete(kind)
            }
          })
      )
  }
})

/**
 * A layer registering the transport built by `make` (and providing the registry it registered into).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E, R>(make: Effect.Effect<Transport, E, R>): Layer.Layer<Transports, E, Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const transport = yield* make
      const registry = yield* Transports
      yield* registry.register(transport)
    })
  ).pipe(Layer.provideMerge(layerRegistry)) as Layer.Layer<Transports, E, Exclude<R, Scope.Scope>>
