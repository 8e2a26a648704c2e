/**
 * The YAML inventory: parsing, defaults merging, provenance of every field for error messages.
 *
 * @since 0.1.0
 * @internal
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as YAML from "yaml"
import * as ExecutionPolicy from "../ExecutionPolicy.js"
import { InvalidPlan } from "../InvalidPlan.js"
import * as Target from "../Target.js"

type Segment = string | number
type Path = ReadonlyArray<Segment>
type Mapping = Record<string, unknown>

/** @internal */
export interface ParsedInventory {
  readonly file: string
  readonly targets: ReadonlyArray<Target.Target>
  readonly groups: Record<string, ReadonlyArray<string>>
  /** `imports:` entries, checked for shape; run by `Inventory.parse` with the importers given. */
  readonly imports: ReadonlyArray<ImportEntry>
  /** The `policy:` mapping: the fields it sets (the `inventory` level of `ExecutionPolicy.resolve`). */
  readonly policy: ExecutionPolicy.Overrides | undefined
}

/** @internal */
export interface ImportEntry {
  /** The importer's key (`sshConfig`). */
  readonly key: string
  readonly value: unknown
  /** The entry's other keys, for the importer. */
  readonly options: Record<string, unknown>
  readonly group: string | undefined
  readonly labels: Record<string, string>
  /** Where the entry is: `inventory.yaml: imports[0]`. */
  readonly path: string
  /** ` (line 3, column 5)`, or empty. */
  readonly where: string
}

/** Keys of an `imports:` entry that core handles; the rest belong to the importer. */
const IMPORT_KEYS = new Set(["group", "labels"])

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/

/**
 * Formats a path inside the file: `groups.web.targets[1].port`, `labels["app.kubernetes.io/name"]`.
 *
 * @internal
 */
export const formatPath = (path: Path): string => {
  let out = ""
  for (const s of path) {
    if (typeof s === "number") out += `[${s}]`
    else if (IDENT.test(s)) out += out === "" ? s : `.${s}`
    else out += `[${JSON.stringify(s)}]`
  }
  return out
}

const isMapping = (u: unknown): u is Mapping =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !(u instanceof Date) && !(u instanceof Uint8Array)

const describe = (u: unknown): string => {
  if (u === null || u === undefined) return "nothing"
  if (Array.isArray(u)) return "a list"
  if (isMapping(u)) return "a mapping"
  return `${typeof u} ${JSON.stringify(u)}`
}

/** Target kinds by name, with the encoded field names of each (undefined when the schema is open). */
interface KindInfo {
  readonly schema: Target.TargetSchema
  readonly fields: ReadonlySet<string> | undefined
}

const kindTable = (kinds: ReadonlyArray<Target.TargetSchema>): Map<string, KindInfo> => {
  const table = new Map<string, KindInfo>()
  for (const schema of kinds) {
    const type = SchemaAST.typeAST(schema.ast)
    if (type._tag !== "TypeLiteral") continue
    const prop = type.propertySignatures.find((p) => p.name === "kind")
    if (prop === undefined || prop.type._tag !== "Literal" || typeof prop.type.literal !== "string") continue
    const encoded = SchemaAST.encodedAST(schema.ast)
    const fields = encoded._tag === "TypeLiteral" && encoded.indexSignatures.length === 0
      ? new Set(encoded.propertySignatures.map((p) => String(p.name)))
      : undefined
    table.set(prop.type.literal, { schema, fields })
  }
  return table
}

/** Replaces number and boolean label values by their source text (`1.10` stays "1.10", not 1.1). */
const stringifyLabelScalars = (doc: YAML.Document.Parsed, node: unknown): void => {
  const resolved = YAML.isAlias(node) ? node.resolve(doc) : node
  if (!YAML.isMap(resolved)) return
  for (const pair of resolved.items) {
    if (YAML.isScalar(pair.value)) {
      const v = pair.value.value
      if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") {
        pair.value = new YAML.Scalar(pair.value.source ?? String(v))
      }
    }
  }
}

const childOf = (doc: YAML.Document.Parsed, node: unknown, key: Segment): unknown => {
  const resolved = YAML.isAlias(node) ? node.resolve(doc) : node
  if (YAML.isMap(resolved) || YAML.isSeq(resolved)) return resolved.get(key, true)
  return undefined
}

const itemsOf = (doc: YAML.Document.Parsed, node: unknown): ReadonlyArray<unknown> => {
  const resolved = YAML.isAlias(node) ? node.resolve(doc) : node
  return YAML.isSeq(resolved) ? resolved.items : []
}

const pairsOf = (doc: YAML.Document.Parsed, node: unknown): ReadonlyArray<YAML.Pair> => {
  const resolved = YAML.isAlias(node) ? node.resolve(doc) : node
  return YAML.isMap(resolved) ? (resolved.items as Array<YAML.Pair>) : []
}

const prepareLabels = (doc: YAML.Document.Parsed): void => {
  const root = doc.contents
  stringifyLabelScalars(doc, childOf(doc, childOf(doc, root, "defaults"), "labels"))
  for (const t of itemsOf(doc, childOf(doc, root, "targets"))) stringifyLabelScalars(doc, childOf(doc, t, "labels"))
  for (const pair of pairsOf(doc, childOf(doc, root, "groups"))) {
    stringifyLabelScalars(doc, childOf(doc, childOf(doc, pair.value, "defaults"), "labels"))
    for (const t of itemsOf(doc, childOf(doc, pair.value, "targets"))) {
      stringifyLabelScalars(doc, childOf(doc, t, "labels"))
    }
  }
}

/** One layer of a target's definition (the target itself, its group's defaults, the top-level defaults). */
interface Layer {
  readonly value: Mapping
  readonly path: Path
}

const hasPath = (value: unknown, path: Path): boolean => {
  let current = value
  for (const s of path) {
    if (typeof current !== "object" || current === null) return false
    if (!Object.prototype.hasOwnProperty.call(current, s)) return false
    current = (current as Record<string | number, unknown>)[s]
  }
  return true
}

/** Deep merge: mappings are merged key by key, anything else (lists included) is replaced. */
const merge = (base: unknown, over: unknown): unknown => {
  if (!isMapping(base) || !isMapping(over)) return over
  const out: Mapping = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = k in out ? merge(out[k], v) : v
  return out
}

interface Problem {
  readonly reason: "InvalidInventory" | "DuplicateTargetId" | "NoTargets"
  readonly path: Path | undefined
  readonly description: string
}

/**
 * Parses and decodes an inventory. Pure: returns the inventory or an `InvalidPlan` naming the file, the path
 * inside it (with line and column where known) and the problem.
 *
 * @internal
 */
export const parseInventory = (
  text: string,
  file: string,
  kinds: ReadonlyArray<Target.TargetSchema>,
  importers: ReadonlyArray<string> = []
): Either.Either<ParsedInventory, InvalidPlan> => {
  try {
    return Either.right(parseOrThrow(text, file, kinds, importers))
  } catch (e) {
    if (e instanceof Stop) return Either.left(e.error)
    throw e
  }
}

/** Thrown inside the parser to stop at the first structural problem. */
class Stop {
  constructor(readonly error: InvalidPlan) {}
}

const parseOrThrow = (
  text: string,
  file: string,
  kinds: ReadonlyArray<Target.TargetSchema>,
  importers: ReadonlyArray<string>
): ParsedInventory => {
  const lineCounter = new YAML.LineCounter()
  const doc = YAML.parseDocument(text, { lineCounter, merge: true, prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!
    const pos = error.linePos?.[0]
    const more = doc.errors.length > 1
      ? ` (and ${doc.errors.length - 1} more YAML error${doc.errors.length > 2 ? "s" : ""})`
      : ""
    throw new Stop(
      new InvalidPlan({
        reason: "InvalidInventory",
        path: pos === undefined ? file : `${file}:${pos.line}:${pos.col}`,
        description: `invalid YAML: ${error.message.trimEnd()}${more}`
      })
    )
  }

  /** ` (line L, column C)` for a path inside the document (or its nearest located ancestor), when known. */
  const where = (path: Path): string => {
    for (let n = path.length; n > 0; n--) {
      const range = rangeOf(path.slice(0, n))
      if (range !== undefined) {
        const pos = lineCounter.linePos(range[0])
        return ` (line ${pos.line}, column ${pos.col})`
      }
    }
    return ""
  }
  const rangeOf = (path: Path): readonly [number, number, number] | undefined => {
    try {
      const node = doc.getIn(path as Array<Segment>, true) as { range?: [number, number, number] | null } | undefined
      if (node?.range) return node.range
      // a pair whose value is empty: the position of its key
      const parent = doc.getIn(path.slice(0, -1) as Array<Segment>, true)
      if (!YAML.isMap(parent)) return undefined
      const pair = parent.items.find((p) => YAML.isScalar(p.key) && p.key.value === path[path.length - 1])
      return YAML.isScalar(pair?.key) ? pair.key.range ?? undefined : undefined
    } catch {
      return undefined
    }
  }

  const fail = (problem: Problem): never => {
    throw new Stop(
      new InvalidPlan({
        reason: problem.reason,
        path: problem.path === undefined || problem.path.length === 0 ? file : `${file}: ${formatPath(problem.path)}`,
        description: problem.description
      })
    )
  }
  const invalid = (path: Path, description: string): never =>
    fail({ reason: "InvalidInventory", path, description: `${description}${where(path)}` })

  const noTargets = (): never =>
    fail({
      reason: "NoTargets",
      path: undefined,
      description:
        "the inventory defines no targets (expected a `targets:` list, `groups.<name>.targets:` lists or `imports:`)"
    })

  prepareLabels(doc)
  // an unresolved alias (`*a` without `&a`) or an alias bomb throws here: the file's problem, not a defect
  let root: unknown
  try {
    root = doc.toJS({ maxAliasCount: 1000 })
  } catch (error) {
    return fail({
      reason: "InvalidInventory",
      path: undefined,
      description: `invalid YAML: ${error instanceof Error ? error.message : String(error)}${
        /alias/i.test(String(error)) ? " (YAML aliases: define each `&anchor` before its `*alias`, and expand few)" : ""
      }`
    })
  }
  if (root === null || root === undefined) return noTargets()
  if (!isMapping(root)) {
    return invalid([], `expected a mapping with \`defaults\`, \`groups\` and \`targets\`, got ${describe(root)}`)
  }
  for (const key of Object.keys(root)) {
    if (
      key !== "defaults" && key !== "groups" && key !== "targets" && key !== "imports" && key !== "policy" &&
      !key.startsWith("x-")
    ) {
      return invalid(
        [key],
        `unknown key ${
          JSON.stringify(key)
        }; expected \`defaults\`, \`groups\`, \`targets\`, \`imports\` or \`policy\` (or an \`x-\` key for anchors)`
      )
    }
  }

  const mappingOrFail = (value: unknown): Mapping =>
    isMapping(value)
      ? value
      : invalid(["policy"], `expected a mapping of policy fields (such as \`concurrency: 5\`), got ${describe(value)}`)
  // policy defaults that come with the targets: only the fields written are set
  let policy: ExecutionPolicy.Overrides | undefined
  if (root.policy !== undefined && root.policy !== null) {
    const raw = mappingOrFail(root.policy)
    const runAs: unknown = raw.runAs
    if (isMapping(runAs) && "password" in runAs) {
      return invalid(
        ["policy", "runAs", "password"],
        "a password does not belong in an inventory file; give it at run time (the CLI's --ask-become-pass or RUNCMD_BECOME_PASS)"
      )
    }
    const decoded = Schema.decodeUnknownEither(ExecutionPolicy.ExecutionPolicy)(raw, {
      errors: "all",
      onExcessProperty: "error"
    })
    if (Either.isLeft(decoded)) {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
      const at: Path = ["policy", ...(issue?.path ?? []).map((p) => (typeof p === "number" ? p : String(p)))]
      return invalid(
        at,
        issue?._tag === "Unexpected"
          ? "unknown policy field (known: timeout, deadline, killGrace, retry, concurrency, maxErrors, batchSize, runAs, cwd, idempotent, onControllerLoss)"
          : issue?.message ?? "invalid policy"
      )
    }
    const set: Record<string, unknown> = {}
    for (const key of Object.keys(raw)) {
      const value = (decoded.right as Record<string, unknown>)[key]
      if (key === "retry" && isMapping(raw.retry) && isMapping(value)) {
        const retry: Record<string, unknown> = {}
        for (const k of Object.keys(raw.retry)) retry[k] = value[k]
        set.retry = retry
      } else set[key] = value
    }
    policy = set as ExecutionPolicy.Overrides
  }

  const table = kindTable(kinds)
  const known = [...table.keys()].sort().join(", ")
  const allFields = new Set<string>()
  let closed = true
  for (const info of table.values()) {
    if (info.fields === undefined) closed = false
    else for (const f of info.fields) allFields.add(f)
  }

  const mappingAt = (value: unknown, path: Path, what: string): Mapping | undefined => {
    if (value === null || value === undefined) return undefined
    if (!isMapping(value)) return invalid(path, `expected ${what}, got ${describe(value)}`)
    return value
  }
  const listAt = (value: unknown, path: Path): ReadonlyArray<unknown> => {
    if (value === null || value === undefined) return []
    if (!Array.isArray(value)) return invalid(path, `expected a list of targets, got ${describe(value)}`)
    return value
  }
  /** Checks a layer's labels (a mapping of scalars) and its keys (known to some kind, for defaults). */
  const checkLayer = (layer: Layer, isDefaults: boolean): void => {
    for (const key of Object.keys(layer.value)) {
      if (isDefaults && key === "id") {
        return invalid([...layer.path, key], "defaults cannot set `id`: every target has its own")
      }
      if (isDefaults && closed && table.size > 0 && !allFields.has(key)) {
        return invalid(
          [...layer.path, key],
          `unknown field ${JSON.stringify(key)}: no target kind has it (known kinds: ${known})`
        )
      }
    }
    const labels = layer.value.labels
    if (labels === undefined) return
    if (!isMapping(labels)) {
      return invalid([...layer.path, "labels"], `labels must be a mapping of names to values, got ${describe(labels)}`)
    }
    for (const [key, value] of Object.entries(labels)) {
      if (typeof value !== "string") {
        return invalid(
          [...layer.path, "labels", key],
          `label values must be strings (numbers and booleans are taken as written), got ${describe(value)}`
        )
      }
    }
  }

  const defaultsValue = mappingAt(root.defaults, ["defaults"], "a mapping of default fields")
  const topDefaults: Layer | undefined = defaultsValue && { value: defaultsValue, path: ["defaults"] }
  if (topDefaults !== undefined) checkLayer(topDefaults, true)

  /** A target definition in document order, with its layers (most specific first). */
  interface Entry {
    readonly path: Path
    readonly layers: ReadonlyArray<Layer>
    readonly group: string | undefined
  }
  const entries: Array<Entry> = []
  const groups: Record<string, Array<string>> = {}

  const addTargets = (list: unknown, path: Path, group: string | undefined, groupDefaults: Layer | undefined) => {
    const items = listAt(list, path)
    for (let i = 0; i < items.length; i++) {
      const item = items[i]
      const itemPath = [...path, i]
      if (!isMapping(item)) {
        return invalid(itemPath, `expected a target (a mapping with at least \`id\`), got ${describe(item)}`)
      }
      const self: Layer = { value: item, path: itemPath }
      checkLayer(self, false)
      const layers = [self, groupDefaults, topDefaults].filter((l): l is Layer => l !== undefined)
      entries.push({ path: itemPath, layers, group })
    }
  }

  for (const key of Object.keys(root)) {
    if (key === "targets") {
      addTargets(root.targets, ["targets"], undefined, undefined)
    } else if (key === "groups") {
      const groupMap = mappingAt(root.groups, ["groups"], "a mapping of group names to groups")
      for (const [name, group] of Object.entries(groupMap ?? {})) {
        const groupPath = ["groups", name]
        groups[name] = []
        if (group === null || group === undefined) continue
        if (!isMapping(group)) {
          return invalid(
            groupPath,
            `expected a group (a mapping with \`defaults\` and \`targets\`), got ${describe(group)}`
          )
        }
        for (const k of Object.keys(group)) {
          if (k !== "defaults" && k !== "targets") {
            return invalid(
              [...groupPath, k],
              `unknown key ${JSON.stringify(k)} in a group; expected \`defaults\` or \`targets\``
            )
          }
        }
        const gd = mappingAt(group.defaults, [...groupPath, "defaults"], "a mapping of default fields")
        const groupDefaults: Layer | undefined = gd && { value: gd, path: [...groupPath, "defaults"] }
        if (groupDefaults !== undefined) checkLayer(groupDefaults, true)
        addTargets(group.targets, [...groupPath, "targets"], name, groupDefaults)
      }
    }
  }

  const imports: Array<ImportEntry> = []
  const importList: unknown = root.imports === undefined || root.imports === null ? [] : root.imports
  if (!Array.isArray(importList)) {
    return invalid(
      ["imports"],
      `expected a list of imports (such as \`- sshConfig: ./ssh_config\`), got ${describe(importList)}`
    )
  }
  const knownImporters = importers.length === 0
    ? "none is registered here"
    : `known: ${[...importers].sort().join(", ")}`
  for (let i = 0; i < importList.length; i++) {
    const item: unknown = importList[i]
    const path: Path = ["imports", i]
    if (!isMapping(item)) {
      return invalid(path, `expected an import (a mapping such as \`sshConfig: ./ssh_config\`), got ${describe(item)}`)
    }
    const named = Object.keys(item).filter((k) => importers.includes(k))
    if (named.length !== 1) {
      const others = Object.keys(item).filter((k) => !IMPORT_KEYS.has(k))
      return invalid(
        path,
        named.length === 0
          ? `an import names its importer (${knownImporters}); got ${
            others.length === 0 ? "no key" : others.map((k) => JSON.stringify(k)).join(", ")
          }`
          : `an import names one importer, got ${named.join(" and ")}`
      )
    }
    const key = named[0]!
    const group = item.group
    if (group !== undefined && (typeof group !== "string" || !IDENT.test(group))) {
      return invalid([...path, "group"], `a group name is a word (letters, digits, _ and -), got ${describe(group)}`)
    }
    checkLayer({ value: item.labels === undefined ? {} : { labels: item.labels }, path }, false)
    const options: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(item)) if (k !== key && !IMPORT_KEYS.has(k)) options[k] = v
    if (group !== undefined) groups[group] ??= []
    imports.push({
      key,
      value: item[key],
      options,
      group,
      labels: (item.labels ?? {}) as Record<string, string>,
      path: `${file}: ${formatPath(path)}`,
      where: where(path)
    })
  }

  if (entries.length === 0 && imports.length === 0) return noTargets()

  const union = Target.union(kinds)
  const decode = Schema.decodeUnknownEither(union)
  const targets: Array<Target.Target> = []
  const seen = new Map<string, Entry>()
  let firstProblem: Problem | undefined
  let problems = 0
  const report = (problem: Problem) => {
    problems++
    if (firstProblem === undefined) firstProblem = problem
  }

  for (const entry of entries) {
    const [self, ...rest] = entry.layers
    // where a field of the merged target comes from: the most specific layer that has it
    const locate = (path: Path): Path => {
      if (entry.group !== undefined && path[0] === "labels" && path[1] === "group") return ["groups", entry.group]
      for (const layer of entry.layers) if (hasPath(layer.value, path)) return [...layer.path, ...path]
      return [...entry.path, ...path]
    }
    let merged: Mapping = {}
    for (const layer of [...entry.layers].reverse()) merged = merge(merged, layer.value) as Mapping
    if (entry.group !== undefined) {
      merged.labels = { ...(isMapping(merged.labels) ? merged.labels : {}), group: entry.group }
    }
    const kind = merged.kind
    if (kind === undefined || kind === null) {
      report({
        reason: "InvalidInventory",
        path: [...entry.path, "kind"],
        description:
          `missing \`kind\`: set it on the target, in its group's defaults or in the top-level defaults (known kinds: ${known})${
            where(entry.path)
          }`
      })
      continue
    }
    const info = typeof kind === "string" ? table.get(kind) : undefined
    if (info === undefined) {
      const at = locate(["kind"])
      report({
        reason: "InvalidInventory",
        path: at,
        description: `unknown target kind ${
          JSON.stringify(kind)
        }; known kinds: ${known} (install and add the transport for it)${where(at)}`
      })
      continue
    }
    // a default the target's kind does not know is dropped (defaults serve every kind); the target's own
    // fields are checked strictly
    if (info.fields !== undefined) {
      for (const key of Object.keys(merged)) {
        if (!info.fields.has(key) && !(key in self!.value) && rest.some((l) => key in l.value)) delete merged[key]
      }
    }
    const decoded = decode(merged, { errors: "all", onExcessProperty: "error" })
    if (Either.isLeft(decoded)) {
      const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      const issue = issues[0]
      const at = locate((issue?.path ?? []).map((s) => (typeof s === "number" ? s : String(s))))
      const message = issue === undefined
        ? "invalid target"
        : issue._tag === "Unexpected"
        ? `unknown field for kind ${JSON.stringify(kind)}`
        : issue._tag === "Missing"
        ? `missing required field for kind ${JSON.stringify(kind)}`
        : issue.message
      report({ reason: "InvalidInventory", path: at, description: `${message}${where(at)}` })
      // several issues may concern one field (a union's members): count fields
      problems += new Set(issues.map((i) => i.path.map(String).join("\u0000"))).size - 1
      continue
    }
    const target = decoded.right
    const previous = seen.get(target.id)
    if (previous !== undefined) {
      const inTwoGroups = previous.group !== undefined && entry.group !== undefined && previous.group !== entry.group
      const prevPath = [...previous.path, "id"]
      report({
        reason: "DuplicateTargetId",
        path: [...entry.path, "id"],
        description: `duplicate target id ${JSON.stringify(target.id)}${
          where([...entry.path, "id"])
        }: also defined at ${formatPath(prevPath)}${where(prevPath)}${
          inTwoGroups
            ? `; a target belongs to one group only (it is in groups ${previous.group} and ${entry.group}; use labels to put it in several sets)`
            : "; target ids must be unique"
        }`
      })
      continue
    }
    seen.set(target.id, entry)
    targets.push(target)
    if (entry.group !== undefined) groups[entry.group]!.push(target.id)
  }

  if (firstProblem !== undefined) {
    const more = problems > 1 ? ` (and ${problems - 1} more problem${problems > 2 ? "s" : ""})` : ""
    return fail({ ...firstProblem, description: `${firstProblem.description}${more}` })
  }
  return { file, targets, groups, imports, policy }
}
