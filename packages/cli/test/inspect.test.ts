import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as RunReport from "@runcmd/core/RunReport"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { assertBuilt, EXAMPLES, runcmd, tempDir, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

const inventory = path.join(EXAMPLES, "inventory.yaml")

describe("runcmd inventory check", () => {
  it.live("lists the targets, their groups and labels", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["inventory", "check", inventory])
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /ok .*inventory\.yaml: 5 targets in 2 groups \(web, db\)/)
      assert.match(r.stdout, /^web-3\s+local\s+web\s+env=demo role=web canary=true group=web$/m)
      assert.match(r.stdout, /^cache-1\s+local\s+-\s+env=demo role=cache$/m)
      assert.match(r.stdout, /^ {2}role: cache, db, web$/m)
    }))

  it.live("--select shows what a selector matches; --output json", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["inventory", "check", inventory, "--select", "role=web,!canary", "--output", "json"])
      assert.strictEqual(r.code, 0, r.stderr)
      const parsed = JSON.parse(r.stdout) as { targets: Array<{ id: string }>; groups: Record<string, Array<string>> }
      assert.deepStrictEqual(parsed.targets.map((t) => t.id), ["web-1", "web-2"])
      assert.deepStrictEqual(parsed.groups.db, ["db-1"])
    }))

  it.scopedLive("an invalid inventory: exit 2 with the file and the problem", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bad = writeFile(dir, "bad.yaml", "groups:\n  web:\n    targets:\n      - { kind: local, id: web 1 }\n")
      const r = yield* runcmd(["inventory", "check", bad])
      assert.strictEqual(r.code, 2)
      assert.include(r.stderr, "bad.yaml")
      assert.match(r.stderr, /groups\.web\.targets\[0\]/)
      assert.strictEqual(r.stdout, "")
      const missing = yield* runcmd(["inventory", "check", path.join(dir, "nope.yaml")])
      assert.strictEqual(missing.code, 2)
      assert.include(missing.stderr, "nope.yaml")
      const unknownKind = writeFile(dir, "kind.yaml", "targets:\n  - { kind: winrm, id: w1 }\n")
      const k = yield* runcmd(["inventory", "check", unknownKind])
      assert.strictEqual(k.code, 2)
      assert.match(k.stderr, /winrm/)
    }))
})

describe("runcmd inventory check with imports", () => {
  it.scopedLive("`imports: [{ sshConfig: FILE }]` brings the hosts of an OpenSSH config (relative to the inventory)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      writeFile(
        dir,
        "ssh_config",
        "Host build-1 build-2 other\n  HostName 127.0.0.1\n  User ci\n  StrictHostKeyChecking no\n"
      )
      const file = writeFile(
        dir,
        "hosts.yaml",
        "targets:\n  - { id: box, kind: local }\nimports:\n  - sshConfig: ./ssh_config\n    hosts: [\"build-*\"]\n    group: build\n"
      )
      const r = yield* runcmd(["inventory", "check", file, "--output", "json"])
      assert.strictEqual(r.code, 0, r.stderr)
      const parsed = JSON.parse(r.stdout) as {
        targets: Array<{ id: string; kind: string }>
        groups: Record<string, Array<string>>
      }
      assert.deepStrictEqual(parsed.targets.map((t) => [t.id, t.kind]), [["box", "local"], ["build-1", "ssh"], [
        "build-2",
        "ssh"
      ]])
      assert.deepStrictEqual(parsed.groups.build, ["build-1", "build-2"])
      const bad = writeFile(dir, "bad.yaml", "imports:\n  - sshConfig: ./missing_config\n")
      const b = yield* runcmd(["inventory", "check", bad])
      assert.strictEqual(b.code, 2)
      assert.match(b.stderr, /bad\.yaml: imports\[0\]/)
      assert.include(b.stderr, "missing_config")
    }))
})

describe("runcmd report and --rerun-failed", () => {
  it.scopedLive(
    "re-renders a saved report, lists its failures, and reruns only the failed targets",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const reportFile = path.join(dir, "first.json")
        const first = yield* runcmd(
          [
            "run",
            "-i",
            inventory,
            "--report",
            reportFile,
            "--output",
            "json",
            "--command",
            "echo ran; [ -z \"$FAIL\" ]"
          ]
        )
        assert.strictEqual(first.code, 1, first.stderr)
        assert.strictEqual(fs.readFileSync(reportFile, "utf8").trim(), first.stdout.trim())

        const shown = yield* runcmd(["report", reportFile])
        assert.strictEqual(shown.code, 1, "exits as that run did")
        assert.match(shown.stdout, /TARGET\s+OUTCOME\s+EXIT\s+DURATION/)
        assert.match(shown.stdout, /^db-1\s+Failed\s+1\s/m)
        assert.match(shown.stdout, /^web-1\s+Succeeded\s+0\s/m)
        assert.match(shown.stdout, /not succeeded: db-1$/m)

        const ids = yield* runcmd(["report", reportFile, "--failed"])
        assert.strictEqual(ids.stdout, "db-1\n")
        const withOutput = yield* runcmd(["report", reportFile, "--show-output"])
        assert.match(withOutput.stdout, /✗ db-1 Failed \(exit 1\)[^\n]*\n {4}ran/)

        const secondFile = path.join(dir, "second.json")
        const again = yield* runcmd([
          "run",
          "-i",
          inventory,
          "--rerun-failed",
          reportFile,
          "--report",
          secondFile,
          "--output",
          "json",
          "--",
          "true"
        ])
        assert.strictEqual(again.code, 0, again.stderr)
        const second = yield* Effect.orDie(RunReport.decodeJson(fs.readFileSync(secondFile, "utf8")))
        assert.deepStrictEqual(second.outcomes.map((o) => o.targetId), ["db-1"])

        // nothing left to rerun
        const none = yield* runcmd(["run", "-i", inventory, "--rerun-failed", secondFile, "--", "true"])
        assert.strictEqual(none.code, 0)
        assert.match(none.stderr, /nothing to rerun/)

        // without the inventory: local targets of the saved run are recreated by id
        const local = yield* runcmd(["run", "--rerun-failed", reportFile, "--output", "json", "--", "true"])
        assert.strictEqual(local.code, 0, local.stderr)
        assert.deepStrictEqual(
          (yield* Effect.orDie(RunReport.decodeJson(local.stdout))).outcomes.map((o) => o.targetId),
          ["db-1"]
        )

        // --select narrows a rerun; selecting none of the failed targets is refused
        const narrowed = yield* runcmd([
          "run",
          "-i",
          inventory,
          "--rerun-failed",
          reportFile,
          "--select",
          "role=web",
          "--",
          "true"
        ])
        assert.strictEqual(narrowed.code, 2)
        assert.match(narrowed.stderr, /none of the targets that failed in that run \(db-1\) match --select role=web/)

        // other targets than those of the saved run: refused
        const other = yield* runcmd(["run", "-t", "x", "--rerun-failed", reportFile, "--", "true"])
        assert.strictEqual(other.code, 2)
        assert.match(other.stderr, /--rerun-failed/)
        assert.match(other.stderr, /db-1/)
      }),
    { timeout: 60_000 }
  )

  it.scopedLive("a file that is not a report: exit 2 naming it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bogus = writeFile(dir, "bogus.json", "{\"hello\": 1}")
      const r = yield* runcmd(["report", bogus])
      assert.strictEqual(r.code, 2)
      assert.include(r.stderr, "bogus.json")
      assert.match(r.stderr, /not a runcmd JSON report/)
    }))
})
