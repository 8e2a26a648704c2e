import * as Command from "@effect/platform/Command"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { rollingDeploy } from "../examples/pipeline.js"
import * as ExecutionPolicy from "../src/ExecutionPolicy.js"
import * as Metrics from "../src/Metrics.js"
import * as Outcome from "../src/Outcome.js"
import * as RemoteCommandExecutor from "../src/RemoteCommandExecutor.js"
import type * as RunEvent from "../src/RunEvent.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as RunReport from "../src/RunReport.js"
import * as ScriptSource from "../src/ScriptSource.js"
import { drive, InMemory, InMemoryTransport, memoryTarget, Step } from "../src/testing.js"

const targets = (n: number, prefix = "t") => Array.from({ length: n }, (_, i) => memoryTarget(`${prefix}${i}`))
const job = ScriptSource.job(ScriptSource.script("work"))
const plan = (n: number, policy: Partial<ExecutionPolicy.ExecutionPolicy> = {}) =>
  RunPlan.make({ targets: targets(n), job, policy })
const sleepThenExit = (seconds: number, code = 0) => [Step.sleep(Duration.seconds(seconds)), Step.exit(code)]
const tags = (report: RunReport.RunReport) => report.outcomes.map((o) => o._tag)

describe("Runner", () => {
  it.effect("honours a numeric concurrency and finishes in ceil(n/c) waves", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const report = yield* drive(Runner.run(plan(10, { concurrency: 3 })))
      assert.strictEqual(yield* memory.maxConcurrent, 3)
      assert.strictEqual(report.summary.byOutcome.Succeeded, 10)
      assert.strictEqual(report.durationMs, 40_000)
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: sleepThenExit(10) }))))

  it.effect("resolves a percentage concurrency against the number of targets", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      yield* drive(Runner.run(plan(10, { concurrency: "20%" })))
      assert.strictEqual(yield* memory.maxConcurrent, 2)
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: sleepThenExit(1) }))))

  it.effect("stops starting targets once the error budget is exceeded, counting unreachable targets", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(6, { concurrency: 1, maxErrors: 1 })))
      assert.deepStrictEqual(tags(report), ["Failed", "Unreachable", "Skipped", "Skipped", "Skipped", "Skipped"])
      const skipped = report.outcomes[2]!
      assert.isTrue(skipped._tag === "Skipped" && skipped.why === "BudgetExhausted")
      assert.deepStrictEqual(RunReport.failedTargets(report), ["t0", "t1", "t2", "t3", "t4", "t5"])
    }).pipe(Effect.provide(InMemoryTransport.layer({
      behaviours: { t0: [Step.exit(1)], t1: [Step.refuse("ConnectRefused")] },
      default: sleepThenExit(1)
    }))))

  it.effect("marks a stream the service cut: truncated, truncatedBy, shown by capturedText; the other stays whole", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(1)))
      const o = report.outcomes[0]!
      assert.strictEqual(o._tag, "Succeeded")
      assert.isTrue(o.stdout.truncated)
      assert.strictEqual(o.stdout.truncatedBy, "memory: inline output capped at 4 bytes")
      assert.strictEqual(o.stdout.droppedBytes, 0)
      assert.strictEqual(Outcome.capturedText(o.stdout), "abcd\n…[truncated: memory: inline output capped at 4 bytes]")
      assert.isFalse(o.stderr.truncated)
      assert.isUndefined(o.stderr.truncatedBy)
      // the report's schema carries it
      const decoded = Schema.decodeUnknownSync(RunReport.RunReport)(Schema.encodeSync(RunReport.RunReport)(report))
      assert.strictEqual(decoded.outcomes[0]!.stdout.truncatedBy, "memory: inline output capped at 4 bytes")
    }).pipe(Effect.provide(InMemoryTransport.layer({
      default: {
        steps: [Step.stdout("abcd"), Step.stderr("e"), Step.exit(0)],
        truncated: { stdout: "memory: inline output capped at 4 bytes" }
      }
    }))))

  it.effect("a failed exit is not marked: truncation is read only after an exit", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(1)))
      const o = report.outcomes[0]!
      assert.strictEqual(o._tag, "Unreachable")
      assert.isFalse(o.stdout.truncated)
    }).pipe(Effect.provide(InMemoryTransport.layer({
      default: { steps: [Step.refuse("ConnectRefused")], truncated: { stdout: "never read" } }
    }))))

  it.effect("a percentage error budget", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(10, { concurrency: 1, maxErrors: "10%" })))
      // 10% of 10 = 1 failure tolerated; the second failure stops the run
      assert.strictEqual(report.summary.byOutcome.Failed, 2)
      assert.strictEqual(report.summary.byOutcome.Skipped, 8)
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: [Step.exit(2)] }))))

  it.effect("runs rolling batches: a wave starts when the previous one is done", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      yield* drive(Runner.run(plan(6, { concurrency: 10, batchSize: 2 })))
      const starts = (yield* memory.starts).map((s) => s.at)
      assert.deepStrictEqual(starts, [0, 0, 10_000, 10_000, 20_000, 20_000])
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: sleepThenExit(10) }))))

  it.effect("retries a failure before delivery with the policy's schedule", () =>
    Effect.gen(function*() {
      const events: Array<RunEvent.RunEvent> = []
      yield* drive(
        Runner.stream(plan(1, { retry: { times: 2, backoff: Duration.seconds(1), factor: 2 } })).pipe(
          Stream.runForEach((e) => Effect.sync(() => events.push(e)))
        )
      )
      const report = RunReport.fold(events)
      const o = report.outcomes[0]!
      assert.strictEqual(o._tag, "Succeeded")
      assert.strictEqual(o.attempts, 3)
      const retrying = events.filter((e) => e._tag === "Retrying")
      assert.deepStrictEqual(retrying.map((e) => e._tag === "Retrying" && e.error.reason), [
        "ConnectRefused",
        "Throttled"
      ])
      // exponential backoff: 1 s, then 2 s
      const startedAt = events.flatMap((e) => (e._tag === "Started" ? [e.at] : []))
      assert.deepStrictEqual(startedAt, [0, 1000, 3000])
    }).pipe(Effect.provide(InMemoryTransport.layer({
      default: (_, inv) =>
        inv.attempt === 1
          ? [Step.refuse("ConnectRefused")]
          : inv.attempt === 2
          ? [Step.refuse("Throttled")]
          : [Step.exit(0)]
    }))))

  it.effect("does not re-run a script that may have started unless the policy says idempotent", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const retry = { times: 3, backoff: Duration.seconds(1), factor: 1 }
      const once = yield* drive(Runner.run(plan(1, { retry })))
      assert.strictEqual(once.outcomes[0]!._tag, "TransportFailed")
      assert.strictEqual(once.outcomes[0]!.attempts, 1)
      yield* memory.reset
      const idem = yield* drive(Runner.run(plan(1, { retry, idempotent: true })))
      assert.strictEqual(idem.outcomes[0]!._tag, "Succeeded")
      assert.strictEqual(idem.outcomes[0]!.attempts, 2)
    }).pipe(Effect.provide(InMemoryTransport.layer({
      default: (_, inv) => inv.attempt === 1 ? [Step.stdout("half"), Step.fail("ConnectionLost")] : [Step.exit(0)]
    }))))

  it.effect("a programmatic Schedule overrides the retry settings", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(1, { schedule: Schedule.recurs(4) })))
      assert.strictEqual(report.outcomes[0]!.attempts, 5)
      assert.strictEqual(report.outcomes[0]!._tag, "Unreachable")
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: [Step.refuse("ConnectTimeout")] }))))

  it.effect("a per-execution timeout closes the scope, and the kill is reported truthfully", () =>
    Effect.gen(function*() {
      const report = yield* drive(
        Runner.run(RunPlan.make({
          targets: [memoryTarget("hang"), memoryTarget("stubborn"), memoryTarget("cloud")],
          job,
          policy: { timeout: Duration.seconds(5), killGrace: Duration.seconds(2) }
        }))
      )
      const [hang, stubborn, cloud] = report.outcomes
      assert.isTrue(
        hang!._tag === "TimedOut" && hang!.killConfirmed && hang!.phase === "execution" && hang!.limit === "timeout"
      )
      assert.strictEqual(hang!.durationMs, 5000)
      assert.strictEqual(hang!.stdout.head, "started\n")
      assert.isTrue(stubborn!._tag === "TimedOut" && stubborn!.killConfirmed)
      assert.strictEqual(stubborn!.durationMs, 7000) // the grace before KILL
      assert.isTrue(cloud!._tag === "TimedOut" && !cloud!.killConfirmed)
    }).pipe(Effect.provide(InMemoryTransport.layer({
      behaviours: {
        hang: [Step.stdout("started\n"), Step.hang],
        stubborn: { steps: [Step.hang], ignoreTerm: true },
        cloud: { steps: [Step.hang], confirmKill: false }
      }
    }))))

  it.effect("a timeout during delivery is phase delivery", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(1, { timeout: Duration.seconds(1) })))
      const o = report.outcomes[0]!
      assert.isTrue(o._tag === "TimedOut" && o.phase === "delivery")
    }).pipe(
      Effect.provide(InMemoryTransport.layer({ default: { steps: [Step.exit(0)], startDelay: Duration.seconds(10) } }))
    ))

  it.effect("the overall deadline times out what runs and skips what has not started", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(4, { concurrency: 1, deadline: Duration.seconds(25) })))
      assert.deepStrictEqual(tags(report), ["Succeeded", "Succeeded", "TimedOut", "Skipped"])
      const t2 = report.outcomes[2]!
      assert.isTrue(t2._tag === "TimedOut" && t2.limit === "deadline" && t2.killConfirmed)
      assert.strictEqual(report.durationMs, 25_000)
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: sleepThenExit(10) }))))

  it.effect("cancellation kills in-flight executions and still returns a report", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const report = yield* drive(
        Runner.run(plan(5, { concurrency: 2 }), { cancelWhen: Effect.sleep(Duration.seconds(5)) })
      )
      assert.isTrue(report.interrupted)
      assert.deepStrictEqual(tags(report), ["Cancelled", "Cancelled", "Skipped", "Skipped", "Skipped"])
      const c = report.outcomes[0]!
      assert.isTrue(c._tag === "Cancelled" && c.confirmed)
      assert.strictEqual((yield* memory.cancels).length, 2)
      assert.strictEqual(yield* memory.running, 0)
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: [Step.hang] }))))

  it.effect("interrupting the caller still closes every execution and finishes the event log", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const events = yield* Ref.make<Array<string>>([])
      const sink = {
        name: "probe",
        open: () => Effect.succeed({ write: (e: RunEvent.RunEvent) => Ref.update(events, (xs) => [...xs, e._tag]) })
      }
      yield* drive(
        Runner.run(RunPlan.make({ targets: targets(3), job, sinks: [sink] })).pipe(
          Effect.timeout(Duration.seconds(3)),
          Effect.ignore
        )
      )
      assert.strictEqual(yield* memory.running, 0)
      assert.strictEqual((yield* memory.cancels).length, 3)
      const seen = yield* Ref.get(events)
      assert.strictEqual(seen.at(-1), "RunFinished")
      assert.strictEqual(seen.filter((t) => t === "Finished").length, 3)
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: [Step.hang] }))))

  it.effect("maps exit statuses and errors to outcomes; a missing exit status is never success", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan(7)))
      assert.deepStrictEqual(tags(report), [
        "Succeeded",
        "Failed",
        "Signaled",
        "Unreachable",
        "Rejected",
        "TransportFailed",
        "TransportFailed"
      ])
      const failed = report.outcomes[1]!
      assert.isTrue(failed._tag === "Failed" && failed.exitCode === 255)
      const signaled = report.outcomes[2]!
      assert.isTrue(signaled._tag === "Signaled" && signaled.signal === "SIGKILL")
      const rejected = report.outcomes[4]!
      assert.isTrue(rejected._tag === "Rejected" && rejected.error.reason === "HostKeyRejected")
      const lost = report.outcomes[6]!
      assert.isTrue(lost._tag === "TransportFailed" && lost.remoteState === "unknown")
    }).pipe(Effect.provide(InMemoryTransport.layer({
      behaviours: {
        t0: [Step.exit(0)],
        t1: [Step.exit(255)],
        t2: [Step.signal("SIGKILL")],
        t3: [Step.refuse("ConnectTimeout")],
        t4: [Step.refuse("HostKeyRejected")],
        t5: [Step.stdout("x"), Step.fail("ConnectionLost")],
        t6: [Step.stdout("no status"), {
          _tag: "Fail",
          reason: "OutputLost",
          phase: "execution",
          description: "no exit status",
          during: "exit"
        }]
      }
    }))))

  it.effect("keeps a bounded head and tail of each stream, with truncation facts", () =>
    Effect.gen(function*() {
      const big = "a".repeat(10_000) + "MIDDLE" + "z".repeat(10_000)
      const report = yield* drive(Runner.run(RunPlan.make({ targets: targets(1), job, captureBytes: 1000 })))
      const out = report.outcomes[0]!.stdout
      assert.isTrue(out.truncated)
      assert.strictEqual(out.totalBytes, big.length)
      assert.strictEqual(out.head, "a".repeat(500))
      assert.strictEqual(out.tail, "z".repeat(500))
      assert.strictEqual(out.droppedBytes, big.length - 1000)
      assert.strictEqual(report.outcomes[0]!.stderr.truncated, false)
    }).pipe(Effect.provide(InMemoryTransport.layer({
      default: [Step.stdout("a".repeat(10_000) + "MIDDLE" + "z".repeat(10_000), { chunkSize: 777 }), Step.exit(0)]
    }))))

  it.effect("the report is the fold of the streamed events", () =>
    Effect.gen(function*() {
      const events: Array<RunEvent.RunEvent> = []
      const p = RunPlan.make({ targets: targets(4), job, runId: "fixed", policy: { concurrency: 2, maxErrors: 0 } })
      yield* drive(Runner.stream(p).pipe(Stream.runForEach((e) => Effect.sync(() => events.push(e)))))
      const direct = yield* drive(Runner.run(p))
      const folded = RunReport.fold(events)
      // the two runs happened at different (virtual) times: compare all but the clock readings
      const timeless = (r: RunReport.RunReport) => r.outcomes.map(({ endedAt: _e, startedAt: _s, ...rest }) => rest)
      assert.deepStrictEqual(timeless(folded), timeless(direct))
      assert.strictEqual(folded.durationMs, direct.durationMs)
      assert.deepStrictEqual(folded.summary, direct.summary)
      assert.strictEqual(folded.runId, "fixed")
      // and it round-trips through its JSON form
      const decoded = yield* RunReport.decodeJson(RunReport.encodeJson(direct))
      assert.deepStrictEqual(decoded, direct)
    }).pipe(Effect.provide(InMemoryTransport.layer({
      behaviours: { t1: [Step.stdout("bad\n"), Step.exit(3)] },
      default: [Step.stdout("ok\n"), Step.sleep(Duration.seconds(1)), Step.exit(0)]
    }))))

  it.effect("records outcome metrics", () =>
    Effect.gen(function*() {
      const counter = Metric.tagged(Metrics.executions, "outcome", "Succeeded")
      const before = (yield* Metric.value(counter)).count
      yield* drive(Runner.run(plan(3)))
      assert.strictEqual((yield* Metric.value(counter)).count - before, 3)
    }).pipe(Effect.provide(InMemoryTransport.layer({ default: [Step.exit(0)] }))))

  it.effect("counts output bytes per stream, with the fiber's metric labels", () =>
    Effect.gen(function*() {
      const counter = (stream: string) =>
        Metric.tagged(Metric.tagged(Metrics.outputBytes, "stream", stream), "pipeline", "bytes-test")
      const before = {
        out: (yield* Metric.value(counter("stdout"))).count,
        err: (yield* Metric.value(counter("stderr"))).count
      }
      yield* drive(Runner.run(plan(2))).pipe(Effect.tagMetrics("pipeline", "bytes-test"))
      assert.strictEqual((yield* Metric.value(counter("stdout"))).count - before.out, 2 * 10)
      assert.strictEqual((yield* Metric.value(counter("stderr"))).count - before.err, 2 * 3)
    }).pipe(Effect.provide(InMemoryTransport.layer({
      default: [Step.stdout("0123456789", { chunkSize: 3 }), Step.stderr("err"), Step.exit(0)]
    }))))

  it.effect("the example pipeline: health check, rolling deploy in batches on the healthy, verify", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const result = yield* drive(
        rollingDeploy(targets(6, "web"), {
          healthCheck: ScriptSource.script("health"),
          deploy: ScriptSource.script("deploy"),
          verify: ScriptSource.script("verify"),
          batchSize: 2,
          maxErrors: 0
        })
      )
      assert.deepStrictEqual(RunReport.succeededTargets(result.health), ["web0", "web1", "web2", "web4", "web5"])
      // web2 fails its deploy in the second wave: the budget stops the third wave
      assert.deepStrictEqual(tags(result.deploy!), ["Succeeded", "Succeeded", "Failed", "Succeeded", "Skipped"])
      assert.deepStrictEqual(RunReport.succeededTargets(result.verify!), ["web0", "web1", "web4"])
      const deploys = (yield* memory.starts).filter((s) =>
        s.invocation.source._tag === "Script" && s.invocation.source.text === "deploy"
      )
      assert.deepStrictEqual(deploys.map((s) => s.targetId), ["web0", "web1", "web2", "web4"])
    }).pipe(Effect.provide(InMemoryTransport.layer({
      default: (target, inv) => {
        const text = inv.source._tag === "Script" ? inv.source.text : ""
        if (text === "health") return [Step.exit(target.id === "web3" ? 1 : 0)]
        if (text === "deploy") return [Step.sleep(Duration.seconds(5)), Step.exit(target.id === "web2" ? 1 : 0)]
        return [Step.exit(0)]
      }
    }))))

  it.effect("CommandExecutor: code written with Command.make runs unchanged on a target", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const out = yield* Command.string(Command.make("echo", "hello", "it's me").pipe(Command.env({ A: "1" })))
      assert.strictEqual(out, "argv: echo hello it's me\n")
      const code = yield* Command.exitCode(Command.make("false"))
      assert.strictEqual(code, 1)
      const lines = yield* Command.lines(Command.make("cat").pipe(Command.feed("x\ny")))
      assert.deepStrictEqual(lines, ["x", "y"])
      const starts = yield* memory.starts
      assert.deepStrictEqual(starts[0]!.invocation.env, { A: "1" })
      assert.deepStrictEqual(starts.map((s) => s.targetId), ["box", "box", "box"])
    }).pipe(
      Effect.provide(
        RemoteCommandExecutor.layer(memoryTarget("box")).pipe(
          Layer.provideMerge(InMemoryTransport.layer({
            default: (_, inv) => {
              const argv = inv.source._tag === "Command" ? inv.source.argv : []
              if (argv[0] === "false") return [Step.exit(1)]
              if (argv[0] === "cat") return [Step.echoStdin(), Step.exit(0)]
              return [Step.stdout(`argv: ${argv.join(" ")}\n`), Step.exit(0)]
            }
          }))
        )
      )
    ))
})
