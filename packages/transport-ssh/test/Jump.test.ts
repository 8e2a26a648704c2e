import { afterAll, afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as SshTarget from "../src/SshTarget.js"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run, stdoutOf } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

const logins = (sshd: Sshd.Sshd) => (sshd.log().match(/Accepted publickey/g) ?? []).length

describe.skipIf(!Sshd.enabled())("jump hosts (ProxyJump)", () => {
  let jump1: Sshd.Sshd
  let jump2: Sshd.Sshd
  let final: Sshd.Sshd
  beforeAll(async () => {
    // three servers, three host keys: every hop is checked against its own
    ;[jump1, jump2, final] = await Promise.all([
      Sshd.start({}),
      Sshd.start({ addresses: ["127.0.2.1"] }),
      Sshd.start({ addresses: ["127.0.3.1", "127.0.3.2", "127.0.3.3"] })
    ])
  })
  afterAll(async () => {
    await Promise.all([jump1?.stop(), jump2?.stop(), final?.stop()])
  })
  afterEach(async () => {
    for (const s of [jump1, jump2, final]) await s.assertNoLeftovers()
  })

  const pinned = (s: Sshd.Sshd): SshTarget.HostKeyPolicy => ({ policy: "pinned", fingerprints: [s.hostFingerprint] })
  const hop = (s: Sshd.Sshd, hostKey: SshTarget.HostKeyPolicy = pinned(s)): SshTarget.Hop => {
    const t = s.target({ hostKey })
    return { host: t.host, port: t.port, user: t.user, auth: t.auth, hostKey }
  }

  it.scopedLive("a chain of two jump hosts reaches the target; the jump connection is shared", () =>
    Effect.gen(function*() {
      const targets = final.addresses.map((address, i) =>
        final.target({ address, id: `behind-${i}`, hostKey: pinned(final), overrides: { via: [hop(jump1), hop(jump2)] } })
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

  it.scopedLive("each hop has its own host-key check: a wrong key on the second jump host is Rejected there", () =>
    Effect.gen(function*() {
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

  it.scopedLive("an unreachable next hop is reported by the jump host as ConnectRefused", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => Sshd.freePort())
      const target = final.target({ hostKey: pinned(final), overrides: { port, via: [hop(jump1)] } })
      const report = yield* run([target], "true").pipe(Effect.provide(SshTransport.layer()))
      const o = report.outcomes[0]!
      assert.strictEqual(o._tag, "Unreachable", describeReport(report))
      if (o._tag === "Unreachable") assert.strictEqual(o.error.reason, "ConnectRefused")
    }))
})
