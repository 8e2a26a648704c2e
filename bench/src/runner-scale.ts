// runner-scale: 10,000 targets, 10 ms each, concurrency 1,000, against the Effect floor (the same fan-out with one
// fiber and one 10 ms sleep per target), measured side by side in alternating rounds, wall and CPU time.
// Variants:
//   - `runner`: Runner.run over a minimal transport (Transport.make whose pump sleeps 10 ms): the Runner and the
//     contract, what every transport pays. Goal: ≤ 5× the Effect floor, ≤ 1 KB heap retained per target.
//   - `inMemory`: Runner.run over the in-memory transport (a simulated process per execution: its own fiber, pipe
//     queue, exit deferred and records for assertions), reported for comparison.
//   - 100,000 targets with `runner` (one run; ideal 1 s at concurrency 1,000), reported.
import { ExecutionPolicy, Runner, RunPlan, ScriptSource, Transport } from "@runcmd/core"
import { InMemoryTransport, memoryTarget, Step } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { gc, median, round, writeResult } from "./harness.js"

const TARGETS = 10_000
const LARGE = 100_000
const CONCURRENCY = 1_000
const STEP_MS = 10
const RUNS = 7

const minimal = Transport.layer(Effect.succeed(Transport.make({
  name: "minimal",
  kinds: ["memory"],
  capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: true, native: false },
  start: () =>
    Effect.succeed({ pump: () => Effect.sleep(`${STEP_MS} millis`), exit: Effect.succeed(Transport.exited(0)) })
})))
const inMemory = InMemoryTransport.layer({ default: [Step.sleep(`${STEP_MS} millis`), Step.exit(0)] })

const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

const measure = async (program: Effect.Effect<unknown>) => {
  const c = cpuMs()
  const t = performance.now()
  await Effect.runPromise(program)
  return { wall: performance.now() - t, cpu: cpuMs() - c }
}

const planFor = (n: number) =>
  RunPlan.make({
    targets: Array.from({ length: n }, (_, i) => memoryTarget(`t${i}`)),
    job: ScriptSource.job(ScriptSource.command("true")),
    policy: ExecutionPolicy.make({ concurrency: CONCURRENCY })
  })
const floorFor = (n: number) =>
  Effect.forEach(Array.from({ length: n }), () => Effect.sleep(`${STEP_MS} millis`), {
    concurrency: CONCURRENCY,
    discard: true
  })

const retainedPerTarget = async (plan: RunPlan.RunPlan, layer: Layer.Layer<Transport.Registry, unknown>) => {
  gc()
  const before = process.memoryUsage().heapUsed
  const report = await Effect.runPromise(Runner.run(plan).pipe(Effect.provide(layer)) as Effect.Effect<unknown>)
  gc()
  const after = process.memoryUsage().heapUsed
  void report
  return (after - before) / plan.targets.length
}

export const runnerScale = async (): Promise<void> => {
  const plan = planFor(TARGETS)
  const floor = floorFor(TARGETS)
  const run = (layer: Layer.Layer<Transport.Registry, unknown>) =>
    Runner.run(plan).pipe(Effect.provide(layer)) as Effect.Effect<unknown>
  // warm-up
  for (const p of [run(minimal), run(inMemory), floor]) await Effect.runPromise(p)
  const samples = {
    runner: [] as Array<{ wall: number; cpu: number }>,
    inMemory: [] as Array<{ wall: number; cpu: number }>,
    floor: [] as Array<{ wall: number; cpu: number }>
  }
  const variants = [["floor", floor], ["runner", run(minimal)], ["inMemory", run(inMemory)]] as const
  for (let i = 0; i < RUNS; i++) {
    // the order rotated every round, so load from other work hits every variant alike
    for (let k = 0; k < variants.length; k++) {
      const [name, program] = variants[(i + k) % variants.length]!
      samples[name].push(await measure(program))
    }
  }
  const med = (xs: ReadonlyArray<{ wall: number; cpu: number }>, key: "wall" | "cpu") => median(xs.map((x) => x[key]))
  const runnerRetained = await retainedPerTarget(plan, minimal)
  const inMemoryRetained = await retainedPerTarget(plan, inMemory)

  // 100,000 targets: one run each, after a floor run of the same size
  const largePlan = planFor(LARGE)
  const largeFloor = await measure(floorFor(LARGE))
  const large = await measure(Runner.run(largePlan).pipe(Effect.provide(minimal)) as Effect.Effect<unknown>)
  const largeRetained = await retainedPerTarget(largePlan, minimal)

  const ratio = med(samples.runner, "wall") / med(samples.floor, "wall")
  const cpuRatio = med(samples.runner, "cpu") / med(samples.floor, "cpu")
  writeResult({
    name: "runner-scale",
    goal: "Runner (minimal transport) ≤ 5× the Effect floor (wall) and ≤ 1024 B heap retained per target",
    met: ratio <= 5 && runnerRetained <= 1024,
    targets: TARGETS,
    concurrency: CONCURRENCY,
    idealMs: (TARGETS / CONCURRENCY) * STEP_MS,
    floor: { wallMedianMs: round(med(samples.floor, "wall")), cpuMedianMs: round(med(samples.floor, "cpu")) },
    runner: {
      wallMedianMs: round(med(samples.runner, "wall")),
      cpuMedianMs: round(med(samples.runner, "cpu")),
      ratioToFloor: round(ratio),
      cpuRatioToFloor: round(cpuRatio),
      heapRetainedPerTargetBytes: Math.round(runnerRetained)
    },
    inMemory: {
      wallMedianMs: round(med(samples.inMemory, "wall")),
      cpuMedianMs: round(med(samples.inMemory, "cpu")),
      ratioToFloor: round(med(samples.inMemory, "wall") / med(samples.floor, "wall")),
      cpuRatioToFloor: round(med(samples.inMemory, "cpu") / med(samples.floor, "cpu")),
      heapRetainedPerTargetBytes: Math.round(inMemoryRetained)
    },
    large: {
      targets: LARGE,
      idealMs: (LARGE / CONCURRENCY) * STEP_MS,
      floorWallMs: round(largeFloor.wall),
      floorCpuMs: round(largeFloor.cpu),
      runnerWallMs: round(large.wall),
      runnerCpuMs: round(large.cpu),
      ratioToFloor: round(large.wall / largeFloor.wall),
      heapRetainedPerTargetBytes: Math.round(largeRetained)
    },
    runsWallMs: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.map((x) => round(x.wall))])),
    loadAverage: (await import("node:os")).loadavg().map((x) => round(x, 2))
  })
}
