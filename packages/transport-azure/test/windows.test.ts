/**
 * Windows VMs: the emulator runs RunPowerShellScript with the real `pwsh`; the transport sends core's PowerShell
 * self-contained PowerShell launch (files inline, stdin through a child PowerShell) and reads the exit code
 * (managed: the instance view; action: the sentinel line).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { pwshPath, skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as AzureTransport from "../src/AzureTransport.js"
import * as Emulator from "../src/testing.js"
import { transportOptions, vmTarget } from "./harness.js"

const text = (c: Outcome.Captured) => Outcome.capturedText(c)

describe.skipIf(skipWithoutPwsh("transport-azure windows"))("Windows VMs (pwsh)", () => {
  for (const mode of ["managed", "action"] as const) {
    it.live(
      `${mode}: a PowerShell script's output, exit code${mode === "managed" ? ", secret, a file and stdin" : ""}`,
      () =>
        Effect.scoped(Effect.gen(function*() {
          const emulator = yield* Emulator.make({ vms: [{ name: "vm-0", os: "windows" }], pwsh: pwshPath() })
          const secret = "pwsh-S3cret"
          const job = ScriptSource.job(
            ScriptSource.script(
              mode === "managed"
                ? "Write-Output \"hello $env:WHO\"\n[Console]::Error.WriteLine('warn')\nWrite-Output ('secret length ' + $env:TOKEN.Length)\n" +
                  "Write-Output ('file ' + [IO.File]::ReadAllText((Join-Path $env:RUNCMD_FILES 'conf/f.txt')))\n" +
                  "Write-Output ('stdin ' + [Console]::In.ReadToEnd())\nexit 3\n"
                : "Write-Output \"hello $env:WHO\"\n[Console]::Error.WriteLine('warn')\nexit 3\n",
              "powershell"
            ),
            {
              env: { WHO: "azure" },
              ...(mode === "managed"
                ? {
                  secrets: { TOKEN: Redacted.make(secret) },
                  // carried by core's self-contained PowerShell launch: the file inline, stdin to a child PowerShell
                  files: [{ name: "conf/f.txt", content: "ünï ✓" }],
                  stdin: "piped ✓"
                }
                : {})
            }
          )
          const report = yield* Runner.run(RunPlan.make({ targets: [vmTarget(0, { os: "windows" })], job })).pipe(
            Effect.provide(AzureTransport.layer(transportOptions(emulator, { mode })))
          )
          const o = report.outcomes[0]!
          assert.strictEqual(o._tag, "Failed", JSON.stringify(o))
          assert.strictEqual((o as Outcome.Failed).exitCode, 3)
          assert.include(text(o.stdout), "hello azure")
          if (mode === "managed") {
            assert.include(text(o.stdout), `secret length ${secret.length}`)
            assert.include(text(o.stdout), "file ünï ✓")
            assert.include(text(o.stdout), "stdin piped ✓")
          }
          assert.notInclude(text(o.stdout), "runcmd-", "the sentinel is taken out")
          assert.include(text(o.stderr), "warn")
          for (const r of emulator.requests()) {
            const body = r.body === "" ? {} : JSON.parse(r.body)
            if (body.properties !== undefined) delete body.properties.protectedParameters
            assert.notInclude(JSON.stringify(body), secret)
          }
        })),
      120_000
    )
  }
})
