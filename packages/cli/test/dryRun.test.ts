import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assertBuilt, BIN, EXAMPLES, runcmd, spawnCommand, tempDir, unique } from "./helpers.js"

const hasScript = (() => {
  try {
    execFileSync("sh", ["-c", "command -v script"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

beforeAll(assertBuilt)

describe("runcmd run --dry-run", () => {
  it.scopedLive("shows the targets and the wrapper with the secret redacted, and runs nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const marker = path.join(dir, "ran")
      const secret = `dry-${unique()}`
      const r = yield* runcmd([
        "run",
        "--dry-run",
        "-i",
        path.join(EXAMPLES, "inventory.yaml"),
        "--select",
        "role=web",
        "--secret",
        "DB_PASSWORD=MY_SECRET",
        "--env",
        "MODE=fast",
        "--timeout",
        "30s",
        "--command",
        `touch '${marker}'`
      ], { env: { MY_SECRET: secret } })
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /Targets \(3\):/)
      for (const id of ["web-1", "web-2", "web-3"]) assert.match(r.stdout, new RegExp(`^  ${id}  local`, "m"))
      assert.notMatch(r.stdout, /db-1/)
      assert.match(r.stdout, /timeout 30\.0s/)
      assert.match(r.stdout, /Secrets: DB_PASSWORD/)
      assert.include(r.stdout, marker, "the wrapper contains the script")
      assert.include(r.stdout, "MODE")
      assert.notInclude(r.stdout + r.stderr, secret)
      assert.match(r.stdout, /Nothing was run/)
      assert.isFalse(fs.existsSync(marker), "nothing was run")
    }))

  it.scopedLive("lists the files the job would ship", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "app.ini")
      fs.writeFileSync(file, "k=v\n")
      const r = yield* runcmd(["run", "--dry-run", "--file", `conf/app.ini=${file}`, "--", "true"])
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /Files: conf\/app\.ini \(4 bytes, mode 0600\) \(in \$RUNCMD_FILES, removed afterwards\)/)
    }))

  it.scopedLive("an invalid plan is still refused (exit 2)", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["run", "--dry-run", "--concurrency", "0%", "--", "true"])
      assert.strictEqual(r.code, 2)
      assert.match(r.stderr, /--concurrency 0%/)
    }))

  it.scopedLive("--run-as: the password from RUNCMD_BECOME_PASS is used and never shown", () =>
    Effect.gen(function*() {
      const password = `pw-${unique()}`
      const r = yield* runcmd(["run", "--dry-run", "--run-as", "root", "--become-method", "doas", "--", "true"], {
        env: { RUNCMD_BECOME_PASS: password }
      })
      assert.strictEqual(r.code, 0, r.stderr)
      assert.match(r.stdout, /run as root via doas \(password given\)/)
      assert.notInclude(r.stdout + r.stderr, password)
    }))

  it.scopedLive.skipIf(!hasScript)("--ask-become-pass asks on the terminal without echo", () =>
    Effect.gen(function*() {
      const password = `typed-${unique()}`
      const command = [process.execPath, BIN, "run", "--dry-run", "--run-as", "root", "--ask-become-pass", "--", "true"]
        .map((s) => `'${s}'`)
        .join(" ")
      const proc = yield* spawnCommand("script", ["-qfec", command, "/dev/null"], {
        keepStdin: true,
        env: { TERM: "dumb" }
      })
      yield* proc.waitFor(/password for sudo to root: /)
      yield* proc.write(`${password}\r`)
      const r = yield* proc.result("20 seconds")
      assert.strictEqual(r.code, 0, r.stdout)
      assert.match(r.stdout, /run as root via sudo \(password given\)/)
      assert.notInclude(r.stdout + r.stderr, password)
    }))
})
