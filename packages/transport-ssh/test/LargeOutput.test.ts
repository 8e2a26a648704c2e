import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run, sh } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

const MiB = 1024 * 1024

v8.setFlagsFromString("--expose-gc")
const gc = vm.runInNewContext("gc") as () => void

const retained = () => {
  // twice: the first full GC finds dead young Buffers but frees their external memory only in the next one
  gc()
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.external
}

/**
 * Samples memory every 250 ms while `effect` runs: the peak of what stays reachable after a full GC (heap + external
 * buffers, so Buffers count), and the peak RSS; both as growth over the start, in MiB.
 */
const measured = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const startRetained = retained()
    const startRss = process.memoryUsage().rss
    let peakRetained = startRetained
    let peakRss = startRss
    const timer = setInterval(() => {
      peakRetained = Math.max(peakRetained, retained())
      peakRss = Math.max(peakRss, process.memoryUsage().rss)
    }, 250)
    const value = yield* Effect.ensuring(effect, Effect.sync(() => clearInterval(timer)))
    return { value, retainedGrowth: (peakRetained - startRetained) / MiB, rssGrowth: (peakRss - startRss) / MiB }
  })

describe.skipIf(!Sshd.enabled())("large output", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped("100 MiB of output through the Runner with bounded memory", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        // warm up the code paths (module loading, JIT) so that only what the output costs is measured
        yield* run([sshd.target()], "head -c 16777216 /dev/zero").pipe(Effect.provide(SshTransport.layer()))
        const { retainedGrowth, rssGrowth, value: report } = yield* measured(
          run([sshd.target()], "head -c 104857600 /dev/zero; echo done >&2").pipe(Effect.provide(SshTransport.layer()))
        )
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Succeeded", describeReport(report))
        assert.strictEqual(o.stdout.totalBytes, 100 * MiB)
        assert.isTrue(o.stdout.truncated)
        console.log(
          `100 MiB via Runner: retained growth ${retainedGrowth.toFixed(1)} MiB, RSS growth ${rssGrowth.toFixed(1)} MiB`
        )
        // the Runner, its sinks and the capture keep some chunks in flight too: a loose bound, well under the output
        assert.isBelow(retainedGrowth, 40, "retained memory does not grow with the output")
        assert.isBelow(rssGrowth, 128, "RSS does not grow with the output")
      }), { timeout: 120_000 })

    it.scoped(
      "100 MiB of output at the transport level: what the transport holds stays small",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const transport = yield* SshTransport.make()
          const count = (bytes: number) =>
            Effect.scoped(
              Effect.gen(function*() {
                const execution = yield* transport.start(sshd.target(), sh(`head -c ${bytes} /dev/zero`))
                const received = yield* execution.output.pipe(Stream.runFold(0, (n, c) => n + c.bytes.length))
                assert.deepStrictEqual(yield* execution.exit, { _tag: "Exited", code: 0 })
                return received
              })
            )
          yield* count(16 * MiB)
          const { retainedGrowth, rssGrowth, value: received } = yield* measured(count(100 * MiB))
          assert.strictEqual(received, 100 * MiB)
          console.log(
            `100 MiB via the transport: retained growth ${retainedGrowth.toFixed(1)} MiB, RSS growth ${
              rssGrowth.toFixed(1)
            } MiB`
          )
          assert.isBelow(retainedGrowth, 32, "retained memory does not grow with the output")
          assert.isBelow(rssGrowth, 96, "RSS does not grow with the output")
        }),
      { timeout: 120_000 }
    )

    it.scoped(
      "a slow consumer pauses the channel: buffered output stays bounded, nothing is lost",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const transport = yield* SshTransport.make()
          yield* transport.run(sshd.target(), sh("head -c 4194304 /dev/urandom"))
          const total = 32 * MiB
          const { retainedGrowth, rssGrowth, value: received } = yield* measured(
            Effect.scoped(
              Effect.gen(function*() {
                const execution = yield* transport.start(sshd.target(), sh(`head -c ${total} /dev/urandom`))
                const bytes = yield* execution.output.pipe(
                  Stream.tap(() => Effect.sleep(Duration.millis(2))),
                  Stream.runFold(0, (n, c) => n + c.bytes.length)
                )
                const exit = yield* execution.exit
                assert.deepStrictEqual(exit, { _tag: "Exited", code: 0 })
                return bytes
              })
            )
          )
          assert.strictEqual(received, total)
          console.log(
            `32 MiB, slow consumer: retained growth ${retainedGrowth.toFixed(1)} MiB, RSS growth ${
              rssGrowth.toFixed(1)
            } MiB`
          )
          assert.isBelow(retainedGrowth, 16, "the channel is paused instead of buffering everything (half the output)")
        }),
      { timeout: 120_000 }
    )
  })
})
