import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run, stdoutOf } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

describe.skipIf(!Sshd.enabled())("fan-out", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  // 50 loopback addresses: 4 sshd processes (16 listen sockets each at most)
  it.layer(Sshd.layer({ addresses: 50 }), Sshd.layerOptions)((it) => {
    it.scoped("one run reaches 50 addresses, each target on its own address", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        assert.strictEqual(sshd.pids().length, 4, "one sshd per 16 addresses")
        const targets = sshd.addresses.map((address, i) =>
          sshd.target({ address, id: `host-${i}`, overrides: { labels: { n: String(i) } } })
        )
        const started = Date.now()
        const report = yield* run(targets, "echo $SSH_CONNECTION", { concurrency: 50 }).pipe(
          Effect.provide(SshTransport.layer())
        )
        const elapsed = Date.now() - started
        assert.strictEqual(report.summary.total, 50)
        const failed = report.outcomes.filter((o) => o._tag !== "Succeeded")
        assert.strictEqual(failed.length, 0, describeReport({ ...report, outcomes: failed }))
        report.outcomes.forEach((o) => {
          const i = Number(o.targetId.slice("host-".length))
          assert.strictEqual(
            stdoutOf(o).trim().split(" ")[2],
            sshd.addresses[i],
            `${o.targetId} ran on its own address`
          )
        })
        assert.isBelow(elapsed, 30_000)
      }), { timeout: 60_000 })
  })
})
