/**
 * The `ScriptSources` service: turns a job's `ScriptSource` into what transports receive (`Command`, `Script` or
 * `Native`), before anything runs. `File` and `Url` sources are read by the resolver of their scheme:
 *
 * | scheme | served by | source |
 * |---|---|---|
 * | `file` (a path without a scheme, or `file://`) | built in (needs a `FileSystem` layer) | `File({ path })` |
 * | `http`, `https` | built in (needs an `HttpClient` layer) | `Url({ url, sha256 })` only (never run unchecked) |
 * | any other (`s3`, `az`...) | a layer: {@link layer}, e.g. from a cloud transport package | `File({ path: "s3://bucket/deploy.sh" })` |
 *
 * A `Url` is checked against its sha256 whatever serves its scheme. A scheme nobody serves is an `InvalidPlan`
 * (`InvalidValue` at `job.source.path`, naming the scheme, the known ones and the fix) before anything runs. A
 * resolver provided by a layer replaces one in scope for the same scheme (the built-ins included: a test layer
 * serving `https` answers without a network).
 *
 * The Runner resolves through the `ScriptSources` in scope, and through the built-ins when there is none.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/scriptSources.js"
import { InvalidPlan } from "./InvalidPlan.js"
import type * as ScriptSource from "./ScriptSource.js"

/**
 * Reads the script at a location of one scheme.
 *
 * @since 0.1.0
 * @category models
 */
export interface Resolver {
  /** The scheme served, lower case (`s3` serves `s3://bucket/key`). */
  readonly scheme: string
  /**
   * The script's bytes (or text) at `location` (the whole address, scheme included); `field` is where the location
   * is in the plan (`job.source.path`), for the `InvalidPlan` of a location that cannot be read (`FetchFailed`,
   * `FileUnreadable`).
   */
  readonly fetch: (request: {
    readonly location: string
    readonly field: string
  }) => Effect.Effect<Uint8Array | string, InvalidPlan>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ScriptSources extends Context.Tag("@runcmd/core/ScriptSources")<ScriptSources, ScriptSources.Service>() {}

/**
 * @since 0.1.0
 */
export declare namespace ScriptSources {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** What transports receive for `source`; `field` (default `job.source`) names it in errors. */
    readonly resolve: (
      source: ScriptSource.ScriptSource,
      field?: string
    ) => Effect.Effect<ScriptSource.ResolvedSource, InvalidPlan>
    /** Every scheme served, sorted. */
    readonly schemes: () => ReadonlyArray<string>
    /** The resolvers registered by layers (not the built-ins), an enclosing service's first. */
    readonly resolvers: () => ReadonlyArray<Resolver>
    /** Registers a resolver until the scope closes (it replaces one in scope for the same scheme). */
    readonly register: (resolver: Resolver) => Effect.Effect<void, never, Scope.Scope>
  }
}

/**
 * A `ScriptSources` with the built-in schemes and the given resolvers (and no enclosing service).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  resolvers: ReadonlyArray<Resolver> = []
): Effect.Effect<ScriptSources.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const service = internal.make(Option.none())
    for (const resolver of resolvers) yield* service.register(resolver)
    return service
  })

/**
 * The built-in schemes, extending the `ScriptSources` in scope where the layer is built. One value, so layers that
 * each register a resolver share one service when built together.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmpty: Layer.Layer<ScriptSources> = Layer.effect(
  ScriptSources,
  Effect.map(Effect.serviceOption(ScriptSources), internal.make)
)

/**
 * A layer serving a scheme (and providing the `ScriptSources` it registered into). `fetch` may need services
 * (an object storage client): they are taken from where the layer is built.
 *
 * @example
 * ```ts
 * const s3 = ScriptSources.layer({
 *   scheme: "s3",
 *   fetch: ({ location, field }) => getObject(location).pipe(
 *     Effect.mapError((e) => new InvalidPlan({ reason: "FetchFailed", path: field, description: e.message }))
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <R = never>(resolver: {
  readonly scheme: string
  readonly fetch: (request: {
    readonly location: string
    readonly field: string
  }) => Effect.Effect<Uint8Array | string, InvalidPlan, R>
}): Layer.Layer<ScriptSources, never, Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const context = yield* Effect.context<R>()
      const sources = yield* ScriptSources
      yield* sources.register({
        scheme: resolver.scheme.toLowerCase(),
        fetch: (request) => Effect.provide(resolver.fetch(request), context)
      })
    })
  ).pipe(Layer.provideMerge(layerEmpty)) as Layer.Layer<ScriptSources, never, Exclude<R, Scope.Scope>>

/**
 * Fixed scripts by location, whatever their scheme (for tests: `{ "https://example.com/deploy.sh": "echo hi" }`).
 * The schemes of the locations given are served by this layer only: an unknown location of one of them is a
 * `FetchFailed`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFixed = (scripts: Readonly<Record<string, string | Uint8Array>>): Layer.Layer<ScriptSources> => {
  const schemes = [...new Set(Object.keys(scripts).map(internal.schemeOf))]
  return Layer.mergeAll(
    layerEmpty,
    ...schemes.map((scheme) =>
      layer({
        scheme,
        fetch: ({ field, location }) =>
          Object.prototype.hasOwnProperty.call(scripts, location)
            ? Effect.succeed(scripts[location]!)
            : Effect.fail(
              new InvalidPlan({
                reason: "FetchFailed",
                path: field,
                description: `no fixed script at ${location} (fixed: ${Object.keys(scripts).join(", ")})`
              })
            )
      })
    )
  )
}

/**
 * What transports receive for `source`, through the `ScriptSources` in scope (the built-in schemes when there is
 * none); `field` (default `job.source`) names the source in errors.
 *
 * @since 0.1.0
 * @category accessors
 */
export const resolve: (
  source: ScriptSource.ScriptSource,
  field?: string
) => Effect.Effect<ScriptSource.ResolvedSource, InvalidPlan> = Effect.fn("ScriptSources.resolve")(
  function*(source: ScriptSource.ScriptSource, field?: string) {
    yield* Effect.annotateCurrentSpan("runcmd.source", source._tag)
    const service = yield* Effect.serviceOption(ScriptSources)
    return yield* (Option.isSome(service) ? service.value : builtIns).resolve(source, field)
  }
)

const builtIns = internal.make(Option.none())
