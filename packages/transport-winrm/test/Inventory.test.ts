/**
 * `kind: winrm` in inventories: decoded with the other kinds, bad input refused with the field named before
 * anything runs, and one run mixing `winrm` (both auth modes, through the emulator), `ssh` (a real sshd) and
 * `local` targets from one inventory: the same job on each, PowerShell's twin on the Windows-like targets.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Inventory from "@runcmd/core/Inventory"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as LocalTransport from "@runcmd/transport-local/LocalTransport"
import * as SshTarget from "@runcmd/transport-ssh/SshTarget"
import * as SshTransport from "@runcmd/transport-ssh/SshTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as Sshd from "../../transport-ssh/test/harness/Sshd.js"
import * as Emulator from "../src/testing.js"
import * as WinRmTarget from "../src/WinRmTarget.js"
import * as WinRmTransport from "../src/WinRmTransport.js"

const kinds = [Target.Local, SshTarget.SshTarget, WinRmTarget.WinRmTarget]

describe("kind: winrm in an inventory", () => {
  it.effect("decodes with defaults (windows, powershell, /wsman), the password kept Redacted", () =>
    Effect.gen(function*() {
      const inventory = yield* Inventory.parse(
        [
          "targets:",
          "  - id: win-1",
          "    kind: winrm",
          "    host: win-1.example.com",
          "    auth: { type: ntlm, user: 'CORP\\ops', password: s3cret }",
          "    scheme: http",
          "  - { id: win-2, kind: winrm, host: win-2.example.com, auth: { type: basic, user: ops, password: s3cret }, certificate: { policy: pinned, sha256: ['" +
          "AB".repeat(32) + "'] }, shell: pwsh }"
        ].join("\n"),
        "hosts.yaml",
        kinds
      )
      const [a, b] = inventory.targets as ReadonlyArray<WinRmTarget.WinRmTarget>
      assert.strictEqual(a!.os, "windows")
      assert.strictEqual(a!.shell, "powershell")
      assert.strictEqual(WinRmTarget.endpoint(a!), "http://win-1.example.com:5985/wsman")
      assert.strictEqual(WinRmTarget.endpoint(b!), "https://win-2.example.com:5986/wsman")
      assert.isTrue(Redacted.isRedacted((a!.auth as WinRmTarget.NtlmAuth).password))
      assert.notInclude(JSON.stringify(inventory), "s3cret")
    }))

  for (
    const [what, yaml, says] of [
      [
        "https without a certificate policy",
        "auth: { type: basic, user: u, password: p }",
        "certificate: an https target needs a certificate policy"
      ],
      [
        "Basic over http",
        "scheme: http, auth: { type: basic, user: u, password: p }",
        "auth: Basic authentication over http would send the password in clear"
      ],
      [
        "a malformed pin",
        "auth: { type: basic, user: u, password: p }, certificate: { policy: pinned, sha256: [abc] }",
        "a pinned certificate fingerprint must be 64 hex digits"
      ]
    ] as const
  ) {
    it.effect(`refuses ${what}, naming the field and the fix`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Inventory.parse(`targets:\n  - { id: w, kind: winrm, host: h, ${yaml} }`, "hosts.yaml", kinds)
        )
        assert.include(error.message, says)
        assert.notInclude(error.message, "password: p")
      }))
  }
})

const enabled = Sshd.enabled() && !skipWithoutPwsh("Inventory.test.ts")

describe.runIf(enabled)("one run mixing winrm, ssh and local targets from one inventory", () => {
  it.live("the same job on each target, through its own transport", () =>
    Effect.scoped(Effect.gen(function*() {
      const https = yield* Emulator.make({ https: true })
      const ntlm = yield* Emulator.make({ https: false })
      const sshd = yield* Sshd.scoped({ addresses: 1 })
      const ssh = Schema.encodeSync(SshTarget.SshTarget)(sshd.target({ id: "linux-ssh" }))
      const yaml = [
        "targets:",
        "  - { id: here, kind: local }",
        `  - ${JSON.stringify(ssh)}`,
        `  - id: win-https`,
        `    kind: winrm`,
        `    host: 127.0.0.1`,
        `    port: ${https.port}`,
        `    auth: { type: basic, user: ${https.user}, password: '${Redacted.value(https.password)}' }`,
        `    certificate: { policy: strict, ca: ['${https.caFile}'] }`,
        `    shell: pwsh`,
        `  - { id: win-ntlm, kind: winrm, scheme: http, host: 127.0.0.1, port: ${ntlm.port}, shell: pwsh, auth: { type: ntlm, user: ${ntlm.user}, password: '${
          Redacted.value(ntlm.password)
        }' } }`
      ].join("\n")
      const inventory = yield* Inventory.parse(yaml, "mixed.yaml", kinds)
      assert.deepStrictEqual(inventory.targets.map((t) => t.kind), ["local", "ssh", "winrm", "winrm"])
      const report = yield* Runner.run(RunPlan.make({
        targets: inventory.targets,
        // a command runs on every kind: the POSIX wrapper or a direct spawn on Linux, the PowerShell twin on Windows
        job: ScriptSource.job(ScriptSource.command("echo", "hello", "from", "runcmd")),
        policy: { timeout: Duration.seconds(90), concurrency: 4 }
      })).pipe(
        Effect.provide(LocalTransport.layer()),
        Effect.provide(SshTransport.layer()),
        Effect.provide(WinRmTransport.layer())
      )
      for (const o of report.outcomes) {
        assert.strictEqual(o._tag, "Succeeded", `${o.targetId}: ${JSON.stringify(o)}`)
        // PowerShell's echo (Write-Output) prints one word per line
        const out = Outcome.capturedText(o.stdout)
        assert.strictEqual(out, o.kind === "winrm" ? "hello\nfrom\nruncmd\n" : "hello from runcmd\n", o.targetId)
      }
      // the Windows-like targets ran PowerShell's twin
      for (const emulator of [https, ntlm]) {
        const command = emulator.requests().find((r) => r.action === "Command")
        assert.include(command?.envelope ?? "", "<rsp:Command>pwsh</rsp:Command>")
        assert.include(command?.envelope ?? "", "-EncodedCommand ")
      }
    })), 240_000)
})
