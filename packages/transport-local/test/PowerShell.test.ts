/**
 * The local transport's PowerShell launch, beyond the conformance cases: pwsh leads a process group of its own and
 * carries the execution's token from its start (so a kill sweep finds pwsh itself), nothing of the job is on its
 * command line, and a missing pwsh is a `SpawnFailed` that says how to configure one.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Transport from "@runcmd/core/Transport"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import { pwshPath, skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as LocalTransport from "../src/LocalTransport.js"
import { invocation, local, target } from "./helpers.js"

const decode = (b: Uint8Array) => new TextDecoder().decode(b)

/** This process's session id (from /proc). */
const nodeSession = (): string => {
  const stat = fs.readFileSync("/proc/self/stat", "utf8")
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]!
}

describe("LocalTransport: PowerShell", () => {
  it.scoped("a missing pwsh is SpawnFailed, naming the option that sets one", () =>
    Effect.gen(function*() {
      const transport = yield* LocalTransport.make({ powershell: "/nonexistent/runcmd-no-pwsh" })
      const error = yield* Effect.flip(
        transport.run(target, invocation(ScriptSource.script("Write-Output never", "powershell")))
      )
      assert.strictEqual(error.reason, "SpawnFailed")
      assert.include(error.message, "/nonexistent/runcmd-no-pwsh")
      assert.include(error.message, "RUNCMD_LOCAL_POWERSHELL")
    }))

  describe.skipIf(skipWithoutPwsh("transport-local PowerShell"))("with the real pwsh", () => {
    it.live(
      "pwsh runs in a session and group of its own, carries the token from its start, and its command line holds nothing of the job",
      () =>
        Effect.gen(function*() {
          const transport = yield* local
          const script = `$stat = [IO.File]::ReadAllText("/proc/$PID/stat")
$fields = $stat.Substring($stat.LastIndexOf(')') + 2).Split(' ')
Write-Output ("own-session=" + ($fields[2] -eq $fields[3] -and $fields[3] -ne '${nodeSession()}'))
$environ = [IO.File]::ReadAllText("/proc/$PID/environ")
Write-Output ("token-from-start=" + $environ.Contains('RUNCMD_TOKEN=' + $env:RUNCMD_TOKEN))
$cmdline = [IO.File]::ReadAllText("/proc/$PID/cmdline")
Write-Output ("job-on-command-line=" + ($cmdline.Contains('runcmd-job-text') -or $cmdline.Contains($env:SECRET)))
`
          const r = yield* transport.run(
            target,
            invocation(ScriptSource.script(`# runcmd-job-text\n${script}`, "powershell"), {
              secrets: { SECRET: Redacted.make("s3cr3t-value") }
            })
          )
          assert.deepStrictEqual(r.exit, Transport.exited(0), decode(r.stderr))
          assert.strictEqual(decode(r.stdout), "own-session=True\ntoken-from-start=True\njob-on-command-line=False\n")
          assert.strictEqual(decode(r.stderr), "")
        }).pipe(Effect.provide(LocalTransport.layer({ powershell: pwshPath()! }))),
      120_000
    )
  })
})
