import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "fast-check"
import * as Selector from "../src/Selector.js"
import type * as Target from "../src/Target.js"

const target = (id: string, labels: Record<string, string> = {}, kind = "ssh"): Target.Target => ({
  kind,
  id,
  labels,
  os: "linux"
})

const targets: ReadonlyArray<Target.Target> = [
  target("web-1", { role: "web", env: "prod" }),
  target("web-2", { role: "web", env: "prod", canary: "true" }),
  target("web-3", { role: "web", env: "staging" }),
  target("db-1", { role: "db", env: "prod" }),
  target("box", { role: "batch" }, "local"),
  target("user@host.example", {})
]

const ids = (expr: string | ReadonlyArray<string>) => Effect.runSync(Selector.select(targets, expr)).map((t) => t.id)

const matching = (expr: string) => {
  const selector = Effect.runSync(Selector.parse(expr))
  return targets.filter((t) => Selector.matches(selector, t)).map((t) => t.id)
}

/** A reference glob matcher (backtracking over code points), to check the compiled one against. */
const referenceGlob = (pattern: string, input: string): boolean => {
  const tokens: Array<{ kind: "star" | "one" | "char"; char?: string }> = []
  const chars = [...pattern]
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!
    if (c === "\\" && i + 1 < chars.length) tokens.push({ kind: "char", char: chars[++i]! })
    else if (c === "*") tokens.push({ kind: "star" })
    else if (c === "?") tokens.push({ kind: "one" })
    else tokens.push({ kind: "char", char: c })
  }
  const text = [...input]
  const memo = new Map<string, boolean>()
  const go = (t: number, s: number): boolean => {
    const key = `${t},${s}`
    const cached = memo.get(key)
    if (cached !== undefined) return cached
    let result: boolean
    if (t === tokens.length) result = s === text.length
    else {
      const token = tokens[t]!
      if (token.kind === "star") result = go(t + 1, s) || (s < text.length && go(t, s + 1))
      else if (s === text.length) result = false
      else if (token.kind === "one") result = go(t + 1, s + 1)
      else result = token.char === text[s] && go(t + 1, s + 1)
    }
    memo.set(key, result)
    return result
  }
  return go(0, 0)
}

const escapeGlob = (text: string) => text.replace(/[\\*?,]/g, "\\$&")

describe("Selector.parse", () => {
  it.effect("parses every term form", () =>
    Effect.gen(function*() {
      const selector = yield* Selector.parse(" role=web , env!=prod,canary,!retired,web-*,user@host , id=a? ")
      assert.deepStrictEqual(
        selector.terms.map((t) => [t._tag, "key" in t ? t.key : "", "pattern" in t ? t.pattern.source : ""]),
        [
          ["Equals", "role", "web"],
          ["NotEquals", "env", "prod"],
          ["Has", "canary", ""],
          ["Lacks", "retired", ""],
          ["IdGlob", "", "web-*"],
          ["IdGlob", "", "user@host"],
          ["Equals", "id", "a?"]
        ]
      )
    }))

  it.effect("bad syntax is InvalidValue naming the term", () =>
    Effect.gen(function*() {
      const cases: Array<[string, string, RegExp]> = [
        ["", "", /empty selector/],
        ["role=web,,env=prod", "", /empty term/],
        ["=web", "=web", /missing label key/],
        ["!=web", "!=web", /missing label key/],
        ["!", "!", /must be followed by a label key/],
        ["!web-*", "!web-*", /id!=<glob>/],
        ["!role=web", "!role=web", /use `role!=value`/],
        ["ro le=web", "ro le=web", /label key is made of/],
        ["env*=prod", "env*=prod", /no globs/]
      ]
      for (const [expr, term, problem] of cases) {
        const error = yield* Effect.flip(Selector.parse(expr))
        assert.strictEqual(error.reason, "InvalidValue", expr)
        assert.strictEqual(error.path, "selector")
        assert.match(error.description, problem, expr)
        if (term !== "") assert.include(error.description, `term ${JSON.stringify(term)}`)
      }
    }))
})

describe("Selector.matches", () => {
  it("label equality, inequality, presence and absence", () => {
    assert.deepStrictEqual(matching("role=web"), ["web-1", "web-2", "web-3"])
    assert.deepStrictEqual(matching("role=web,env=prod"), ["web-1", "web-2"])
    // a target without the label matches key!=value
    assert.deepStrictEqual(matching("env!=prod"), ["web-3", "box", "user@host.example"])
    assert.deepStrictEqual(matching("canary"), ["web-2"])
    assert.deepStrictEqual(matching("role,!canary,env"), ["web-1", "web-3", "db-1"])
    assert.deepStrictEqual(matching("role=w*"), ["web-1", "web-2", "web-3"])
    assert.deepStrictEqual(matching("env=pro?"), ["web-1", "web-2", "db-1"])
    assert.deepStrictEqual(matching("role!=web*,role!=db"), ["box", "user@host.example"])
  })

  it("id and kind pseudo-labels, bare id globs", () => {
    assert.deepStrictEqual(matching("id=web-*"), ["web-1", "web-2", "web-3"])
    assert.deepStrictEqual(matching("id!=web-*"), ["db-1", "box", "user@host.example"])
    assert.deepStrictEqual(matching("web-?"), ["web-1", "web-2", "web-3"])
    assert.deepStrictEqual(matching("*-1"), ["web-1", "db-1"])
    assert.deepStrictEqual(matching("user@host.example"), ["user@host.example"])
    assert.deepStrictEqual(matching("kind=local"), ["box"])
    assert.deepStrictEqual(matching("kind!=local,env=prod,*-1"), ["web-1", "db-1"])
  })

  it("escapes make glob characters and commas literal", () => {
    const special = [target("a*b", { note: "x,y" }), target("axb", { note: "x" })]
    const pick = (expr: string) => {
      const selector = Effect.runSync(Selector.parse(expr))
      return special.filter((t) => Selector.matches(selector, t)).map((t) => t.id)
    }
    assert.deepStrictEqual(pick("a*b"), ["a*b", "axb"])
    assert.deepStrictEqual(pick("a\\*b"), ["a*b"])
    assert.deepStrictEqual(pick("id=a\\*b"), ["a*b"])
    assert.deepStrictEqual(pick("note=x\\,y"), ["a*b"])
    assert.deepStrictEqual(pick("note=x"), ["axb"])
  })

  it("`?` is one character, an emoji included; `*` spans new lines", () => {
    assert.isTrue(Selector.glob("?").test("😀"))
    assert.isFalse(Selector.glob("??").test("😀"))
    assert.isTrue(Selector.glob("a?c").test("aéc"))
    assert.isTrue(Selector.glob("a*c").test("a\nb\nc"))
    assert.isTrue(Selector.glob("[x](y)+").test("[x](y)+"))
    assert.isFalse(Selector.glob("a.c").test("abc"))
  })

  it("compiled globs agree with a reference matcher (property)", () => {
    const alphabet = fc.constantFrom("a", "b", "-", ".", "é", "😀", "\n", "*", "?", "?", "\\", "[", "$")
    const text = fc.array(alphabet, { maxLength: 8 }).map((cs) => cs.join(""))
    fc.assert(
      fc.property(text, text, (pattern, input) => {
        assert.strictEqual(Selector.glob(pattern).test(input), referenceGlob(pattern, input), `${pattern} vs ${input}`)
      }),
      { numRuns: 3000, seed: 7 }
    )
    // inputs built from the pattern itself, so that matches are frequent
    fc.assert(
      fc.property(text, fc.array(fc.tuple(fc.nat(8), text), { maxLength: 3 }), (pattern, edits) => {
        let input = pattern.replace(/[*?\\]/g, "")
        for (const [at, insert] of edits) input = input.slice(0, at) + insert + input.slice(at)
        assert.strictEqual(Selector.glob(pattern).test(input), referenceGlob(pattern, input), `${pattern} vs ${input}`)
      }),
      { numRuns: 3000, seed: 11 }
    )
  })

  it("an escaped id selects exactly that target; `*` matches every id (property)", () => {
    const id = fc.string({ minLength: 1, maxLength: 12, unit: "grapheme" }).filter((s) => !/\s/.test(s))
    fc.assert(
      fc.property(fc.uniqueArray(id, { minLength: 1, maxLength: 6 }), fc.nat(), (list, pick) => {
        const all = list.map((i) => target(i))
        const chosen = list[pick % list.length]!
        const exact = Effect.runSync(Selector.select(all, `id=${escapeGlob(chosen)}`))
        assert.deepStrictEqual(exact.map((t) => t.id), [chosen])
        assert.strictEqual(Effect.runSync(Selector.select(all, "id=*")).length, list.length)
      }),
      { numRuns: 500, seed: 3 }
    )
  })
})

describe("Selector.select", () => {
  it("several expressions combine with OR, keeping the targets' order", () => {
    assert.deepStrictEqual(ids(["kind=local", "role=db"]), ["db-1", "box"])
    assert.deepStrictEqual(ids(["role=db", "canary"]), ["web-2", "db-1"])
    assert.deepStrictEqual(ids("canary"), ["web-2"])
    assert.deepStrictEqual(ids([]), targets.map((t) => t.id))
  })

  it.effect("nothing matched is SelectorMatchedNothing naming the expression and what is available", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Selector.select(targets, "role=wbe"))
      assert.strictEqual(error.reason, "SelectorMatchedNothing")
      assert.match(error.description, /no target matches "role=wbe"/)
      assert.match(error.description, /6 targets available: ids: web-1, web-2, web-3, db-1, box, user@host\.example;/)
      assert.match(error.description, /labels: canary=true, env=prod, env=staging, role=batch, role=db, role=web$/)

      const several = yield* Effect.flip(Selector.select(targets, ["role=x", "id=zz*"]))
      assert.match(several.description, /no target matches any of "role=x", "id=zz\*"/)

      // a bare id is a label test: the error says how to select the target
      const bare = yield* Effect.flip(Selector.select(targets, "box"))
      assert.match(bare.description, /to select the target use id=box/)

      // bad syntax is reported before matching
      const bad = yield* Effect.flip(Selector.select(targets, ["role=web", "=x"]))
      assert.strictEqual(bad.reason, "InvalidValue")
    }))

  it.effect("lists at most 10 ids and labels", () =>
    Effect.gen(function*() {
      const many = Array.from({ length: 25 }, (_, i) => target(`t${i}`, { n: String(i) }))
      const error = yield* Effect.flip(Selector.select(many, "nope=1"))
      assert.match(error.description, /ids: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, \.\.\. and 15 more;/)
      assert.match(error.description, /labels: (n=\d+, ){10}\.\.\. and 15 more$/)
    }))
})
