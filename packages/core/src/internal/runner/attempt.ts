/**
 * One target's life in a run: attempts under the timeout or the deadline, retries by the policy's schedule, and
 * its one outcome, also when the run is cancelled. An attempt owns a scope; closing it ends the execution, and
 * `closeAttempt` is the one place that closes it and then reads whether the kill was confirmed.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import * as ExecutionPolicy from "../../ExecutionPolicy.js"
import * as Metrics from "../../Metrics.js"
import * as Outcome from "../../Outcome.js"
import type { OutputChunk, StreamName } from "../../OutputChunk.js"
import type { StreamRedactor } from "../../Redactor.js"
import * as RunEvent from "../../RunEvent.js"
import type { Target } from "../../Target.js"
import type * as Transport from "../../Transport.js"
import { classify, isTransient, type TransportError } from "../../TransportError.js"
import { type Capture, makeCapture } from "../capture.js"
import type { Events, Tally } from "./events.js"
import { outputEvent, skipped } from "./events.js"
import { invocation, type Prepared } from "./prepare.js"

/** @internal */
export interface RunContext {
  readonly prepared: Prepared
  readonly events: Events
  readonly tally: Tally
  /** When the policy's deadline expires (epoch ms), if it has one. */
  readonly deadlineAt: number | undefined
}

type Limit = { readonly ms: number; readonly limit: "timeout" | "deadline" }

type Attempt =
  | { readonly _tag: "Exit"; readonly status: Transport.ExitStatus }
  | { readonly _tag: "Error"; readonly error: TransportError }
  | {
    readonly _tag: "TimedOut"
    readonly phase: "delivery" | "execution"
    readonly killConfirmed: boolean
    readonly limit: Limit["limit"]
  }

/** What an attempt in flight holds: its scope and, once started, its execution. */
interface Current {
  readonly scope: Scope.CloseableScope
  execution: Transport.Execution | undefined
}

/** Ends an attempt early: closes its scope (the transport's kill), then reads whether the kill was confirmed. */
const closeAttempt = (current: Current): Effect.Effect<boolean> =>
  Effect.zipRight(
    Scope.close(current.scope, Exit.void),
    current.execution === undefined ? Effect.succeed(true) : current.execution.killConfirmed
  )

const bytesBy = {
  stdout: Metric.tagged(Metrics.outputBytes, "stream", "stdout"),
  stderr: Metric.tagged(Metrics.outputBytes, "stream", "stderr")
}

/** A stream's capture at the end of an attempt, marked when the service cut it. */
const captured = (stream: StreamState | undefined, cutBy: string | undefined): Outcome.Captured => {
  const capture = stream === undefined ? Outcome.emptyCapture : stream.capture.result()
  return cutBy === undefined ? capture : Outcome.truncatedBy(capture, cutBy)
}

/** The tracer Effect runs with when none is provided: its spans go nowhere, so the Runner does not make them. */
let nativeTracer: Tracer.Tracer | undefined

/** One stream of an attempt: its capture, its redaction state and its seq; made on the stream's first bytes. */
interface StreamState {
  readonly capture: Capture
  readonly redactor: StreamRedactor
  seq: number
}

/** One target's state across its attempts. */
interface TargetState {
  readonly target: Target
  readonly transport: Transport.Transport
  attempts: number
  firstStart: number | undefined
  /** The attempt in flight, for cancellation. */
  current: Current | undefined
  stdout: Outcome.Captured
  stderr: Outcome.Captured
}

/**
 * The per-target program of a run: `(target) => effect` that runs the target to its outcome (recorded in the
 * tally) and never fails. Everything that does not depend on the target is built here, once per run: a run of
 * trivial executions pays per target only for its fiber, its attempt's scope and the transport.
 *
 * @internal
 */
export const makeRunTarget = (ctx: RunContext): Effect.Effect<(target: Target) => Effect.Effect<void>> =>
  Effect.gen(function*() {
    const { events, prepared, tally } = ctx
    const { policy } = prepared.plan
    const { emit, listening } = events
    const redactor = prepared.redactor
    const timeoutMs = policy.timeout === undefined ? undefined : Duration.toMillis(policy.timeout)
    // the counters are updated in place (as `Metric.increment` would, with the run's labels)
    const metricLabels = yield* FiberRef.get(FiberRef.currentMetricLabels)
    // read without an effect on the hot path (the fiber's clock: TestClock in tests)
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const tracer = yield* Effect.tracer
    nativeTracer ??= Effect.runSync(Effect.tracer)
    const traced = tracer !== nativeTracer && (yield* FiberRef.get(FiberRef.currentTracerEnabled))

    const limitFor = (now: number): Limit | undefined | "expired" => {
      if (ctx.deadlineAt === undefined) return timeoutMs === undefined ? undefined : { ms: timeoutMs, limit: "timeout" }
      const remaining = ctx.deadlineAt - now
      if (remaining <= 0) return "expired"
      return timeoutMs !== undefined && timeoutMs <= remaining
        ? { ms: timeoutMs, limit: "timeout" }
        : { ms: remaining, limit: "deadline" }
    }

    const errorInfo = (error: TransportError): Outcome.ErrorInfo => ({
      reason: error.reason,
      transport: error.transport,
      phase: error.phase,
      message: redactor.text(error.message),
      ...(error.detail === undefined ? {} : { detail: redactor.value(error.detail) })
    })

    /** One attempt: its own scope, lazily made stream states, the limit raced, the redactors flushed. */
    const attemptOnce = (t: TargetState, limit: Limit | undefined): Effect.Effect<Attempt> =>
      Effect.flatMap(Scope.make(), (scope) => {
        const attempt = ++t.attempts
        const at = now()
        t.firstStart ??= at
        tally.running.count++
        const state: Current = { scope, execution: undefined }
        t.current = state
        const streams: { stdout: StreamState | undefined; stderr: StreamState | undefined } = {
          stdout: undefined,
          stderr: undefined
        }
        const deliver = (name: StreamName, stream: StreamState, bytes: Uint8Array, at: number): Effect.Effect<void> => {
          if (bytes.length === 0) return Effect.void
          stream.capture.push(bytes)
          if (!listening) return Effect.void
          const chunk: OutputChunk = { targetId: t.target.id, stream: name, seq: stream.seq++, bytes, at }
          return emit(outputEvent(chunk))
        }
        const onChunk = (chunk: OutputChunk): Effect.Effect<void> => {
          bytesBy[chunk.stream].unsafeUpdate(chunk.bytes.length, metricLabels)
          const stream = streams[chunk.stream] ??= {
            capture: makeCapture(prepared.captureHead, prepared.captureTail),
            redactor: redactor.stream(),
            seq: 0
          }
          return deliver(chunk.stream, stream, stream.redactor.push(chunk.bytes), chunk.at)
        }
        // what the service cut (read once the exit is known); marks the captures when the attempt settles
        let cut: Transport.OutputTruncation | undefined
        const body = Effect.flatMap(
          Scope.extend(t.transport.start(t.target, invocation(prepared, t.target, attempt)), scope),
          (execution) => {
            state.execution = execution
            return Effect.zipRight(
              execution.pump(onChunk),
              Effect.tap(execution.exit, () =>
                Effect.map(execution.truncated, (truncation) => {
                  cut = truncation
                }))
            )
          }
        )
        const ended = (either: Either.Either<Transport.ExitStatus, TransportError>): Effect.Effect<Attempt> =>
          Effect.as(
            Scope.close(scope, Exit.void),
            Either.isLeft(either) ? { _tag: "Error", error: either.left } : { _tag: "Exit", status: either.right }
          )
        const result: Effect.Effect<Attempt> = limit === undefined
          ? Effect.flatMap(Effect.either(body), ended)
          : Effect.either(body).pipe(
            Effect.timeoutOption(Duration.millis(limit.ms)),
            Effect.flatMap(Option.match({
              onSome: ended,
              onNone: () =>
                Effect.map(closeAttempt(state), (killConfirmed): Attempt => ({
                  _tag: "TimedOut",
                  phase: state.execution === undefined ? "delivery" : "execution",
                  killConfirmed,
                  limit: limit.limit
                }))
            }))
          )
        // the redactors may hold the start of a secret back: what they hold at the end is not a secret
        const flush = (attempt: Attempt): Effect.Effect<Attempt> => {
          t.current = undefined
          const out = streams.stdout
          const err = streams.stderr
          if (out === undefined && err === undefined) return Effect.succeed(attempt)
          const at = now()
          return Effect.as(
            Effect.zipRight(
              out === undefined ? Effect.void : deliver("stdout", out, out.redactor.end(), at),
              err === undefined ? Effect.void : deliver("stderr", err, err.redactor.end(), at)
            ),
            attempt
          )
        }
        // also when interrupted: the cancelled outcome reads the captures
        const settle = Effect.sync(() => {
          tally.running.count--
          t.stdout = captured(streams.stdout, cut?.stdout === undefined ? undefined : redactor.text(cut.stdout))
          t.stderr = captured(streams.stderr, cut?.stderr === undefined ? undefined : redactor.text(cut.stderr))
        })
        const attemptRun = Effect.ensuring(Effect.flatMap(result, flush), settle)
        const run = traced
          ? Effect.withSpan(attemptRun, "Runner.attempt", {
            attributes: { "runcmd.target.id": t.target.id, "runcmd.attempt": attempt },
            captureStackTrace: false
          })
          : attemptRun
        return listening
          ? Effect.zipRight(emit(new RunEvent.Started({ targetId: t.target.id, attempt, at }, true)), run)
          : run
      })

    const common = (t: TargetState, endedAt: number) => ({
      targetId: t.target.id,
      kind: t.target.kind,
      attempts: t.attempts,
      startedAt: t.firstStart ?? endedAt,
      endedAt,
      durationMs: endedAt - (t.firstStart ?? endedAt),
      stdout: t.stdout,
      stderr: t.stderr
    })

    const toOutcome = (t: TargetState, attempt: Attempt, endedAt: number): Outcome.Outcome => {
      const fields = common(t, endedAt)
      switch (attempt._tag) {
        case "Exit":
          return attempt.status._tag === "Signaled"
            ? Outcome.unsafeMake(Outcome.Signaled, { ...fields, signal: attempt.status.signal })
            : attempt.status.code === 0
            ? Outcome.unsafeMake(Outcome.Succeeded, fields)
            : Outcome.unsafeMake(Outcome.Failed, { ...fields, exitCode: attempt.status.code })
        case "TimedOut":
          return Outcome.unsafeMake(Outcome.TimedOut, {
            ...fields,
            phase: attempt.phase,
            killConfirmed: attempt.killConfirmed,
            limit: attempt.limit
          })
        case "Error": {
          const error = errorInfo(attempt.error)
          switch (classify(attempt.error.reason)) {
            case "Unreachable":
              return Outcome.unsafeMake(Outcome.Unreachable, { ...fields, error })
            case "Rejected":
              return Outcome.unsafeMake(Outcome.Rejected, { ...fields, error })
            case "TransportFailed":
              return Outcome.unsafeMake(Outcome.TransportFailed, { ...fields, error, remoteState: "unknown" })
          }
        }
      }
    }

    /** Why the attempt may be retried, if it may: delivery failures always; the rest only when idempotent. */
    const retryable = (t: TargetState, attempt: Attempt): Outcome.ErrorInfo | undefined => {
      switch (attempt._tag) {
        case "Exit":
          return policy.idempotent && (attempt.status._tag === "Signaled" || attempt.status.code !== 0)
            ? {
              reason: "Unknown",
              transport: t.transport.name,
              phase: "execution",
              message: attempt.status._tag === "Signaled"
                ? `killed by ${attempt.status.signal}`
                : `exited with code ${attempt.status.code}`
            }
            : undefined
        case "TimedOut":
          return policy.idempotent || attempt.phase === "delivery"
            ? {
              reason: "Timeout",
              transport: t.transport.name,
              phase: attempt.phase,
              message: `timed out (${attempt.limit})`
            }
            : undefined
        case "Error":
          return isTransient(attempt.error.reason) && (attempt.error.phase === "delivery" || policy.idempotent)
            ? errorInfo(attempt.error)
            : undefined
      }
    }

    const loop = (t: TargetState): Effect.Effect<void> =>
      Effect.gen(function*() {
        let driver: Schedule.ScheduleDriver<unknown, unknown, never> | undefined
        for (;;) {
          const at = now()
          const limit = limitFor(at)
          if (limit === "expired") {
            if (t.attempts === 0) return yield* tally.finish(skipped(t.target, "Deadline"))
            return yield* tally.finish(
              toOutcome(t, { _tag: "TimedOut", phase: "delivery", killConfirmed: true, limit: "deadline" }, at)
            )
          }
          const attempt = yield* attemptOnce(t, limit)
          const retry = retryable(t, attempt)
          const deadlineHit = limit?.limit === "deadline" && attempt._tag === "TimedOut"
          if (retry !== undefined && !deadlineHit) {
            driver ??= yield* Schedule.driver(ExecutionPolicy.retrySchedule(policy))
            const next = yield* Effect.either(driver.next(undefined))
            if (Either.isRight(next)) {
              const at = now()
              Metrics.retries.unsafeUpdate(1, metricLabels)
              yield* Effect.logDebug(`retrying ${t.target.id} after attempt ${t.attempts}: ${retry.message}`)
              yield* emit(new RunEvent.Retrying({ targetId: t.target.id, attempt: t.attempts, at, error: retry }, true))
              continue
            }
          }
          return yield* tally.finish(toOutcome(t, attempt, now()))
        }
      })

    const cancelled = (t: TargetState): Effect.Effect<void> =>
      Effect.flatMap(
        t.current === undefined ? Effect.succeed(true) : closeAttempt(t.current),
        (confirmed) => tally.finish(Outcome.unsafeMake(Outcome.Cancelled, { ...common(t, now()), confirmed }))
      )

    return (target: Target): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (tally.budgetExhausted()) return tally.finish(skipped(target, "BudgetExhausted"))
        const t: TargetState = {
          target,
          transport: prepared.routes.get(target.kind)!,
          attempts: 0,
          firstStart: undefined,
          current: undefined,
          stdout: Outcome.emptyCapture,
          stderr: Outcome.emptyCapture
        }
        const program = Effect.onInterrupt(loop(t), () => cancelled(t))
        // spans only when a tracer listens (Effect's native tracer keeps them nowhere)
        return traced
          ? Effect.withSpan(program, "Runner.execute", {
            attributes: {
              "runcmd.target.id": target.id,
              "runcmd.target.kind": target.kind,
              "runcmd.transport": t.transport.name
            },
            captureStackTrace: false
          })
          : program
      })
  })
