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
  it.scopedLive(
    "says per target what happens to its job if runcmd dies (policy, the target's own field, the flag)",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const inventory = path.join(dir, "inv.yaml")
        fs.writeFileSync(
          inventory,
          [
            "policy: { onControllerLoss: terminate }",
            "targets:",
            "  - { id: ends, kind: local }",
            "  - { id: stays, kind: local, onControllerLoss: continue }",
            // the SSH transport answers per target: a PowerShell login shell on Linux gets the lifeline, Windows none
            "  - { id: pwsh, kind: ssh, host: 127.0.0.1, port: 22, user: admin, shell: pwsh, auth: { type: agent }, hostKey: { policy: insecure } }",
            "  - { id: win, kind: ssh, host: 127.0.0.1, port: 22, user: admin, os: windows, shell: pwsh, auth: { type: agent }, hostKey: { policy: insecure } }",
            ""
          ].join("\n")
        )
        const r = yield* runcmd(["run", "--dry-run", "-i", inventory, "--", "true"])
        assert.strictEqual(r.code, 0, r.stderr)
        assert.match(r.stdout, /on controller loss terminate/)
        assert.match(r.stdout, /^ {2}terminate: ends, pwsh \(/m)
        assert.match(r.stdout, /^ {2}continue: stays \(/m)
        assert.match(
          r.stdout,
          /^ {2}cannot terminate: win: the ssh transport cannot end their jobs when runcmd is lost/m
        )
        const flagged = yield* runcmd([
          "run",
          "--dry-run",
          "-t",
          "one",
          "--on-controller-loss",
          "continue",
          "--",
          "true"
        ])
        assert.strictEqual(flagged.code, 0, flagged.stderr)
        assert.match(flagged.stdout, /on controller loss continue/)
        assert.match(flagged.stdout, /^ {2}continue: one \(/m)
        const bad = yield* runcmd(["run", "--dry-run", "--on-controller-loss", "maybe", "--", "true"])
        assert.strictEqual(bad.code, 2)
        assert.match(bad.stderr, /--on-controller-loss "maybe": expected one of terminate, continue/)
      }),
    { timeout: 60_000 }
  )

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
