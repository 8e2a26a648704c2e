import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SshTarget from "../src/SshTarget.js"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run, stdoutOf } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

const logins = (sshd: Sshd.Sshd) => (sshd.log().match(/Accepted publickey/g) ?? []).length

/** Three servers, three host keys: every hop is checked against its own. */
class Jump1 extends Context.Tag("Jump/Jump1")<Jump1, Sshd.Sshd>() {}
class Jump2 extends Context.Tag("Jump/Jump2")<Jump2, Sshd.Sshd>() {}
class Final extends Context.Tag("Jump/Final")<Final, Sshd.Sshd>() {}

const servers = Layer.mergeAll(
  Sshd.layer({}, Jump1),
  Sshd.layer({ addresses: ["127.0.2.1"] }, Jump2),
  Sshd.layer({ addresses: ["127.0.3.1", "127.0.3.2", "127.0.3.3"] }, Final)
)
const all = Effect.all({ jump1: Jump1, jump2: Jump2, final: Final })

describe.skipIf(!Sshd.enabled())("jump hosts (ProxyJump)", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(servers, Sshd.layerOptions)((it) => {
    const pinned = (s: Sshd.Sshd): SshTarget.HostKeyPolicy => ({ policy: "pinned", fingerprints: [s.hostFingerprint] })
    const hop = (s: Sshd.Sshd, hostKey: SshTarget.HostKeyPolicy = pinned(s)): SshTarget.Hop => {
      const t = s.target({ hostKey })
      return { host: t.host, port: t.port, user: t.user, auth: t.auth, hostKey }
    }

    it.scoped("a chain of two jump hosts reaches the target; the jump connection is shared", () =>
      Effect.gen(function*() {
        const { jump1, jump2, final } = yield* all
        const targets = final.addresses.map((address, i) =>
          final.target({
            address,
            id: `behind-${i}`,
            hostKey: pinned(final),
            overrides: { via: [hop(jump1), hop(jump2)] }
          })
        )
        const before = { j1: logins(jump1), j2: logins(jump2), final: logins(final) }
        const report = yield* run(targets, "echo $SSH_CONNECTION", { concurrency: 3 }).pipe(
          Effect.provide(SshTransport.layer())
        )
        const failed = report.outcomes.filter((o) => o._tag !== "Succeeded")
        assert.strictEqual(failed.length, 0, describeReport(report))
        report.outcomes.forEach((o, i) => {
          const [, , address, port] = stdoutOf(o).trim().split(" ")
          assert.strictEqual(address, final.addresses[i])
          assert.strictEqual(Number(port), final.port)
        })
        assert.strictEqual(logins(jump1) - before.j1, 1, "one login on the first jump host for the three targets")
        assert.strictEqual(logins(jump2) - before.j2, 1, "one tunnelled login on the second jump host, shared too")
        assert.strictEqual(logins(final) - before.final, 3, "one login per target address")
      }))

    it.scoped("each hop has its own host-key check: a wrong key on the second jump host is Rejected there", () =>
      Effect.gen(function*() {
        const { jump1, jump2, final } = yield* all
        const wrong: SshTarget.HostKeyPolicy = { policy: "pinned", fingerprints: [jump1.hostFingerprint] }
        const target = final.target({ hostKey: pinned(final), overrides: { via: [hop(jump1), hop(jump2, wrong)] } })
        const before = logins(final)
        const report = yield* run([target], "true").pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Rejected", describeReport(report))
        if (o._tag === "Rejected") {
          assert.strictEqual(o.error.reason, "HostKeyRejected")
          assert.strictEqual(o.error.detail?.hopIndex, 1)
          assert.strictEqual(o.error.detail?.presentedFingerprint, jump2.hostFingerprint)
          assert.include(o.error.message, "jump host 2")
        }
        assert.strictEqual(logins(final), before, "the target was never reached")
      }))

    it.scoped("an unreachable next hop is reported by the jump host as ConnectRefused", () =>
      Effect.gen(function*() {
        const { jump1, final } = yield* all
        const port = yield* Effect.promise(() => Sshd.freePort())
        const target = final.target({ hostKey: pinned(final), overrides: { port, via: [hop(jump1)] } })
        const report = yield* run([target], "true").pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Unreachable", describeReport(report))
        if (o._tag === "Unreachable") assert.strictEqual(o.error.reason, "ConnectRefused")
      }))
  })
})
