/**
 * The body of the `Targets` service: sources registered by layers, each read through its own cache, merged in
 * registration order with duplicate ids refused, and selected with `Selector`.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ExecutionPolicy from "../ExecutionPolicy.js"
import type { InvalidPlan } from "../InvalidPlan.js"
import * as Selector from "../Selector.js"
import type { Target } from "../Target.js"
import type * as Targets from "../Targets.js"
import * as Collection from "./collection.js"

const ttlOf = (cache: Targets.Source["cache"]): number | undefined => {
  if (cache === false) return undefined
  if (cache === undefined || cache === true) return Infinity
  return Duration.toMillis(Duration.decode(cache))
}

/**
 * A source with its cache: one reader at a time (concurrent lists share one discovery); failures are not cached.
 *
 * @internal
 */
export const register = (source: Targets.Source): Targets.RegisteredSource => {
  const ttl = ttlOf(source.cache)
  const discover = Effect.flatMap(
    source.discover,
    (found) =>
      Effect.map(Clock.currentTimeMillis, (readAt): Targets.SourceListing => ({
        name: source.name,
        targets: Array.isArray(found) ? found as ReadonlyArray<Target> : (found as Targets.Discovered).targets,
        policy: Array.isArray(found) ? undefined : (found as Targets.Discovered).policy,
        readAt,
        cached: ttl !== undefined
      }))
  ).pipe(
    Effect.tap((listing) => Effect.annotateCurrentSpan("runcmd.targets", listing.targets.length)),
    Effect.withSpan("Targets.discover", { attributes: { "runcmd.targets.source": source.name } })
  )
  if (ttl === undefined) return { name: source.name, read: discover, invalidate: Effect.void }
  const lock = Effect.unsafeMakeSemaphore(1)
  let last: Targets.SourceListing | undefined
  const read = lock.withPermits(1)(
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      last !== undefined && now - last.readAt < ttl
        ? Effect.succeed(last)
        : Effect.tap(discover, (listing) => Effect.sync(() => void (last = listing))))
  )
  return { name: source.name, read, invalidate: Effect.sync(() => void (last = undefined)) }
}

/** @internal */
export const make = (
  parent: Option.Option<Targets.Targets.Service>,
  duplicate: (props: { readonly source: string; readonly description: string }) => Targets.TargetsError
): Targets.Targets.Service => {
  const entries = Collection.make<Targets.RegisteredSource>(Option.map(parent, (p) => p.sources))
  const list: Effect.Effect<Targets.Listing, Targets.TargetsError | InvalidPlan> = Effect.gen(function*() {
    const listings = yield* Effect.forEach(entries.items(), (entry) => entry.read, { concurrency: "unbounded" })
    const targets: Array<Target> = []
    const from = new Map<string, string>()
    for (const listing of listings) {
      for (const target of listing.targets) {
        const previous = from.get(target.id)
        if (previous !== undefined) {
          return yield* Effect.fail(duplicate({
            source: listing.name,
            description: `target id ${JSON.stringify(target.id)} is given by ${
              previous === listing.name ? `${listing.name} twice` : `${previous} and by ${listing.name}`
            }; target ids must be unique across every source (narrow one source, or rename one target)`
          }))
        }
        from.set(target.id, listing.name)
        targets.push(target)
      }
    }
    const policies = listings.map((l) => l.policy).filter((p) => p !== undefined)
    return {
      targets,
      sources: listings,
      policy: policies.length === 0 ? undefined : ExecutionPolicy.merge(...policies)
    }
  }).pipe(Effect.withSpan("Targets.list"))
  return {
    list,
    select: (selector) =>
      Effect.flatMap(
        list,
        ({ targets }) => selector === undefined ? Effect.succeed(targets) : Selector.select(targets, selector)
      ).pipe(
        Effect.withSpan("Targets.select", {
          attributes: { "runcmd.selector": selector === undefined ? "" : String(selector) }
        })
      ),
    refresh: Effect.suspend(() => Effect.forEach(entries.items(), (entry) => entry.invalidate, { discard: true })),
    sources: entries.items,
    register: (source) => entries.add(register(source))
  }
}
