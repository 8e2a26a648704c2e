/**
 * A collection filled by layers (the pattern of `Transport.Registry`): items are added for the life of a scope, and
 * a collection made where another is in scope extends it, so layers that each add an item compose however they
 * are provided (merged into one layer, which then shares one collection, or by nested `Effect.provide` calls).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"

/** @internal */
export interface Collection<A> {
  /** The enclosing collection's items first, then this one's, in the order they were added. */
  readonly items: () => ReadonlyArray<A>
  /** Adds `item` until the scope closes. */
  readonly add: (item: A) => Effect.Effect<void, never, Scope.Scope>
}

/** @internal */
export const make = <A>(parent: Option.Option<() => ReadonlyArray<A>>): Collection<A> => {
  const own: Array<A> = []
  return {
    items: () => (Option.isSome(parent) ? [...parent.value(), ...own] : [...own]),
    add: (item) =>
      Effect.acquireRelease(
        Effect.sync(() => void own.push(item)),
        () =>
          Effect.sync(() => {
            const i = own.indexOf(item)
            if (i !== -1) own.splice(i, 1)
          })
      )
  }
}
