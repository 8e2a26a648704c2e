import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as crypto from "node:crypto"
import * as ExecutionPolicy from "../src/ExecutionPolicy.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as RunReport from "../src/RunReport.js"
import * as ScriptSource from "../src/ScriptSource.js"
import * as Targets from "../src/Targets.js"
import { CapturedOutput, drive, InMemory, InMemoryTransport, memoryTarget, Step, testLayer } from "../src/testing.js"
import type * as Transport from "../src/Transport.js"

const argv = (invocation: Transport.Invocation) =>
  invocation.source._tag === "Command" ? invocation.source.argv.join(" ") : ""

// the pipeline of the design: health-check every role=web host, then roll the deploy out 5 at a time, stop after 2
// failures, keep every byte of output; written against the services only
const healthCheck = ScriptSource.job(ScriptSource.command("curl", "-fsS", "localhost/health"))
const deployScript = "#!/bin/sh\n./deploy\n"
const deploy = ScriptSource.job(
  new ScriptSource.Url({
    url: "https://deploy.example.com/deploy.sh",
    sha256: crypto.createHash("sha256").update(deployScript).digest("hex")
  })
)
const pipeline = Effect.gen(function*() {
  const health = yield* Runner.runJob(healthCheck, { select: "role=web", policy: { timeout: Duration.seconds(10) } })
  const healthy = health.outcomes.filter((o) => o._tag === "Succeeded").map((o) => `id=${o.targetId}`)
  if (healthy.length === 0) return { health, deploy: undefined }
  const rollout = yield* Runner.runJob(deploy, {
    select: healthy,
    policy: { batchSize: 5, concurrency: 5, maxErrors: 1 } // a second failure stops the rollout
  })
  return { health, deploy: rollout }
})

const web = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`web-${i}`, { role: "web" }]))
const fleet = { ...web, "db-0": { role: "db" } }

describe("Runner.runJob", () => {
  it.effect("the design's pipeline, tested with the in-memory layers under TestClock", () =>
    Effect.gen(function*() {
      const { deploy: rollout, health } = yield* drive(pipeline)
      assert.deepStrictEqual(health.outcomes.map((o) => o.targetId), Object.keys(web))
      assert.deepStrictEqual(RunReport.failedTargets(health), ["web-11"])
      assert.isDefined(rollout)
      if (rollout === undefined) return
      // waves of 5 over the 11 healthy hosts: web-3 fails (1 tolerated), web-7 fails: the third wave is skipped
      const tags = Object.fromEntries(rollout.outcomes.map((o) => [o.targetId, o._tag]))
      assert.strictEqual(tags["web-3"], "Failed")
      assert.strictEqual(tags["web-7"], "Failed")
      assert.deepStrictEqual([tags["web-10"]], ["Skipped"])
      assert.strictEqual(rollout.summary.byOutcome.Succeeded, 8)
      // three waves would take 90 s; the two that ran took 60 s of virtual time
      assert.strictEqual(rollout.durationMs, 60_000)
      const memory = yield* InMemory
      const deployed = (yield* memory.starts).filter((s) => s.runId === rollout.runId)
      assert.strictEqual(deployed.length, 10)
      // the script came from the fixed sources; every byte of output kept by the capture sink
      assert.deepStrictEqual(deployed[0]!.invocation.source, ScriptSource.script("#!/bin/sh\n./deploy\n"))
      const captured = yield* CapturedOutput
      assert.deepStrictEqual(yield* captured.runIds, [health.runId, rollout.runId])
      assert.strictEqual(yield* captured.output("web-0"), `healthy\n${"x".repeat(100_000)}deployed\n`)
      assert.strictEqual(yield* captured.output("web-7", "stderr"), "disk full\n")
    }).pipe(Effect.provide(testLayer({
      targets: fleet,
      scripts: { "https://deploy.example.com/deploy.sh": deployScript },
      policy: { killGrace: Duration.seconds(1) },
      transport: {
        default: (target, invocation) =>
          argv(invocation).startsWith("curl")
            ? target.id === "web-11" ? [Step.exit(7)] : [Step.stdout("healthy\n"), Step.exit(0)]
            : target.id === "web-3" || target.id === "web-7"
            ? [Step.sleep(Duration.seconds(30)), Step.stderr("disk full\n"), Step.exit(1)]
            : [
              Step.stdout("x".repeat(100_000), { chunkSize: 4096 }),
              Step.sleep(Duration.seconds(30)),
              Step.stdout("deployed\n")
            ]
      }
    }))))

  it.effect("policy: the job's own over the layer's, field by field; flags over both", () =>
    Effect.gen(function*() {
      const plan = yield* Runner.planJob(ScriptSource.job(ScriptSource.command("x")), {
        select: "role=web",
        policy: { concurrency: 2 },
        policyLevels: { flags: { idempotent: true }, inventory: { timeout: Duration.seconds(3), maxErrors: 5 } }
      })
      assert.strictEqual(plan.policy.concurrency, 2) // plan over layer
      assert.strictEqual(plan.policy.maxErrors, 5) // inventory over layer
      assert.deepStrictEqual(plan.policy.timeout, Duration.seconds(3)) // inventory
      assert.deepStrictEqual(plan.policy.killGrace, Duration.seconds(9)) // layer over built-in
      assert.strictEqual(plan.policy.idempotent, true) // flag
      assert.deepStrictEqual(plan.policy.retry, ExecutionPolicy.defaults.retry) // built-in
      assert.strictEqual(plan.targets.length, 12)
      const memory = yield* InMemory
      yield* drive(Runner.runJob(ScriptSource.job(ScriptSource.command("x")), { select: "role=web" }))
      assert.strictEqual(yield* memory.maxConcurrent, 3) // the layer's concurrency
    }).pipe(Effect.provide(testLayer({
      targets: fleet,
      policy: { concurrency: 3, maxErrors: 1, killGrace: Duration.seconds(9) },
      transport: { default: [Step.sleep(Duration.seconds(1)), Step.exit(0)] }
    }))))

  it.effect("Runner.run(plan) takes its plan's policy as it is: the Defaults in scope do not change it", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      yield* drive(Runner.run(RunPlan.make({
        targets: Array.from({ length: 6 }, (_, i) => memoryTarget(`t${i}`)),
        job: ScriptSource.job(ScriptSource.command("x"))
      })))
      assert.strictEqual(yield* memory.maxConcurrent, 6)
    }).pipe(Effect.provide(Layer.merge(
      InMemoryTransport.layer({ default: [Step.sleep(Duration.seconds(1)), Step.exit(0)] }),
      ExecutionPolicy.layer({ concurrency: 1 })
    ))))

  it.effect("a selector matching nothing, and duplicate ids across sources, fail before anything runs", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const nothing = yield* Effect.flip(Runner.runJob(healthCheck, { select: "role=cache" }))
      assert.strictEqual(nothing._tag, "InvalidPlan")
      if (nothing._tag === "InvalidPlan") assert.strictEqual(nothing.reason, "SelectorMatchedNothing")
      const duplicate = yield* Effect.flip(
        Runner.runJob(healthCheck).pipe(Effect.provide(Targets.layer([memoryTarget("web-0")], { name: "extra" })))
      )
      assert.strictEqual(duplicate._tag, "TargetsError")
      assert.match(duplicate.message, /"web-0" is given by in-memory targets and by extra/)
      const unknownScheme = yield* Effect.flip(
        Runner.runJob(ScriptSource.job(new ScriptSource.File({ path: "gs://b/x.sh" })), { select: "role=web" })
      )
      assert.strictEqual(unknownScheme._tag, "InvalidPlan")
      assert.deepStrictEqual(yield* memory.starts, [])
    }).pipe(Effect.provide(testLayer({ targets: fleet }))))
})

describe("Runner.startJob / streamJob", () => {
  it.effect("start a job in the background, or stream its events, from the services in scope", () =>
    Effect.gen(function*() {
      const handle = yield* Runner.startJob(healthCheck, { select: "role=db" })
      const report = yield* drive(handle.report)
      assert.deepStrictEqual(report.outcomes.map((o) => o.targetId), ["db-0"])
      const events = yield* drive(Stream.runCollect(Runner.streamJob(healthCheck, { select: "id=web-1" })))
      const finished = Chunk.toArray(events).filter((e) => e._tag === "Finished")
      assert.deepStrictEqual(finished.map((e) => e._tag === "Finished" && e.outcome.targetId), ["web-1"])
    }).pipe(Effect.scoped, Effect.provide(testLayer({ targets: fleet }))))
})
