/**
 * The PowerShell twin executed by the real pwsh (7.6): args, a command's argv and env values round-trip byte for byte
 * (property: quotes of every kind, `$`, backticks, newlines, non-ASCII), through `ScriptRender.powershellProcess`
 * as a transport runs it (the bootstrap on the command line, the twin, secrets and stdin on stdin).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as fc from "fast-check"
import * as cp from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pwshPath, skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Invocation } from "../src/Transport.js"

const isWellFormed = (s: string): boolean =>
  !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)

const tricky = fc.constantFrom(
  "'",
  "''",
  "\u2018",
  "\u2019",
  "\u201a",
  "\u201b",
  "\"",
  "`",
  "`n",
  "$",
  "$(Get-Date)",
  "${env:PATH}",
  "@",
  "@args",
  "\n",
  "\r\n",
  "\t",
  "ü",
  "日本",
  "🎉",
  "#",
  "-",
  "--",
  "-n",
  " ",
  "\\"
)
const value = fc
  .array(fc.oneof(tricky, fc.string({ unit: "binary", maxLength: 4 })), { maxLength: 8 })
  .map((p) => p.join(""))
  .filter((s) => !s.includes("\0") && isWellFormed(s))

const invocation = (over: Partial<Invocation>): Invocation => ({
  runId: "pwsh",
  attempt: 1,
  source: ScriptSource.script("", "powershell"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  ...over
})

/** Runs the launch with pwsh: stdout bytes and the exit code (bounded in time; the process is gone after). */
const execute = (launch: ScriptRender.PowerShellProcessLaunch) =>
  new Promise<{ readonly stdout: Buffer; readonly stderr: string; readonly code: number | null }>(
    (resolve, reject) => {
      const child = cp.spawn(pwshPath()!, launch.args, {
        env: { ...process.env, [launch.tokenVariable]: launch.token },
        stdio: ["pipe", "pipe", "pipe"]
      })
      const out: Array<Buffer> = []
      let stderr = ""
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
      child.stdout.on("data", (d: Buffer) => out.push(d))
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
      child.on("error", reject)
      child.on("close", (code) => {
        clearTimeout(timer)
        resolve({ stdout: Buffer.concat(out), stderr, code })
      })
      child.stdin.on("error", () => {})
      child.stdin.end(launch.input())
    }
  )

const nulJoined = (values: ReadonlyArray<string>) => Buffer.from(values.map((v) => v + "\0").join(""), "utf8")

const WRITE = `$__o = [Console]::OpenStandardOutput()
function Out-Nul([string]$s) { $b = (New-Object System.Text.UTF8Encoding $false).GetBytes($s + [char]0); $__o.Write($b, 0, $b.Length) }
`

const runs = (local: number, ci: number) => (process.env.CI === "true" || process.env.CI === "1" ? ci : local)

describe.skipIf(skipWithoutPwsh("ScriptRender.powershell executed by pwsh"))(
  "the PowerShell twin, executed by pwsh",
  () => {
    it("args and env values round-trip byte for byte as $args and the environment (property)", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(value, { maxLength: 6 }),
          fc.array(value, { maxLength: 6 }),
          async (args, envValues) => {
            const env = Object.fromEntries(envValues.map((v, i) => [`RUNCMD_P${i}`, v]))
            const reads = Object.keys(env).map((n) =>
              `$v = [Environment]::GetEnvironmentVariable('${n}'); if ($null -eq $v) { $v = '' }; Out-Nul $v`
            )
            const launch = ScriptRender.powershellProcess(invocation({
              source: ScriptSource.script(
                `${WRITE}foreach ($a in $args) { Out-Nul $a }\n${reads.join("\n")}\n`,
                "powershell"
              ),
              args,
              env,
              secrets: { RUNCMD_P_SECRET: Redacted.make("s") }
            }))
            const r = await execute(launch)
            assert.strictEqual(r.code, 0, r.stderr)
            const expected = nulJoined([...args, ...envValues])
            assert.isTrue(r.stdout.equals(expected), `got ${JSON.stringify(r.stdout.toString())}`)
          }
        ),
        { numRuns: runs(15, 40) }
      )
    }, 600_000)

    it("a command's argv round-trips byte for byte to a native program (property)", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(value, { minLength: 1, maxLength: 6 }),
          fc.array(value, { maxLength: 3 }),
          async (argv, args) => {
            const launch = ScriptRender.powershellProcess(invocation({
              source: ScriptSource.command("printf", "%s\\0", ...argv),
              args
            }))
            const r = await execute(launch)
            assert.strictEqual(r.code, 0, r.stderr)
            const expected = nulJoined([...argv, ...args])
            assert.isTrue(r.stdout.equals(expected), `got ${JSON.stringify(r.stdout.toString())}`)
          }
        ),
        { numRuns: runs(10, 25) }
      )
    }, 600_000)
  }
)

/** Runs a self-contained launch as the services run it (`pwsh -File`), with nothing on stdin. */
const executeFile = (script: string) =>
  new Promise<{ readonly stdout: Buffer; readonly stderr: Buffer; readonly code: number | null }>(
    (resolve, reject) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-ps-test-"))
      const file = path.join(dir, "_script.ps1")
      fs.writeFileSync(file, script)
      const child = cp.spawn(pwshPath()!, ["-NoLogo", "-NoProfile", "-NonInteractive", "-File", file], {
        stdio: ["ignore", "pipe", "pipe"]
      })
      const out: Array<Buffer> = []
      const err: Array<Buffer> = []
      const timer = setTimeout(() => child.kill("SIGKILL"), 90_000)
      child.stdout.on("data", (d: Buffer) => out.push(d))
      child.stderr.on("data", (d: Buffer) => err.push(d))
      child.on("error", reject)
      child.on("close", (code) => {
        clearTimeout(timer)
        fs.rmSync(dir, { recursive: true, force: true })
        resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), code })
      })
    }
  )

describe.skipIf(skipWithoutPwsh("ScriptRender.powershellSelfContained executed by pwsh"))(
  "the self-contained PowerShell launch, executed by pwsh -File",
  () => {
    it(
      "files (nested, binary, modes) in a private directory removed at the end; stdin byte for byte through the child; exit N",
      async () => {
        const stdin = new Uint8Array(150_000).map((_, i) => (i * 31) % 256)
        const binary = new Uint8Array(70_000).map((_, i) => (i * 7) % 256)
        const sha = (b: Uint8Array) => crypto.createHash("sha256").update(b).digest("hex")
        const rendered = ScriptRender.powershellSelfContained(
          invocation({
            source: ScriptSource.script(
              `function Sha([byte[]]$b) { [BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash($b)).Replace('-', '').ToLower() }
Write-Output $env:RUNCMD_FILES
Write-Output (Sha ([IO.File]::ReadAllBytes((Join-Path $env:RUNCMD_FILES "it's dir/bin.dat"))))
Write-Output ([int][IO.File]::GetUnixFileMode((Join-Path $env:RUNCMD_FILES 'run.sh')))
Write-Output ([int][IO.File]::GetUnixFileMode((Split-Path $env:RUNCMD_FILES)))
$in = [Console]::OpenStandardInput(); $ms = New-Object IO.MemoryStream; $in.CopyTo($ms)
Write-Output (Sha $ms.ToArray())
Write-Output "$env:GREETING $($args -join '|')"
exit 7`,
              "powershell"
            ),
            args: ["a b", "it's"],
            env: { GREETING: "hi ünï" },
            stdin,
            files: [
              { name: "it's dir/bin.dat", bytes: binary, mode: 0o600 },
              { name: "run.sh", bytes: new TextEncoder().encode("echo hi\n"), mode: 0o755 }
            ]
          }),
          { maxInlineBytes: 1024 * 1024 }
        )
        if (rendered._tag === "Left") throw new Error(rendered.left.message)
        const launch = rendered.right
        assert.strictEqual(launch.inlineBytes, stdin.length + binary.length + 8)
        const r = await executeFile(launch.script)
        const result = launch.interpret(r.code ?? undefined, r.stdout, r.stderr)
        assert.deepStrictEqual(result.status, Either.right({ _tag: "Exited", code: 7 }), r.stderr.toString())
        const lines = Buffer.from(result.stdout).toString("utf8").split("\n")
        const files = lines[0]!
        assert.match(files, /runcmd\.[0-9a-f]{32}[/\\]files$/)
        assert.strictEqual(lines[1], sha(binary))
        assert.strictEqual(lines[2], String(0o755), "the file's mode")
        assert.strictEqual(lines[3], String(0o700), "the directory is the account's alone")
        assert.strictEqual(lines[4], sha(stdin))
        assert.strictEqual(lines[5], "hi ünï a b|it's")
        assert.notInclude(Buffer.from(result.stdout).toString(), "runcmd-", "the sentinel is taken out")
        assert.isFalse(fs.existsSync(path.dirname(files)), "the private directory is removed")
      },
      180_000
    )

    it("a program that reads none of a large stdin still ends with its code; a missing cwd is `fail cwd`", async () => {
      const unread = ScriptRender.powershellSelfContained(
        invocation({
          source: ScriptSource.script("Write-Output done", "powershell"),
          stdin: new Uint8Array(500_000).fill(65)
        }),
        { maxInlineBytes: 1024 * 1024 }
      )
      if (unread._tag === "Left") throw new Error(unread.left.message)
      const r = await executeFile(unread.right.script)
      const result = unread.right.interpret(r.code ?? undefined, r.stdout, r.stderr)
      assert.deepStrictEqual(result.status, Either.right({ _tag: "Exited", code: 0 }), r.stderr.toString())
      assert.strictEqual(Buffer.from(result.stdout).toString().trim(), "done")

      const missing = ScriptRender.powershellSelfContained(invocation({
        source: ScriptSource.script("Write-Output never", "powershell"),
        cwd: "/nonexistent/runcmd-ps",
        files: [{ name: "f", bytes: new Uint8Array(1), mode: 0o600 }]
      }))
      if (missing._tag === "Left") throw new Error(missing.left.message)
      const m = await executeFile(missing.right.script)
      const failed = missing.right.interpret(m.code ?? undefined, m.stdout, m.stderr)
      assert.deepStrictEqual(failed.status, Either.left("fail cwd"))
      assert.notInclude(Buffer.from(failed.stdout).toString(), "never")
      assert.notInclude(Buffer.from(failed.stderr).toString(), "runcmd-", "the protocol line is taken out")
      // refused before rendering: run-as (a Windows account needs its password), too many inline bytes
      const runAs = ScriptRender.powershellSelfContained(invocation({ runAs: { user: "svc", method: "sudo" } }))
      assert.strictEqual(runAs._tag === "Left" && runAs.left.reason, "Unsupported")
      const big = ScriptRender.powershellSelfContained(invocation({ stdin: new Uint8Array(40_000) }))
      assert.strictEqual(big._tag === "Left" && big.left.reason, "FilesTooLarge")
    }, 180_000)
  }
)
