/**
 * The core transport conformance suite through the WinRM emulator, in both authentication modes: Basic over HTTPS
 * (strict against the emulator's generated certificate) and NTLMv2 with message encryption over HTTP. The
 * emulator runs every job with the real `pwsh` (the suite's POSIX scripts run as `sh -c` through the twin).
 */
import { describe, it } from "@effect/vitest"
import { conformance } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as Emulator from "../src/testing.js"
import * as WinRmTransport from "../src/WinRmTransport.js"

if (skipWithoutPwsh("transport-winrm conformance")) {
  describe("transport conformance: winrm", () => {
    it.skip("needs pwsh (dotnet tool install --global PowerShell --version 7.6.10)", () => {})
  })
} else {
  for (const https of [true, false]) {
    let emulator: Emulator.Emulator | undefined
    let closedPort = 1
    const server = Layer.scopedDiscard(
      Effect.gen(function*() {
        emulator = yield* Emulator.make({ https })
        // a port nothing listens on: a second emulator, started and stopped
        const closed = yield* Effect.promise(() => Emulator.start({ https }))
        closedPort = closed.port
        yield* Effect.promise(() => closed.close())
      })
    )
    await conformance(
      `winrm (emulator, ${https ? "Basic over HTTPS" : "NTLM over HTTP, encrypted"})`,
      Layer.merge(WinRmTransport.layer(), server),
      {
        targets: (n) => Array.from({ length: n }, (_, i) => emulator!.target({ id: `winrm-${i}` })),
        unreachableTarget: () => emulator!.target({ id: "closed-port", port: closedPort }),
        signals: false,
        // pwsh takes seconds to start on a loaded machine: the timeout cases need the script to have printed first
        timeout: "20 seconds",
        testTimeout: 120_000
      }
    )
  }
}
