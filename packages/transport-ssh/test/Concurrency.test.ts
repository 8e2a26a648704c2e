import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Transport from "@runcmd/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run, sh, stdoutOf } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

/** One daemon, three session limits: MaxSessions 10 on 127.0.0.1, 2 on SMALL, 0 (refuses every session) on NONE. */
const SMALL = "127.0.4.2"
const NONE = "127.0.4.3"

describe.skipIf(!Sshd.enabled())("channels per connection and MaxSessions", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(
    Sshd.layer({
      addresses: ["127.0.0.1", SMALL, NONE],
      maxSessions: 10,
      maxSessionsByAddress: { [SMALL]: 2, [NONE]: 0 }
    }),
    Sshd.layerOptions
  )((it) => {
    it.scoped("100 concurrent executions on one host (MaxSessions 10) all succeed", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const targets = Array.from({ length: 100 }, (_, i) => sshd.target({ id: `job-${i}` }))
        const started = Date.now()
        const report = yield* run(targets, "sleep 0.2; echo ok", { concurrency: 100 }).pipe(
          Effect.provide(SshTransport.layer())
        )
        const failed = report.outcomes.filter((o) => o._tag !== "Succeeded")
        assert.strictEqual(failed.length, 0, describeReport({ ...report, outcomes: failed }))
        assert.isTrue(report.outcomes.every((o) => stdoutOf(o) === "ok\n"))
        assert.isBelow(Date.now() - started, 30_000)
      }), { timeout: 60_000 })

    it.scoped(
      "refused channel opens (cap = MaxSessions, one connection) are retried, never surfaced",
      () =>
        Effect.gen(function*() {
          // 10 channels on one connection against MaxSessions 10: sshd frees sessions asynchronously and refuses some
          // re-opens ("open failed", reason 2); the transport backs off and retries
          const sshd = yield* Sshd.Server
          const connections = yield* SshTransport.makeConnections({
            maxChannelsPerConnection: 10,
            maxConnectionsPerHost: 1
          })
          const target = sshd.target()
          const results = yield* Effect.forEach(
            Array.from({ length: 100 }, (_, i) => i),
            (i) => connections.transport.run(target, sh(`echo ${i}`)),
            { concurrency: "unbounded" }
          )
          results.forEach((r, i) => {
            assert.deepStrictEqual(r.exit, Transport.exited(0))
            assert.strictEqual(new TextDecoder().decode(r.stdout), `${i}\n`)
          })
          assert.strictEqual(connections.stats().connections, 1)
        }),
      { timeout: 60_000 }
    )

    it.scoped(
      "MaxSessions 2 with a cap of 8: refusals lower the connection's cap, everything succeeds",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const targets = Array.from({ length: 30 }, (_, i) => sshd.target({ address: SMALL, id: `s-${i}` }))
          const report = yield* run(targets, "sleep 0.1; echo ok", { concurrency: 30 }).pipe(
            Effect.provide(SshTransport.layer({ maxConnectionsPerHost: 2 }))
          )
          const failed = report.outcomes.filter((o) => o._tag !== "Succeeded")
          assert.strictEqual(failed.length, 0, describeReport({ ...report, outcomes: failed }))
        }),
      { timeout: 60_000 }
    )

    it.scoped(
      "MaxSessions 2 filled by an execution and the lifeline: a timeout's kill runs through the lifeline, confirmed",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          // the execution and the lifeline hold both sessions: a kill over a channel of its own would be refused
          const script = `trap '' TERM; setsid sh -c 'trap "" TERM HUP; sleep 300' & echo started; wait`
          const report = yield* run([sshd.target({ address: SMALL, id: "stubborn" })], script, {
            timeout: Duration.seconds(2),
            killGrace: Duration.millis(300)
          }).pipe(Effect.provide(SshTransport.layer({ maxConnectionsPerHost: 1, channelOpenAttempts: 3 })))
          for (const o of report.outcomes) {
            assert.strictEqual(o._tag, "TimedOut", describeReport(report))
            if (o._tag === "TimedOut") assert.isTrue(o.killConfirmed, describeReport(report))
          }
        }),
      { timeout: 60_000 }
    )

    it.scoped("a server that refuses every session is Unreachable/ChannelLimitReached (delivery)", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const report = yield* run([sshd.target({ address: NONE })], "true").pipe(
          Effect.provide(SshTransport.layer({ channelOpenAttempts: 4 }))
        )
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Unreachable", describeReport(report))
        if (o._tag === "Unreachable") {
          assert.strictEqual(o.error.reason, "ChannelLimitReached")
          assert.strictEqual(o.error.phase, "delivery")
        }
      }))
  })
})
