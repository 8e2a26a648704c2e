/**
 * One target's life in a run: attempts under the timeout or the deadline, retries by the policy's schedule, and
 * its one outcome, also when the run is cancelled. An attempt owns a scope; closing it ends the execution, and
 * `closeAttempt` is the one place that closes it and then reads whether the kill was confirmed.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as ExecutionPolicy from "../../ExecutionPolicy.js"
import * as Metrics from "../../Metrics.js"
import * as Outcome from "../../Outcome.js"
import type { OutputChunk, StreamName } from "../../OutputChunk.js"
import * as RunEvent from "../../RunEvent.js"
import type { Target } from "../../Target.js"
import type * as Transport from "../../Transport.js"
import { classify, isTransient, type TransportError } from "../../TransportError.js"
import { makeCapture } from "../capture.js"
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

/**
 * Runs one target to its outcome (recorded in the tally); never fails.
 *
 * @internal
 */
export const runTarget = (ctx: RunContext, target: Target): Effect.Effect<void> => {
  const { events, prepared, tally } = ctx
  const { policy } = prepared.plan
  const { emit, listening } = events
  const redactor = prepared.redactor
  const transport = prepared.routes.get(target.kind)!
  let attempts = 0
  let firstStart: number | undefined
  let current: Current | undefined
  let stdout = Outcome.emptyCapture
  let stderr = Outcome.emptyCapture

  const limitFor = (now: number): Option.Option<Limit> | "expired" => {
    const timeout = policy.timeout === undefined ? undefined : Duration.toMillis(policy.timeout)
    if (ctx.deadlineAt === undefined) {
      return timeout === undefined ? Option.none() : Option.some({ ms: timeout, limit: "timeout" })
    }
    const remaining = ctx.deadlineAt - now
    if (remaining <= 0) return "expired"
    return timeout !== undefined && timeout <= remaining
      ? Option.some({ ms: timeout, limit: "timeout" })
      : Option.some({ ms: remaining, limit: "deadline" })
  }

  const errorInfo = (error: TransportError): Outcome.ErrorInfo => ({
    reason: error.reason,
    transport: error.transport,
    phase: error.phase,
    message: redactor.text(error.message),
    ...(error.detail === undefined ? {} : { detail: redactor.value(error.detail) })
  })

  const attemptOnce = (limit: Option.Option<Limit>): Effect.Effect<Attempt> =>
    Effect.gen(function*() {
      attempts++
      const attempt = attempts
      const at = yield* Clock.currentTimeMillis
      firstStart ??= at
      if (listening) yield* emit(new RunEvent.Started({ targetId: target.id, attempt, at }, true))
      const state: Current = { scope: yield* Scope.make(), execution: undefined }
      current = state
      const captures = {
        stdout: makeCapture(prepared.captureHead, prepared.captureTail),
        stderr: makeCapture(prepared.captureHead, prepared.captureTail)
      }
      const redactors = { stdout: redactor.stream(), stderr: redactor.stream() }
      const seq = { stdout: 0, stderr: 0 }
      // the byte counters are updated in place per chunk (as `Metric.incrementBy` would, with the fiber's labels)
      const metricLabels = yield* FiberRef.get(FiberRef.currentMetricLabels)
      const deliver = (stream: StreamName, bytes: Uint8Array, at: number): Effect.Effect<void> => {
        if (bytes.length === 0) return Effect.void
        captures[stream].push(bytes)
        if (!listening) return Effect.void
        const chunk: OutputChunk = { targetId: target.id, stream, seq: seq[stream]++, bytes, at }
        return emit(outputEvent(chunk))
      }
      const flush = Effect.flatMap(Clock.currentTimeMillis, (at) =>
        Effect.zipRight(
          deliver("stdout", redactors.stdout.end(), at),
          deliver("stderr", redactors.stderr.end(), at)
        ))
      const body = Effect.gen(function*() {
        const execution = yield* Scope.extend(transport.start(target, invocation(prepared, target, attempt)), state.scope)
        state.execution = execution
        yield* execution.pump((chunk) => {
          bytesBy[chunk.stream].unsafeUpdate(chunk.bytes.length, metricLabels)
          return deliver(chunk.stream, redactors[chunk.stream].push(chunk.bytes), chunk.at)
        })
        return yield* execution.exit
      })
      const ended = (either: Either.Either<Transport.ExitStatus, TransportError>): Effect.Effect<Attempt> =>
        Effect.as(
          Scope.close(state.scope, Exit.void),
          Either.match(either, {
            onLeft: (error): Attempt => ({ _tag: "Error", error }),
            onRight: (status): Attempt => ({ _tag: "Exit", status })
          })
        )
      const result: Effect.Effect<Attempt> = Option.isNone(limit)
        ? Effect.flatMap(Effect.either(body), ended)
        : Effect.either(body).pipe(
          Effect.timeoutOption(Duration.millis(limit.value.ms)),
          Effect.flatMap(Option.match({
            onSome: ended,
            onNone: () =>
              Effect.map(closeAttempt(state), (killConfirmed): Attempt => ({
                _tag: "TimedOut",
                phase: state.execution === undefined ? "delivery" : "execution",
                killConfirmed,
                limit: limit.value.limit
              }))
          }))
        )
      const outcome = yield* result.pipe(
        Effect.zipLeft(flush),
        Effect.ensuring(Effect.sync(() => {
          stdout = captures.stdout.result()
          stderr = captures.stderr.result()
        }))
      )
      current = undefined
      return outcome
    })

  const common = (endedAt: number) => ({
    targetId: target.id,
    kind: target.kind,
    attempts,
    startedAt: firstStart ?? endedAt,
    endedAt,
    durationMs: endedAt - (firstStart ?? endedAt),
    stdout,
    stderr
  })

  const toOutcome = (attempt: Attempt, endedAt: number): Outcome.Outcome => {
    const fields = common(endedAt)
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
  const retryable = (attempt: Attempt): Option.Option<Outcome.ErrorInfo> => {
    switch (attempt._tag) {
      case "Exit":
        return policy.idempotent && (attempt.status._tag === "Signaled" || attempt.status.code !== 0)
          ? Option.some({
            reason: "Unknown",
            transport: transport.name,
            phase: "execution",
            message: attempt.status._tag === "Signaled"
              ? `killed by ${attempt.status.signal}`
              : `exited with code ${attempt.status.code}`
          })
          : Option.none()
      case "TimedOut":
        return policy.idempotent || attempt.phase === "delivery"
          ? Option.some({
            reason: "Timeout",
            transport: transport.name,
            phase: attempt.phase,
            message: `timed out (${attempt.limit})`
          })
          : Option.none()
      case "Error":
        return isTransient(attempt.error.reason) && (attempt.error.phase === "delivery" || policy.idempotent)
          ? Option.some(errorInfo(attempt.error))
          : Option.none()
    }
  }

  const loop = Effect.gen(function*() {
    let driver: Schedule.ScheduleDriver<unknown, unknown, never> | undefined
    for (;;) {
      const now = yield* Clock.currentTimeMillis
      const limit = limitFor(now)
      if (limit === "expired") {
        if (attempts === 0) return yield* tally.finish(skipped(target, "Deadline"))
        return yield* tally.finish(
          toOutcome({ _tag: "TimedOut", phase: "delivery", killConfirmed: true, limit: "deadline" }, now)
        )
      }
      tally.running.count++
      const attempt = yield* Effect.ensuring(attemptOnce(limit), Effect.sync(() => tally.running.count--))
      const retry = retryable(attempt)
      const deadlineHit = limit._tag === "Some" && limit.value.limit === "deadline" && attempt._tag === "TimedOut"
      if (Option.isSome(retry) && !deadlineHit) {
        driver ??= yield* Schedule.driver(ExecutionPolicy.retrySchedule(policy))
        const next = yield* Effect.either(driver.next(undefined))
        if (Either.isRight(next)) {
          const at = yield* Clock.currentTimeMillis
          yield* Metric.increment(Metrics.retries)
          yield* Effect.logDebug(`retrying ${target.id} after attempt ${attempts}: ${retry.value.message}`)
          yield* emit(new RunEvent.Retrying({ targetId: target.id, attempt: attempts, at, error: retry.value }, true))
          continue
        }
      }
      return yield* tally.finish(toOutcome(attempt, yield* Clock.currentTimeMillis))
    }
  })

  const cancelled = Effect.gen(function*() {
    const confirmed = current === undefined ? true : yield* closeAttempt(current)
    const endedAt = yield* Clock.currentTimeMillis
    yield* tally.finish(Outcome.unsafeMake(Outcome.Cancelled, { ...common(endedAt), confirmed }))
  })

  return Effect.suspend(() =>
    tally.budgetExhausted()
      ? tally.finish(skipped(target, "BudgetExhausted"))
      : loop.pipe(
        Effect.onInterrupt(() => cancelled),
        Effect.withSpan("Runner.execute", {
          attributes: {
            "runcmd.target.id": target.id,
            "runcmd.target.kind": target.kind,
            "runcmd.transport": transport.name
          },
          captureStackTrace: false
        })
      )
  )
}
