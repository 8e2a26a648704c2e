import { assert, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Transport from "@runcmd/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Emulator from "../src/testing.js"
import * as WinRmTransport from "../src/WinRmTransport.js"

for (const https of [true, false]) {
  it.live(`smoke ${https ? "https" : "http+ntlm"}`, () =>
    Effect.scoped(Effect.gen(function*() {
      const emulator = yield* Emulator.make({ https })
      const transport = yield* WinRmTransport.make()
      const r = yield* transport.run(emulator.target(), {
        runId: "r",
        attempt: 1,
        source: ScriptSource.script(
          "Write-Output \"hello $env:TOKEN\"; [Console]::Error.WriteLine('warn'); exit 3",
          "powershell"
        ),
        args: [],
        env: { A: "1" },
        secrets: { TOKEN: Redacted.make("hunter2") },
        killGrace: Duration.seconds(1)
      })
      console.log(
        r.exit,
        JSON.stringify(Buffer.from(r.stdout).toString()),
        JSON.stringify(Buffer.from(r.stderr).toString())
      )
      console.log(emulator.requests().map((q) => `${q.action}:${q.status}:${q.encrypted}`).join(" "))
      assert.deepStrictEqual(r.exit, Transport.exited(3))
    })), 60_000)
}
