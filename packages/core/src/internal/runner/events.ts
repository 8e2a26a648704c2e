/**
 * A run's events and tally: the sinks opened for the run, one serialised `emit` that feeds them (and the caller of
 * `Runner.stream`), and the one place an outcome is recorded (counts, budget, metrics, `Finished` + `Progress`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import * as Metrics from "../../Metrics.js"
import * as Outcome from "../../Outcome.js"
import type { OutputChunk } from "../../OutputChunk.js"
import type { OutputSinkError } from "../../OutputSink.js"
import * as RunEvent from "../../RunEvent.js"
import type { Target } from "../../Target.js"
import { makeSerialize } from "../serialize.js"
import type { Prepared } from "./prepare.js"

/** @internal */
export interface Events {
  /** Whether anyone listens: without sinks or a stream consumer, no event is built at all. */
  readonly listening: boolean
  readonly emit: (event: RunEvent.RunEvent) => Effect.Effect<void>
  /** Sink failures, redacted, for the report. */
  readonly warnings: Array<string>
}

/**
 * Opens the plan's sinks for the run (closed, and so flushed, when the scope closes); a sink that fails to open or
 * to write is dropped with a warning, never failing the run.
 *
 * @internal
 */
export const open = (
  prepared: Prepared,
  external: ((event: RunEvent.RunEvent) => Effect.Effect<unknown>) | undefined
): Effect.Effect<Events, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { plan, redactor, runId } = prepared
    const warnings: Array<string> = []
    const writers: Array<(event: RunEvent.RunEvent) => Effect.Effect<void>> = []
    for (const sink of plan.sinks ?? []) {
      const handle = yield* sink.open({ runId, targets: plan.targets }).pipe(
        Effect.catchAll((e) => {
          warnings.push(redactor.text(e.message))
          return Effect.succeed(undefined)
        })
      )
      if (handle === undefined) continue
      // one writer per sink, built once (emit runs per output chunk): a failing sink stops, with a warning; an
      // error naming one file of the sink loses that file only
      let broken = false
      const stop = (e: OutputSinkError) =>
        Effect.sync(() => {
          if (e.file === undefined) broken = true
          warnings.push(
            `output sink ${sink.name} ${e.file === undefined ? "stopped" : "lost a file"}: ${redactor.text(e.message)}`
          )
        })
      writers.push((event) => Effect.suspend(() => (broken ? Effect.void : Effect.catchAll(handle.write(event), stop))))
    }
    if (external !== undefined) writers.push((event) => Effect.asVoid(external(event)))
    const listening = writers.length > 0
    const serialize = yield* makeSerialize
    const writeFrom = (event: RunEvent.RunEvent, from: number): Effect.Effect<void> =>
      from === writers.length - 1
        ? writers[from]!(event)
        : Effect.zipRight(writers[from]!(event), Effect.suspend(() => writeFrom(event, from + 1)))
    return {
      listening,
      emit: (event) => (listening ? serialize(writeFrom(event, 0)) : Effect.void),
      warnings
    }
  })

/**
 * `new RunEvent.Output({ chunk }, true)` without the Schema class constructor (props copy, defaults merge:
 * ~2 µs per chunk on the hot path): the same value (prototype, own keys in the same order, `Equal`).
 *
 * @internal
 */
export const outputEvent = (chunk: OutputChunk): RunEvent.Output => {
  const event = Object.create(RunEvent.Output.prototype) as { chunk: OutputChunk; _tag: "Output" }
  event.chunk = chunk
  event._tag = "Output"
  return event as RunEvent.Output
}

/** @internal */
export interface Tally {
  /** Records a target's one outcome (a second one for the same target is ignored). */
  readonly finish: (outcome: Outcome.Outcome) => Effect.Effect<void>
  readonly outcome: (targetId: string) => Outcome.Outcome | undefined
  /** Whether the error budget is spent: targets not started yet are skipped. */
  readonly budgetExhausted: () => boolean
  /** Executions in flight, for `Progress` events. */
  readonly running: { count: number }
}

const executionsBy = memoize((tag: string) => Metric.tagged(Metrics.executions, "outcome", tag))
const durationBy = memoize((tag: string) => Metric.tagged(Metrics.executionDuration, "outcome", tag))

function memoize<A>(f: (key: string) => A): (key: string) => A {
  const cache = new Map<string, A>()
  return (key) => {
    let value = cache.get(key)
    if (value === undefined) cache.set(key, value = f(key))
    return value
  }
}

/** @internal */
export const makeTally = (prepared: Prepared, events: Events): Effect.Effect<Tally> =>
  Effect.gen(function*() {
    const total = prepared.plan.targets.length
    const outcomes = new Map<string, Outcome.Outcome>()
    const counts: Record<string, number> = {}
    for (const tag of Outcome.tags) counts[tag] = 0
    let failures = 0
    const running = { count: 0 }
    // metrics updated in place with the run's labels (as `Metric.increment` would), the time read without an effect
    const labels = yield* FiberRef.get(FiberRef.currentMetricLabels)
    const clock = yield* Effect.clock
    const record = (outcome: Outcome.Outcome): boolean => {
      if (outcomes.has(outcome.targetId)) return false
      outcomes.set(outcome.targetId, outcome)
      counts[outcome._tag] = (counts[outcome._tag] ?? 0) + 1
      if (Outcome.isFailure(outcome)) failures++
      executionsBy(outcome._tag).unsafeUpdate(1, labels)
      if (outcome._tag !== "Skipped") durationBy(outcome._tag).unsafeUpdate(outcome.durationMs, labels)
      return true
    }
    const finish = (outcome: Outcome.Outcome): Effect.Effect<void> =>
      !events.listening ? Effect.sync(() => void record(outcome)) : Effect.suspend(() => {
        if (!record(outcome)) return Effect.void
        const at = clock.unsafeCurrentTimeMillis()
        return Effect.zipRight(
          events.emit(new RunEvent.Finished({ targetId: outcome.targetId, at, outcome }, true)),
          events.emit(
            new RunEvent.Progress(
              { at, total, done: outcomes.size, running: running.count, counts: { ...counts } },
              true
            )
          )
        )
      })
    return {
      finish,
      outcome: (targetId) => outcomes.get(targetId),
      budgetExhausted: () => prepared.maxErrors !== undefined && failures > prepared.maxErrors,
      running
    }
  })

/**
 * The outcome of a target that never started.
 *
 * @internal
 */
export const skipped = (target: Target, why: Outcome.Skipped["why"]): Outcome.Outcome =>
  Outcome.unsafeMake(Outcome.Skipped, {
    targetId: target.id,
    kind: target.kind,
    attempts: 0,
    durationMs: 0,
    stdout: Outcome.emptyCapture,
    stderr: Outcome.emptyCapture,
    why
  })
