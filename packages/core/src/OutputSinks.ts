/**
 * The `OutputSinks` service: output sinks provided as layers. A sink added by a layer sees every run in the layer's
 * scope (it is opened once per run, as a plan's own sinks are), before the plan's own sinks, each sink once
 * however often it is given. Without the service, a run has its plan's sinks only (as ever).
 *
 * @example
 * ```ts
 * const program = Effect.all([Runner.run(healthCheck), Runner.run(deploy)]).pipe(
 *   Effect.provide(OutputSinks.layer(OutputSink.events({ path: "runs.jsonl" }), OutputSink.console({ mode: "prefixed" })))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Collection from "./internal/collection.js"
import type { OutputSink } from "./OutputSink.js"

/**
 * @since 0.1.0
 * @category tags
 */
export class OutputSinks extends Context.Tag("@runcmd/core/OutputSinks")<OutputSinks, OutputSinks.Service>() {}

/**
 * @since 0.1.0
 */
export declare namespace OutputSinks {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** The sinks in scope, an enclosing service's first, in the order they were added. */
    readonly sinks: () => ReadonlyArray<OutputSink>
    /** Adds a sink until the scope closes. */
    readonly register: (sink: OutputSink) => Effect.Effect<void, never, Scope.Scope>
  }
}

const make_ = (parent: Option.Option<OutputSinks.Service>): OutputSinks.Service => {
  const collection = Collection.make<OutputSink>(Option.map(parent, (p) => p.sinks))
  return { sinks: collection.items, register: collection.add }
}

/**
 * An `OutputSinks` with the given sinks (and no enclosing service).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (sinks: ReadonlyArray<OutputSink> = []): Effect.Effect<OutputSinks.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const service = make_(Option.none())
    for (const sink of sinks) yield* service.register(sink)
    return service
  })

/**
 * No sink, extending the `OutputSinks` in scope where the layer is built. One value, so layers that each add a sink
 * share one service when built together.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmpty: Layer.Layer<OutputSinks> = Layer.effect(
  OutputSinks,
  Effect.map(Effect.serviceOption(OutputSinks), make_)
)

/**
 * A layer adding sinks for every run in its scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (...sinks: ReadonlyArray<OutputSink>): Layer.Layer<OutputSinks> =>
  layerScoped(Effect.succeed(sinks))

/**
 * A layer adding sinks made by an effect (a sink needing services, or a resource of the layer's scope).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerScoped = <E, R>(
  make: Effect.Effect<ReadonlyArray<OutputSink> | OutputSink, E, R>
): Layer.Layer<OutputSinks, E, Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const made = yield* make
      const service = yield* OutputSinks
      for (const sink of Array.isArray(made) ? made : [made as OutputSink]) yield* service.register(sink)
    })
  ).pipe(Layer.provideMerge(layerEmpty)) as Layer.Layer<OutputSinks, E, Exclude<R, Scope.Scope>>

/**
 * Sinks from configuration, for every run in the layer's scope (each variable optional, an empty value is unset;
 * none set: no sink):
 *
 * | variable | sink |
 * |---|---|
 * | `RUNCMD_EVENTS_FILE` | `OutputSink.events({ path })`: every event as a JSON line |
 * | `RUNCMD_OUTPUT_DIR` | `OutputSink.file({ dir, layout: "per-target" })`: every byte of each target's output |
 *
 * @since 0.1.0
 * @category layers
 */
export const configFromEnv: Config.Config<{
  readonly eventsFile: Option.Option<string>
  readonly outputDir: Option.Option<string>
}> = Config.all({
  eventsFile: Config.option(Config.nonEmptyString("RUNCMD_EVENTS_FILE")),
  outputDir: Config.option(Config.nonEmptyString("RUNCMD_OUTPUT_DIR"))
})

/**
 * A layer adding the sinks {@link configFromEnv} names (or another `Config` of the same shape, whose errors are
 * `ConfigError`s naming their key).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: typeof configFromEnv = configFromEnv
): Layer.Layer<OutputSinks, ConfigError.ConfigError> =>
  layerScoped(Effect.gen(function*() {
    const { eventsFile, outputDir } = yield* config
    if (Option.isNone(eventsFile) && Option.isNone(outputDir)) return []
    // the sinks' module is loaded only when one is configured
    const OutputSink = yield* Effect.promise(() => import("./OutputSink.js"))
    const sinks: Array<OutputSink> = []
    if (Option.isSome(eventsFile)) sinks.push(OutputSink.events({ path: eventsFile.value }))
    if (Option.isSome(outputDir)) sinks.push(OutputSink.file({ dir: outputDir.value, layout: "per-target" }))
    return sinks
  }))

/**
 * The sinks of a run: those in scope first, then the plan's own, each sink once.
 *
 * @since 0.1.0
 * @category utils
 */
export const merge = (
  layered: ReadonlyArray<OutputSink>,
  own: ReadonlyArray<OutputSink> | undefined
): ReadonlyArray<OutputSink> => [...new Set([...layered, ...(own ?? [])])]

/**
 * The sinks of a run of a plan with sinks `own`, with those of the `OutputSinks` in scope.
 *
 * @since 0.1.0
 * @category accessors
 */
export const forRun = (
  own: ReadonlyArray<OutputSink> | undefined
): Effect.Effect<ReadonlyArray<OutputSink> | undefined> =>
  Effect.map(
    Effect.serviceOption(OutputSinks),
    (service) => Option.isNone(service) || service.value.sinks().length === 0 ? own : merge(service.value.sinks(), own)
  )
