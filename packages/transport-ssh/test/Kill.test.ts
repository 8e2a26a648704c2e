import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, fakeServer, run, sh, text } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

/** Ignores TERM, and so do its children; one grandchild escapes into its own session. */
const STUBBORN = [
  "trap '' TERM",
  "( trap '' TERM; sleep 300 ) &",
  "sh -c 'trap \"\" TERM; sleep 301' &",
  "setsid sh -c 'trap \"\" TERM; sleep 302' &",
  "echo started",
  "wait"
].join("\n")

describe.skipIf(!Sshd.enabled())("kill on timeout and cancel", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped("a TERM-ignoring script with grandchildren is killed on timeout, confirmed, nothing left", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const started = Date.now()
        // long enough for the delivery (connect, the connection's lifeline, the channel) on a loaded machine
        const report = yield* run([sshd.target()], STUBBORN, {
          timeout: Duration.seconds(3),
          killGrace: Duration.millis(500)
        }).pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "TimedOut", describeReport(report))
        if (o._tag === "TimedOut") {
          assert.isTrue(o.killConfirmed, "the kill is confirmed")
          assert.strictEqual(o.phase, "execution")
        }
        assert.include(text(new TextEncoder().encode(o.stdout.head)), "started")
        assert.isBelow(Date.now() - started, 15_000)
        // assertNoLeftovers (afterEach) proves that no remote process survived
        assert.deepStrictEqual(sshd.leftovers(), [])
      }))

    it.scoped("cancelling a run kills its remote processes and reports Cancelled(confirmed)", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const report = yield* Runner.run(
          RunPlan.make({
            targets: [sshd.target()],
            job: ScriptSource.job(ScriptSource.script(STUBBORN)),
            policy: { killGrace: Duration.millis(300) }
          }),
          { cancelWhen: Effect.sleep("1500 millis") }
        ).pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Cancelled", describeReport(report))
        if (o._tag === "Cancelled") assert.isTrue(o.confirmed)
        assert.deepStrictEqual(sshd.leftovers(), [])
      }))

    it.scoped("closing an execution's scope early runs the kill over a second channel (transport level)", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const transport = yield* SshTransport.make()
        const confirmed = yield* Effect.scoped(
          Effect.gen(function*() {
            const execution = yield* transport.start(sshd.target(), sh(STUBBORN, { killGrace: Duration.millis(200) }))
            const first = yield* execution.output.pipe(Stream.take(1), Stream.runCollect)
            assert.strictEqual(text([...first][0]!.bytes), "started\n")
            return execution
          })
        ).pipe(Effect.flatMap((execution) => execution.killConfirmed))
        assert.isTrue(confirmed)
        assert.deepStrictEqual(sshd.leftovers(), [])
      }))

    it.scoped(
      "cancelling a run in the middle of heavy output ends promptly, the kill confirmed",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const started = Date.now()
          const report = yield* Runner.run(
            RunPlan.make({
              targets: [sshd.target()],
              job: ScriptSource.job(ScriptSource.script("cat /dev/zero")),
              policy: { killGrace: Duration.millis(300) }
            }),
            { cancelWhen: Effect.sleep("1 second") }
          ).pipe(Effect.provide(SshTransport.layer()))
          const o = report.outcomes[0]!
          assert.strictEqual(o._tag, "Cancelled", describeReport(report))
          if (o._tag === "Cancelled") assert.isTrue(o.confirmed)
          assert.isAbove(o.stdout.totalBytes, 1024 * 1024)
          // the output the server still holds is drained, so the channel closes and the finalizer does not hang
          assert.isBelow(Date.now() - started, 10_000)
          assert.deepStrictEqual(sshd.leftovers(), [])
        }),
      { timeout: 30_000 }
    )

    it.scoped(
      "closing the scope while the consumer holds the channel paused kills and ends promptly",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const transport = yield* SshTransport.make()
          const started = Date.now()
          const confirmed = yield* Effect.scoped(
            Effect.gen(function*() {
              const execution = yield* transport.start(
                sshd.target(),
                sh("cat /dev/zero", { killGrace: Duration.millis(200) })
              )
              // one chunk, then nothing is read: the channel fills up and is paused
              yield* execution.output.pipe(Stream.take(1), Stream.runDrain)
              yield* Effect.sleep("500 millis")
              return execution
            })
          ).pipe(Effect.flatMap((execution) => execution.killConfirmed))
          assert.isTrue(confirmed)
          assert.isBelow(Date.now() - started, 10_000)
          assert.deepStrictEqual(sshd.leftovers(), [])
        }),
      { timeout: 30_000 }
    )

    it.scoped("a kill is not stuck behind queued executions when the connection is at its channel cap", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const transport = yield* SshTransport.make({ maxChannelsPerConnection: 2, maxConnectionsPerHost: 1 })
        const target = sshd.target()
        // two long executions fill the only connection; closing one's scope must still kill it promptly
        const other = yield* transport.start(target, sh("sleep 300"))
        const started = Date.now()
        const confirmed = yield* Effect.scoped(
          Effect.gen(function*() {
            const execution = yield* transport.start(
              target,
              sh("echo go; sleep 300", { killGrace: Duration.millis(200) })
            )
            yield* execution.output.pipe(Stream.take(1), Stream.runDrain)
            return execution
          })
        ).pipe(Effect.flatMap((e) => e.killConfirmed))
        assert.isTrue(confirmed)
        assert.isBelow(Date.now() - started, 10_000)
        assert.isDefined(other)
      }))

    it.scoped("a timeout while waiting for a channel slot or a connection leaks nothing", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const connections = yield* SshTransport.makeConnections({
          maxChannelsPerConnection: 1,
          maxConnectionsPerHost: 1
        })
        const target = sshd.target()
        yield* Effect.scoped(
          Effect.gen(function*() {
            const running = yield* connections.transport.start(target, sh("echo busy; sleep 300"))
            yield* running.output.pipe(Stream.take(1), Stream.runDrain)
            // the only slot is taken: this one waits, and its timeout interrupts the wait
            const waited = yield* Effect.scoped(connections.transport.start(target, sh("echo never"))).pipe(
              Effect.timeout("300 millis"),
              Effect.option
            )
            assert.isTrue(Option.isNone(waited))
          })
        )
        // the interrupted connect of another target (a silent server) is torn down too
        const silent = yield* fakeServer(() => {})
        const port = silent.port
        const stuck = yield* connections.transport.run(sshd.target({ overrides: { port } }), sh("true")).pipe(
          Effect.timeout("300 millis"),
          Effect.option
        )
        assert.isTrue(Option.isNone(stuck))
        yield* Effect.sleep("200 millis")
        assert.strictEqual(silent.sockets.size, 0, "the interrupted connect closed its socket")
        assert.strictEqual(connections.stats().channels, 0, "every lease was released")
        const r = yield* connections.transport.run(target, sh("echo again"))
        assert.strictEqual(text(r.stdout), "again\n")
      }))

    it.scoped("the script runs as the leader of its own process group (what the kill targets)", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const transport = yield* SshTransport.make()
        yield* Effect.scoped(
          Effect.gen(function*() {
            const execution = yield* transport.start(sshd.target(), sh("echo $$; sleep 300"))
            const line = yield* execution.output.pipe(Stream.take(1), Stream.runCollect)
            const pid = Number(text([...line][0]!.bytes).trim())
            assert.isAbove(pid, 1)
            const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
            const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
            assert.strictEqual(Number(fields[2]), pid, "pgid = pid")
            assert.strictEqual(Number(fields[3]), pid, "session id = pid")
          })
        )
      }))
  })
})
