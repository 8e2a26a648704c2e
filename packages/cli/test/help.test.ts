import * as Command from "@effect/cli/Command"
import type * as Usage from "@effect/cli/Usage"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as fs from "node:fs"
import module from "node:module"
import * as path from "node:path"
import { version } from "../src/Cli.js"
import { builtIns } from "../src/internal/argv.js"
import { commandSpecs, emulate, globalFlags, inventory } from "../src/internal/commands.js"
import * as Help from "../src/internal/help.js"
import { makeCommands } from "../src/internal/parser.js"
import { assertBuilt, runcmd, tempDir } from "./helpers.js"

const noise = [
  /user-defined piece of text/i,
  /this setting is optional/i,
  /true or false value/i,
  /may be repeated/i,
  /one of the following/i
]

/** Every help text, by the command line that shows it. */
const helps = (width?: number): ReadonlyArray<readonly [string, string]> => [
  ["runcmd --help", Help.main(width)],
  ["runcmd", Help.short(width)],
  ["runcmd inventory --help", Help.group(inventory, width)],
  ...commandSpecs.map((c) => [`runcmd ${c.path.join(" ")} --help`, Help.command(c, width)] as const)
]

/** The flags a help text documents: `-i, --inventory FILE  ...` lines, as `--inventory` and `-i`. */
const documented = (help: string): Array<{ readonly name: string; readonly alias: string | undefined }> =>
  [...help.matchAll(/^ {2}(?:-(\w), | {4})--([a-z][a-z0-9-]*)(?: |$)/gm)].map((m) => ({ name: m[2]!, alias: m[1] }))

/** The named options in an `@effect/cli` usage (`--inventory`, `-i`), and its positional arguments. */
const namesIn = (usage: Usage.Usage, out: Array<string> = []): Array<string> => {
  switch (usage._tag) {
    case "Named":
      for (const name of usage.names) out.push(name)
      break
    case "Optional":
    case "Repeated":
      namesIn(usage.usage, out)
      break
    case "Alternation":
    case "Concat":
      namesIn(usage.left, out)
      namesIn(usage.right, out)
      break
    default:
      break
  }
  return out
}

/** The usage of a command as `@effect/cli` parses it. */
const parserUsage = (path: ReadonlyArray<string>): Usage.Usage => {
  const { byPath } = makeCommands([], Effect.runSync(Ref.make(0)))
  const usages: Record<string, Usage.Usage> = {
    "run": Command.getUsage(byPath.run),
    "inventory check": Command.getUsage(byPath["inventory check"]),
    "report": Command.getUsage(byPath.report),
    "azure run-commands list": Command.getUsage(byPath["azure run-commands list"]),
    "azure run-commands show": Command.getUsage(byPath["azure run-commands show"]),
    "azure run-commands delete": Command.getUsage(byPath["azure run-commands delete"])
  }
  assert.sameMembers(Object.keys(byPath), Object.keys(usages))
  const usage = usages[path.join(" ")]
  assert.isDefined(usage, path.join(" "))
  return usage!
}

describe("help", () => {
  it("fits 100 columns (and a narrower terminal, but for the examples)", () => {
    for (const [what, help] of helps()) {
      for (const line of help.split("\n")) assert.isAtMost(line.length, 100, `${what}: ${JSON.stringify(line)}`)
    }
    for (const [what, help] of helps(72)) {
      for (const line of help.split("\n")) {
        if (line.startsWith("  runcmd ")) continue
        assert.isAtMost(line.length, 72, `${what} at 72 columns: ${JSON.stringify(line)}`)
      }
    }
  })

  it("has none of @effect/cli's boilerplate, and no line padded wide", () => {
    for (const [what, help] of helps()) {
      for (const phrase of noise) assert.notMatch(help, phrase, what)
      assert.notMatch(help, / {36,}/, `${what}: wide padding`)
      assert.notMatch(help, / +$/m, `${what}: trailing spaces`)
      assert.isAtMost(help.split("\n").length, 70, `${what}: short`)
    }
  })

  it("runcmd run --help: one line per flag, grouped, with examples", () => {
    const help = Help.command(commandSpecs.find((c) => c.path[0] === "run")!)
    const headings = [...help.matchAll(/^(\S.*):$/gm)].map((m) => m[1]!)
    for (
      const group of ["Usage", "Targets", "Job", "Policy", "Run as another user", "Output", "Global flags", "Examples"]
    ) {
      assert.isTrue(headings.some((h) => h === group || h.startsWith(`${group} (`)), `group ${group} in ${headings}`)
    }
    assert.isTrue(headings.indexOf("Policy") < headings.indexOf("Output"))
    assert.isAtLeast([...help.matchAll(/^ {2}runcmd run /gm)].length, 3, "examples")
    assert.match(help, /^Exit status: 0 .* 2 bad usage/m)
    // one line per flag at the default width: no description continues on a second line
    assert.notMatch(help, /^ {20,}\S/m, help.split("\n").filter((l) => /^ {20,}\S/.test(l)).join("\n"))
  })

  it("documents each flag of a command once, its alias and every value it accepts", () => {
    for (const spec of commandSpecs) {
      const doc = spec
      const help = Help.command(doc)
      const flags = documented(help)
      for (const f of doc.flags) {
        const lines = flags.filter((d) => d.name === f.name)
        assert.strictEqual(lines.length, 1, `--${f.name} once in runcmd ${doc.path.join(" ")} --help`)
        assert.strictEqual(lines[0]!.alias, f.alias, `--${f.name}'s alias`)
        const line = help.split("\n").find((l) => l.includes(`--${f.name}${f.arg === "" ? "" : ` ${f.arg}`}`))!
        for (const c of f.choices ?? []) assert.include(line, c, `--${f.name} names ${c}`)
        assert.isTrue(f.help.length > 0 && !/\.$/.test(f.help), `--${f.name}: a line without a final period`)
        assert.isTrue(doc.groups.some((g) => g.id === f.group), `--${f.name}: group ${f.group} is shown`)
      }
      for (const p of doc.positionals) assert.match(help, new RegExp(`^ {2}${p.name.replace(".", "\\.")} `, "m"))
    }
  })

  it("every option the parser accepts is in the help, and every flag in the help is one the parser accepts", () => {
    const globals = new Set(
      globalFlags.flatMap((f) => [`--${f.name}`, ...(f.alias === undefined ? [] : [`-${f.alias}`])])
    )
    // `emulate` commands are not the parser's: the pre-parser checks their flags, then each emulator reads its own
    for (const spec of commandSpecs.filter((c) => c.path[0] !== "emulate")) {
      const where = `runcmd ${spec.path.join(" ")}`
      const usage = namesIn(parserUsage(spec.path))
      const parser = usage.filter((n) => n.startsWith("-"))
      assert.sameMembers(
        usage.filter((n) => n.startsWith("<")),
        spec.positionals.map((p) => `<${p.name}>`),
        `${where}: arguments`
      )
      const help = documented(Help.command(spec))
        .flatMap((d) => [`--${d.name}`, ...(d.alias === undefined ? [] : [`-${d.alias}`])])
        .filter((n) => !globals.has(n) || parser.includes(n))
      assert.sameMembers(parser, help, where)
      // and the pre-parser, which refuses any other flag before the parser sees it
      const pre = spec.flags.flatMap((f) => [`--${f.name}`, ...(f.alias === undefined ? [] : [`-${f.alias}`])])
      assert.sameMembers(pre, parser, `${where}: pre-parser`)
    }
  })

  it("documents the global flags (the parser's built-in options) in runcmd --help", () => {
    assert.sameDeepMembers(
      globalFlags.map((f) => ({ name: f.name, alias: f.alias, value: f.value })),
      builtIns.map((f) => ({ name: f.name, alias: f.alias, value: f.value }))
    )
    const help = documented(Help.main())
    assert.sameDeepMembers(help, globalFlags.map((f) => ({ name: f.name, alias: f.alias })))
    // and lists every command
    for (const c of commandSpecs) assert.match(Help.main(), new RegExp(`^ {2}${c.path.join(" ")} `, "m"))
  })
})

describe("help from the built command", () => {
  beforeAll(assertBuilt)

  it.live("runcmd with no arguments: the short help on stderr, exit 2", () =>
    Effect.gen(function*() {
      const r = yield* runcmd([])
      assert.strictEqual(r.code, 2)
      assert.strictEqual(r.stdout, "")
      assert.strictEqual(r.stderr, Help.short())
    }))

  it.live("--help and -h of every command: stdout, exit 0", () =>
    Effect.gen(function*() {
      const cases: Array<readonly [ReadonlyArray<string>, string]> = [
        [["--help"], Help.main()],
        [["-h"], Help.main()],
        [["inventory", "--help"], Help.group(inventory)],
        [["emulate", "--help"], Help.group(emulate)]
      ]
      for (const c of commandSpecs) {
        cases.push([[...c.path, "--help"], Help.command(c)], [[...c.path, "-h"], Help.command(c)])
      }
      for (const [args, expected] of cases) {
        const r = yield* runcmd(args)
        assert.strictEqual(r.code, 0, `${args.join(" ")}: ${r.stderr}`)
        assert.strictEqual(r.stdout, expected, args.join(" "))
        assert.strictEqual(r.stderr, "")
      }
    }), { timeout: 120_000 })

  it.live("--help after other flags, and not when it is a value or after --", () =>
    Effect.gen(function*() {
      const run = Help.command(commandSpecs[0]!)
      const a = yield* runcmd(["run", "-i", "x.yaml", "--timeout=5s", "--help"])
      assert.strictEqual(a.code, 0, a.stderr)
      assert.strictEqual(a.stdout, run)
      const b = yield* runcmd(["run", "--dry-run", "--command=--help"])
      assert.strictEqual(b.code, 0, b.stderr)
      assert.notInclude(b.stdout, "Usage:")
      const c = yield* runcmd(["run", "--dry-run", "--", "grep", "--help"])
      assert.strictEqual(c.code, 0, c.stderr)
      assert.notInclude(c.stdout, "Usage:")
    }))

  it.live("unknown commands and flags, missing arguments: one line naming them and --help, exit 2", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, ReadonlyArray<RegExp>]> = [
        [["deploy"], [
          /^runcmd: unknown command "deploy"\./,
          /run, inventory, report, emulate or azure/,
          /`runcmd --help`/
        ]],
        [["reprot", "x.json"], [/unknown command "reprot"\. Did you mean report\?/]],
        [["inventory", "chek"], [
          /^runcmd inventory: unknown command "chek"\. Did you mean check\? The command is check\./,
          /`runcmd inventory --help`/
        ]],
        [["--frobnicate"], [/^runcmd: unknown flag --frobnicate\./, /`runcmd --help`/]],
        [["--timeout", "5s", "run"], [/--timeout is a flag of `runcmd run`: put it after the command/]],
        [["run", "--frobnicate"], [/^runcmd run: unknown flag --frobnicate\./, /`runcmd run --help`/]],
        [["report", "--frobnicate", "x"], [/^runcmd report: unknown flag --frobnicate\./, /`runcmd report --help`/]],
        [["report"], [/^runcmd report: missing FILE\.json/, /`runcmd report --help`/]],
        [["inventory", "check"], [/^runcmd inventory check: missing FILE/, /`runcmd inventory check --help`/]],
        [["--", "ls"], [/a command is missing/]]
      ]
      for (const [args, patterns] of cases) {
        const r = yield* runcmd(args)
        assert.strictEqual(r.code, 2, `${args.join(" ")}: ${r.stderr}`)
        assert.strictEqual(r.stdout, "", args.join(" "))
        assert.strictEqual(r.stderr.trimEnd().split("\n").length, 1, `${args.join(" ")}: one line: ${r.stderr}`)
        for (const p of patterns) assert.match(r.stderr, p, args.join(" "))
      }
      const group = yield* runcmd(["inventory"])
      assert.strictEqual(group.code, 2)
      assert.strictEqual(group.stderr, Help.group(inventory))
    }))

  // bin/runcmd.js's own V8 code cache (Node < 22.1): a command's bit is set once its code is in the cache
  it.scopedLive.skipIf("enableCompileCache" in module)(
    "help is not a run of the command for the code cache",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const env = { NODE_COMPILE_CACHE: dir, NODE_DISABLE_COMPILE_CACHE: undefined }
        const seen = () => {
          const files = fs.readdirSync(dir).filter((f) => f.endsWith(".v8"))
          assert.strictEqual(files.length, 1, String(files))
          return fs.readFileSync(path.join(dir, files[0]!))[64]!
        }
        assert.strictEqual((yield* runcmd(["run", "--help"], { env })).code, 0)
        assert.strictEqual(seen() & 1, 0, "run --help does not mark run's code as cached")
        assert.strictEqual((yield* runcmd(["run", "--", "true"], { env })).code, 0)
        assert.strictEqual(seen() & 1, 1, "run's first real run adds its code")
      })
  )

  it.live("--version", () =>
    Effect.gen(function*() {
      for (const args of [["--version"], ["run", "--version"]]) {
        const r = yield* runcmd(args)
        assert.strictEqual(r.code, 0, r.stderr)
        assert.strictEqual(r.stdout, `${version}\n`)
      }
    }))
})
