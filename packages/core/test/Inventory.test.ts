import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as YAML from "yaml"
import type { InvalidPlan } from "../src/InvalidPlan.js"
import * as Inventory from "../src/Inventory.js"
import * as Target from "../src/Target.js"

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "inventory")

// a transport's kind, as a transport package would declare it
const Ssh = Target.make("ssh", {
  host: Schema.String,
  port: Schema.optionalWith(Schema.Int, { default: () => 22 }),
  user: Schema.optional(Schema.String),
  via: Schema.optional(Schema.Struct({ host: Schema.String, port: Schema.optional(Schema.Int) }))
})
const kinds = [Target.Local, Ssh]

const parse = (text: string, file = "inventory.yaml") => Inventory.parse(text, file, kinds)
const parseError = (text: string, file = "inventory.yaml") => Effect.flip(parse(text, file))
const fixture = (name: string) => fs.readFileSync(path.join(fixtures, name), "utf8")

const assertError = (
  error: InvalidPlan,
  expected: { reason: InvalidPlan["reason"]; path: string; description: ReadonlyArray<RegExp> }
) => {
  assert.strictEqual(error.reason, expected.reason, error.message)
  assert.strictEqual(error.path, expected.path, error.message)
  for (const re of expected.description) assert.match(error.description, re)
}

describe("Inventory.parse", () => {
  it.effect("parses the documented format: defaults, group defaults, labels, group label", () =>
    Effect.gen(function*() {
      const inventory = yield* parse(fixture("inventory.yaml"))
      assert.strictEqual(inventory.file, "inventory.yaml")
      assert.deepStrictEqual(inventory.targets.map((t) => t.id), ["web-1", "web-2", "box"])
      assert.deepStrictEqual(inventory.groups, { web: ["web-1", "web-2"] })
      assert.deepStrictEqual(inventory.targets[0], {
        kind: "ssh",
        id: "web-1",
        host: "10.0.0.1",
        port: 2222,
        user: "deploy",
        labels: { env: "prod", role: "web", group: "web" },
        os: "linux"
      } as Target.Target)
      assert.deepStrictEqual(inventory.targets[1]!.labels, { env: "prod", role: "web", canary: "true", group: "web" })
      // `user` (a default for ssh) is dropped for the local target; labels still merge; no group label
      assert.deepStrictEqual(inventory.targets[2], {
        kind: "local",
        id: "box",
        labels: { env: "prod", role: "db" },
        os: "linux"
      } as Target.Target)
    }))

  it.effect("keeps label values as written: numbers and booleans become their source text", () =>
    Effect.gen(function*() {
      const inventory = yield* parse(`
targets:
  - id: a
    kind: local
    labels: { version: 1.10, canary: true, rack: 007, hex: 0x1F, name: plain, quoted: "1.10" }
`)
      assert.deepStrictEqual(inventory.targets[0]!.labels, {
        version: "1.10",
        canary: "true",
        rack: "007",
        hex: "0x1F",
        name: "plain",
        quoted: "1.10"
      })
    }))

  it.effect("an unresolved alias or an alias bomb is an invalid inventory, not a defect", () =>
    Effect.gen(function*() {
      const unresolved = yield* parseError(`targets: [{ id: a, kind: local, labels: *nowhere }]`)
      assert.strictEqual(unresolved.reason, "InvalidInventory")
      const levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
      for (const [i, name] of ["b", "c", "d", "e", "f"].entries()) {
        const previous = i === 0 ? "a" : ["b", "c", "d", "e"][i - 1]!
        levels.push(`${name}: &${name} [${Array(10).fill(`*${previous}`).join(", ")}]`)
      }
      const bomb = yield* parseError(`x-bomb:\n  ${levels.join("\n  ")}\ntargets: [{ id: a, kind: local }]\n`)
      assertError(bomb, { reason: "InvalidInventory", path: "inventory.yaml", description: [/alias/i] })
    }))

  it.effect("refuses null, list and mapping label values, naming the label", () =>
    Effect.gen(function*() {
      const error = yield* parseError(`
groups:
  web:
    defaults: { kind: local, labels: { role: } }
    targets: [{ id: a }]
`)
      assertError(error, {
        reason: "InvalidInventory",
        path: "inventory.yaml: groups.web.defaults.labels.role",
        description: [/label values must be strings/, /got nothing/, /line 4/]
      })
      const list = yield* parseError(`targets: [{ id: a, kind: local, labels: { roles: [a, b] } }]`)
      assertError(list, {
        reason: "InvalidInventory",
        path: "inventory.yaml: targets[0].labels.roles",
        description: [/got a list/]
      })
    }))

  it.effect("names the file, the path inside it and the line of a bad field", () =>
    Effect.gen(function*() {
      const error = yield* parseError(fixture("bad-port.yaml"))
      assertError(error, {
        reason: "InvalidInventory",
        path: "inventory.yaml: groups.web.targets[1].port",
        description: [/Expected/, /"eighty"/, /line 9, column 15/]
      })
      assert.match(error.message, /^InvalidInventory at inventory\.yaml: groups\.web\.targets\[1\]\.port: /)
      assert.notMatch(error.description, /more problem/)
    }))

  it.effect("locates a bad value inherited from defaults where it is defined", () =>
    Effect.gen(function*() {
      const error = yield* parseError(`
defaults: { kind: ssh }
groups:
  web:
    defaults: { port: "80x" }
    targets:
      - { id: web-1, host: h1 }
`)
      assertError(error, {
        reason: "InvalidInventory",
        path: "inventory.yaml: groups.web.defaults.port",
        description: [/"80x"/, /line 5/]
      })
    }))

  it.effect("names a missing required field on the target", () =>
    Effect.gen(function*() {
      const error = yield* parseError(`
defaults: { kind: ssh }
targets:
  - { id: ok, host: h }
  - { id: nohost }
`)
      assertError(error, {
        reason: "InvalidInventory",
        path: "inventory.yaml: targets[1].host",
        description: [/missing required field for kind "ssh"/, /line 5/]
      })
    }))

  it.effect("refuses an unknown field on a target, and a default that no kind has", () =>
    Effect.gen(function*() {
      const typo = yield* parseError(`targets: [{ id: a, kind: ssh, hots: h }]`)
      assertError(typo, {
        reason: "InvalidInventory",
        path: "inventory.yaml: targets[0].hots",
        description: [/unknown field for kind "ssh"/]
      })
      const badDefault = yield* parseError(`
defaults: { kind: ssh, usr: deploy }
targets: [{ id: a, host: h }]
`)
      assertError(badDefault, {
        reason: "InvalidInventory",
        path: "inventory.yaml: defaults.usr",
        description: [/no target kind has it/, /local, ssh/]
      })
      const unknownKey = yield* parseError(`tragets: [{ id: a, kind: local }]`)
      assertError(unknownKey, {
        reason: "InvalidInventory",
        path: "inventory.yaml: tragets",
        description: [/unknown key "tragets"/]
      })
      const groupKey = yield* parseError(`groups: { web: { target: [] } }`)
      assertError(groupKey, {
        reason: "InvalidInventory",
        path: "inventory.yaml: groups.web.target",
        description: [/expected `defaults` or `targets`/]
      })
    }))

  it.effect("unknown kind lists the known kinds; a missing kind says where to set it", () =>
    Effect.gen(function*() {
      const unknown = yield* parseError(`
groups:
  win:
    defaults: { kind: winrm }
    targets: [{ id: w1 }]
`)
      assertError(unknown, {
        reason: "InvalidInventory",
        path: "inventory.yaml: groups.win.defaults.kind",
        description: [/unknown target kind "winrm"/, /known kinds: local, ssh/]
      })
      const missing = yield* parseError(`targets: [{ id: a }]`)
      assertError(missing, {
        reason: "InvalidInventory",
        path: "inventory.yaml: targets[0].kind",
        description: [/missing `kind`/, /known kinds: local, ssh/]
      })
    }))

  it.effect("reports YAML syntax errors with line and column", () =>
    Effect.gen(function*() {
      const error = yield* parseError(fixture("syntax-error.yaml"), "inv/syntax-error.yaml")
      assert.strictEqual(error.reason, "InvalidInventory")
      assert.match(error.path, /^inv\/syntax-error\.yaml:\d+:\d+$/)
      assert.match(error.description, /invalid YAML/)
      const dupKey = yield* parseError("targets: []\ntargets: []\n")
      assert.strictEqual(dupKey.path, "inventory.yaml:2:1")
      assert.match(dupKey.description, /unique/)
    }))

  it.effect("duplicate ids name both places; the same id in two groups says a target has one group", () =>
    Effect.gen(function*() {
      const error = yield* parseError(fixture("duplicate-across-groups.yaml"))
      assertError(error, {
        reason: "DuplicateTargetId",
        path: "inventory.yaml: groups.db.targets[1].id",
        description: [
          /duplicate target id "shared"/,
          /also defined at groups\.web\.targets\[0\]\.id \(line 5/,
          /belongs to one group only/
        ]
      })
      const plain = yield* parseError(`
defaults: { kind: local }
targets: [{ id: a }, { id: b }, { id: a }]
`)
      assertError(plain, {
        reason: "DuplicateTargetId",
        path: "inventory.yaml: targets[2].id",
        description: [/also defined at targets\[0\]\.id/, /must be unique/]
      })
    }))

  it.effect("an inventory without targets is NoTargets", () =>
    Effect.gen(function*() {
      for (const text of ["", fixture("empty.yaml"), "{}", "groups: { web: { targets: [] } }", "targets:"]) {
        const error = yield* parseError(text)
        assertError(error, { reason: "NoTargets", path: "inventory.yaml", description: [/no targets/] })
      }
    }))

  it.effect("refuses a document that is not a mapping, and targets that are not mappings", () =>
    Effect.gen(function*() {
      const list = yield* parseError("- { id: a, kind: local }\n")
      assertError(list, { reason: "InvalidInventory", path: "inventory.yaml", description: [/got a list/] })
      const scalar = yield* parseError("targets: [web-1]\n")
      assertError(scalar, {
        reason: "InvalidInventory",
        path: "inventory.yaml: targets[0]",
        description: [/expected a target/, /"web-1"/]
      })
    }))

  it.effect("supports anchors and merge keys under x- keys", () =>
    Effect.gen(function*() {
      const inventory = yield* parse(fixture("anchors.yaml"))
      assert.deepStrictEqual(
        inventory.targets.map((t) => [t.id, (t as Target.Target & { user?: string }).user]),
        [["a", "ops"], ["b", "root"]]
      )
    }))

  it.effect("the group label is the group's name, whatever defaults say; nested mappings deep-merge", () =>
    Effect.gen(function*() {
      const inventory = yield* parse(`
defaults: { kind: ssh, labels: { group: none }, via: { host: bastion, port: 2200 } }
groups:
  db:
    targets: [{ id: db-1, host: h, via: { host: jump } }]
targets: [{ id: lone, host: h2 }]
`)
      const [db1, lone] = inventory.targets as ReadonlyArray<Target.Target & { via?: unknown }>
      assert.strictEqual(db1!.labels.group, "db")
      assert.deepStrictEqual(db1!.via, { host: "jump", port: 2200 })
      assert.strictEqual(lone!.labels.group, "none")
    }))

  it("merged labels equal defaults, then group defaults, then the target's, plus the group (property)", () => {
    const key = fc.constantFrom("env", "role", "tier", "zone")
    const value = fc.oneof(fc.constantFrom("a", "b", "1.10", "true"), fc.integer({ min: 0, max: 99 }), fc.boolean())
    const labels = fc.dictionary(key, value, { maxKeys: 3 })
    const inventory = fc.record({
      defaults: labels,
      groups: fc.dictionary(
        fc.constantFrom("g1", "g2", "g3"),
        fc.record({
          defaults: labels,
          targets: fc.array(labels, { maxLength: 3 })
        }),
        { maxKeys: 3 }
      ),
      targets: fc.array(labels, { maxLength: 3 })
    })
    const str = (l: Record<string, unknown>) => Object.fromEntries(Object.entries(l).map(([k, v]) => [k, String(v)]))
    fc.assert(
      fc.property(inventory, (inv) => {
        let n = 0
        const expected: Array<[string, Record<string, string>]> = []
        const doc = {
          defaults: { kind: "local", labels: inv.defaults },
          groups: Object.fromEntries(
            Object.entries(inv.groups).map(([name, g]) => [name, {
              defaults: { labels: g.defaults },
              targets: g.targets.map((l) => {
                const id = `t${n++}`
                expected.push([id, { ...str(inv.defaults), ...str(g.defaults), ...str(l), group: name }])
                return { id, labels: l }
              })
            }])
          ),
          targets: inv.targets.map((l) => {
            const id = `t${n++}`
            expected.push([id, { ...str(inv.defaults), ...str(l) }])
            return { id, labels: l }
          })
        }
        const result = Effect.runSync(Effect.either(parse(YAML.stringify(doc))))
        if (n === 0) return result._tag === "Left" && result.left.reason === "NoTargets"
        assert.strictEqual(result._tag, "Right")
        if (result._tag !== "Right") return false
        const got = new Map(result.right.targets.map((t) => [t.id, t.labels]))
        for (const [id, want] of expected) assert.deepStrictEqual(got.get(id), want)
        return got.size === expected.length
      }),
      { numRuns: 200, seed: 42 }
    )
  })
})

describe("Inventory.load", () => {
  it.effect("reads a file and names it in errors", () =>
    Effect.gen(function*() {
      const inventory = yield* Inventory.load(path.join(fixtures, "inventory.yaml"), kinds)
      assert.strictEqual(inventory.targets.length, 3)
      const bad = path.join(fixtures, "bad-port.yaml")
      const error = yield* Effect.flip(Inventory.load(bad, kinds))
      assert.strictEqual(error.path, `${bad}: groups.web.targets[1].port`)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("an unreadable file is FileUnreadable naming the file", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-inventory-"))
      try {
        const missing = path.join(dir, "missing.yaml")
        const error = yield* Effect.flip(Inventory.load(missing, kinds))
        assertError(error, { reason: "FileUnreadable", path: missing, description: [/missing\.yaml/] })
        // a directory is not readable as a file
        const asDir = yield* Effect.flip(Inventory.load(dir, kinds))
        assert.strictEqual(asDir.reason, "FileUnreadable")
        assert.strictEqual(asDir.path, dir)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

describe("Inventory.fromTargets", () => {
  it.effect("takes groups from group labels and selects", () =>
    Effect.gen(function*() {
      const inventory = Inventory.fromTargets([
        Target.local("a", { group: "web", role: "web" }),
        Target.local("b", { role: "db" }),
        Target.local("c", { group: "web" })
      ])
      assert.strictEqual(inventory.file, "<memory>")
      assert.deepStrictEqual(inventory.groups, { web: ["a", "c"] })
      assert.deepStrictEqual(Inventory.group(inventory, "web").map((t) => t.id), ["a", "c"])
      const selected = yield* Inventory.select(inventory, ["role=db", "id=c"])
      assert.deepStrictEqual(selected.map((t) => t.id), ["b", "c"])
    }))
})

describe("Inventory imports", () => {
  // an importer as a transport package would provide one: `fake: N` imports N ssh targets named <prefix>-<i>
  const fake: Inventory.Importer = {
    key: "fake",
    import: ({ dir, options, value }) =>
      typeof value !== "number"
        ? Effect.fail(`expected a count, got ${JSON.stringify(value)}`)
        : Effect.succeed(Array.from({ length: value }, (_, i): Target.Target => ({
          kind: "ssh",
          id: `${String(options.prefix ?? "imp")}-${i}`,
          labels: { dir },
          os: "linux"
        })))
  }
  const withFake = (text: string, file = "/srv/inv/inventory.yaml") =>
    Inventory.parse(text, file, kinds, { importers: [fake] })

  it.effect("adds the imported targets after the file's own, with the entry's group and labels", () =>
    Effect.gen(function*() {
      const inv = yield* withFake(`
targets:
  - { id: own, kind: local }
imports:
  - fake: 2
    prefix: web
    group: web
    labels: { source: fake }
  - fake: 1
`)
      assert.deepStrictEqual(inv.targets.map((t) => t.id), ["own", "web-0", "web-1", "imp-0"])
      assert.deepStrictEqual(inv.targets[1]!.labels, { dir: "/srv/inv", source: "fake", group: "web" })
      assert.deepStrictEqual(inv.targets[3]!.labels, { dir: "/srv/inv" })
      assert.deepStrictEqual(inv.groups, { web: ["web-0", "web-1"] })
      assert.deepStrictEqual(
        Inventory.select(inv, ["group=web"]).pipe(Effect.map((ts) => ts.map((t) => t.id))).pipe(Effect.runSync),
        ["web-0", "web-1"]
      )
    }))

  it.effect("an inventory of imports only is fine; imports that bring nothing are NoTargets", () =>
    Effect.gen(function*() {
      const inv = yield* withFake("imports:\n  - fake: 1\n")
      assert.deepStrictEqual(inv.targets.map((t) => t.id), ["imp-0"])
      const none = yield* Effect.flip(withFake("imports:\n  - fake: 0\n"))
      assert.strictEqual(none.reason, "NoTargets")
    }))

  it.effect("bad imports are InvalidPlans naming the file, the entry and the line", () =>
    Effect.gen(function*() {
      const unknown = yield* Effect.flip(withFake("imports:\n  - sshConfig: ./x\n"))
      assertError(unknown, {
        reason: "InvalidInventory",
        path: "/srv/inv/inventory.yaml: imports[0]",
        description: [/names its importer \(known: fake\)/, /"sshConfig"/, /line 2/]
      })
      const unregistered = yield* Effect.flip(parse("imports:\n  - sshConfig: ./x\n"))
      assert.match(unregistered.description, /none is registered here/)
      const failing = yield* Effect.flip(withFake("targets: [{ id: a, kind: local }]\nimports:\n  - fake: lots\n"))
      assertError(failing, {
        reason: "InvalidInventory",
        path: "/srv/inv/inventory.yaml: imports[0]",
        description: [/^fake: expected a count, got "lots"/, /line 3/]
      })
      const clash = yield* Effect.flip(withFake("targets: [{ id: imp-0, kind: local }]\nimports:\n  - fake: 1\n"))
      assertError(clash, {
        reason: "DuplicateTargetId",
        path: "/srv/inv/inventory.yaml: imports[0]",
        description: [/"imp-0"/, /inventory's own targets/]
      })
      const notList = yield* Effect.flip(withFake("imports: { fake: 1 }\n"))
      assertError(notList, {
        reason: "InvalidInventory",
        path: "/srv/inv/inventory.yaml: imports",
        description: [/a list of imports/]
      })
      const badGroup = yield* Effect.flip(withFake("imports:\n  - { fake: 1, group: [x] }\n"))
      assertError(badGroup, {
        reason: "InvalidInventory",
        path: "/srv/inv/inventory.yaml: imports[0].group",
        description: [/group name/]
      })
    }))
})
