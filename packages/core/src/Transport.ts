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
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import type { RunAs } from "./ExecutionPolicy.js"
import type { OutputChunk, RawChunk } from "./OutputChunk.js"
import type { ResolvedSource } from "./ScriptSource.js"
import type { Target } from "./Target.js"
import { TransportError } from "./TransportError.js"

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
  /**
   * What the transport does with the job when the controller is lost without cancelling it (`ExecutionPolicy.
   * OnControllerLoss`): `terminate` (absent: the same) registers it with the transport's lifeline, `continue`
   * leaves it out so it outlives the controller.
   */
  readonly onControllerLoss?: "terminate" | "continue" | undefined
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
  /**
   * The transport ends its jobs when the controller is lost (the runcmd process dies, its connection drops), so it
   * honours `onControllerLoss: "terminate"`; absent: it cannot (e.g. a cloud service that runs jobs by itself).
   * A transport that can for some targets only says which with {@link MakeOptions.terminatesOnControllerLoss};
   * ask {@link terminatesOnControllerLoss} for one target.
   */
  readonly terminatesOnControllerLoss?: boolean | undefined
}

/**
 * What a transport's `start` returns: one shape. Closing the scope `start` ran in ends the process (TERM, grace,
 * KILL). Output is a push loop (`pump`); a transport whose output is a `Stream` builds this with {@link fromStream}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RawExecution {
  /**
   * Calls `emit` for every chunk, in order per stream, awaiting it (backpressure); completes when both streams are
   * fully drained. Called at most once.
   */
  readonly pump: (emit: (chunk: RawChunk) => Effect.Effect<void>) => Effect.Effect<void, TransportError>
  /** The exit status; never 0 when the status is missing (fail with `TransportError` instead). */
  readonly exit: Effect.Effect<ExitStatus, TransportError>
  /** Read after the scope closed early: whether the process group is known to be gone. Absent: `false`. */
  readonly killConfirmed?: Effect.Effect<boolean> | undefined
  /**
   * Read after `exit` succeeded: the streams a service cut before their bytes reached runcmd (an inline output cap),
   * so the outcome says output was lost. Absent: nothing was cut.
   */
  readonly truncated?: Effect.Effect<OutputTruncation> | undefined
}

/**
 * Output a service cut before it reached runcmd, per stream: why, and how to get all of it (e.g. "ssm: inline
 * output is capped at 24,000 characters; set outputS3BucketName for all of it"). An absent stream is complete.
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputTruncation {
  readonly stdout?: string | undefined
  readonly stderr?: string | undefined
}

/**
 * A {@link RawExecution} from output given as a `Stream` (the shape Effect code reaches for first): the stream is
 * run by `pump`, chunk by chunk, with the consumer's backpressure. Nothing is added per chunk.
 *
 * @example
 * ```ts
 * start: (target, invocation) =>
 *   Effect.succeed(Transport.fromStream({
 *     output: Stream.make({ stream: "stdout", bytes: new TextEncoder().encode("hi\n") }),
 *     exit: Effect.succeed(Transport.exited(0))
 *   }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromStream = (execution: {
  /** stdout and stderr chunks, in order per stream; ends when both streams are fully drained. */
  readonly output: Stream.Stream<RawChunk, TransportError>
  readonly exit: Effect.Effect<ExitStatus, TransportError>
  readonly killConfirmed?: Effect.Effect<boolean> | undefined
  readonly truncated?: Effect.Effect<OutputTruncation> | undefined
}): RawExecution => ({
  pump: (emit) => Stream.runForEach(execution.output, emit),
  exit: execution.exit,
  killConfirmed: execution.killConfirmed,
  truncated: execution.truncated
})

/**
 * An execution as the Runner sees it: output stamped with the target id, a per-stream seq and the time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Execution {
  /** The output as a stream. Consume either `output` or `pump`, once. */
  readonly output: Stream.Stream<OutputChunk, TransportError>
  /** The output pushed to `emit` (cheaper than the stream for small executions). */
  readonly pump: (emit: (chunk: OutputChunk) => Effect.Effect<void>) => Effect.Effect<void, TransportError>
  /** Resolves only after the output has been fully drained. */
  readonly exit: Effect.Effect<ExitStatus, TransportError>
  readonly killConfirmed: Effect.Effect<boolean>
  /** Read after `exit` succeeded: the streams the service cut before runcmd saw them. */
  readonly truncated: Effect.Effect<OutputTruncation>
}

/**
 * What a transport author writes: a name, the target kinds served, the capabilities, and `start`.
 *
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions {
  readonly name: string
  /** Target kinds this transport serves (`ssh`, `local`...). */
  readonly kinds: ReadonlyArray<string>
  readonly capabilities: Capabilities
  /**
   * Per target, whether its job is ended when the controller is lost, for a transport whose answer depends on the
   * target (its operating system, its login shell): it narrows `capabilities.terminatesOnControllerLoss` (never
   * widens it) and is asked before anything runs, so it answers from the target's fields alone. Absent: the
   * capability holds for every target.
   */
  readonly terminatesOnControllerLoss?: ((target: Target) => boolean) | undefined
  /**
   * Starts one execution on `target`. Errors need not name the target: `make` stamps `targetId` on every
   * `TransportError` from `start`, the pump and the exit.
   */
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
  /** Per target, whether its job is ended when the controller is lost (see {@link MakeOptions}); absent: all are. */
  readonly terminatesOnControllerLoss?: ((target: Target) => boolean) | undefined
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
export const make = (options: MakeOptions): Transport => {
  const start = (target: Target, invocation: Invocation): Effect.Effect<Execution, TransportError, Scope.Scope> => {
    const stampError = (error: TransportError): TransportError =>
      error.targetId !== undefined ? error : withTargetId(error, target.id)
    return Effect.clockWith((clock) =>
      Effect.map(Effect.mapError(options.start(target, invocation), stampError), (raw): Execution => {
        const drained = Effect.unsafeMakeLatch(false)
        const seq = { stdout: 0, stderr: 0 }
        const stamp = (chunk: RawChunk): OutputChunk => ({
          targetId: target.id,
          stream: chunk.stream,
          seq: seq[chunk.stream]++,
          bytes: chunk.bytes,
          at: clock.unsafeCurrentTimeMillis()
        })
        const pump = (emit: (chunk: OutputChunk) => Effect.Effect<void>): Effect.Effect<void, TransportError> =>
          raw.pump((chunk) => emit(stamp(chunk))).pipe(Effect.mapError(stampError), Effect.ensuring(drained.open))
        return {
          // built when read: most consumers pump
          output: Stream.suspend(() => streamOf(pump)),
          pump,
          exit: Effect.zipRight(drained.await, Effect.mapError(raw.exit, stampError)),
          killConfirmed: raw.killConfirmed ?? Effect.succeed(false),
          truncated: raw.truncated ?? noTruncation
        }
      })
    )
  }
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
  return {
    name: options.name,
    kinds: options.kinds,
    capabilities: options.capabilities,
    terminatesOnControllerLoss: options.terminatesOnControllerLoss,
    start,
    run
  }
}

/**
 * Whether `transport` ends the job on `target` when the controller is lost without cancelling it (it honours
 * `onControllerLoss: "terminate"` there): its capability, narrowed by its per-target answer if it has one. What
 * `runcmd run --dry-run` says per target.
 *
 * @example
 * ```ts
 * const ends = Transport.terminatesOnControllerLoss(transport, target)
 * ```
 *
 * @since 0.1.0
 * @category utils
 */
export const terminatesOnControllerLoss = (transport: Transport, target: Target): boolean =>
  transport.capabilities.terminatesOnControllerLoss === true &&
  (transport.terminatesOnControllerLoss === undefined || transport.terminatesOnControllerLoss(target))

const noTruncation: Effect.Effect<OutputTruncation> = Effect.succeed({})

/** A pump as a stream: the pump runs in a fiber of the stream's scope, feeding a small queue. */
const streamOf = (
  pump: (emit: (chunk: OutputChunk) => Effect.Effect<void>) => Effect.Effect<void, TransportError>
): Stream.Stream<OutputChunk, TransportError> =>
  Stream.unwrapScoped(
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

const withTargetId = (error: TransportError, targetId: string): TransportError =>
  new TransportError({
    reason: error.reason,
    transport: error.transport,
    phase: error.phase,
    description: error.description,
    targetId,
    ...(error.detail === undefined ? {} : { detail: error.detail }),
    ...(error.cause === undefined ? {} : { cause: error.cause })
  })

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
 * Two transports registered for one target kind without `replace`: refused when the layers are built.
 *
 * @since 0.1.0
 * @category errors
 */
export class DuplicateTransport extends Schema.TaggedError<DuplicateTransport>("@runcmd/core/DuplicateTransport")(
  "DuplicateTransport",
  {
    kind: Schema.String,
    /** The transport already serving the kind. */
    existing: Schema.String,
    /** The transport that asked to serve it too. */
    added: Schema.String
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `target kind ${
      JSON.stringify(this.kind)
    } is served by the ${this.existing} transport already; the ${this.added} ` +
      `transport cannot serve it too. Provide one transport per kind, or register it with Transport.layer(make, { replace: true })`
  }
}

/**
 * The registry routing targets to transports by kind, so one run can mix kinds. Transport layers register into it;
 * however they are provided (merged, or by several `Effect.provide` calls in any order) a program sees one registry
 * with every transport: a registry built where another is in scope extends it.
 *
 * @since 0.1.0
 * @category tags
 */
export class Registry extends Context.Tag("@runcmd/core/Transport/Registry")<Registry, Registry.Service>() {}

/**
 * @since 0.1.0
 */
export declare namespace Registry {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    readonly get: (kind: string) => Option.Option<Transport>
    /** Every kind served, sorted. */
    readonly kinds: () => ReadonlyArray<string>
    /**
     * Registers `transport` for its kinds until the scope closes. Fails with `DuplicateTransport` when a kind is
     * served already (here or in an enclosing registry), unless `replace` is set.
     */
    readonly register: (
      transport: Transport,
      options?: RegisterOptions
    ) => Effect.Effect<void, DuplicateTransport, Scope.Scope>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RegisterOptions {
  /** Serve the transport's kinds even when another transport serves them already (this one wins). */
  readonly replace?: boolean | undefined
}

const makeRegistry = (parent: Option.Option<Registry.Service>): Registry.Service => {
  const byKind = new Map<string, Transport>()
  const get = (kind: string): Option.Option<Transport> => {
    const own = byKind.get(kind)
    if (own !== undefined) return Option.some(own)
    return Option.isSome(parent) ? parent.value.get(kind) : Option.none()
  }
  return {
    get,
    kinds: () => {
      const all = new Set(byKind.keys())
      if (Option.isSome(parent)) { for (const kind of parent.value.kinds()) all.add(kind) }
      return [...all].sort()
    },
    register: (transport, options) =>
      Effect.acquireRelease(
        Effect.suspend(() => {
          if (options?.replace !== true) {
            for (const kind of transport.kinds) {
              const existing = get(kind)
              if (Option.isSome(existing) && existing.value !== transport) {
                return Effect.fail(
                  new DuplicateTransport({ kind, existing: existing.value.name, added: transport.name })
                )
              }
            }
          }
          for (const kind of transport.kinds) byKind.set(kind, transport)
          return Effect.void
        }),
        () =>
          Effect.sync(() => {
            for (const kind of transport.kinds) {
              if (byKind.get(kind) === transport) byKind.delete(kind)
            }
          })
      )
  }
}

/**
 * A registry: empty, or extending the one in scope where the layer is built. It is one value, so layers that each
 * provide it share one registry when built together.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRegistry: Layer.Layer<Registry> = Layer.effect(
  Registry,
  Effect.map(Effect.serviceOption(Registry), makeRegistry)
)

/**
 * A layer registering the transport built by `make` (and providing the registry it registered into). Fails with
 * `DuplicateTransport` when its kinds are served already, unless `options.replace` is set.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E, R>(
  make: Effect.Effect<Transport, E, R>,
  options?: RegisterOptions
): Layer.Layer<Registry, E | DuplicateTransport, Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const transport = yield* make
      const registry = yield* Registry
      yield* registry.register(transport, options)
    })
  ).pipe(Layer.provideMerge(layerRegistry)) as Layer.Layer<Registry, E | DuplicateTransport, Exclude<R, Scope.Scope>>
