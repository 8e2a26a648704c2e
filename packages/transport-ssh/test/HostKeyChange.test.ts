import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

describe.skipIf(!Sshd.enabled())("host key changed between two runs", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped("the second run is Rejected/HostKeyRejected with expected vs presented, and nothing is executed", () =>
      Effect.gen(function*() {
        const first = yield* Sshd.Server
        const port = first.port
        const store = path.join(first.dir, "..", `runcmd-tofu-${process.pid}-${Date.now()}`)
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(store, { force: true })))
        const marker = `/tmp/runcmd-hostkey-marker-${process.pid}-${Date.now()}`
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(marker, { force: true })))
        const policies = [
          { id: "accept-new", hostKey: { policy: "accept-new" as const, store } },
          {
            id: "strict",
            hostKey: { policy: "strict" as const, knownHosts: [path.join(first.dir, "..", `runcmd-kh-${process.pid}`)] }
          },
          { id: "pinned", hostKey: { policy: "pinned" as const, fingerprints: [first.hostFingerprint] as const } }
        ]
        fs.copyFileSync(first.knownHostsPath, policies[1]!.hostKey.knownHosts![0]!)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => fs.rmSync(policies[1]!.hostKey.knownHosts![0]!, { force: true }))
        )

        const targets1 = policies.map((p) => first.target({ id: p.id, hostKey: p.hostKey as never }))
        const report1 = yield* run(targets1, "true").pipe(Effect.provide(SshTransport.layer()))
        assert.deepStrictEqual(
          report1.outcomes.map((o) => o._tag),
          ["Succeeded", "Succeeded", "Succeeded"],
          describeReport(report1)
        )
        const oldFingerprint = first.hostFingerprint
        yield* Effect.promise(() => first.assertNoLeftovers())
        yield* Effect.promise(() => first.stop())

        // same address and port, new host key (a reinstalled host, or a man in the middle); same login user. The
        // layer's server is stopped above (its release does nothing more); this one is stopped with the test's scope
        const second = yield* Sshd.scoped({ port })
        assert.notStrictEqual(second.hostFingerprint, oldFingerprint)
        const targets2 = policies.map((p) => second.target({ id: p.id, hostKey: p.hostKey as never }))
        const report2 = yield* run(targets2, `touch ${marker}`).pipe(Effect.provide(SshTransport.layer()))
        for (const o of report2.outcomes) {
          assert.strictEqual(o._tag, "Rejected", describeReport(report2))
          if (o._tag === "Rejected") {
            assert.strictEqual(o.error.reason, "HostKeyRejected")
            assert.strictEqual(o.error.phase, "delivery")
            assert.strictEqual(o.error.detail?.presentedFingerprint, second.hostFingerprint)
            assert.deepStrictEqual(o.error.detail?.expectedFingerprints, [oldFingerprint])
          }
          assert.strictEqual(o.attempts, 1)
        }
        assert.isFalse(fs.existsSync(marker), "nothing was executed")
        assert.notMatch(second.log(), /Accepted publickey/, "no login happened")
        yield* Effect.promise(() => second.assertNoLeftovers())
      }))
  })
})
