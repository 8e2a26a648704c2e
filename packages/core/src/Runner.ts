/**
 * The Runner: fans a plan out over its targets with the policy's concurrency, batches, error budget, timeouts,
 * deadline and retries; routes each target to its transport; redacts output before any sink sees it; returns
 * one outcome per target, also when cancelled or interrupted.
 *
 * The parts: `internal/runner/prepare` (checks and resolves a plan, builds invocations), `internal/runner/attempt`
 * (one target's attempts, timeouts, retries and cancellation), `internal/runner/events` (sinks, events, the tally);
 * this module orchestrates them (waves, cancellation, the report).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import * as ExecutionPolicy from "./ExecutionPolicy.js"
import { makeRunTarget } from "./internal/runner/attempt.js"
import * as Events from "./internal/runner/events.js"
import { invocation, prepare, type Prepared } from "./internal/runner/prepare.js"
import type { InvalidPlan } from "./InvalidPlan.js"
import type { OutputSink } from "./OutputSink.js"
import * as RunEvent from "./RunEvent.js"
import type { RunPlan } from "./RunPlan.js"
import * as RunReport from "./RunReport.js"
import type { Job } from "./ScriptSource.js"
import * as Selector from "./Selector.js"
import type { Target } from "./Target.js"
import * as Targets from "./Targets.js"
import type * as Transport from "./Transport.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** When this completes, the run is cancelled: in-flight executions are killed and the report is returned. */
  readonly cancelWhen?: Effect.Effect<void> | undefined
  /**
   * Receives the partial report when the run is interrupted (a timeout around it, a parent fiber's interruption,
   * the scope of {@link start} closing): every running target was cancelled (its kill awaited) and every other
   * skipped before it is called. The run itself still ends interrupted; to stop a run and have `run` return the
   * report instead, use `cancelWhen` or {@link start}'s `cancel`.
   */
  readonly onInterrupt?: ((report: RunReport.RunReport) => Effect.Effect<void>) | undefined
}

/**
 * Runs a plan to completion and returns its report. Never fails because a target failed: every target gets an
 * outcome. Fails only with `InvalidPlan`, before anything starts.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  plan: RunPlan,
  options: RunOptions = {}
): Effect.Effect<RunReport.RunReport, InvalidPlan, Transport.Registry> =>
  Effect.flatMap(prepare(plan), (prepared) => execute(prepared, undefined, options)).pipe(runSpan(plan))

/**
 * Options of {@link runJob}: which targets, the job's own policy, its own sinks.
 *
 * @since 0.1.0
 * @category models
 */
export interface JobOptions extends RunOptions {
  /** Selector expressions (`role=web`, `!canary`, `id=web-*`; several: any of them) over the `Targets` in scope; default every target. */
  readonly select?: string | ReadonlyArray<string> | undefined
  /** The job's own policy: the `plan` level, over the `ExecutionPolicy.Defaults` in scope and the built-in defaults. */
  readonly policy?: ExecutionPolicy.Overrides | undefined
  /** The levels around the plan's: `flags` (above it) and `inventory` (below it), as the CLI gives them. */
  readonly policyLevels?: Pick<ExecutionPolicy.Levels, "flags" | "inventory"> | undefined
  /** Sinks of this run only, after those of the `OutputSinks` in scope. */
  readonly sinks?: ReadonlyArray<OutputSink> | undefined
  /** Bytes of each stream kept in the report (head and tail halves); default 64 KiB. */
  readonly captureBytes?: number | undefined
  readonly runId?: string | undefined
}

/**
 * The plan {@link runJob} runs: the targets selected from the `Targets` in scope and the policy of the job's levels
 * (see `ExecutionPolicy`: flag > plan > inventory > layer > built-in; the inventory level is the sources' own
 * policy, such as an inventory file's `policy:`, under `options.policyLevels.inventory`). The sinks of the `OutputSinks` in scope are
 * added when the plan runs, as for any plan.
 *
 * @since 0.1.0
 * @category running
 */
export const planJob: (
  job: Job,
  options?: JobOptions
) => Effect.Effect<RunPlan, InvalidPlan | Targets.TargetsError, Targets.Targets> = Effect.fn("Runner.planJob")(
  function*(job: Job, options: JobOptions = {}) {
    const listing = yield* Targets.list
    const targets = options.select === undefined
      ? listing.targets
      : yield* Selector.select(listing.targets, options.select)
    const policy = yield* ExecutionPolicy.current({
      flags: options.policyLevels?.flags,
      plan: options.policy,
      inventory: ExecutionPolicy.merge(listing.policy, options.policyLevels?.inventory)
    })
    return {
      targets,
      job,
      policy,
      ...(options.sinks === undefined ? {} : { sinks: options.sinks }),
      ...(options.captureBytes === undefined ? {} : { captureBytes: options.captureBytes }),
      ...(options.runId === undefined ? {} : { runId: options.runId })
    }
  }
)

/**
 * Runs a job on the targets of the `Targets` in scope (narrowed by `options.select`), under the policy of the
 * `ExecutionPolicy.Defaults` in scope overridden field by field by `options.policy`, with the sinks of the
 * `OutputSinks` in scope and `options.sinks`; scripts are resolved by the `ScriptSources` in scope. The report is
 * that of {@link run} of {@link planJob}'s plan.
 *
 * @example
 * ```ts
 * const deploy = Runner.runJob(ScriptSource.job(ScriptSource.command("./deploy.sh")), {
 *   select: "role=web",
 *   policy: { batchSize: 5, maxErrors: 2 }
 * })
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const runJob = (
  job: Job,
  options: JobOptions = {}
): Effect.Effect<RunReport.RunReport, InvalidPlan | Targets.TargetsError, Transport.Registry | Targets.Targets> =>
  Effect.flatMap(planJob(job, options), (plan) => run(plan, options)).pipe(
    Effect.withSpan("Runner.runJob", {
      attributes: { "runcmd.selector": options.select === undefined ? "" : String(options.select) }
    })
  )

/**
 * {@link start} for a job, its plan made as {@link runJob} makes it.
 *
 * @since 0.1.0
 * @category running
 */
export const startJob = (
  job: Job,
  options: JobOptions = {}
): Effect.Effect<RunHandle, InvalidPlan | Targets.TargetsError, Transport.Registry | Targets.Targets | Scope.Scope> =>
  Effect.flatMap(planJob(job, options), (plan) => start(plan, options))

/**
 * {@link stream} for a job, its plan made as {@link runJob} makes it.
 *
 * @since 0.1.0
 * @category running
 */
export const streamJob = (
  job: Job,
  options: JobOptions = {}
): Stream.Stream<RunEvent.RunEvent, InvalidPlan | Targets.TargetsError, Transport.Registry | Targets.Targets> =>
  Stream.unwrap(Effect.map(planJob(job, options), (plan) => stream(plan, options)))

const runSpan = (plan: RunPlan) =>
  Effect.withSpan("Runner.run", { attributes: { "runcmd.targets": plan.targets.length } })

/**
 * A run started in the background by {@link start}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunHandle {
  readonly runId: string
  /** Waits for the run to end and returns its report. */
  readonly report: Effect.Effect<RunReport.RunReport>
  /**
   * Cancels the run (running targets are killed, the rest skipped) and returns the partial report; after the run
   * ended by itself, returns its report.
   */
  readonly cancel: Effect.Effect<RunReport.RunReport>
}

/**
 * Checks the plan, starts the run in the background and returns a handle to await or cancel it. Closing the scope
 * cancels a run still going (its report then goes to `options.onInterrupt`).
 *
 * @since 0.1.0
 * @category running
 */
export const start = (
  plan: RunPlan,
  options: RunOptions = {}
): Effect.Effect<RunHandle, InvalidPlan, Transport.Registry | Scope.Scope> =>
  Effect.gen(function*() {
    const prepared = yield* prepare(plan)
    const cancelled = yield* Deferred.make<void>()
    const cancelWhen = options.cancelWhen === undefined
      ? Deferred.await(cancelled)
      : Effect.raceFirst(Deferred.await(cancelled), options.cancelWhen)
    const fiber = yield* execute(prepared, undefined, { ...options, cancelWhen }).pipe(
      runSpan(plan),
      Effect.forkScoped
    )
    return {
      runId: prepared.runId,
      report: Fiber.join(fiber),
      cancel: Effect.zipRight(Deferred.succeed(cancelled, undefined), Fiber.join(fiber))
    }
  })

/**
 * The run as a stream of events (already redacted); the report is `RunReport.fold` of them.
 *
 * @since 0.1.0
 * @category running
 */
export const stream = (
  plan: RunPlan,
  options: RunOptions = {}
): Stream.Stream<RunEvent.RunEvent, InvalidPlan, Transport.Registry> =>
  Stream.unwrapScoped(
    Effect.gen(function*() {
      const prepared = yield* prepare(plan)
      const queue = yield* Effect.acquireRelease(
        Queue.bounded<Take.Take<RunEvent.RunEvent, InvalidPlan>>(1024),
        Queue.shutdown
      )
      const emitTo = (event: RunEvent.RunEvent) => Queue.offer(queue, Take.of(event))
      yield* execute(prepared, emitTo, options).pipe(
        Effect.onExit(() => Queue.offer(queue, Take.end)),
        Effect.forkScoped
      )
      return Stream.fromQueue(queue).pipe(Stream.flattenTake)
    })
  ).pipe(Stream.withSpan("Runner.stream"))

/**
 * Checks a plan without running it: targets, transports, capabilities, script source. Resolves `File` and
 * `Url` sources (a `Url` must match its sha256).
 *
 * @since 0.1.0
 * @category running
 */
export const validate = (plan: RunPlan): Effect.Effect<void, InvalidPlan, Transport.Registry> =>
  Effect.asVoid(prepare(plan))

/**
 * What each target's transport would receive for the plan's first attempt, checked as {@link validate} does and
 * without running anything (`runcmd run --dry-run` shows it).
 *
 * @since 0.1.0
 * @category models
 */
export interface Preview {
  readonly runId: string
  readonly targets: ReadonlyArray<{
    readonly target: Target
    readonly transport: string
    readonly invocation: Transport.Invocation
  }>
}

/**
 * @since 0.1.0
 * @category running
 */
export const preview = (plan: RunPlan): Effect.Effect<Preview, InvalidPlan, Transport.Registry> =>
  Effect.map(prepare(plan), (prepared) => ({
    runId: prepared.runId,
    targets: plan.targets.map((target) => ({
      target,
      transport: prepared.routes.get(target.kind)!.name,
      invocation: invocation(prepared, target, 1)
    }))
  }))

const execute = (
  prepared: Prepared,
  external: ((event: RunEvent.RunEvent) => Effect.Effect<unknown>) | undefined,
  options: RunOptions
): Effect.Effect<RunReport.RunReport> =>
  Effect.scoped(Effect.gen(function*() {
    const { plan, runId } = prepared
    const { policy, targets } = plan
    const startedAt = yield* Clock.currentTimeMillis
    const deadlineAt = policy.deadline === undefined ? undefined : startedAt + Duration.toMillis(policy.deadline)
    const events = yield* Events.open(prepared, external)
    const tally = yield* Events.makeTally(prepared, events)
    const runTarget = yield* makeRunTarget({ prepared, events, tally, deadlineAt })

    yield* events.emit(
      new RunEvent.RunStarted({ runId, at: startedAt, targets: targets.map((t) => ({ id: t.id, kind: t.kind })) })
    )

    const waves: Array<ReadonlyArray<Target>> = []
    for (let i = 0; i < targets.length; i += prepared.batchSize) waves.push(targets.slice(i, i + prepared.batchSize))
    const all = Effect.forEach(
      waves,
      (wave) =>
        Effect.forEach(wave, runTarget, {
          concurrency: Math.min(prepared.concurrency, wave.length),
          discard: true
        }),
      { discard: true }
    )

    let interrupted = false
    const fiber = yield* Effect.fork(all)
    const cancelled = options.cancelWhen === undefined
      ? Fiber.join(fiber).pipe(Effect.as(false))
      : Effect.raceFirst(
        Fiber.join(fiber).pipe(Effect.as(false)),
        options.cancelWhen.pipe(Effect.zipRight(Fiber.interrupt(fiber)), Effect.as(true))
      )
    const finalize = Effect.gen(function*() {
      for (const t of targets) {
        if (tally.outcome(t.id) === undefined) {
          yield* tally.finish(Events.skipped(t, interrupted ? "Cancelled" : "BudgetExhausted"))
        }
      }
      const endedAt = yield* Clock.currentTimeMillis
      yield* events.emit(new RunEvent.RunFinished({ runId, at: endedAt, interrupted }))
      return RunReport.make({
        runId,
        startedAt,
        endedAt,
        interrupted,
        outcomes: targets.map((t) => tally.outcome(t.id)!),
        warnings: events.warnings
      })
    })
    interrupted = yield* cancelled.pipe(
      Effect.onInterrupt(() =>
        Effect.gen(function*() {
          interrupted = true
          yield* Fiber.interrupt(fiber)
          const report = yield* finalize
          if (options.onInterrupt !== undefined) yield* options.onInterrupt(report)
        })
      )
    )
    return yield* finalize
  }))
