import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as RunEvent from "@runcmd/core/RunEvent"
import * as RunReport from "@runcmd/core/RunReport"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { assertBuilt, EXAMPLES, readTree, runcmd, tempDir, unique, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

const decodeReport = (text: string) => Effect.orDie(RunReport.decodeJson(text))
const decodeEvent = Schema.decodeUnknownSync(RunEvent.RunEventJson)

describe("runcmd run", () => {
  it.live("exit 0 when every target succeeds; output prefixed with the target id and a summary", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["run", "--target", "a", "--target", "b", "--command", "echo hello from $0"])
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /^\[a\] hello from /m)
      assert.match(r.stdout, /^\[b\] hello from /m)
      assert.match(r.stdout, /TARGET\s+OUTCOME\s+EXIT\s+DURATION/)
      assert.match(r.stdout, /^a\s+Succeeded\s+0\s/m)
      assert.match(r.stdout, /2 targets: 2 succeeded/)
    }))

  it.live("no targets at all: runs once on this machine (target `local`)", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["run", "--", "echo", "it's", "$HOME"])
      assert.strictEqual(r.code, 0, r.stderr)
      // argv after -- is a Command: quoted by runcmd, never interpreted by a shell
      assert.match(r.stdout, /^\[local\] it's \$HOME$/m)
    }))

  it.scopedLive("exit 1 when some target fails; stderr lines marked, the failed ids listed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inv = writeFile(
        dir,
        "inv.yaml",
        "targets:\n  - { kind: local, id: ok, env: { CODE: '0' } }\n  - { kind: local, id: bad, env: { CODE: '4' } }\n"
      )
      const f = yield* runcmd(["run", "-i", inv, "--command", "echo out; echo err >&2; exit $CODE"])
      assert.strictEqual(f.code, 1, f.stderr)
      assert.match(f.stdout, /^\[ok\] out$/m)
      assert.match(f.stdout, /^\[bad\] ! err$/m)
      assert.match(f.stdout, /^ok\s+Succeeded\s+0\s/m)
      assert.match(f.stdout, /^bad\s+Failed\s+4\s/m)
      assert.match(f.stdout, /not succeeded: bad$/m)
    }))

  it.live("the README's demo: fan-out over the example inventory, one target fails (exit 1)", () =>
    Effect.gen(function*() {
      const r = yield* runcmd([
        "run",
        "--inventory",
        path.join(EXAMPLES, "inventory.yaml"),
        "--script",
        path.join(EXAMPLES, "fanout.sh")
      ], { timeout: "30 seconds" })
      assert.strictEqual(r.code, 1, r.stderr)
      for (const id of ["web-1", "web-2", "web-3", "cache-1"]) {
        assert.match(r.stdout, new RegExp(`^\\[${id}\\] done$`, "m"))
        assert.match(r.stdout, new RegExp(`^${id}\\s+Succeeded\\s+0\\s`, "m"))
      }
      assert.match(r.stdout, /^\[db-1\] ! error: disk \/var\/lib\/db is 97% full$/m)
      assert.match(r.stdout, /^db-1\s+Failed\s+3\s/m)
      assert.match(r.stdout, /not succeeded: db-1$/m)
    }))

  it.live("--select picks targets of the inventory by label; --target by id", () =>
    Effect.gen(function*() {
      const inv = path.join(EXAMPLES, "inventory.yaml")
      const r = yield* runcmd(["run", "-i", inv, "--select", "role=web,canary!=true", "--output", "json", "--", "true"])
      assert.strictEqual(r.code, 0, r.stderr)
      const report = yield* decodeReport(r.stdout)
      assert.deepStrictEqual(report.outcomes.map((o) => o.targetId), ["web-1", "web-2"])
      const t = yield* runcmd(["run", "-i", inv, "--target", "cache-1", "--output", "json", "--", "true"])
      assert.strictEqual(t.code, 0, t.stderr)
      assert.deepStrictEqual((yield* decodeReport(t.stdout)).outcomes.map((o) => o.targetId), ["cache-1"])
    }))

  it.live("--output json: the RunReport, nothing else on stdout", () =>
    Effect.gen(function*() {
      const r = yield* runcmd([
        "run",
        "-t",
        "a",
        "-t",
        "b",
        "--output",
        "json",
        "--command",
        "echo hi; [ \"$X\" = 1 ] && exit 5; exit 0",
        "--env",
        "X=1"
      ])
      assert.strictEqual(r.code, 1, r.stderr)
      const report = yield* decodeReport(r.stdout)
      assert.strictEqual(report.version, 1)
      assert.strictEqual(report.outcomes.length, 2)
      for (const o of report.outcomes) {
        assert.strictEqual(o._tag, "Failed")
        if (o._tag === "Failed") assert.strictEqual(o.exitCode, 5)
        assert.strictEqual(o.stdout.head + o.stdout.tail, "hi\n")
      }
      assert.deepStrictEqual(RunReport.failedTargets(report), ["a", "b"])
    }))

  it.live("--output jsonl: one RunEvent per line, decodable with RunEventJson", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["run", "-t", "a", "--output", "jsonl", "--", "printf", "x\\ny\\n"])
      assert.strictEqual(r.code, 0, r.stderr)
      const events = r.stdout.trim().split("\n").map((l) => decodeEvent(JSON.parse(l)))
      const tags = events.map((e) => e._tag)
      assert.strictEqual(tags[0], "RunStarted")
      assert.strictEqual(tags[tags.length - 1], "RunFinished")
      assert.include(tags, "Started")
      assert.include(tags, "Finished")
      const text = events.flatMap((e) => (e._tag === "Output" ? [new TextDecoder().decode(e.chunk.bytes)] : [])).join(
        ""
      )
      assert.strictEqual(text, "x\ny\n")
    }))

  it.scopedLive("--report and --out-dir: the JSON report and per-target output files", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const reportFile = path.join(dir, "report.json")
      const outDir = path.join(dir, "out")
      const r = yield* runcmd([
        "run",
        "-t",
        "one",
        "-t",
        "two",
        "--report",
        reportFile,
        "--out-dir",
        outDir,
        "--command",
        "echo to-stdout; echo to-stderr >&2"
      ])
      assert.strictEqual(r.code, 0, r.stderr)
      const report = yield* decodeReport(fs.readFileSync(reportFile, "utf8"))
      assert.isTrue(RunReport.isSuccess(report))
      const files = readTree(outDir)
      assert.strictEqual(files["one.stdout"], "to-stdout\n")
      assert.strictEqual(files["one.stderr"], "to-stderr\n")
      assert.strictEqual(files["two.stdout"], "to-stdout\n")
    }))

  it.live("--group: each target's output as one block when it finishes", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["run", "-t", "a", "-t", "b", "--group", "--command", "echo one; echo two"])
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /==> a: Succeeded[^\n]*\none\ntwo\n/)
      assert.match(r.stdout, /==> b: Succeeded[^\n]*\none\ntwo\n/)
    }))

  it.scopedLive("--env, --cwd, --stdin FILE, --stdin -, script arguments after --", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const input = writeFile(dir, "input.txt", "from a file\n")
      const r = yield* runcmd([
        "run",
        "--env",
        "GREETING=hello world",
        "--cwd",
        dir,
        "--stdin",
        input,
        "--command",
        "echo \"$GREETING\"; pwd; cat; echo \"args: $1 $2\"",
        "--",
        "first",
        "second arg"
      ])
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /^\[local\] hello world$/m)
      assert.match(r.stdout, new RegExp(`^\\[local\\] ${fs.realpathSync(dir)}$`, "m"))
      assert.match(r.stdout, /^\[local\] from a file$/m)
      assert.match(r.stdout, /^\[local\] args: first second arg$/m)
      const piped = yield* runcmd(["run", "--stdin", "-", "--", "cat"], { input: "piped in\n" })
      assert.strictEqual(piped.code, 0, piped.stderr)
      assert.match(piped.stdout, /^\[local\] piped in$/m)
    }))

  it.scopedLive("--file ships files into $RUNCMD_FILES (named, executable kept), removed afterwards", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const data = writeFile(dir, "data.txt", "shipped data\n")
      const tool = writeFile(dir, "tool.sh", "#!/bin/sh\necho \"tool: $1\"\n")
      fs.chmodSync(tool, 0o755)
      const r = yield* runcmd([
        "run",
        "--file",
        data,
        "--file",
        `bin/tool=${tool}`,
        "--command",
        "cat \"$RUNCMD_FILES/data.txt\"; \"$RUNCMD_FILES/bin/tool\" x; ls -l \"$RUNCMD_FILES/data.txt\" | cut -c1-10; echo \"dir=$RUNCMD_FILES\""
      ])
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /^\[local\] shipped data$/m)
      assert.match(r.stdout, /^\[local\] tool: x$/m)
      assert.match(r.stdout, /^\[local\] -rw-------$/m)
      const shipped = /^\[local\] dir=(.+)$/m.exec(r.stdout)?.[1]
      assert.isDefined(shipped)
      assert.isFalse(fs.existsSync(shipped!), "removed after the run")
    }))

  it.scopedLive("--timeout kills a target that runs too long (TimedOut, exit 1)", () =>
    Effect.gen(function*() {
      const r = yield* runcmd([
        "run",
        "--timeout",
        "500ms",
        "--kill-grace",
        "200ms",
        "--output",
        "json",
        "--",
        "sleep",
        "20"
      ])
      assert.strictEqual(r.code, 1, r.stderr)
      const report = yield* decodeReport(r.stdout)
      assert.strictEqual(report.outcomes[0]!._tag, "TimedOut")
      assert.isBelow(report.durationMs, 10_000)
    }))

  it.scopedLive("--secret: the value reaches the script but never stdout, stderr, the report or the out-dir files", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const secret = `s3cr3t-${unique()}`
      const reportFile = path.join(dir, "report.json")
      const outDir = path.join(dir, "out")
      const marker = path.join(dir, "seen")
      const script =
        `printf '%s' "$API_TOKEN" > '${marker}'; echo "token=$API_TOKEN"; echo "err $API_TOKEN" >&2; exit 1`
      for (const output of ["human", "json", "jsonl"]) {
        const r = yield* runcmd(
          [
            "run",
            "-t",
            "a",
            "--secret",
            "API_TOKEN=MY_TOKEN",
            "--report",
            reportFile,
            "--out-dir",
            outDir,
            "--output",
            output,
            "--command",
            script
          ],
          { env: { MY_TOKEN: secret } }
        )
        assert.strictEqual(r.code, 1, r.stderr)
        assert.strictEqual(fs.readFileSync(marker, "utf8"), secret, "the script received the secret")
        for (
          const text of [r.stdout, r.stderr, fs.readFileSync(reportFile, "utf8"), ...Object.values(readTree(outDir))]
        ) {
          assert.notInclude(text, secret)
          assert.notInclude(text, Buffer.from(secret).toString("base64").replace(/=+$/, ""))
        }
        if (output === "human") assert.match(r.stdout, /token=\[REDACTED\]/)
        if (output === "jsonl") {
          // output bytes travel base64-encoded in events: look inside them too
          const text = r.stdout.trim().split("\n").map((l) => decodeEvent(JSON.parse(l))).flatMap((e) =>
            e._tag === "Output" ? [new TextDecoder().decode(e.chunk.bytes)] : []
          ).join("")
          assert.include(text, "token=[REDACTED]")
          assert.notInclude(text, secret)
        }
      }
    }))

  it.live("--concurrency 1 --max-errors 0: after the first failure the rest is skipped", () =>
    Effect.gen(function*() {
      const r = yield* runcmd([
        "run",
        "-t",
        "a",
        "-t",
        "b",
        "-t",
        "c",
        "--concurrency",
        "1",
        "--max-errors",
        "0",
        "--output",
        "json",
        "--",
        "false"
      ])
      assert.strictEqual(r.code, 1, r.stderr)
      const report = yield* decodeReport(r.stdout)
      assert.deepStrictEqual(report.outcomes.map((o) => o._tag), ["Failed", "Skipped", "Skipped"])
      const skipped = report.outcomes[1]!
      if (skipped._tag === "Skipped") assert.strictEqual(skipped.why, "BudgetExhausted")
    }))

  it.live("--batch and --deadline flow into the policy (rolling waves; the deadline times out the rest)", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(
        [
          "run",
          "-t",
          "a",
          "-t",
          "b",
          "-t",
          "c",
          "--batch",
          "1",
          "--deadline",
          "1500ms",
          "--kill-grace",
          "100ms",
          "--output",
          "json",
          "--",
          "sleep",
          "1"
        ],
        { timeout: "30 seconds" }
      )
      assert.strictEqual(r.code, 1, r.stderr)
      const report = yield* decodeReport(r.stdout)
      const [a, b, c] = report.outcomes
      assert.strictEqual(a!._tag, "Succeeded")
      assert.strictEqual(b!._tag, "TimedOut")
      if (b!._tag === "TimedOut") assert.strictEqual(b!.limit, "deadline")
      assert.include(["Skipped", "TimedOut"], c!._tag)
      assert.isBelow(report.durationMs, 5000)
    }))
})
