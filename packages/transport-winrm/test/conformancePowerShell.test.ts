/**
 * The PowerShell cases of the core conformance suite (`interpreter: "powershell"` jobs: exit codes, the process tree
 * killed and told truthfully, secrets, env, cwd, args, stdin, UTF-8) through the WinRM emulator and the real `pwsh`,
 * over NTLM with message encryption (the Windows default); the POSIX suite runs both auth modes.
 */
import { describe, it } from "@effect/vitest"
import { conformancePowerShell } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as Emulator from "../src/testing.js"
import * as WinRmTransport from "../src/WinRmTransport.js"

if (skipWithoutPwsh("transport-winrm PowerShell conformance")) {
  describe("transport conformance (PowerShell): winrm", () => {
    it.skip("needs pwsh (dotnet tool install --global PowerShell --version 7.6.10)", () => {})
  })
} else {
  let emulator: Emulator.Emulator | undefined
  const server = Layer.scopedDiscard(Effect.map(Emulator.make({ https: false }), (e) => (emulator = e)))
  await conformancePowerShell(
    "winrm (emulator, NTLM over HTTP, encrypted)",
    Layer.merge(WinRmTransport.layer(), server),
    {
      targets: (n) => Array.from({ length: n }, (_, i) => emulator!.target({ id: `winrm-${i}` })),
      signals: false,
      timeout: "10 seconds",
      testTimeout: 120_000
    }
  )
}
