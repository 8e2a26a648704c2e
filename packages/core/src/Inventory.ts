/**
 * Inventories: where targets come from. A static list ({@link fromTargets}) or a YAML inventory file
 * ({@link parse}, {@link load}) with groups, labels and defaults:
 *
 * ```yaml
 * defaults:                 # applied to every target (deep-merged; labels merged)
 *   kind: ssh
 *   user: deploy
 *   labels: { env: prod }
 * groups:
 *   web:
 *     defaults: { port: 2222, labels: { role: web } }
 *     targets:
 *       - { id: web-1, host: 10.0.0.1 }
 *       - id: web-2
 *         host: 10.0.0.2
 *         labels: { canary: "true" }
 * targets:                  # ungrouped
 *   - { id: box, kind: local, labels: { role: db } }
 * ```
 *
 * - The top level has only `defaults`, `groups` and `targets` (each optional); a group has only `defaults` and
 *   `targets`.
 * - Each target is the deep merge of the top-level `defaults`, its group's `defaults` and its own fields, most
 *   specific last: mappings (such as `labels`) are merged key by key, anything else (lists included) replaced.
 * - A default field that the target's kind does not have is dropped for that target (so `user:` in the
 *   defaults does not break a `kind: local` target), but a default field that no known kind has is an error,
 *   and so is an unknown field on a target itself. Defaults cannot set `id`.
 * - Every target of a group gets the label `group=<name>` (it overrides a `group` label from the defaults or
 *   the target). A target belongs to one group only: the same id in two groups is a `DuplicateTargetId`.
 * - Label values are strings. Numbers and booleans are accepted and taken as written in the file
 *   (`version: 1.10` is the string `"1.10"`, `canary: true` is `"true"`); null, lists and mappings are refused.
 * - Each merged target is then decoded with `Target.union(kinds)`: the kinds are those of the transports in use.
 * - YAML anchors, aliases and merge keys (`<<: *base`) are supported; keys must be unique in a mapping.
 *   Top-level keys starting with `x-` are ignored: a place to define anchors (`x-common: &common {...}`).
 * - Targets keep the order of the file.
 *
 * Errors are `InvalidPlan`s naming the file and the place inside it, with line and column where known:
 * `InvalidInventory` at `inventory.yaml: groups.web.targets[1].port` (a field is wrong; a syntax error is at
 * `inventory.yaml:3:7`), `DuplicateTargetId` (naming both places), `NoTargets` (nothing defined) and
 * `FileUnreadable` (from {@link load}).
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { parseInventory } from "./internal/inventory.js"
import * as Selector from "./Selector.js"
import type * as Target from "./Target.js"
import { InvalidPlan } from "./TransportError.js"

/**
 * A set of targets, with the groups they were declared in (group name to target ids).
 *
 * @since 0.1.0
 * @category models
 */
export interface Inventory {
  /** The file the inventory was read from (`<memory>` for one built in code). */
  readonly file: string
  readonly targets: ReadonlyArray<Target.Target>
  readonly groups: Record<string, ReadonlyArray<string>>
}

/**
 * Parses a YAML inventory. `file` names the source in errors; `kinds` are the target kinds accepted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse: (
  text: string,
  file: string,
  kinds: ReadonlyArray<Target.TargetSchema>
) => Effect.Effect<Inventory, InvalidPlan> = Effect.fn("Inventory.parse")(
  function*(text: string, file: string, kinds: ReadonlyArray<Target.TargetSchema>) {
    yield* Effect.annotateCurrentSpan("file", file)
    const parsed = parseInventory(text, file, kinds)
    return Either.isLeft(parsed) ? yield* parsed.left : parsed.right
  }
)

/**
 * Reads and parses a YAML inventory file; an unreadable file fails with `FileUnreadable` naming it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const load: (
  path: string,
  kinds: ReadonlyArray<Target.TargetSchema>
) => Effect.Effect<Inventory, InvalidPlan, FileSystem.FileSystem> = Effect.fn("Inventory.load")(
  function*(path: string, kinds: ReadonlyArray<Target.TargetSchema>) {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((cause) =>
        new InvalidPlan({
          reason: "FileUnreadable",
          path,
          description: `cannot read the inventory ${path}: ${cause.message}`,
          cause
        })
      )
    )
    return yield* parse(text, path, kinds)
  }
)

/**
 * An inventory of targets built in code. Groups are taken from the targets' `group` labels.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromTargets = (targets: ReadonlyArray<Target.Target>, file = "<memory>"): Inventory => {
  const groups: Record<string, Array<string>> = {}
  for (const t of targets) {
    const group = t.labels.group
    if (group !== undefined) (groups[group] ??= []).push(t.id)
  }
  return { file, targets, groups }
}

/**
 * The targets of a group, in inventory order (none for an unknown group).
 *
 * @since 0.1.0
 * @category utils
 */
export const group = (inventory: Inventory, name: string): ReadonlyArray<Target.Target> => {
  const ids = new Set(inventory.groups[name] ?? [])
  return inventory.targets.filter((t) => ids.has(t.id))
}

/**
 * The targets matching any of the selector expressions (see {@link Selector.select}).
 *
 * @since 0.1.0
 * @category utils
 */
export const select = (
  inventory: Inventory,
  exprs: string | ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<Target.Target>, InvalidPlan> => Selector.select(inventory.targets, exprs)
