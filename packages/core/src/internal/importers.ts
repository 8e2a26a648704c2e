/**
 * The registry of inventory importers filled by layers (kept out of `Inventory` so that `Targets` does not load
 * the YAML parser).
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Importer } from "../Inventory.js"
import * as Collection from "./collection.js"

/** @internal */
export interface Service {
  /** The importers in scope, an enclosing registry's first. */
  readonly importers: () => ReadonlyArray<Importer>
  /** Registers an importer until the scope closes. */
  readonly register: (importer: Importer) => Effect.Effect<void, never, Scope.Scope>
}

/** @internal */
export class Importers extends Context.Tag("@runcmd/core/Inventory/Importers")<Importers, Service>() {}

/** @internal */
export const layerRegistry: Layer.Layer<Importers> = Layer.effect(
  Importers,
  Effect.map(Effect.serviceOption(Importers), (parent): Service => {
    const collection = Collection.make<Importer>(Option.map(parent, (p) => p.importers))
    return { importers: collection.items, register: collection.add }
  })
)

/** @internal */
export const layer = (importer: Importer): Layer.Layer<Importers> =>
  Layer.scopedDiscard(Effect.flatMap(Importers, (registry) => registry.register(importer))).pipe(
    Layer.provideMerge(layerRegistry)
  )
