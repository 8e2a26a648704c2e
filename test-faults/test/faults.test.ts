/**
 * Faults between runcmd and sshd: a TCP fault proxy on loopback (resets mid-stream, stalls, a byte at a time,
 * refused accepts) and sshd killed and restarted mid-run. Every target ends with exactly one outcome; no script
 * runs twice unless the job is idempotent (a marker file per execution); no byte is silently lost (a known pattern
 * with its checksum: what the sink holds is a prefix of it, whole exactly when the outcome is Succeeded).
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import type * as ExecutionPolicy from "@runcmd/core/ExecutionPolicy"
import * as Outcome from "@runcmd/core/Outcome"
import * as OutputSink from "@runcmd/core/OutputSink"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import type { RunReport } from "@runcmd/core/RunReport"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import { SshTransport } from "@runcmd/transport-ssh"
import type { SshTarget } from "@runcmd/transport-ssh"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as FaultProxy from "../support/faultProxy.js"
import * as Pattern from "../support/pattern.js"
import * as Sshd from "../support/sshd.js"

const ids = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)

interface Case {
  readonly sshd: Sshd.Sshd
  readonly dir: string
  readonly ids: ReadonlyArray<string>
  readonly shape: Pattern.Shape
  readonly policy?: Partial<ExecutionPolicy.ExecutionPolicy> | undefined
  /** Through the proxy (its port, the server's host key pinned), else straight to sshd. */
  readonly proxy?: FaultProxy.FaultProxy | undefined
  readonly keepalive?: SshTarget.Keepalive | undefined
  readonly readyTimeout?: Duration.Duration | undefined
}

const targetsOf = (c: Case) =>
  c.ids.map((id) => ({
    ...c.sshd.target({
      id,
      overrides: {
        ...(c.proxy === undefined ? {} : {
          port: c.proxy.port,
          hostKey: { policy: "pinned", fingerprints: [c.sshd.hostFingerprint] }
        }),
        ...(c.keepalive === undefined ? {} : { keepalive: c.keepalive }),
        ...(c.readyTimeout === undefined ? {} : { readyTimeout: c.readyTimeout })
      }
    }),
    env: Pattern.env(c.dir, id)
  }))

/** Runs the pattern script on the case's targets; output to a per-target file sink in `<dir>/sink`. */
const runCase = (c: Case) =>
  Runner.run(
    RunPlan.make({
      targets: targetsOf(c),
      job: ScriptSource.job(ScriptSource.script(Pattern.script(c.shape))),
      policy: { concurrency: c.ids.length, ...c.policy },
      captureBytes: 8 * 1024 * 1024,
      sinks: [OutputSink.file({ dir: `${c.dir}/sink`, layout: "per-target" })]
    })
  ).pipe(Effect.orDie, Effect.provide(Layer.fresh(SshTransport.layer())))

/** One outcome per target, no script twice (not idempotent), every output checked against the pattern. */
const checkReport = (c: Case, report: RunReport) => {
  const what = Pattern.describeOutcomes(report.outcomes)
  assert.deepStrictEqual(report.outcomes.map((o) => o.targetId).sort(), [...c.ids].sort(), `one outcome each:\n${what}`)
  const tally = { whole: 0, cut: 0 }
  for (const o of report.outcomes) {
    const runs = Pattern.executions(c.dir, o.targetId)
    assert.isAtMost(runs, 1, `${o.targetId} ran ${runs} times, not idempotent:\n${what}`)
    if (o._tag === "Succeeded") assert.strictEqual(runs, 1)
    const sunk = Pattern.sunk(`${c.dir}/sink`, o.targetId)
    assert.strictEqual(Outcome.capturedText(o.stdout), sunk, `${o.targetId}: the report and the file sink agree`)
    tally[Pattern.checkOutput(o, sunk, c.shape)]++
  }
  return tally
}

const waitUntil = (what: string, ok: () => boolean, ms = 60_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + ms
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`)
      await Sshd.sleep(50)
    }
  })

const scratch = () =>
  Effect.acquireRelease(
    Effect.sync(Pattern.workDir),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** A case on the suite's sshd through a fault proxy of its own, in a scratch directory of its own. */
const proxied = (fields: Omit<Case, "sshd" | "proxy" | "dir">) =>
  Effect.gen(function*() {
    const sshd = yield* Sshd.Server
    const proxy = yield* FaultProxy.make({ host: "127.0.0.1", port: sshd.port })
    return { ...fields, sshd, proxy, dir: yield* scratch() }
  })

/** The remote scripts a dropped connection leaves running (no lifeline in this suite): removed by the test. */
const killRemote = (sshd: Sshd.Sshd) => Effect.promise(() => sshd.killLeftovers())

describe.skipIf(!Sshd.enabled())("faults: a fault proxy in front of sshd", () => {
  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped(
      "resets mid-stream: one outcome each, nothing run twice, cut output said so",
      () =>
        Effect.gen(function*() {
          const c = yield* proxied({
            ids: ids(8, "reset"),
            shape: { chunks: 6, lines: 200, pause: 0.3 },
            policy: { retry: { times: 3, backoff: Duration.millis(100), factor: 1 } }
          })
          const { proxy, sshd } = c
          // about 590 KB in all: the reset lands in the middle
          proxy.resetAfter(200_000)
          const report = yield* runCase(c)
          const tally = checkReport(c, report)
          assert.isAbove(proxy.stats().reset, 0, "the proxy reset connections")
          assert.isAbove(tally.cut, 0, `some output was cut:\n${Pattern.describeOutcomes(report.outcomes)}`)
          for (const o of report.outcomes) {
            if (o._tag !== "Succeeded") assert.strictEqual(o._tag, "TransportFailed", Pattern.describeOutcomes([o]))
          }
          yield* killRemote(sshd)
        }),
      { timeout: 120_000 }
    )

    it.scoped(
      "resets mid-stream, idempotent job: the cut targets run again and end whole",
      () =>
        Effect.gen(function*() {
          const shape = { chunks: 6, lines: 200, pause: 0.3 }
          const c = yield* proxied({
            ids: ids(8, "again"),
            shape,
            policy: { idempotent: true, retry: { times: 3, backoff: Duration.millis(100), factor: 1 } }
          })
          const { proxy, sshd } = c
          proxy.resetAfter(200_000)
          const report = yield* runCase(c)
          const what = Pattern.describeOutcomes(report.outcomes)
          assert.strictEqual(report.outcomes.length, c.ids.length)
          let again = 0
          for (const o of report.outcomes) {
            assert.strictEqual(o._tag, "Succeeded", what)
            const runs = Pattern.executions(c.dir, o.targetId)
            if (runs > 1) again++
            assert.strictEqual(o.attempts, runs, `${o.targetId}: attempts are the executions`)
            // the last attempt's output is whole, its checksum verified
            const sunk = Pattern.sunk(`${c.dir}/sink`, o.targetId)
            const last = sunk.slice(sunk.lastIndexOf(`${o.targetId} 0000 00000 `))
            Pattern.checkOutput(o, last, shape)
          }
          assert.isAbove(again, 0, `some target ran again:\n${what}`)
          yield* killRemote(sshd)
        }),
      { timeout: 120_000 }
    )

    it.scoped(
      "a stall (the peer vanishes, no reset): keepalive ends the executions TransportFailed, never a hang",
      () =>
        Effect.gen(function*() {
          const c = yield* proxied({
            ids: ids(4, "stall"),
            shape: { chunks: 40, lines: 20, pause: 0.25 },
            keepalive: { interval: Duration.seconds(1), countMax: 2 }
          })
          const { proxy, sshd } = c
          const fiber = yield* Effect.fork(runCase(c))
          yield* waitUntil("every script started", () => Pattern.started(c.dir, c.ids) === c.ids.length)
          proxy.setMode("stall")
          const stalledAt = Date.now()
          const report = yield* Fiber.join(fiber)
          const tally = checkReport(c, report)
          assert.strictEqual(tally.cut, c.ids.length, Pattern.describeOutcomes(report.outcomes))
          for (const o of report.outcomes) {
            assert.strictEqual(o._tag, "TransportFailed", Pattern.describeOutcomes([o]))
            if (o._tag === "TransportFailed") assert.strictEqual(o.remoteState, "unknown")
          }
          // keepalive 1 s × 2, and the kill's own bounded attempt
          assert.isBelow(Date.now() - stalledAt, 30_000, "ended within the keepalive bound")
          proxy.setMode("pass")
          yield* killRemote(sshd)
        }),
      { timeout: 120_000 }
    )

    it.scoped("a byte at a time: every target whole, checksums verified", () =>
      Effect.gen(function*() {
        const c = yield* proxied({
          ids: ids(3, "trickle"),
          // the handshake, a byte at a time, on a loaded machine
          readyTimeout: Duration.seconds(60),
          shape: { chunks: 2, lines: 20, pause: 0.1 }
        })
        c.proxy.setMode("trickle")
        const report = yield* runCase(c)
        const tally = checkReport(c, report)
        assert.strictEqual(tally.whole, c.ids.length, Pattern.describeOutcomes(report.outcomes))
      }), { timeout: 120_000 })

    it.scoped(
      "refused accepts: nothing runs; with retries the targets run once, once the server accepts",
      () =>
        Effect.gen(function*() {
          const refused = yield* proxied({ ids: ids(4, "refused"), shape: { chunks: 1, lines: 10, pause: 0 } })
          const { proxy } = refused
          proxy.setMode("refuse")
          const report = yield* runCase(refused)
          checkReport(refused, report)
          for (const o of report.outcomes) {
            // reset before the SSH handshake: the host is not reachable over SSH, nothing ran
            assert.strictEqual(o._tag, "Unreachable", Pattern.describeOutcomes([o]))
            if (o._tag === "Unreachable") {
              assert.strictEqual(o.error.reason, "ConnectRefused")
              assert.strictEqual(o.error.phase, "delivery")
            }
            assert.strictEqual(Pattern.executions(refused.dir, o.targetId), 0)
          }
          // the same with retries: the proxy accepts again after a few refusals
          const retried: Case = {
            ...refused,
            dir: yield* scratch(),
            ids: ids(4, "retried"),
            policy: { retry: { times: 10, backoff: Duration.millis(200), factor: 1 } }
          }
          const accepted = proxy.stats().accepted
          const fiber = yield* Effect.fork(runCase(retried))
          yield* waitUntil("more refusals", () => proxy.stats().accepted >= accepted + 4)
          proxy.setMode("pass")
          const again = yield* Fiber.join(fiber)
          const tally = checkReport(retried, again)
          assert.strictEqual(tally.whole, retried.ids.length, Pattern.describeOutcomes(again.outcomes))
        }),
      { timeout: 120_000 }
    )
  })
})

class Doomed extends Context.Tag("faults/Doomed")<Doomed, Sshd.Sshd>() {}

describe.skipIf(!Sshd.enabled())("faults: sshd killed and restarted mid-run", () => {
  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  it.layer(Sshd.layer({}, Doomed), Sshd.layerOptions)((it) => {
    it.scoped(
      "every target one outcome, nothing run twice, cut output said so; after the restart all whole",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Doomed
          const shape = { chunks: 30, lines: 20, pause: 0.2 }
          const c: Case = {
            sshd,
            dir: yield* scratch(),
            ids: ids(6, "crash"),
            shape,
            policy: { retry: { times: 3, backoff: Duration.millis(100), factor: 1 } }
          }
          const fiber = yield* Effect.fork(runCase(c))
          yield* waitUntil("every script started", () => Pattern.started(c.dir, c.ids) === c.ids.length)
          yield* Effect.promise(() => sshd.crash())
          const report = yield* Fiber.join(fiber)
          const tally = checkReport(c, report)
          assert.strictEqual(tally.cut, c.ids.length, Pattern.describeOutcomes(report.outcomes))
          for (const o of report.outcomes) assert.strictEqual(o._tag, "TransportFailed", Pattern.describeOutcomes([o]))
          yield* killRemote(sshd)
          yield* Effect.promise(() => sshd.restart())
          const after: Case = { ...c, dir: yield* scratch(), ids: ids(6, "restarted") }
          const again = checkReport(after, yield* runCase(after))
          assert.strictEqual(again.whole, after.ids.length)
        }),
      { timeout: 120_000 }
    )
  })
})
