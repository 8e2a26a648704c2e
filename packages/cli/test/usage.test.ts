import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { commandSpecs } from "../src/internal/commands.js"
import { assertBuilt, EXAMPLES, runcmd, tempDir, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

const inventory = path.join(EXAMPLES, "inventory.yaml")

/**
 * Each case: the arguments (a `MARKER` argument is replaced by a command that would create the marker file),
 * and what the message must name.
 */
const cases: ReadonlyArray<
  { readonly name: string; readonly args: ReadonlyArray<string>; readonly names: ReadonlyArray<RegExp> }
> = [
  { name: "an unknown flag", args: ["run", "--frobnicate", "MARKER"], names: [/unknown flag --frobnicate/] },
  {
    name: "a mistyped flag",
    args: ["run", "--concurency", "3", "MARKER"],
    names: [/--concurency/, /Did you mean --concurrency\?/]
  },
  { name: "a stray argument", args: ["run", "touch", "x"], names: [/unexpected argument "touch"/, /after --/] },
  { name: "a flag without its value", args: ["run", "MARKER", "--timeout"], names: [/--timeout needs a value/] },
  {
    name: "--concurrency 0",
    args: ["run", "--concurrency", "0", "MARKER"],
    names: [/--concurrency 0/, /whole number ≥ 1/]
  },
  { name: "--concurrency abc", args: ["run", "--concurrency", "abc", "MARKER"], names: [/--concurrency abc/] },
  { name: "--max-errors 150%", args: ["run", "--max-errors", "150%", "MARKER"], names: [/--max-errors 150%/, /100%/] },
  {
    name: "--timeout -5s",
    args: ["run", "--timeout", "-5s", "MARKER"],
    names: [/--timeout -5s/, /non-negative duration/]
  },
  { name: "--timeout=-5s", args: ["run", "--timeout=-5s", "MARKER"], names: [/--timeout -5s/] },
  { name: "--deadline soon", args: ["run", "--deadline", "soon", "MARKER"], names: [/--deadline soon/] },
  { name: "--batch 0%", args: ["run", "--batch", "0%", "MARKER"], names: [/--batch 0%/] },
  { name: "--retry 1000", args: ["run", "--retry", "1000", "MARKER"], names: [/--retry 1000/] },
  { name: "--output xml", args: ["run", "--output", "xml", "MARKER"], names: [/--output "xml"/, /human, json, jsonl/] },
  { name: "--run-as with a space", args: ["run", "--run-as", "bob smith", "MARKER"], names: [/--run-as bob smith/] },
  {
    name: "--become-method without --run-as",
    args: ["run", "--become-method", "su", "MARKER"],
    names: [/--become-method/, /--run-as/]
  },
  { name: "--env without =", args: ["run", "--env", "NOVALUE", "MARKER"], names: [/--env "NOVALUE"/, /NAME=VALUE/] },
  { name: "--env with a bad name", args: ["run", "--env", "1X=2", "MARKER"], names: [/--env 1X/] },
  {
    name: "--secret from an unset variable",
    args: ["run", "--secret", "TOKEN=RUNCMD_TEST_UNSET_VAR", "MARKER"],
    names: [/--secret TOKEN=RUNCMD_TEST_UNSET_VAR/, /not set/]
  },
  {
    name: "an unreadable script file",
    args: ["run", "--script", "/nonexistent/deploy.sh"],
    names: [/--script \/nonexistent\/deploy.sh/, /cannot read/]
  },
  {
    name: "an unreadable --stdin file",
    args: ["run", "--stdin", "/nonexistent/in.txt", "MARKER"],
    names: [/--stdin \/nonexistent\/in.txt/]
  },
  {
    name: "an unreadable --file",
    args: ["run", "--file", "/nonexistent/app.ini", "MARKER"],
    names: [/--file \/nonexistent\/app.ini/, /cannot read/]
  },
  {
    name: "a --file name that escapes",
    args: ["run", "--file", "../x=/etc/hostname", "MARKER"],
    names: [/--file \.\.\/x=\/etc\/hostname/]
  },
  {
    name: "two --file at one name",
    args: ["run", "--file", "h=/etc/hostname", "--file", "h=/etc/hosts", "MARKER"],
    names: [/job\.files\[1\]\.name/, /collides/]
  },
  {
    name: "a missing inventory",
    args: ["run", "--inventory", "/nonexistent/inv.yaml", "MARKER"],
    names: [/--inventory \/nonexistent\/inv.yaml/]
  },
  {
    name: "a selector that matches nothing",
    args: ["run", "-i", inventory, "--select", "role=mainframe", "MARKER"],
    names: [/--select/, /role=mainframe/, /web-1/]
  },
  { name: "a bad selector", args: ["run", "-i", inventory, "--select", "role==", "MARKER"], names: [/--select/] },
  {
    name: "an unknown --target id",
    args: ["run", "-i", inventory, "--target", "web-9", "MARKER"],
    names: [/--target web-9/, /web-1/]
  },
  {
    name: "--target twice",
    args: ["run", "--target", "a", "--target", "a", "MARKER"],
    names: [/--target a is given twice/]
  },
  {
    name: "--script and --command",
    args: ["run", "--script", path.join(EXAMPLES, "fanout.sh"), "--command", "true"],
    names: [/--script and --command/]
  },
  { name: "nothing to run", args: ["run", "--target", "a"], names: [/nothing to run/, /--script/] },
  {
    name: "--report in a missing directory",
    args: ["run", "--report", "/nonexistent/dir/r.json", "MARKER"],
    names: [/--report \/nonexistent\/dir\/r.json/]
  },
  {
    name: "--rerun-failed with a missing report",
    args: ["run", "--rerun-failed", "/nonexistent/r.json", "MARKER"],
    names: [/--rerun-failed \/nonexistent\/r.json/]
  },
  { name: "an unknown subcommand", args: ["deploy"], names: [/deploy|subcommand/] }
]

describe("bad input: exit 2, a message naming the flag or file, nothing run", () => {
  for (const c of cases) {
    it.scopedLive(c.name, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const marker = path.join(dir, "ran")
        const args = c.args.flatMap((a) => (a === "MARKER" ? ["--command", `touch '${marker}'`] : [a]))
        const r = yield* runcmd(args)
        assert.strictEqual(r.code, 2, `stdout: ${r.stdout}\nstderr: ${r.stderr}`)
        for (const n of c.names) assert.match(r.stderr, n)
        assert.strictEqual(r.stdout, "", "nothing on stdout")
        assert.isFalse(fs.existsSync(marker), "nothing was run")
      }))
  }

  it.scopedLive("an inventory that does not decode: names the file and the field", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inv = writeFile(
        dir,
        "bad.yaml",
        "targets:\n  - { kind: local, id: a }\n  - { kind: local, id: b, colour: blue }\n"
      )
      const marker = path.join(dir, "ran")
      const r = yield* runcmd(["run", "-i", inv, "--command", `touch '${marker}'`])
      assert.strictEqual(r.code, 2, r.stderr)
      assert.include(r.stderr, "bad.yaml")
      assert.match(r.stderr, /targets\[1\]/)
      assert.match(r.stderr, /colour/)
      assert.isFalse(fs.existsSync(marker))
    }))

  it.live("every flag of the pre-parser is an option of the command (and the reverse)", () =>
    Effect.gen(function*() {
      for (const spec of commandSpecs) {
        const r = yield* runcmd([...spec.path, "--help"])
        assert.strictEqual(r.code, 0, r.stderr)
        const help = r.stdout.replace(/\u001b\[[0-9;]*m/g, "")
        const documented = new Set([...help.matchAll(/^ {2}(?:-\w, | {4})--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!))
        for (const f of spec.flags) assert.isTrue(documented.has(f.name), `--${f.name} of ${spec.path.join(" ")}`)
        for (const d of documented) {
          if (["help", "log-level"].includes(d)) continue
          assert.isTrue(spec.flags.some((f) => f.name === d), `--${d} is known to the pre-parser`)
        }
      }
    }))
})
