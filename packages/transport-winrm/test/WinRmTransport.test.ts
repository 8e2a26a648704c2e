/**
 * The WinRM transport against the emulator (real `pwsh` behind it): a fleet of 30 targets under a throttle, kills
 * confirmed with no process left, certificate and credential refusals with nothing run, secrets only in the stdin
 * `Send`, quota faults retried, a shell deleted mid-run, Kerberos refused, and the emulator refusing plain bodies.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as RunReport from "@runcmd/core/RunReport"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import { assertNoLeak, recordTelemetry } from "@runcmd/core/testing"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Http from "node:http"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as Emulator from "../src/testing.js"
import type { WinRmTarget } from "../src/WinRmTarget.js"
import * as WinRmTransport from "../src/WinRmTransport.js"

const text = (c: Outcome.Captured) => Outcome.capturedText(c)

const run = (
  targets: ReadonlyArray<WinRmTarget>,
  job: ScriptSource.Job,
  policy: Parameters<typeof RunPlan.make>[0]["policy"] = {}
) =>
  Runner.run(RunPlan.make({ targets, job, policy: { timeout: Duration.seconds(60), ...policy } })).pipe(
    Effect.provide(WinRmTransport.layer())
  )

const ps = (script: string, options: Parameters<typeof ScriptSource.job>[1] = {}) =>
  ScriptSource.job(ScriptSource.script(script, "powershell"), options)

const expectTag = <T extends Outcome.Outcome["_tag"]>(o: Outcome.Outcome, tag: T) => {
  assert.strictEqual(o._tag, tag, `${o.targetId}: ${JSON.stringify(o)}`)
  return o as Extract<Outcome.Outcome, { _tag: T }>
}

const modes = [{ https: true, name: "Basic over HTTPS" }, { https: false, name: "NTLM over HTTP" }] as const

if (skipWithoutPwsh("transport-winrm")) {
  describe("WinRmTransport", () => {
    it.skip("needs pwsh (dotnet tool install --global PowerShell --version 7.6.10)", () => {})
  })
} else {
  describe("WinRmTransport through the emulator", () => {
    it.live(
      "30 targets in one run, at most 6 at once (throttle), every one Succeeded with its own output",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const emulator = yield* Emulator.make({ https: true, maxShellsPerUser: 10 })
          const targets = Array.from(
            { length: 30 },
            (_, i) => emulator.target({ id: `win-${i}`, env: { N: String(i) } })
          )
          let peak = 0
          const sample = setInterval(() => (peak = Math.max(peak, emulator.stats().commands)), 20)
          const report = yield* run(targets, ps("Write-Output \"host $env:N\""), { concurrency: 6 }).pipe(
            Effect.ensuring(Effect.sync(() => clearInterval(sample)))
          )
          assert.strictEqual(report.summary.byOutcome.Succeeded, 30)
          for (const [i, o] of report.outcomes.entries()) {
            assert.strictEqual(text(expectTag(o, "Succeeded").stdout), `host ${i}\n`)
          }
          assert.isAtMost(peak, 6, "never more commands at once than the throttle")
          assert.isAtLeast(peak, 1)
          // shells were reused: far fewer than one per target
          assert.isAtMost(emulator.requests().filter((r) => r.action === "Create").length, 6)
        })),
      300_000
    )

    for (const mode of modes) {
      it.live(
        `${mode.name}: a timeout terminates the job, the kill is confirmed and no process is left`,
        () =>
          Effect.scoped(Effect.gen(function*() {
            const emulator = yield* Emulator.make({ https: mode.https })
            const report = yield* run(
              [emulator.target({ id: "win" })],
              // a child process that would outlive its parent
              ps(
                "$p = Start-Process -PassThru -FilePath sleep -ArgumentList 300\nWrite-Output \"child $($p.Id)\"\nStart-Sleep 300"
              ),
              { timeout: Duration.seconds(20) }
            )
            const o = expectTag(report.outcomes[0]!, "TimedOut")
            assert.match(text(o.stdout), /^child \d+/)
            assert.isTrue(o.killConfirmed)
            assert.strictEqual(emulator.liveProcesses(), 0, "no process of the job is left")
            const pid = Number(/child (\d+)/.exec(text(o.stdout))![1])
            assert.isTrue(goneOrZombie(pid), `the child ${pid} is gone`)
            assert.isTrue(
              emulator.requests().some((r) => r.action === "Signal" && r.envelope.includes("signal/terminate"))
            )
          })),
        120_000
      )

      it.live(
        `${mode.name}: wrong credentials → Rejected (AuthFailed), no shell opened`,
        () =>
          Effect.scoped(Effect.gen(function*() {
            const emulator = yield* Emulator.make({ https: mode.https })
            const target = emulator.target({
              id: "win",
              auth: mode.https
                ? { type: "basic", user: emulator.user, password: Redacted.make("wrong") }
                : { type: "ntlm", user: emulator.user, password: Redacted.make("wrong") }
            })
            const report = yield* run([target], ps("Write-Output never"))
            const o = expectTag(report.outcomes[0]!, "Rejected")
            assert.strictEqual(o.error.reason, "AuthFailed")
            assert.notInclude(o.error.message, "<")
            assert.strictEqual(emulator.stats().shells, 0)
            assert.isFalse(emulator.requests().some((r) => r.action !== "" && r.status === 200))
          })),
        60_000
      )

      it.live(
        `${mode.name}: secrets travel only in the stdin Send envelope`,
        () =>
          Effect.scoped(Effect.gen(function*() {
            const emulator = yield* Emulator.make({ https: mode.https })
            const secret = "hunter2-ünïcode-$(secret)"
            const [exit, telemetry] = yield* recordTelemetry(run(
              [emulator.target({ id: "win-2" })],
              // a hash of the value shows that it arrived whole (the value itself would be redacted in the report)
              ps(
                "$h = [Security.Cryptography.SHA256]::Create().ComputeHash([Text.Encoding]::UTF8.GetBytes($env:TOKEN))\nWrite-Output ([BitConverter]::ToString($h))",
                {
                  secrets: { TOKEN: Redacted.make(secret) }
                }
              )
            ))
            const ok = yield* exit
            const o = expectTag(ok.outcomes[0]!, "Succeeded")
            // nowhere on runcmd's side: the report, the logs (every level), the spans
            assertNoLeak([secret], { report: RunReport.encodeJson(ok), logs: telemetry.logs, spans: telemetry.spans })
            const sha = Crypto.createHash("sha256").update(secret, "utf8").digest("hex").toUpperCase().match(/../g)!
              .join("-")
            assert.strictEqual(text(o.stdout).trim(), sha)
            const b64 = Buffer.from(secret, "utf8").toString("base64")
            const forms = [secret, b64, Buffer.from(b64 + "\n").toString("base64")]
            let sends = 0
            for (const r of emulator.requests()) {
              const carries = forms.some((f) => r.envelope.includes(f)) || sendCarries(r.envelope, b64)
              if (r.action === "Send" && carries) sends++
              else {
                for (const f of forms) assert.notInclude(r.envelope, f, `${r.action} envelope`)
              }
              assert.notInclude(r.raw.toString("latin1"), secret, "not on the wire in clear")
              if (!mode.https && r.raw.length > 0) assert.isTrue(r.encrypted, "every NTLM body is sealed")
            }
            assert.strictEqual(sends, 1, "the secret is in exactly one Send envelope")
          })),
        120_000
      )
    }

    it.live(
      "a certificate that does not match the policy → Rejected (HostKeyRejected), nothing sent",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const emulator = yield* Emulator.make({ https: true })
          const other = yield* Emulator.make({ https: true })
          const report = yield* run([
            // strict against another CA
            emulator.target({ id: "strict", certificate: { policy: "strict", ca: [other.caFile!] } }),
            // pinned to another certificate
            emulator.target({ id: "pinned", certificate: { policy: "pinned", sha256: [other.certificateSha256!] } })
          ], ps("Write-Output never"))
          for (const o of report.outcomes) {
            assert.strictEqual(expectTag(o, "Rejected").error.reason, "HostKeyRejected")
          }
          assert.strictEqual(emulator.requests().length, 0, "no request (and so no credential) reached the server")
          // the right pin is accepted
          const pinned = yield* run(
            [emulator.target({ id: "ok", certificate: { policy: "pinned", sha256: [emulator.certificateSha256!] } })],
            ps("Write-Output pinned")
          )
          assert.strictEqual(text(expectTag(pinned.outcomes[0]!, "Succeeded").stdout), "pinned\n")
        })),
      120_000
    )

    it.live(
      "quota faults are retried; a 401 is Rejected; a shell deleted mid-run is TransportFailed",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const emulator = yield* Emulator.make({ https: true })
          emulator.inject("Create", "max-shells", 2)
          emulator.inject("Command", "max-operations", 1)
          const retried = yield* run([emulator.target({ id: "win" })], ps("Write-Output after-quota"))
          assert.strictEqual(text(expectTag(retried.outcomes[0]!, "Succeeded").stdout), "after-quota\n")
          assert.strictEqual(emulator.requests().filter((r) => r.action === "Create" && r.status === 500).length, 2)

          emulator.inject("any", "unauthorized", 1)
          const refused = yield* run([emulator.target({ id: "win" })], ps("Write-Output never"))
          assert.strictEqual(expectTag(refused.outcomes[0]!, "Rejected").error.reason, "AuthFailed")

          const before = emulator.requests().length
          const deleted = yield* Effect.fork(
            run([emulator.target({ id: "win" })], ps("Write-Output started\nStart-Sleep 120"))
          )
          yield* Effect.promise(async () => {
            while (!emulator.requests().slice(before).some((r) => r.action === "Receive" && r.status === 200)) {
              await new Promise((r) => setTimeout(r, 50))
            }
            await emulator.deleteShells()
          })
          const report = yield* deleted.await.pipe(Effect.flatten)
          const o = expectTag(report.outcomes[0]!, "TransportFailed")
          assert.strictEqual(o.error.reason, "ConnectionLost")
          assert.include(o.error.message, "shell is gone")
          assert.notInclude(o.error.message, "<s:")
          assert.strictEqual(emulator.liveProcesses(), 0)
        })),
      180_000
    )

    it.live(
      "Kerberos and CredSSP are refused with a clear error before anything is sent",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const emulator = yield* Emulator.make({ https: true })
          const report = yield* run(
            [
              emulator.target({ id: "krb", auth: { type: "kerberos" } }),
              emulator.target({ id: "cs", auth: { type: "credssp" } })
            ],
            ps("Write-Output never")
          )
          for (const o of report.outcomes) {
            const r = expectTag(o, "Rejected")
            assert.strictEqual(r.error.reason, "Unsupported")
            assert.match(r.error.message, /(Kerberos|CredSSP) authentication is not supported yet: use auth type ntlm/)
          }
          assert.strictEqual(emulator.requests().length, 0)
        })),
      60_000
    )

    it.live(
      "the NTLM emulator refuses a plain (unencrypted) body, as Windows does with AllowUnencrypted=false",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const emulator = yield* Emulator.make({ https: false })
          const status = yield* Effect.promise(() =>
            new Promise<number>((resolve, reject) => {
              const req = Http.request(emulator.endpoint, {
                method: "POST",
                headers: { "Content-Type": "application/soap+xml" }
              }, (res) => {
                res.resume()
                resolve(res.statusCode ?? 0)
              })
              req.on("error", reject)
              req.end("<s:Envelope/>")
            })
          )
          assert.strictEqual(status, 401)
          assert.strictEqual(emulator.stats().shells, 0)
        })),
      60_000
    )
  })
}

/** Whether a Send envelope's stdin stream carries the secret's base64 line. */
const sendCarries = (envelope: string, b64: string): boolean => {
  const m = /<rsp:Stream[^>]*>([^<]*)<\/rsp:Stream>/.exec(envelope)
  return m !== null && Buffer.from(m[1]!, "base64").toString("utf8").includes(b64)
}

/** A process that is gone, or a zombie waiting for a parent that is not ours to reap. */
const goneOrZombie = (pid: number): boolean => {
  try {
    return /^State:\s+Z/m.test(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  } catch {
    return true
  }
}
