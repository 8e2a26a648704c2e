import { afterEach, assert, describe, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run, stderrOf, stdoutOf } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

const PASSWORD = "S3cret-pw 'with' \"quotes\" $x"

/** Login users with a password: one with a sudoers rule (password asked), one without a rule; one NOPASSWD. */
class WithRule extends Context.Tag("Sudo/WithRule")<WithRule, Sshd.TestUser>() {}
class WithoutRule extends Context.Tag("Sudo/WithoutRule")<WithoutRule, Sshd.TestUser>() {}
class Nopasswd extends Context.Tag("Sudo/Nopasswd")<Nopasswd, Sshd.TestUser>() {}

const servers = Layer.mergeAll(
  Sshd.layer(),
  Sshd.userLayer(WithRule, { password: PASSWORD, sudo: "password" }),
  Sshd.userLayer(WithoutRule, { password: PASSWORD, sudo: "none" }),
  Sshd.userLayer(Nopasswd, { sudo: "nopasswd" })
)

const runsHere = Sshd.enabled() && Sshd.isRoot() && fs.existsSync("/usr/bin/sudo")

describe.skipIf(!runsHere)("run-as through the wrapper", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(servers, Sshd.layerOptions)((it) => {
    const job = (_password: string | undefined, script = "id -un; cat") =>
      ScriptSource.job(ScriptSource.script(script), { stdin: "stdin reaches the escalated script\n" })
    const runAs = (password: string | undefined) => ({
      user: "root",
      method: "sudo" as const,
      ...(password === undefined ? {} : { password: Redacted.make(password) })
    })

    it.scoped("sudo with the right password runs as root; the password never shows", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const withRule = yield* WithRule
        const report = yield* run([sshd.target({ user: withRule.name })], job(PASSWORD), { runAs: runAs(PASSWORD) })
          .pipe(
            Effect.provide(SshTransport.layer())
          )
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Succeeded", describeReport(report))
        assert.strictEqual(stdoutOf(o), "root\nstdin reaches the escalated script\n")
        assert.notInclude(stderrOf(o), "runcmd-", "protocol lines are removed from stderr")
        assert.notInclude(JSON.stringify(report), "S3cret")
        assert.notInclude(sshd.log(), "S3cret")
      }))

    it.scoped("sudo with a wrong password is Rejected/EscalationFailed, quickly, nothing run", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const withRule = yield* WithRule
        const started = Date.now()
        const report = yield* run(
          [sshd.target({ user: withRule.name })],
          job("wrong", "touch /tmp/runcmd-should-not-exist-$$; id -un"),
          { runAs: runAs("wrong") }
        ).pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Rejected", describeReport(report))
        if (o._tag === "Rejected") assert.strictEqual(o.error.reason, "EscalationFailed")
        assert.strictEqual(stdoutOf(o), "")
        assert.isBelow(Date.now() - started, 15_000)
      }))

    it.scoped("sudo for a user without a sudoers rule is Rejected/EscalationFailed", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const withoutRule = yield* WithoutRule
        const report = yield* run(
          [
            sshd.target({ user: withoutRule.name, id: "with-password" }),
            sshd.target({ user: withoutRule.name, id: "without-password" })
          ],
          job(PASSWORD),
          { runAs: runAs(PASSWORD) }
        ).pipe(Effect.provide(SshTransport.layer()))
        // same plan, but the second target is run with sudo -n (no password): run it separately
        const noPassword = yield* run([sshd.target({ user: withoutRule.name, id: "sudo-n" })], job(undefined), {
          runAs: runAs(undefined)
        }).pipe(Effect.provide(SshTransport.layer()))
        for (const o of [...report.outcomes, ...noPassword.outcomes]) {
          assert.strictEqual(o._tag, "Rejected", describeReport(report) + "\n" + describeReport(noPassword))
          if (o._tag === "Rejected") assert.strictEqual(o.error.reason, "EscalationFailed")
        }
      }))

    it.scoped("sudo -n with a NOPASSWD rule runs as the requested user", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const withRule = yield* WithRule
        const nopasswd = yield* Nopasswd
        const report = yield* run([sshd.target({ user: nopasswd.name })], job(undefined), {
          runAs: { user: withRule.name, method: "sudo" }
        }).pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Succeeded", describeReport(report))
        assert.strictEqual(stdoutOf(o), `${withRule.name}\nstdin reaches the escalated script\n`)
      }))

    it.scoped("a timed-out escalated script is killed (TERM relayed through sudo), nothing left", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const withRule = yield* WithRule
        const report = yield* run(
          [sshd.target({ user: withRule.name })],
          ScriptSource.job(ScriptSource.script("trap '' TERM; echo up; sleep 300 & wait")),
          { runAs: runAs(PASSWORD), timeout: Duration.seconds(2), killGrace: Duration.millis(500) }
        ).pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "TimedOut", describeReport(report))
        assert.deepStrictEqual(sshd.leftovers(), [])
      }))
  })
})
