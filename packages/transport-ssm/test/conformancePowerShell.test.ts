/**
 * The PowerShell cases of the core conformance suite through the SSM emulator's Windows instances
 * (`AWS-RunPowerShellScript` run by the real `pwsh`): exit codes, UTF-8, args, env, cwd, stdin byte for byte (the
 * self-contained PowerShell launch gives it to the program through a child PowerShell), secrets from Parameter
 * Store, and kills by `CancelCommand`. The suite's POSIX helper jobs (process-table checks) run on a Linux instance
 * of the same emulator, which shares the host's process table. Output as the POSIX suite takes it: polled while it
 * runs, the whole bytes from S3 (s3rver) at the end.
 */
import { describe, it } from "@effect/vitest"
import { conformancePowerShell } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as SsmTransport from "../src/SsmTransport.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"

if (skipWithoutPwsh("transport-ssm PowerShell conformance")) {
  describe("transport conformance (PowerShell): ssm", () => {
    it.skip("needs pwsh (dotnet tool install --global PowerShell --version 7.6.10)", () => {})
  })
} else {
  let emulator: Emulator.Emulator | undefined
  const layer = Layer.unwrapScoped(
    Effect.gen(function*() {
      const s3 = yield* Harness.s3()
      emulator = yield* Emulator.make({
        instances: [{ platform: "Windows" }, { platform: "Windows" }, { platform: "Linux" }],
        s3: { endpoint: s3.endpoint },
        cancelKillAfter: "5 seconds"
      })
      return SsmTransport.layer(
        Harness.options(emulator, s3, { secrets: { parameterStore: {} }, streamOutput: true })
      )
    })
  )
  await conformancePowerShell("ssm (emulator, Windows instances)", layer, {
    targets: (n) => emulator!.targets().filter((t) => t.os === "windows").slice(0, n),
    helperTarget: () => emulator!.targets().find((t) => t.os !== "windows")!,
    signals: false,
    timeout: "20 seconds",
    margin: "10 seconds",
    testTimeout: 120_000
  })
}
