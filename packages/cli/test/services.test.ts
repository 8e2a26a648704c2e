import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as RunReport from "@runcmd/core/RunReport"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { assertBuilt, readTree, runcmd, tempDir, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

const decodeReport = (text: string) => Effect.orDie(RunReport.decodeJson(text))

/** No RUNCMD_* policy or sink variable from the developer's shell, then these. */
const env = (extra: Record<string, string> = {}): Record<string, string | undefined> => {
  const cleared: Record<string, string | undefined> = {}
  for (const key of Object.keys(process.env)) if (key.startsWith("RUNCMD_")) cleared[key] = undefined
  return { ...cleared, ...extra }
}

const policyLine = (stdout: string): string => {
  const line = stdout.split("\n").find((l) => l.startsWith("Policy:"))
  assert.isDefined(line, stdout)
  return line!
}

describe("runcmd run: the policy's precedence (flag > inventory policy: > RUNCMD_* > built-in)", () => {
  it.scopedLive("each level overrides the one below it, field by field (--dry-run)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inv = writeFile(
        dir,
        "inventory.yaml",
        "policy:\n  timeout: 50s\n  deadline: 20m\ntargets:\n  - { kind: local, id: a }\n"
      )
      const variables = { RUNCMD_TIMEOUT: "40s", RUNCMD_DEADLINE: "30m", RUNCMD_CONCURRENCY: "3", RUNCMD_RETRY: "2" }

      // built-in
      const builtIn = yield* runcmd(["run", "--dry-run", "-i", inv, "--", "true"], { env: env() })
      assert.strictEqual(builtIn.code, 0, builtIn.stderr)
      assert.include(policyLine(builtIn.stdout), "concurrency 10 · timeout 50.0s · deadline 20m00s · kill grace 5.0s")
      assert.include(policyLine(builtIn.stdout), "retry 0")

      // RUNCMD_* over built-in
      const none = yield* runcmd(["run", "--dry-run", "--", "true"], { env: env(variables) })
      assert.strictEqual(none.code, 0, none.stderr)
      assert.include(policyLine(none.stdout), "concurrency 3 · timeout 40.0s · deadline 30m00s · kill grace 5.0s")
      assert.include(policyLine(none.stdout), "retry 2")

      // the inventory's policy: over RUNCMD_* (the fields it does not set stay as the variables say)
      const inventory = yield* runcmd(["run", "--dry-run", "-i", inv, "--", "true"], { env: env(variables) })
      assert.strictEqual(inventory.code, 0, inventory.stderr)
      assert.include(policyLine(inventory.stdout), "concurrency 3 · timeout 50.0s · deadline 20m00s · kill grace 5.0s")
      assert.include(policyLine(inventory.stdout), "retry 2")

      // a flag over the inventory (and only the fields given as flags)
      const flag = yield* runcmd(
        ["run", "--dry-run", "-i", inv, "--timeout", "1m", "--concurrency", "7", "--", "true"],
        { env: env(variables) }
      )
      assert.strictEqual(flag.code, 0, flag.stderr)
      assert.include(policyLine(flag.stdout), "concurrency 7 · timeout 1m00s · deadline 20m00s · kill grace 5.0s")
      assert.include(policyLine(flag.stdout), "retry 2")
    }))

  it.scopedLive("the resolved policy is the one the run applies", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inv = writeFile(dir, "inventory.yaml", "policy:\n  timeout: 300ms\ntargets:\n  - { kind: local, id: a }\n")
      // the inventory's 300ms beats RUNCMD_TIMEOUT=30s: the sleep times out
      const timedOut = yield* runcmd(["run", "-i", inv, "--output", "json", "--", "sleep", "5"], {
        env: env({ RUNCMD_TIMEOUT: "30s", RUNCMD_KILL_GRACE: "200ms" }),
        timeout: "30 seconds"
      })
      const first = yield* decodeReport(timedOut.stdout)
      assert.strictEqual(first.outcomes[0]!._tag, "TimedOut", timedOut.stderr)
      // --timeout beats the inventory: the same sleep (shorter) completes
      const flag = yield* runcmd(["run", "-i", inv, "--timeout", "20s", "--output", "json", "--", "sleep", "0.5"], {
        env: env({ RUNCMD_TIMEOUT: "30s" }),
        timeout: "30 seconds"
      })
      assert.strictEqual(flag.code, 0, flag.stderr)
      const second = yield* decodeReport(flag.stdout)
      assert.strictEqual(second.outcomes[0]!._tag, "Succeeded")
    }))

  it.scopedLive("a RUNCMD_* value that does not decode: exit 2 naming the key, nothing run", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const marker = path.join(dir, "ran")
      for (
        const [key, value, what] of [
          ["RUNCMD_TIMEOUT", "soon", /non-negative duration/],
          ["RUNCMD_CONCURRENCY", "0", /whole number ≥ 1/],
          ["RUNCMD_IDEMPOTENT", "maybe", /boolean/]
        ] as const
      ) {
        const r = yield* runcmd(["run", "--command", `touch '${marker}'`], { env: env({ [key]: value }) })
        assert.strictEqual(r.code, 2, `${key}: ${r.stderr}`)
        assert.include(r.stderr, `${key}="${value}"`)
        assert.match(r.stderr, what)
        assert.match(r.stderr, /Nothing was run\./)
        assert.strictEqual(r.stdout, "")
        assert.isFalse(fs.existsSync(marker), "nothing was run")
      }
      // --dry-run too: the policy it shows would be wrong
      const dry = yield* runcmd(["run", "--dry-run", "--", "true"], { env: env({ RUNCMD_TIMEOUT: "soon" }) })
      assert.strictEqual(dry.code, 2)
      assert.include(dry.stderr, "RUNCMD_TIMEOUT")
    }))
})

describe("runcmd run: targets from --inventory and --ssh-config", () => {
  it.scopedLive("an id given by both --inventory and --ssh-config: exit 2 naming both, nothing run", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inv = writeFile(
        dir,
        "inventory.yaml",
        "targets:\n  - { kind: local, id: a }\n  - { kind: local, id: web-1 }\n"
      )
      const config = writeFile(
        dir,
        "ssh_config",
        "Host web-1\n  HostName 127.0.0.1\nHost other\n  HostName 127.0.0.1\n"
      )
      const marker = path.join(dir, "ran")
      for (const extra of [[], ["--dry-run"], ["-t", "a"]]) {
        const r = yield* runcmd(
          ["run", "-i", inv, "--ssh-config", config, ...extra, "--command", `touch '${marker}'`],
          {
            env: env()
          }
        )
        assert.strictEqual(r.code, 2, r.stderr)
        assert.include(r.stderr, `--ssh-config ${config}`)
        assert.include(r.stderr, `target id "web-1" is given by ${inv}`)
        assert.match(r.stderr, /Fix: .*unique across --inventory and --ssh-config/)
        assert.match(r.stderr, /Nothing was run\./)
        assert.strictEqual(r.stdout, "")
        assert.isFalse(fs.existsSync(marker), "nothing was run")
      }
    }))

  it.scopedLive("--target picks ids from the sources, in the order given; --select narrows them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inv = writeFile(
        dir,
        "inventory.yaml",
        "targets:\n  - { kind: local, id: a, labels: { role: db } }\n  - { kind: local, id: b, labels: { role: web } }\n  - { kind: local, id: c, labels: { role: web } }\n"
      )
      const picked = yield* runcmd(["run", "-i", inv, "-t", "c", "-t", "a", "--output", "json", "--", "true"], {
        env: env()
      })
      assert.strictEqual(picked.code, 0, picked.stderr)
      assert.deepStrictEqual((yield* decodeReport(picked.stdout)).outcomes.map((o) => o.targetId), ["c", "a"])
      const narrowed = yield* runcmd(
        ["run", "-i", inv, "-t", "c", "-t", "a", "--select", "role=web", "--output", "json", "--", "true"],
        { env: env() }
      )
      assert.strictEqual(narrowed.code, 0, narrowed.stderr)
      assert.deepStrictEqual((yield* decodeReport(narrowed.stdout)).outcomes.map((o) => o.targetId), ["c"])
      const none = yield* runcmd(["run", "-i", inv, "-t", "a", "--select", "role=web", "--", "true"], { env: env() })
      assert.strictEqual(none.code, 2, none.stderr)
      assert.match(none.stderr, /none of --target a matches --select role=web/)
    }))
})

describe("runcmd run: sinks from RUNCMD_EVENTS_FILE and RUNCMD_OUTPUT_DIR", () => {
  it.scopedLive("every event and every target's output are kept, next to the output asked for", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const events = path.join(dir, "events.jsonl")
      const out = path.join(dir, "out")
      const r = yield* runcmd(["run", "-t", "a", "-t", "b", "--output", "json", "--", "echo", "kept"], {
        env: env({ RUNCMD_EVENTS_FILE: events, RUNCMD_OUTPUT_DIR: out })
      })
      assert.strictEqual(r.code, 0, r.stderr)
      assert.strictEqual((yield* decodeReport(r.stdout)).outcomes.length, 2)
      const lines = fs.readFileSync(events, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { _tag: string })
      assert.isTrue(lines.some((e) => e._tag === "RunStarted"), JSON.stringify(lines.map((e) => e._tag)))
      assert.isTrue(lines.some((e) => e._tag === "RunFinished"))
      const files = readTree(out)
      const texts = Object.values(files)
      assert.strictEqual(texts.filter((t) => t === "kept\n").length, 2, JSON.stringify(files))
    }))
})
