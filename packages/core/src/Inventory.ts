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
 * imports:                  # targets from elsewhere, by an importer in scope (or given to parse/load)
 *   - sshConfig: ./ssh_config   # @runcmd/transport-ssh's SshConfig.layerImporter; paths relative to this file
 *     hosts: ["db-*"]
 *     group: db
 *     labels: { source: ssh-config }
 * policy:                   # policy defaults for runs on these targets (under the plan's and the CLI's flags)
 *   concurrency: 5
 *   timeout: 2m
 * ```
 *
 * - The top level has only `defaults`, `groups`, `targets`, `imports` and `policy` (each optional); a group has only
 *   `defaults` and `targets`.
 * - `policy:` sets fields of the `ExecutionPolicy` (same names and values as a plan's, no run-as password): the
 *   `inventory` level, under the plan's policy and over the `ExecutionPolicy.Defaults` layer (see
 *   `ExecutionPolicy`). `Targets.layerInventory` carries it to `Runner.runJob`.
 * - Each `imports:` entry names one {@link Importer} by its key (`sshConfig: FILE`): a transport package adds one by
 *   providing a layer ({@link layerImporter}; `SshConfig.layerImporter`), or it is given in `options.importers`
 *   (those win on a shared key). Its `group` and `labels`
 *   apply to every target it imports (defaults do not), its other keys are the importer's options. Imported ids
 *   must not clash with the file's own.
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
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as NodePath from "node:path"
import type * as ExecutionPolicy from "./ExecutionPolicy.js"
import * as importers from "./internal/importers.js"
import { parseInventory } from "./internal/inventory.js"
import { InvalidPlan } from "./InvalidPlan.js"
import * as Selector from "./Selector.js"
import type * as Target from "./Target.js"

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
  /** The `policy:` fields of the file: the `inventory` level of `ExecutionPolicy.resolve` (under the plan's). */
  readonly policy?: ExecutionPolicy.Overrides | undefined
}

/**
 * Brings targets into an inventory from another source, for its `imports:` entries (for example OpenSSH's
 * `ssh_config`: `SshConfig.importer` in `@runcmd/transport-ssh`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Importer {
  /** The key naming the importer in an `imports:` entry (`sshConfig`). */
  readonly key: string
  /**
   * The targets for one entry: `value` is the key's value, `options` the entry's other keys (without `group` and
   * `labels`), `dir` the inventory file's directory (relative paths are relative to it). Fails with a message
   * saying what is wrong and how to fix it; core adds the file and the place.
   */
  readonly import: (entry: {
    readonly value: unknown
    readonly options: Readonly<Record<string, unknown>>
    readonly dir: string
  }) => Effect.Effect<ReadonlyArray<Target.Target>, string>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ParseOptions {
  /**
   * Importers for `imports:` entries, besides those in scope ({@link Importers}); with neither, an `imports:`
   * entry is an error naming it.
   */
  readonly importers?: ReadonlyArray<Importer> | undefined
}

/**
 * The importers provided by layers ({@link layerImporter}); `parse` and `load` use those in scope. Layers that each
 * register an importer share one registry when built together, and a registry built where another is in scope
 * extends it.
 *
 * @since 0.1.0
 * @category tags
 */
export const Importers: typeof importers.Importers = importers.Importers

/**
 * @since 0.1.0
 * @category tags
 */
export type Importers = importers.Importers

/**
 * A layer adding an importer for inventories' `imports:` entries (how a transport package adds discovery to
 * inventory files: `SshConfig.layerImporter`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerImporter: (importer: Importer) => Layer.Layer<Importers> = importers.layer

/**
 * Parses a YAML inventory. `file` names the source in errors; `kinds` are the target kinds accepted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse: (
  text: string,
  file: string,
  kinds: ReadonlyArray<Target.TargetSchema>,
  options?: ParseOptions
) => Effect.Effect<Inventory, InvalidPlan> = Effect.fn("Inventory.parse")(
  function*(text: string, file: string, kinds: ReadonlyArray<Target.TargetSchema>, options?: ParseOptions) {
    yield* Effect.annotateCurrentSpan("file", file)
    const registry = yield* Effect.serviceOption(Importers)
    const importers = [...(options?.importers ?? []), ...(Option.isSome(registry) ? registry.value.importers() : [])]
    const parsed = parseInventory(text, file, kinds, [...new Set(importers.map((i) => i.key))])
    if (Either.isLeft(parsed)) return yield* parsed.left
    const { groups, imports } = parsed.right
    const policy = parsed.right.policy === undefined ? {} : { policy: parsed.right.policy }
    if (imports.length === 0) return { file, targets: parsed.right.targets, groups, ...policy }
    const targets = [...parsed.right.targets]
    const origin = new Map<string, string>(targets.map((t) => [t.id, "the inventory's own targets"]))
    const dir = NodePath.dirname(NodePath.resolve(file))
    for (const entry of imports) {
      const importer = importers.find((i) => i.key === entry.key)!
      const imported = yield* importer.import({ value: entry.value, options: entry.options, dir }).pipe(
        Effect.mapError((message) =>
          new InvalidPlan({
            reason: "InvalidInventory",
            path: entry.path,
            description: `${entry.key}: ${message}${entry.where}`
          })
        )
      )
      for (const target of imported) {
        const previous = origin.get(target.id)
        if (previous !== undefined) {
          return yield* new InvalidPlan({
            reason: "DuplicateTargetId",
            path: entry.path,
            description:
              `${entry.key} imports target id ${JSON.stringify(target.id)}${entry.where}, already among ${previous}; ` +
              "target ids must be unique (narrow the import with its options, or rename one)"
          })
        }
        origin.set(target.id, `the targets of ${entry.path}`)
        const labels = {
          ...target.labels,
          ...entry.labels,
          ...(entry.group === undefined ? {} : { group: entry.group })
        }
        targets.push({ ...target, labels })
        if (entry.group !== undefined) groups[entry.group] = [...(groups[entry.group] ?? []), target.id]
      }
    }
    if (targets.length === 0) {
      return yield* new InvalidPlan({
        reason: "NoTargets",
        path: file,
        description: "the inventory defines no targets and its imports brought none (check the imports' options)"
      })
    }
    return { file, targets, groups, ...policy }
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
  kinds: ReadonlyArray<Target.TargetSchema>,
  options?: ParseOptions
) => Effect.Effect<Inventory, InvalidPlan, FileSystem.FileSystem> = Effect.fn("Inventory.load")(
  function*(path: string, kinds: ReadonlyArray<Target.TargetSchema>, options?: ParseOptions) {
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
    return yield* parse(text, path, kinds, options)
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
