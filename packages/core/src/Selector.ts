/**
 * Target selection by label expressions and id globs.
 *
 * A selector is a comma-separated list of terms that must all match (AND):
 *
 * | term | matches a target that... |
 * |---|---|
 * | `key=value` | has the label `key` with a value matching `value` |
 * | `key!=value` | does not have the label `key` with a value matching `value` (a target without the label matches) |
 * | `key` | has the label `key` (any value) |
 * | `!key` | does not have the label `key` |
 * | `id=web-*`, `id!=web-3` | has an id matching the glob (`id` is a pseudo-label, as is `kind`) |
 * | `kind=ssh` | is of kind `ssh` |
 * | `web-*`, `user@host` | has an id matching the glob: a bare term with a glob character, or one that is not a label key |
 *
 * Values and id globs may use `*` (any run of characters, possibly empty) and `?` (exactly one character, an emoji too);
 * `\` escapes the next character (`\*`, `\?`, `\,`, `\\`). Matching is case-sensitive. A label key is made of
 * letters, digits and `_ . - /`; the pseudo-labels `id` and `kind` shadow real labels of the same name. White
 * space around terms is ignored.
 *
 * Several selectors (e.g. repeated `--select` flags) combine with OR: {@link select} keeps the targets that
 * match any of them, in their original order.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { InvalidPlan } from "./InvalidPlan.js"
import type { Target } from "./Target.js"

/**
 * One term of a selector.
 *
 * @since 0.1.0
 * @category models
 */
export type Term =
  | { readonly _tag: "Has"; readonly key: string }
  | { readonly _tag: "Lacks"; readonly key: string }
  | { readonly _tag: "Equals"; readonly key: string; readonly pattern: Glob }
  | { readonly _tag: "NotEquals"; readonly key: string; readonly pattern: Glob }
  | { readonly _tag: "IdGlob"; readonly pattern: Glob }

/**
 * A compiled glob: its source text and whether a string matches it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Glob {
  readonly source: string
  readonly test: (input: string) => boolean
}

/**
 * A parsed selector: all its terms must match.
 *
 * @since 0.1.0
 * @category models
 */
export interface Selector {
  readonly expression: string
  readonly terms: ReadonlyArray<Term>
}

const KEY = /^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$/

/**
 * Compiles a glob (`*`, `?`, `\` escapes) to a matcher over whole strings.
 *
 * @since 0.1.0
 * @category constructors
 */
export const glob = (source: string): Glob => {
  let literal = true
  let re = ""
  let plain = ""
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!
    if (c === "\\" && i + 1 < source.length) {
      const next = source[++i]!
      re += escapeRegExp(next)
      plain += next
    } else if (c === "*") {
      literal = false
      re += ".*"
    } else if (c === "?") {
      literal = false
      re += "."
    } else {
      re += escapeRegExp(c)
      plain += c
    }
  }
  if (literal) return { source, test: (input) => input === plain }
  // `u`: `?` is one code point (an emoji is one character); `s`: `.` matches new lines too
  const regexp = new RegExp(`^${re}$`, "su")
  return { source, test: (input) => regexp.test(input) }
}

const escapeRegExp = (c: string): string => c.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&")

/** Whether the text has an unescaped `*` or `?`. */
const hasGlobChar = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === "\\") i++
    else if (c === "*" || c === "?") return true
  }
  return false
}

/** Splits on unescaped commas, keeping escapes in place. */
const splitTerms = (expr: string): Array<string> => {
  const out: Array<string> = []
  let current = ""
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!
    if (c === "\\" && i + 1 < expr.length) {
      current += c + expr[++i]
    } else if (c === ",") {
      out.push(current)
      current = ""
    } else current += c
  }
  out.push(current)
  return out
}

/** The index of the first unescaped occurrence of `char`, or -1. */
const indexOfUnescaped = (text: string, char: string): number => {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\") i++
    else if (text[i] === char) return i
  }
  return -1
}

const invalid = (expr: string, term: string, problem: string) =>
  new InvalidPlan({
    reason: "InvalidValue",
    path: "selector",
    description: `in selector ${JSON.stringify(expr)}: term ${JSON.stringify(term)}: ${problem}`
  })

const parseTerm = (expr: string, raw: string): Term | InvalidPlan => {
  const term = raw.trim()
  if (term === "") return invalid(expr, raw, "empty term (terms are separated by single commas)")
  const eq = indexOfUnescaped(term, "=")
  if (eq !== -1) {
    const negated = eq > 0 && term[eq - 1] === "!"
    const key = term.slice(0, negated ? eq - 1 : eq).trim()
    const value = term.slice(eq + 1).trim()
    if (key === "") return invalid(expr, term, "missing label key before `=` (e.g. role=web)")
    if (key.startsWith("!")) {
      return invalid(
        expr,
        term,
        `\`!\` negates a bare label key (\`!${key.slice(1)}\`); use \`${key.slice(1)}!=value\``
      )
    }
    if (!KEY.test(key)) {
      return invalid(expr, term, "a label key is made of letters, digits and `_ . - /` (no globs)")
    }
    return { _tag: negated ? "NotEquals" : "Equals", key, pattern: glob(value) }
  }
  if (term.startsWith("!")) {
    const key = term.slice(1).trim()
    if (key === "") return invalid(expr, term, "`!` must be followed by a label key (e.g. !canary)")
    if (!KEY.test(key)) {
      return invalid(
        expr,
        term,
        "`!` takes a label key (letters, digits and `_ . - /`); to exclude ids use id!=<glob>"
      )
    }
    return { _tag: "Lacks", key }
  }
  if (hasGlobChar(term) || !KEY.test(term)) return { _tag: "IdGlob", pattern: glob(term) }
  return { _tag: "Has", key: term }
}

/**
 * Parses a selector expression; a bad term fails with `InvalidValue` naming it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse: (expr: string) => Effect.Effect<Selector, InvalidPlan> = Effect.fn("Selector.parse")(
  function*(expr: string) {
    if (expr.trim() === "") {
      return yield* new InvalidPlan({
        reason: "InvalidValue",
        path: "selector",
        description: "empty selector: expected terms such as role=web, !canary, id=web-*"
      })
    }
    const terms: Array<Term> = []
    for (const raw of splitTerms(expr)) {
      const term = parseTerm(expr, raw)
      if (term instanceof InvalidPlan) return yield* term
      terms.push(term)
    }
    return { expression: expr, terms }
  }
)

/** The value of a label or pseudo-label, or undefined when the target has none. */
const valueOf = (target: Target, key: string): string | undefined => {
  if (key === "id") return target.id
  if (key === "kind") return target.kind
  return Object.prototype.hasOwnProperty.call(target.labels, key) ? target.labels[key] : undefined
}

const matchesTerm = (term: Term, target: Target): boolean => {
  switch (term._tag) {
    case "Has":
      return valueOf(target, term.key) !== undefined
    case "Lacks":
      return valueOf(target, term.key) === undefined
    case "Equals": {
      const value = valueOf(target, term.key)
      return value !== undefined && term.pattern.test(value)
    }
    case "NotEquals": {
      const value = valueOf(target, term.key)
      return value === undefined || !term.pattern.test(value)
    }
    case "IdGlob":
      return term.pattern.test(target.id)
  }
}

/**
 * Whether every term of the selector matches the target.
 *
 * @since 0.1.0
 * @category utils
 */
export const matches = (selector: Selector, target: Target): boolean =>
  selector.terms.every((term) => matchesTerm(term, target))

/**
 * Whether any of the selectors matches the target (selectors combine with OR).
 *
 * @since 0.1.0
 * @category utils
 */
export const matchesAny = (selectors: ReadonlyArray<Selector>, target: Target): boolean =>
  selectors.some((selector) => matches(selector, target))

const LISTED = 10

const available = (targets: ReadonlyArray<Target>): string => {
  const ids = targets.map((t) => t.id)
  const labels = [...new Set(targets.flatMap((t) => Object.entries(t.labels).map(([k, v]) => `${k}=${v}`)))].sort()
  const list = (items: ReadonlyArray<string>) =>
    items.length === 0
      ? "none"
      : items.slice(0, LISTED).join(", ") + (items.length > LISTED ? `, ... and ${items.length - LISTED} more` : "")
  return `ids: ${list(ids)}; labels: ${list(labels)}`
}

/** A hint for a bare term that is a label test but names a target id. */
const hint = (selectors: ReadonlyArray<Selector>, targets: ReadonlyArray<Target>): string => {
  const ids = new Set(targets.map((t) => t.id))
  for (const s of selectors) {
    for (const term of s.terms) {
      if (term._tag === "Has" && ids.has(term.key)) {
        return ` (\`${term.key}\` alone tests for a label named ${term.key}; to select the target use id=${term.key})`
      }
    }
  }
  return ""
}

/**
 * The targets matching any of the expressions (OR), in their original order; all of them when no expression is
 * given. Fails with `SelectorMatchedNothing`, naming the expressions and listing available ids and labels, when
 * nothing matches, and with `InvalidValue` for a bad expression.
 *
 * @since 0.1.0
 * @category utils
 */
export const select: (
  targets: ReadonlyArray<Target>,
  exprs: string | ReadonlyArray<string>
) => Effect.Effect<ReadonlyArray<Target>, InvalidPlan> = Effect.fn("Selector.select")(
  function*(targets: ReadonlyArray<Target>, exprs: string | ReadonlyArray<string>) {
    const list = typeof exprs === "string" ? [exprs] : exprs
    if (list.length === 0) return targets
    const selectors: Array<Selector> = []
    for (const expr of list) selectors.push(yield* parse(expr))
    const selected = targets.filter((t) => matchesAny(selectors, t))
    if (selected.length === 0) {
      const named = list.length === 1
        ? JSON.stringify(list[0])
        : `any of ${list.map((e) => JSON.stringify(e)).join(", ")}`
      return yield* new InvalidPlan({
        reason: "SelectorMatchedNothing",
        path: "selector",
        description: `no target matches ${named}${hint(selectors, targets)}; ${targets.length} target${
          targets.length === 1 ? "" : "s"
        } available: ${available(targets)}`
      })
    }
    return selected
  }
)
