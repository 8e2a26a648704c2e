/**
 * The core transport conformance suite through the SSM emulator (instances are local processes) and a real
 * S3-compatible server (s3rver) for the full output. What SSM cannot do is declared by the capabilities: output is
 * final (read once at the end, the default; `conformancePowerShell.test.ts` runs with `streamOutput`), cancel is
 * best-effort (confirmed when the service reports the end).
 */
import { conformance } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SsmTransport from "../src/SsmTransport.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"

let emulator: Emulator.Emulator | undefined
let offline = ""

const layer = Layer.unwrapScoped(
  Effect.gen(function*() {
    const s3 = yield* Harness.s3()
    emulator = yield* Emulator.make({
      instances: [...Array.from({ length: 6 }, () => ({})), { pingStatus: "ConnectionLost" as const }],
      s3: { endpoint: s3.endpoint },
      cancelKillAfter: "5 seconds"
    })
    offline = emulator.instanceIds[6]!
    // output final, as by default (the PowerShell suite runs with streamOutput: both modes are covered)
    return SsmTransport.layer(Harness.options(emulator, s3, { secrets: { parameterStore: {} } }))
  })
)

await conformance("ssm (emulator on loopback, s3rver for output)", layer, {
  targets: (n) =>
    emulator!.targets().slice(0, 6).slice(0, n).concat(
      n > 6 ? [] : []
    ),
  unreachableTarget: () => emulator!.targets().find((t) => t.instanceId === offline)!,
  margin: "10 seconds",
  testTimeout: 120_000
})
