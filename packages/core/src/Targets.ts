/**
 * The `Targets` service: lists and selects the targets of a program. Its targets come from sources that layers
 * register: a static list ({@link layer}), an inventory file ({@link layerInventory}), OpenSSH's `ssh_config`
 * (`SshConfig.layer` in `@runcmd/transport-ssh`), or any discovery a transport package provides with
 * {@link layerSource} (SSM and Azure tags). However the layers are provided (merged into one layer, or by several
 * `Effect.provide` calls), a program sees one `Targets` with every source:
 *
 * - the targets of all sources, in the order the sources were registered (an enclosing layer's first);
 * - a target id given by two sources (or twice by one) is a {@link TargetsError} `DuplicateTargetId` naming both;
 * - the label selector (`Selector`: `role=web`, `!canary`, `id=web-*`) is applied to the merged list, the same way
 *   whatever source a target came from;
 * - each source is read once and cached for the life of the layer (a run), unless it says otherwise (`cache`);
 *   every listing says when each source was read (`readAt`, on the Effect clock).
 *
 * @example
 * ```ts
 * const targets = Layer.mergeAll(
 *   Targets.layer([Target.local("box", { role: "db" })]),
 *   Targets.layerInventory("inventory.yaml", [Target.Local, SshTarget.SshTarget]),
 *   SshConfig.layer("~/.ssh/config", { hosts: ["web-*"], labels: { role: "web" } })
 * )
 * const web = Effect.flatMap(Targets.Targets, (targets) => targets.select("role=web"))
 * ```
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as ExecutionPolicy from "./ExecutionPolicy.js"
import * as importers from "./internal/importers.js"
import * as internal from "./internal/targets.js"
import type { InvalidPlan } from "./InvalidPlan.js"
import type * as Inventory from "./Inventory.js"
import type { Target, TargetSchema } from "./Target.js"

/**
 * Why targets could not be listed: `DuplicateTargetId` (two sources, or one source twice, give one id) or
 * `DiscoveryFailed` (a discovery could not read its service).
 *
 * @since 0.1.0
 * @category errors
 */
export class TargetsError extends Schema.TaggedError<TargetsError>("@runcmd/core/TargetsError")("TargetsError", {
  reason: Schema.Literal("DuplicateTargetId", "DiscoveryFailed"),
  /** The source concerned (for a duplicate: the second source giving the id). */
  source: Schema.String,
  description: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.reason} (${this.source}): ${this.description}`
  }
}

/**
 * A source of targets, as a layer registers it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Source {
  /** Names the source in listings and errors (`inventory.yaml`, `ssh_config ~/.ssh/config`). */
  readonly name: string
  /** Reads the source's targets (and the policy defaults that come with them, as an inventory's `policy:`). */
  readonly discover: Effect.Effect<ReadonlyArray<Target> | Discovered, TargetsError | InvalidPlan>
  /**
   * `true` (the default): read once, then cached for the life of the `Targets` service (the run); a duration: read
   * again once the cached listing is that old (on the Effect clock); `false`: read on every listing (a static
   * list). Failures are never cached.
   */
  readonly cache?: boolean | Duration.DurationInput | undefined
}

/**
 * What a discovery reads: targets and, optionally, the policy defaults that come with them.
 *
 * @since 0.1.0
 * @category models
 */
export interface Discovered {
  readonly targets: ReadonlyArray<Target>
  /** The `inventory` level of `ExecutionPolicy.resolve` for runs on these targets. */
  readonly policy?: ExecutionPolicy.Overrides | undefined
}

/**
 * What one source gave.
 *
 * @since 0.1.0
 * @category models
 */
export interface SourceListing {
  readonly name: string
  readonly targets: ReadonlyArray<Target>
  readonly policy: ExecutionPolicy.Overrides | undefined
  /** When the source was read (epoch ms on the Effect clock): older than now when the listing is cached. */
  readonly readAt: number
  /** Whether the source is cached (see {@link Source.cache}). */
  readonly cached: boolean
}

/**
 * Every target of every source, and what each source gave.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listing {
  readonly targets: ReadonlyArray<Target>
  readonly sources: ReadonlyArray<SourceListing>
  /** The sources' policy defaults merged field by field (a later source's over an earlier one's). */
  readonly policy: ExecutionPolicy.Overrides | undefined
}

/**
 * A registered source with its cache.
 *
 * @since 0.1.0
 * @category models
 */
export interface RegisteredSource {
  readonly name: string
  readonly read: Effect.Effect<SourceListing, TargetsError | InvalidPlan>
  readonly invalidate: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Targets extends Context.Tag("@runcmd/core/Targets")<Targets, Targets.Service>() {}

/**
 * @since 0.1.0
 */
export declare namespace Targets {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** Every target of every source (cached sources are not read again). */
    readonly list: Effect.Effect<Listing, TargetsError | InvalidPlan>
    /**
     * The targets matching any of the selector expressions (`Selector.select`), in source order; every target when
     * no selector is given. Nothing matching is an `InvalidPlan` `SelectorMatchedNothing`.
     */
    readonly select: (
      selector?: string | ReadonlyArray<string> | undefined
    ) => Effect.Effect<ReadonlyArray<Target>, TargetsError | InvalidPlan>
    /** Forgets every cached listing: the next listing reads every source again. */
    readonly refresh: Effect.Effect<void>
    /** The registered sources, an enclosing service's first. */
    readonly sources: () => ReadonlyArray<RegisteredSource>
    /** Registers a source until the scope closes. */
    readonly register: (source: Source) => Effect.Effect<void, never, Scope.Scope>
  }
}

const duplicate = (props: { readonly source: string; readonly description: string }) =>
  new TargetsError({ reason: "DuplicateTargetId", ...props })

/**
 * A `Targets` service with the given sources (and no enclosing one).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (sources: ReadonlyArray<Source> = []): Effect.Effect<Targets.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const service = internal.make(Option.none(), duplicate)
    for (const source of sources) yield* service.register(source)
    return service
  })

/**
 * An empty `Targets`, or one extending the `Targets` in scope where the layer is built. One value, so layers that
 * each register a source share one service when built together.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEmpty: Layer.Layer<Targets> = Layer.effect(
  Targets,
  Effect.map(Effect.serviceOption(Targets), (parent) => internal.make(parent, duplicate))
)

/**
 * A layer registering a source (and providing the `Targets` it registered into). `discover` may need services:
 * they are taken from where the layer is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSource = <R = never>(source: {
  readonly name: string
  readonly discover: Effect.Effect<ReadonlyArray<Target> | Discovered, TargetsError | InvalidPlan, R>
  readonly cache?: Source["cache"]
}): Layer.Layer<Targets, never, Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const context = yield* Effect.context<R>()
      const targets = yield* Targets
      yield* targets.register({ ...source, discover: Effect.provide(source.discover, context) })
    })
  ).pipe(Layer.provideMerge(layerEmpty)) as Layer.Layer<Targets, never, Exclude<R, Scope.Scope>>

/**
 * A static list of targets (not cached: nothing to read).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  targets: ReadonlyArray<Target>,
  options?: { readonly name?: string | undefined }
): Layer.Layer<Targets> =>
  layerSource({ name: options?.name ?? "static targets", discover: Effect.succeed(targets), cache: false })

/**
 * The targets of a YAML inventory file (see `Inventory`), read once per layer. Its `imports:` entries are run by
 * the importers in scope (`Inventory.layerImporter`, e.g. `SshConfig.layerImporter`) and those of `options`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerInventory = (
  path: string,
  kinds: ReadonlyArray<TargetSchema>,
  options?: Inventory.ParseOptions & { readonly cache?: Source["cache"] }
): Layer.Layer<Targets, never, FileSystem.FileSystem> =>
  layerSource({
    name: path,
    // loaded when read: the YAML parser is not needed by programs without an inventory
    discover: Effect.flatMap(
      Effect.promise(() => import("./Inventory.js")),
      (Inventory) =>
        Effect.map(
          Inventory.load(path, kinds, options),
          (inventory): Discovered => ({ targets: inventory.targets, policy: inventory.policy })
        )
    ),
    cache: options?.cache
  }).pipe(
    // the importers registered by layers built with this one (`Layer.mergeAll(..., SshConfig.layerImporter)`)
    Layer.provide(importers.layerRegistry)
  )

/**
 * The targets of the inventory file named by configuration (`RUNCMD_INVENTORY` unless another `Config` is given);
 * a missing or invalid value fails with the `ConfigError` naming the key.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  kinds: ReadonlyArray<TargetSchema>,
  config: Config.Config<string> = Config.string("RUNCMD_INVENTORY")
): Layer.Layer<Targets, ConfigError.ConfigError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(Effect.map(config, (path) => layerInventory(path, kinds)))

/**
 * The targets matching the selector (every target without one), from the `Targets` in scope.
 *
 * @since 0.1.0
 * @category accessors
 */
export const select: (
  selector?: string | ReadonlyArray<string> | undefined
) => Effect.Effect<ReadonlyArray<Target>, TargetsError | InvalidPlan, Targets> = Effect.fn("Targets.select")(
  function*(selector?: string | ReadonlyArray<string> | undefined) {
    const targets = yield* Targets
    return yield* targets.select(selector)
  }
)

/**
 * Every target, and what each source gave, from the `Targets` in scope.
 *
 * @since 0.1.0
 * @category accessors
 */
export const list: Effect.Effect<Listing, TargetsError | InvalidPlan, Targets> = Effect.flatMap(
  Targets,
  (targets) => targets.list
)
