/**
 * A deploy pipeline composed from three runs: health-check every target, roll the deploy out in batches over
 * the healthy ones (stopping after too many failures), then verify what was deployed. Each stage is a plain
 * `Runner.run`; the stages compose with `RunReport.succeededTargets`.
 */
import * as Effect from "effect/Effect"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as RunReport from "../src/RunReport.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Target } from "../src/Target.js"

export interface PipelineOptions {
  readonly healthCheck: ScriptSource.ScriptSource
  readonly deploy: ScriptSource.ScriptSource
  readonly verify: ScriptSource.ScriptSource
  readonly batchSize: number
  readonly maxErrors: number
}

const only = (targets: ReadonlyArray<Target>, ids: ReadonlyArray<string>) => {
  const keep = new Set(ids)
  return targets.filter((t) => keep.has(t.id))
}

export const rollingDeploy = (targets: ReadonlyArray<Target>, options: PipelineOptions) =>
  Effect.gen(function*() {
    const health = yield* Runner.run(
      RunPlan.make({ targets, job: ScriptSource.job(options.healthCheck), policy: { concurrency: "100%" } })
    )
    const healthy = only(targets, RunReport.succeededTargets(health))
    if (healthy.length === 0) return { health, deploy: undefined, verify: undefined }
    const deploy = yield* Runner.run(
      RunPlan.make({
        targets: healthy,
        job: ScriptSource.job(options.deploy),
        policy: { batchSize: options.batchSize, concurrency: options.batchSize, maxErrors: options.maxErrors }
      })
    )
    const deployed = only(healthy, RunReport.succeededTargets(deploy))
    const verify = deployed.length === 0 ? undefined : yield* Runner.run(
      RunPlan.make({ targets: deployed, job: ScriptSource.job(options.verify), policy: { concurrency: "100%" } })
    )
    return { health, deploy, verify }
  })
