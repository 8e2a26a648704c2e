// runner-scale: 10,000 in-memory targets, 10 ms each, concurrency 1,000.
// Goals: wall time ≤ 1.2× the ideal (10 waves × 10 ms = 100 ms); ≤ 2 KB of heap per target retained in the report.
import { ExecutionPolicy, Runner, RunPlan, ScriptSource } from "@runcmd/core"
import { InMemoryTransport, memoryTarget, Step } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import { gc, median, round, writeResult } from "./harness.js"

const TARGETS = 10_000
const CONCURRENCY = 1_000
const STEP_MS = 10
const RUNS = 7

export const runnerScale = async (): Promise<void> => {
  const targets = Array.from({ length: TARGETS }, (_, i) => memoryTarget(`t${i}`))
  const layer = InMemoryTransport.layer({ default: [Step.sleep(`${STEP_MS} millis`), Step.exit(0)] })
  const plan = RunPlan.make({
    targets,
    job: ScriptSource.job(ScriptSource.command("true")),
    policy: ExecutionPolicy.make({ concurrency: CONCURRENCY })
  })
  // the floor: the same fan-out with nothing but Effect (one fiber and one 10 ms sleep per target)
  const floorProgram = Effect.forEach(targets, () => Effect.sleep(`${STEP_MS} millis`), {
    concurrency: CONCURRENCY,
    discard: true
  })
  await Effect.runPromise(Runner.run(plan).pipe(Effect.provide(layer))) // warm-up
  await Effect.runPromise(floorProgram)
  const times: Array<number> = []
  const floor: Array<number> = []
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    await Effect.runPromise(Runner.run(plan).pipe(Effect.provide(layer)))
    times.push(performance.now() - t0)
    const t1 = performance.now()
    await Effect.runPromise(floorProgram)
    floor.push(performance.now() - t1)
  }
  gc()
  const before = process.memoryUsage().heapUsed
  const report = await Effect.runPromise(Runner.run(plan).pipe(Effect.provide(layer)))
  gc()
  const after = process.memoryUsage().heapUsed
  const perTarget = (after - before) / TARGETS
  const ideal = (TARGETS / CONCURRENCY) * STEP_MS
  const ratio = median(times) / ideal
  writeResult({
    name: "runner-scale",
    goal: "wall ≤ 1.2× ideal (100 ms) and ≤ 2048 B heap retained per target",
    met: ratio <= 1.2 && perTarget <= 2048,
    targets: TARGETS,
    concurrency: CONCURRENCY,
    idealMs: ideal,
    medianMs: round(median(times)),
    runsMs: times.map((t) => round(t)),
    ratioToIdeal: round(ratio),
    effectFloorMedianMs: round(median(floor)),
    ratioToEffectFloor: round(median(times) / median(floor)),
    loadAverage: (await import("node:os")).loadavg().map((x) => round(x, 2)),
    heapRetainedPerTargetBytes: Math.round(perTarget),
    succeeded: report.summary.byOutcome.Succeeded
  })
}
