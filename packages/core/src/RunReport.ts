/**
 * The run report: one outcome per target, a summary and timings. Versioned and encodable to JSON.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import * as Outcome from "./Outcome.js"
import type { RunEvent } from "./RunEvent.js"

/**
 * @since 0.1.0
 * @category schemas
 */
export const Summary = Schema.Struct({
  total: Schema.Int,
  byOutcome: Schema.Record({ key: Schema.String, value: Schema.Int })
})

/**
 * @since 0.1.0
 * @category models
 */
export type Summary = typeof Summary.Type

/**
 * @since 0.1.0
 * @category schemas
 */
export const RunReport = Schema.Struct({
  version: Schema.Literal(1),
  runId: Schema.String,
  startedAt: Schema.Number,
  endedAt: Schema.Number,
  durationMs: Schema.Number,
  /** The run was interrupted (Ctrl-C, a parent fiber); in-flight targets are `Cancelled`, the rest `Skipped`. */
  interrupted: Schema.Boolean,
  outcomes: Schema.Array(Outcome.Outcome),
  summary: Summary,
  /** Problems that did not fail the run but lost something, e.g. a sink that could not write. */
  warnings: Schema.Array(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type RunReport = typeof RunReport.Type

/**
 * @since 0.1.0
 * @category utils
 */
export const summarize = (outcomes: ReadonlyArray<Outcome.Outcome>): Summary => {
  const byOutcome: Record<string, number> = {}
  for (const tag of Outcome.tags) byOutcome[tag] = 0
  for (const o of outcomes) byOutcome[o._tag] = (byOutcome[o._tag] ?? 0) + 1
  return { total: outcomes.length, byOutcome }
}

/**
 * Ids of the targets that did not succeed (failed, unreachable, timed out, cancelled, skipped...): the
 * targets to run again.
 *
 * @since 0.1.0
 * @category utils
 */
export const failedTargets = (report: RunReport): Array<string> =>
  report.outcomes.filter((o) => o._tag !== "Succeeded").map((o) => o.targetId)

/**
 * @since 0.1.0
 * @category utils
 */
export const succeededTargets = (report: RunReport): Array<string> =>
  report.outcomes.filter((o) => o._tag === "Succeeded").map((o) => o.targetId)

/**
 * @since 0.1.0
 * @category utils
 */
export const isSuccess = (report: RunReport): boolean =>
  !report.interrupted && report.outcomes.every((o) => o._tag === "Succeeded")

/**
 * A report from its parts (the duration and the summary are derived).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (parts: {
  readonly runId: string
  readonly startedAt: number
  readonly endedAt: number
  readonly interrupted: boolean
  readonly outcomes: ReadonlyArray<Outcome.Outcome>
  readonly warnings: ReadonlyArray<string>
}): RunReport => ({
  version: 1,
  ...parts,
  durationMs: parts.endedAt - parts.startedAt,
  summary: summarize(parts.outcomes)
})

/**
 * Folds a run's events into its report (what `Runner.run` returns is exactly this fold).
 *
 * @since 0.1.0
 * @category utils
 */
export const fold = (events: Iterable<RunEvent>, warnings: ReadonlyArray<string> = []): RunReport => {
  let runId = ""
  let startedAt = 0
  let endedAt = 0
  let interrupted = false
  const order: Array<string> = []
  const outcomes = new Map<string, Outcome.Outcome>()
  for (const e of events) {
    switch (e._tag) {
      case "RunStarted":
        runId = e.runId
        startedAt = e.at
        for (const t of e.targets) order.push(t.id)
        break
      case "Finished":
        outcomes.set(e.targetId, e.outcome)
        break
      case "RunFinished":
        endedAt = e.at
        interrupted = e.interrupted
        break
    }
  }
  const list = order.flatMap((id) => {
    const o = outcomes.get(id)
    return o === undefined ? [] : [o]
  })
  return make({ runId, startedAt, endedAt, interrupted, outcomes: list, warnings })
}

/**
 * @since 0.1.0
 * @category utils
 */
export const encodeJson = (report: RunReport): string => JSON.stringify(Schema.encodeSync(RunReport)(report), null, 2)

/**
 * @since 0.1.0
 * @category utils
 */
export const decodeJson = Schema.decodeUnknown(Schema.parseJson(RunReport))
