/**
 * The PowerShell twin executed by the real pwsh (7.6): args, a command's argv and env values round-trip byte for byte
 * (property: quotes of every kind, `$`, backticks, newlines, non-ASCII), through `ScriptRender.powershellProcess`
 * as a transport runs it (the bootstrap on the command line, the twin, secrets and stdin on stdin).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Redacted from "effect/Redacted"
import * as fc from "fast-check"
import * as cp from "node:child_process"
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
