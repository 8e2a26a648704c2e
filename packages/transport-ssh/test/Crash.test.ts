import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

/** The server that is crashed and restarted, and one that stays up (each its own daemons and port). */
class Doomed extends Context.Tag("Crash/Doomed")<Doomed, Sshd.Sshd>() {}
class Healthy extends Context.Tag("Crash/Healthy")<Healthy, Sshd.Sshd>() {}

describe.skipIf(!Sshd.enabled())("sshd killed mid-run", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Layer.merge(Sshd.layer({}, Doomed), Sshd.layer({}, Healthy)), Sshd.layerOptions)((it) => {
    it.scoped(
      "affected executions fail with ConnectionLost (TransportFailed), others succeed, the pool recovers",
      () =>
        Effect.gen(function*() {
          const doomed = yield* Doomed
          const healthy = yield* Healthy
          const connections = yield* SshTransport.SshConnections
          const onDoomed = [0, 1, 2].map((i) => doomed.target({ id: `doomed-${i}` }))
          const onHealthy = [0, 1, 2].map((i) => healthy.target({ id: `healthy-${i}` }))
          const fiber = yield* run(
            [...onDoomed, ...onHealthy],
            `case "$(echo $SSH_CONNECTION | cut -d' ' -f4)" in ${doomed.port}) exec sleep 300 ;; *) sleep 2; echo ok ;; esac`,
            { concurrency: 6 }
          ).pipe(Effect.fork)
          // wait until the three remote sleeps run on the doomed server, then kill every sshd process of it
          yield* Effect.promise(async () => {
            const deadline = Date.now() + 15_000
            while (doomed.leftovers().filter((p) => p.comm === "sleep").length < 3) {
              if (Date.now() > deadline) throw new Error("the executions did not start")
              await Sshd.sleep(20)
            }
            await doomed.crash()
          })
          const report = yield* Fiber.join(fiber)
          for (const o of report.outcomes) {
            if (o.targetId.startsWith("doomed")) {
              assert.strictEqual(o._tag, "TransportFailed", describeReport(report))
              if (o._tag === "TransportFailed") {
                assert.strictEqual(o.error.reason, "ConnectionLost")
                assert.strictEqual(o.error.phase, "execution")
                assert.strictEqual(o.remoteState, "unknown")
              }
            } else {
              assert.strictEqual(o._tag, "Succeeded", describeReport(report))
            }
          }
          // the remote commands of a dropped non-pty session survive it (OpenSSH): the test removes them
          yield* Effect.promise(() => doomed.killLeftovers())

          // while the server is down: Unreachable, not a hang
          const down = yield* run(onDoomed.slice(0, 1), "true")
          assert.strictEqual(down.outcomes[0]!._tag, "Unreachable", describeReport(down))

          // back up on the same port: the same pool serves it again (lost connections were evicted)
          yield* Effect.promise(() => doomed.restart())
          const again = yield* run(onDoomed, "echo back", { concurrency: 3 })
          assert.deepStrictEqual(
            again.outcomes.map((o) => o._tag),
            ["Succeeded", "Succeeded", "Succeeded"],
            describeReport(again)
          )
          assert.isAtMost(connections.stats().connections, 4 + 4)
        }).pipe(Effect.provide(Layer.fresh(SshTransport.layer()))),
      { timeout: 60_000 }
    )
  })
})
