/**
 * The Runner: fans a plan out over its targets with the policy's concurrency, batches, error budget, timeouts,
 * deadline and retries; routes each target to its transport; redacts output before any sink sees it; returns
 * one outcome per target, also when interrupted.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import * as ExecutionPolicy from "./ExecutionPolicy.js"
import { makeCapture } from "./internal/capture.js"
import { makeSerialize } from "./internal/serialize.js"
import * as Metrics from "./Metrics.js"
import * as Outcome from "./Outcome.js"
import type { OutputChunk, StreamName } from "./OutputChunk.js"
import type { OutputSinkError, SinkHandle } from "./OutputSink.js"
import * as Redactor from "./Redactor.js"
import * as RunEvent from "./RunEvent.js"
import type { RunPlan } from "./RunPlan.js"
import * as RunReport from "./RunReport.js"
import * as ScriptSource from "./ScriptSource.js"
import type { Target } from "./Target.js"
import * as Transport from "./Transport.js"
import { InvalidPlan } from "./InvalidPlan.js"
import { classify, isTransient, type TransportError } from "./TransportError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** When this completes, the run is cancelled: in-flight executions are killed and the report is returned. */
  readonly cancelWhen?: Effect.Effect<void> | undefined
}

const DEFAULT_CAPTURE = 64 * 1024

/**
 * `new RunEvent.Output({ chunk }, true)` without the Schema class constructor (props copy, defaults merge:
 * ~2 µs per chunk on the hot path): the same value (prototype, own keys in the same order, `Equal`).
 */
const outputEvent = (chunk: OutputChunk): RunEvent.Output => {
  const event = Object.create(RunEvent.Output.prototype) as { chunk: OutputChunk; _tag: "Output" }
  event.chunk = chunk
  event._tag = "Output"
  return event as RunEvent.Output
}

/**
 * Runs a plan to completion and returns its report. Never fails because a target failed: every target gets an
 * outcome. Fails only with `InvalidPlan`, before anything starts.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (plan: RunPlan, options: RunOptions = {}): Effect.Effect<RunReport.RunReport, InvalidPlan, Transport.Registry> =>
  Effect.flatMap(prepare(plan), (prepared) => execute(prepared, undefined, options)).pipe(
    Effect.withSpan("Runner.run", { attributes: { "runcmd.targets": plan.targets.length } })
  )

/**
 * The run as a stream of events (already redacted); the report is `RunReport.fold` of them.
 *
 * @since 0.1.0
 * @category running
 */
export const stream = (plan: RunPlan, options: RunOptions = {}): Stream.Stream<RunEvent.RunEvent, InvalidPlan, Transport.Registry> =>
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

interface Prepared {
  readonly plan: RunPlan
  readonly runId: string
  readonly routes: ReadonlyMap<string, Transport.Transport>
  readonly source: ScriptSource.ResolvedSource
  readonly stdin: Uint8Array | undefined
  readonly files: ReadonlyArray<Transport.ShippedFile> | undefined
  readonly redactor: Redactor.Redactor
  readonly concurrency: number
  readonly maxErrors: number | undefined
  readonly batchSize: number
  readonly captureHead: number
  readonly captureTail: number
}

const invalid = (reason: InvalidPlan["reason"], path: string, description: string) =>
  new InvalidPlan({ reason, path, description })

const prepare = (plan: RunPlan): Effect.Effect<Prepared, InvalidPlan, Transport.Registry> =>
  Effect.gen(function*() {
    const { job, policy, targets } = plan
    if (targets.length === 0) {
      return yield* invalid("NoTargets", "targets", "the plan has no targets; add targets or fix the selector")
    }
    const seen = new Map<string, number>()
    for (let i = 0; i < targets.length; i++) {
      const id = targets[i]!.id
      const first = seen.get(id)
      if (first !== undefined) {
        return yield* invalid(
          "DuplicateTargetId",
          `targets[${i}].id`,
          `target id ${JSON.stringify(id)} is used by targets[${first}] and targets[${i}]; ids must be unique`
        )
      }
      seen.set(id, i)
    }
    if (Duration.toMillis(policy.killGrace) < 0) {
      return yield* invalid("InvalidValue", "policy.killGrace", "must not be negative")
    }
    const registry = yield* Transport.Registry
    const routes = new Map<string, Transport.Transport>()
    for (let i = 0; i < targets.length; i++) {
      const kind = targets[i]!.kind
      if (routes.has(kind)) continue
      const transport = registry.get(kind)
      if (Option.isNone(transport)) {
        const known = registry.kinds()
        return yield* invalid(
          "NoTransportForKind",
          `targets[${i}].kind`,
          `no transport serves targets of kind ${JSON.stringify(kind)}; provide its transport layer (known: ${
            known.length === 0 ? "none" : known.join(", ")
          })`
        )
      }
      const caps = transport.value.capabilities
      const refuse = (path: string, what: string) =>
        invalid("UnsupportedByTransport", path, `the ${transport.value.name} transport (kind ${kind}) does not support ${what}`)
      if (Object.keys(job.secrets).length > 0 && !caps.secrets) {
        return yield* refuse("job.secrets", "secrets (it has no secure channel for them); remove them or use another transport")
      }
      if (job.stdin !== undefined && !caps.stdin) return yield* refuse("job.stdin", "stdin")
      if (policy.runAs !== undefined && !caps.runAs) return yield* refuse("policy.runAs", "run-as")
      if ((job.files?.length ?? 0) > 0 && caps.files !== true) {
        return yield* refuse("job.files", "shipping files with the job; remove them or use another transport")
      }
      if (job.source._tag === "Native" && (!caps.native || job.source.transport !== transport.value.name)) {
        return yield* refuse("job.source", `native documents for ${job.source.transport}`)
      }
      routes.set(kind, transport.value)
    }
    const source = yield* resolveSource(job.source)
    const files = yield* resolveFiles(job, policy)
    const secrets: Array<Redacted.Redacted<string>> = Object.values(job.secrets)
    if (policy.runAs?.password !== undefined) secrets.push(policy.runAs.password)
    const total = targets.length
    const capture = plan.captureBytes ?? DEFAULT_CAPTURE
    return {
      plan,
      runId: plan.runId ?? globalThis.crypto.randomUUID(),
      routes,
      source,
      stdin: job.stdin === undefined ? undefined : typeof job.stdin === "string" ? new TextEncoder().encode(job.stdin) : job.stdin,
      files,
      redactor: Redactor.make(secrets),
      concurrency: ExecutionPolicy.resolveAmount(policy.concurrency, total, true),
      maxErrors: policy.maxErrors === undefined ? undefined : ExecutionPolicy.resolveAmount(policy.maxErrors, total, false),
      batchSize: policy.batchSize === undefined ? total : ExecutionPolicy.resolveAmount(policy.batchSize, total, true),
      captureHead: Math.ceil(capture / 2),
      captureTail: Math.floor(capture / 2)
    }
  })

/** Checks the job's files and reads those given by path: every problem is found before anything runs. */
const resolveFiles = (
  job: ScriptSource.Job,
  policy: RunPlan["policy"]
): Effect.Effect<ReadonlyArray<Transport.ShippedFile> | undefined, InvalidPlan> =>
  Effect.gen(function*() {
    const files = job.files ?? []
    if (files.length === 0) return undefined
    if (policy.runAs !== undefined) {
      return yield* invalid(
        "InvalidValue",
        "job.files",
        "files cannot be shipped to a run-as job yet (their directory is private to the login user); remove policy.runAs or the files"
      )
    }
    if (Transport.FILES_ENV in job.env || Transport.FILES_ENV in job.secrets) {
      const where = Transport.FILES_ENV in job.env ? "env" : "secrets"
      return yield* invalid(
        "InvalidValue",
        `job.${where}.${Transport.FILES_ENV}`,
        `${Transport.FILES_ENV} names the directory of the job's files; use another name`
      )
    }
    const names = new Map<string, number>()
    const shipped: Array<Transport.ShippedFile> = []
    for (let i = 0; i < files.length; i++) {
      const file = files[i]!
      const at = `job.files[${i}]`
      const name = Schema.decodeUnknownEither(ScriptSource.FileName)(file.name)
      if (Either.isLeft(name)) {
        return yield* invalid("InvalidValue", `${at}.name`, ParseResult.TreeFormatter.formatErrorSync(name.left))
      }
      for (const [other, j] of names) {
        if (other === file.name || other.startsWith(`${file.name}/`) || file.name.startsWith(`${other}/`)) {
          return yield* invalid(
            "InvalidValue",
            `${at}.name`,
            `${JSON.stringify(file.name)} collides with job.files[${j}] (${JSON.stringify(other)}); give each file its own path`
          )
        }
      }
      names.set(file.name, i)
      if ((file.content === undefined) === (file.path === undefined)) {
        return yield* invalid("InvalidValue", at, "give the file's content or its path, exactly one of them")
      }
      const bytes = file.content !== undefined
        ? typeof file.content === "string" ? new TextEncoder().encode(file.content) : file.content
        : yield* readLocal(file.path!, `${at}.path`)
      shipped.push({ name: file.name, bytes, mode: file.mode ?? 0o600 })
    }
    return shipped
  })

/** Reads a local file of the plan (`what`: how messages call it), `FileUnreadable` at `at` if it cannot. */
const readLocal = (path: string, at: string, what = "file"): Effect.Effect<Uint8Array, InvalidPlan> =>
  Effect.gen(function*() {
    const fs = yield* Effect.serviceOption(FileSystem.FileSystem)
    if (Option.isNone(fs)) {
      return yield* invalid("FileUnreadable", at, `reading a ${what} needs a FileSystem layer (e.g. NodeContext.layer)`)
    }
    return yield* fs.value.readFile(path).pipe(
      Effect.mapError((e) => invalid("FileUnreadable", at, `cannot read ${what} ${path}: ${e.message}`))
    )
  })

const interpreterFromShebang = (text: string): ScriptSource.Interpreter => {
  const first = text.startsWith("#!") ? text.slice(0, text.indexOf("\n") === -1 ? undefined : text.indexOf("\n")) : ""
  if (/\bbash\b/.test(first)) return "bash"
  if (/\bpython[0-9.]*\b/.test(first)) return "python"
  if (/\bpwsh\b|\bpowershell\b/.test(first)) return "powershell"
  return "sh"
}

const hex = (bytes: ArrayBuffer) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("")

const resolveSource = (source: ScriptSource.ScriptSource): Effect.Effect<ScriptSource.ResolvedSource, InvalidPlan> => {
  switch (source._tag) {
    case "Command":
    case "Script":
    case "Native":
      return Effect.succeed(source)
    case "File":
      return Effect.map(readLocal(source.path, "job.source.path", "script file"), (bytes) => {
        const text = new TextDecoder().decode(bytes)
        return new ScriptSource.Script({ text, interpreter: source.interpreter ?? interpreterFromShebang(text) })
      })
    case "Url":
      return Effect.gen(function*() {
        const client = yield* Effect.serviceOption(HttpClient.HttpClient)
        if (Option.isNone(client)) {
          return yield* invalid("FetchFailed", "job.source.url", "fetching a script url needs an HttpClient layer (e.g. FetchHttpClient.layer)")
        }
        const fetchFailed = (why: string) => invalid("FetchFailed", "job.source.url", `cannot fetch ${source.url}: ${why}`)
        const response = yield* client.value.get(source.url).pipe(
          Effect.mapError((e) => fetchFailed(e.message)),
          Effect.flatMap((r) =>
            r.status >= 200 && r.status < 300
              ? Effect.mapError(r.arrayBuffer, (e) => fetchFailed(e.message))
              : Effect.fail(fetchFailed(`HTTP status ${r.status}`))
          ),
          Effect.scoped
        )
        const digest = hex(yield* Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", response)))
        if (digest !== source.sha256.toLowerCase()) {
          return yield* invalid(
            "ChecksumMismatch",
            "job.source.sha256",
            `the script at ${source.url} has sha256 ${digest}, expected ${source.sha256.toLowerCase()}; nothing was run`
          )
        }
        const text = new TextDecoder().decode(response)
        return new ScriptSource.Script({ text, interpreter: source.interpreter ?? interpreterFromShebang(text) })
      })
  }
}

const executionsBy = memoize((tag: string) => Metric.tagged(Metrics.executions, "outcome", tag))
const durationBy = memoize((tag: string) => Metric.tagged(Metrics.executionDuration, "outcome", tag))
const bytesBy = {
  stdout: Metric.tagged(Metrics.outputBytes, "stream", "stdout"),
  stderr: Metric.tagged(Metrics.outputBytes, "stream", "stderr")
}

function memoize<A>(f: (key: string) => A): (key: string) => A {
  const cache = new Map<string, A>()
  return (key) => {
    let value = cache.get(key)
    if (value === undefined) cache.set(key, value = f(key))
    return value
  }
}

type Limit = { readonly ms: number; readonly limit: "timeout" | "deadline" }

type Attempt =
  | { readonly _tag: "Exit"; readonly status: Transport.ExitStatus }
  | { readonly _tag: "Error"; readonly error: TransportError }
  | { readonly _tag: "TimedOut"; readonly phase: "delivery" | "execution"; readonly killConfirmed: boolean; readonly limit: Limit["limit"] }

const execute = (
  prepared: Prepared,
  emitExternal: ((event: RunEvent.RunEvent) => Effect.Effect<unknown>) | undefined,
  options: RunOptions
): Effect.Effect<RunReport.RunReport> =>
  Effect.scoped(Effect.gen(function*() {
    const { plan, redactor, runId } = prepared
    const { policy, targets } = plan
    const startedAt = yield* Clock.currentTimeMillis
    const deadlineAt = policy.deadline === undefined ? undefined : startedAt + Duration.toMillis(policy.deadline)
    const warnings: Array<string> = []

    // sinks, opened for the run and closed (flushed) after the last event
    const handles: Array<{ readonly name: string; readonly handle: SinkHandle; broken: boolean }> = []
    for (const sink of plan.sinks ?? []) {
      const handle = yield* sink.open({ runId, targets }).pipe(
        Effect.catchAll((e) => {
          warnings.push(redactor.text(e.message))
          return Effect.succeed(undefined)
        })
      )
      if (handle !== undefined) handles.push({ name: sink.name, handle, broken: false })
    }
    const listening = handles.length > 0 || emitExternal !== undefined
    const serialize = yield* makeSerialize
    // one writer per sink, built once (emit runs per output chunk): a failing sink stops, with a warning
    const writers = handles.map((h) => {
      const stop = (e: OutputSinkError) =>
        Effect.sync(() => {
          h.broken = true
          warnings.push(`output sink ${h.name} stopped: ${redactor.text(e.message)}`)
        })
      return (event: RunEvent.RunEvent): Effect.Effect<void> =>
        Effect.suspend(() => (h.broken ? Effect.void : Effect.catchAll(h.handle.write(event), stop)))
    })
    const writeAll = (event: RunEvent.RunEvent, from: number): Effect.Effect<void> =>
      from < writers.length
        ? from === writers.length - 1 && emitExternal === undefined
          ? writers[from]!(event)
          : Effect.zipRight(writers[from]!(event), Effect.suspend(() => writeAll(event, from + 1)))
        : emitExternal === undefined
        ? Effect.void
        : Effect.asVoid(emitExternal(event))
    const emit = (event: RunEvent.RunEvent): Effect.Effect<void> =>
      !listening ? Effect.void : serialize(writeAll(event, 0))

    const outcomes = new Map<string, Outcome.Outcome>()
    const counts: Record<string, number> = {}
    for (const tag of Outcome.tags) counts[tag] = 0
    let failures = 0
    let running = 0

    const budgetExhausted = () => prepared.maxErrors !== undefined && failures > prepared.maxErrors

    const finish = (outcome: Outcome.Outcome): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (outcomes.has(outcome.targetId)) return
        outcomes.set(outcome.targetId, outcome)
        counts[outcome._tag] = (counts[outcome._tag] ?? 0) + 1
        if (Outcome.isFailure(outcome)) failures++
        yield* Metric.increment(executionsBy(outcome._tag))
        if (outcome._tag !== "Skipped") yield* Metric.update(durationBy(outcome._tag), outcome.durationMs)
        if (listening) {
          const at = yield* Clock.currentTimeMillis
          yield* emit(new RunEvent.Finished({ targetId: outcome.targetId, at, outcome }, true))
          yield* emit(
            new RunEvent.Progress({ at, total: targets.length, done: outcomes.size, running, counts: { ...counts } }, true)
          )
        }
      })

    const skipped = (target: Target, why: Outcome.Skipped["why"]) =>
      Outcome.unsafeMake(Outcome.Skipped, {
        targetId: target.id,
        kind: target.kind,
        attempts: 0,
        durationMs: 0,
        stdout: Outcome.emptyCapture,
        stderr: Outcome.emptyCapture,
        why
      })

    const errorInfo = (error: TransportError): Outcome.ErrorInfo => ({
      reason: error.reason,
      transport: error.transport,
      phase: error.phase,
      message: redactor.text(error.message),
      ...(error.detail === undefined ? {} : { detail: redactor.value(error.detail) })
    })

    const limitFor = (now: number): Option.Option<Limit> | "expired" => {
      const timeout = policy.timeout === undefined ? undefined : Duration.toMillis(policy.timeout)
      if (deadlineAt === undefined) return timeout === undefined ? Option.none() : Option.some({ ms: timeout, limit: "timeout" })
      const remaining = deadlineAt - now
      if (remaining <= 0) return "expired"
      return timeout !== undefined && timeout <= remaining
        ? Option.some({ ms: timeout, limit: "timeout" })
        : Option.some({ ms: remaining, limit: "deadline" })
    }

    const schedule = ExecutionPolicy.retrySchedule(policy)

    const runTarget = (target: Target): Effect.Effect<void> => {
      const transport = prepared.routes.get(target.kind)!
      let attempts = 0
      let firstStart: number | undefined
      // what the current attempt holds, for cancellation
      let current: { scope: Scope.CloseableScope; execution: Transport.Execution | undefined } | undefined
      let stdout = Outcome.emptyCapture
      let stderr = Outcome.emptyCapture

      const attemptOnce = (limit: Option.Option<Limit>): Effect.Effect<Attempt> =>
        Effect.gen(function*() {
          attempts++
          const attempt = attempts
          const at = yield* Clock.currentTimeMillis
          firstStart ??= at
          if (listening) yield* emit(new RunEvent.Started({ targetId: target.id, attempt, at }, true))
          const scope = yield* Scope.make()
          const state: { scope: Scope.CloseableScope; execution: Transport.Execution | undefined } = {
            scope,
            execution: undefined
          }
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
          const flush = Effect.gen(function*() {
            const at = yield* Clock.currentTimeMillis
            yield* deliver("stdout", redactors.stdout.end(), at)
            yield* deliver("stderr", redactors.stderr.end(), at)
          })
          const body = Effect.gen(function*() {
            const execution = yield* Scope.extend(transport.start(target, invocation(prepared, target, attempt)), scope)
            state.execution = execution
            yield* execution.pump((chunk) => {
              bytesBy[chunk.stream].unsafeUpdate(chunk.bytes.length, metricLabels)
              return deliver(chunk.stream, redactors[chunk.stream].push(chunk.bytes), chunk.at)
            })
            return yield* execution.exit
          })
          const settle = Effect.sync(() => {
            stdout = captures.stdout.result()
            stderr = captures.stderr.result()
          })
          const outcome: Attempt = yield* Option.match(limit, {
            onNone: () => Effect.either(body).pipe(Effect.map(Option.some<Either.Either<Transport.ExitStatus, TransportError>>)),
            onSome: (l) => Effect.either(body).pipe(Effect.timeoutOption(Duration.millis(l.ms)))
          }).pipe(
            Effect.flatMap((result) =>
              Option.match(result, {
                onSome: (either): Effect.Effect<Attempt> =>
                  Effect.as(
                    Scope.close(scope, Exit.void),
                    Either.match(either, {
                      onLeft: (error): Attempt => ({ _tag: "Error", error }),
                      onRight: (status): Attempt => ({ _tag: "Exit", status })
                    })
                  ),
                onNone: (): Effect.Effect<Attempt> =>
                  Effect.gen(function*() {
                    yield* Scope.close(scope, Exit.void)
                    const confirmed = state.execution === undefined ? true : yield* state.execution.killConfirmed
                    return {
                      _tag: "TimedOut",
                      phase: state.execution === undefined ? "delivery" : "execution",
                      killConfirmed: confirmed,
                      limit: Option.getOrThrow(limit).limit
                    }
                  })
              })
            ),
            Effect.zipLeft(flush),
            Effect.ensuring(settle)
          )
          current = undefined
          return outcome
        })

      const toOutcome = (attempt: Attempt, endedAt: number): Outcome.Outcome => {
        const common = {
          targetId: target.id,
          kind: target.kind,
          attempts,
          startedAt: firstStart ?? endedAt,
          endedAt,
          durationMs: endedAt - (firstStart ?? endedAt),
          stdout,
          stderr
        }
        switch (attempt._tag) {
          case "Exit":
            return attempt.status._tag === "Signaled"
              ? Outcome.unsafeMake(Outcome.Signaled, { ...common, signal: attempt.status.signal })
              : attempt.status.code === 0
              ? Outcome.unsafeMake(Outcome.Succeeded, common)
              : Outcome.unsafeMake(Outcome.Failed, { ...common, exitCode: attempt.status.code })
          case "TimedOut":
            return Outcome.unsafeMake(Outcome.TimedOut, {
              ...common,
              phase: attempt.phase,
              killConfirmed: attempt.killConfirmed,
              limit: attempt.limit
            })
          case "Error": {
            const error = errorInfo(attempt.error)
            const cls = classify(attempt.error.reason)
            return cls === "Unreachable"
              ? Outcome.unsafeMake(Outcome.Unreachable, { ...common, error })
              : cls === "Rejected"
              ? Outcome.unsafeMake(Outcome.Rejected, { ...common, error })
              : Outcome.unsafeMake(Outcome.TransportFailed, { ...common, error, remoteState: "unknown" })
          }
        }
      }

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
            if (attempts === 0) return yield* finish(skipped(target, "Deadline"))
            return yield* finish(toOutcome({ _tag: "TimedOut", phase: "delivery", killConfirmed: true, limit: "deadline" }, now))
          }
          running++
          const attempt = yield* Effect.ensuring(attemptOnce(limit), Effect.sync(() => running--))
          const retry = retryable(attempt)
          if (Option.isSome(retry) && !(limit._tag === "Some" && limit.value.limit === "deadline" && attempt._tag === "TimedOut")) {
            driver ??= yield* Schedule.driver(schedule)
            const next = yield* Effect.either(driver.next(undefined))
            if (Either.isRight(next)) {
              const at = yield* Clock.currentTimeMillis
              yield* Metric.increment(Metrics.retries)
              yield* Effect.logDebug(`retrying ${target.id} after attempt ${attempts}: ${retry.value.message}`)
              yield* emit(new RunEvent.Retrying({ targetId: target.id, attempt: attempts, at, error: retry.value }, true))
              continue
            }
          }
          return yield* finish(toOutcome(attempt, yield* Clock.currentTimeMillis))
        }
      })

      return Effect.suspend(() => {
        if (budgetExhausted()) return finish(skipped(target, "BudgetExhausted"))
        return loop.pipe(
          Effect.onInterrupt(() =>
            Effect.gen(function*() {
              const cur = current
              let confirmed = true
              if (cur !== undefined) {
                yield* Scope.close(cur.scope, Exit.void)
                confirmed = cur.execution === undefined ? true : yield* cur.execution.killConfirmed
              }
              const endedAt = yield* Clock.currentTimeMillis
              yield* finish(
                Outcome.unsafeMake(Outcome.Cancelled, {
                  targetId: target.id,
                  kind: target.kind,
                  attempts,
                  startedAt: firstStart ?? endedAt,
                  endedAt,
                  durationMs: endedAt - (firstStart ?? endedAt),
                  stdout,
                  stderr,
                  confirmed
                })
              )
            })
          ),
          Effect.withSpan("Runner.execute", {
            attributes: { "runcmd.target.id": target.id, "runcmd.target.kind": target.kind, "runcmd.transport": transport.name },
            captureStackTrace: false
          })
        )
      })
    }

    yield* emit(
      new RunEvent.RunStarted({ runId, at: startedAt, targets: targets.map((t) => ({ id: t.id, kind: t.kind })) })
    )

    const waves: Array<ReadonlyArray<Target>> = []
    for (let i = 0; i < targets.length; i += prepared.batchSize) waves.push(targets.slice(i, i + prepared.batchSize))
    const all = Effect.forEach(
      waves,
      (wave) => Effect.forEach(wave, runTarget, { concurrency: Math.min(prepared.concurrency, wave.length), discard: true }),
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
        if (!outcomes.has(t.id)) yield* finish(skipped(t, interrupted ? "Cancelled" : "BudgetExhausted"))
      }
      const endedAt = yield* Clock.currentTimeMillis
      yield* emit(new RunEvent.RunFinished({ runId, at: endedAt, interrupted }))
      return RunReport.make({
        runId,
        startedAt,
        endedAt,
        interrupted,
        outcomes: targets.map((t) => outcomes.get(t.id)!),
        warnings
      })
    })
    interrupted = yield* cancelled.pipe(
      Effect.onInterrupt(() =>
        Effect.gen(function*() {
          interrupted = true
          yield* Fiber.interrupt(fiber)
          yield* finalize
        })
      )
    )
    return yield* finalize
  }))

const invocation = (prepared: Prepared, target: Target, attempt: number): Transport.Invocation => {
  const { job, policy } = prepared.plan
  const targetEnv = (target as { readonly env?: Record<string, string> }).env
  return {
    runId: prepared.runId,
    attempt,
    source: prepared.source,
    args: job.args,
    env: targetEnv === undefined ? job.env : { ...targetEnv, ...job.env },
    secrets: job.secrets,
    stdin: prepared.stdin,
    cwd: policy.cwd,
    runAs: policy.runAs,
    killGrace: policy.killGrace,
    files: prepared.files
  }
}
