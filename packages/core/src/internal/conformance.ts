/**
 * The transport conformance suite: one table of cases, each with a POSIX sh script (real transports) and the
 * in-memory behaviour equivalent to it (`simulated`), and one set of expectations both paths share.
 *
 * @internal
 */
import { assert, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type { ExecutionPolicy } from "../ExecutionPolicy.js"
import type { InvalidPlan } from "../InvalidPlan.js"
import * as Outcome from "../Outcome.js"
import type { StreamName } from "../OutputChunk.js"
import { stdout as stdoutChunk } from "../OutputChunk.js"
import type { OutputSink } from "../OutputSink.js"
import { REPLACEMENT } from "../Redactor.js"
import * as RunEvent from "../RunEvent.js"
import * as Runner from "../Runner.js"
import * as RunPlan from "../RunPlan.js"
import * as RunReport from "../RunReport.js"
import * as ScriptSource from "../ScriptSource.js"
import type { Target } from "../Target.js"
import type { ConformanceOptions } from "../testing.js"
import * as Transport from "../Transport.js"
import { classify, type TransportError } from "../TransportError.js"
import * as C from "./conformanceCases.js"
import { type BehaviourInput, InMemory, type InMemoryTransport, Step } from "./inMemory.js"
import { drive } from "./inMemoryClock.js"

// ---------------------------------------------------------------------------------------------------------------
// options (`ConformanceOptions` is declared once, in `testing.ts`)
// ---------------------------------------------------------------------------------------------------------------

interface Declared {
  readonly liveOutput: boolean
  /** Output can be seen before the execution ends (`live` or `polled`); `final`: only after it. */
  readonly outputWhileRunning: boolean
  readonly cancel: Transport.Capabilities["cancel"]
  readonly maxOutputBytes: number | undefined
  readonly cappedOutputKeeps: "first" | "last"
  readonly textOutput: boolean
  readonly signals: boolean
  readonly stdin: boolean
  readonly secrets: boolean
}

// ---------------------------------------------------------------------------------------------------------------
// running a case
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export interface RunSpec {
  readonly job: ScriptSource.Job
  /** The in-memory behaviour equivalent to the job's script (simulated runs). */
  readonly behaviour: BehaviourInput
  /** Behaviours of particular targets (simulated runs). */
  readonly behaviours?: { readonly [targetId: string]: BehaviourInput } | undefined
  readonly targets?: ReadonlyArray<Target> | undefined
  readonly policy?: Partial<ExecutionPolicy> | undefined
  readonly captureBytes?: number | undefined
  readonly cancelWhen?: ((run: Collector) => Effect.Effect<void>) | undefined
}

/** @internal */
export interface Collector {
  readonly sink: OutputSink
  readonly events: Array<RunEvent.RunEvent>
  readonly bytes: (targetId: string, stream: StreamName) => Uint8Array
  readonly text: (targetId: string, stream: StreamName) => string
  /** Completes once the given target's stream contains `text`. */
  readonly waitForText: (targetId: string, stream: StreamName, text: string) => Effect.Effect<void>
  /** Completes once an execution started on the given target. */
  readonly waitForStarted: (targetId: string) => Effect.Effect<void>
}

/** @internal */
export interface RunResult extends Collector {
  readonly report: RunReport.RunReport
  readonly outcome: Outcome.Outcome
  readonly targets: ReadonlyArray<Target>
}

/** @internal */
export interface Ctx {
  readonly simulated: boolean
  readonly transport: Transport.Transport
  readonly memory: InMemoryTransport | undefined
  readonly declared: Declared
  readonly options: ConformanceOptions
  readonly targets: (n: number) => ReadonlyArray<Target>
  readonly killGrace: Duration.Duration
  readonly timeout: Duration.Duration
  readonly margin: number
  /** Runs a plan through the Runner (driving the TestClock when simulated). */
  readonly exec: (spec: RunSpec) => Effect.Effect<RunResult, InvalidPlan, Transport.Registry>
  /** Runs the job straight through the transport's `run` (bytes exactly as the transport delivers them). */
  readonly direct: (spec: RunSpec) => Effect.Effect<Transport.Collected, TransportError>
  /** Real transports: a helper job on a target (checks, cleanup). */
  readonly helper: (
    target: Target,
    script: string,
    args: ReadonlyArray<string>
  ) => Effect.Effect<RunResult, InvalidPlan, Transport.Registry>
}

const decoder = new TextDecoder()

const makeCollector = (): Collector => {
  const events: Array<RunEvent.RunEvent> = []
  const parts = new Map<string, Array<Uint8Array>>()
  const waiters: Array<{ readonly test: () => boolean; readonly done: Deferred.Deferred<void> }> = []
  const key = (id: string, stream: StreamName) => `${id}\u0000${stream}`
  const bytes = (id: string, stream: StreamName) => C.concat(parts.get(key(id, stream)) ?? [])
  const text = (id: string, stream: StreamName) => decoder.decode(bytes(id, stream))
  const sink: OutputSink = {
    name: "conformance-collector",
    open: () =>
      Effect.succeed({
        write: (event) =>
          Effect.suspend(() => {
            events.push(event)
            if (event._tag === "Output") {
              const k = key(event.chunk.targetId, event.chunk.stream)
              const list = parts.get(k) ?? []
              list.push(event.chunk.bytes)
              parts.set(k, list)
            }
            const ready = waiters.filter((w) => w.test())
            return Effect.forEach(ready, (w) => Deferred.succeed(w.done, undefined), { discard: true })
          })
      })
  }
  const waitFor = (test: () => boolean) =>
    Effect.gen(function*() {
      if (test()) return
      const done = yield* Deferred.make<void>()
      waiters.push({ test, done })
      yield* Deferred.await(done)
    })
  const waitForText = (id: string, stream: StreamName, t: string) => waitFor(() => text(id, stream).includes(t))
  const waitForStarted = (id: string) => waitFor(() => events.some((e) => e._tag === "Started" && e.targetId === id))
  return { sink, events, bytes, text, waitForText, waitForStarted }
}

const sh = (text: string) => ScriptSource.script(text, "sh")

/** Structural checks every run must pass: the event stream agrees with the report. */
const checkRun = (result: RunResult) => {
  const { events, report, targets } = result
  assert.strictEqual(report.outcomes.length, targets.length, "one outcome per target")
  assert.deepStrictEqual(report.outcomes.map((o) => o.targetId), targets.map((t) => t.id), "outcomes in target order")
  assert.strictEqual(events[0]?._tag, "RunStarted", "the first event is RunStarted")
  assert.strictEqual(events[events.length - 1]?._tag, "RunFinished", "the last event is RunFinished")
  const encode = Schema.encodeSync(Outcome.Outcome)
  for (const o of report.outcomes) {
    const finished = events.filter((e): e is RunEvent.Finished => e._tag === "Finished" && e.targetId === o.targetId)
    assert.strictEqual(finished.length, 1, `exactly one Finished event for ${o.targetId}`)
    assert.deepStrictEqual(
      encode(finished[0]!.outcome),
      encode(o),
      `the Finished event of ${o.targetId} is its outcome`
    )
    const started = events.filter((e) => e._tag === "Started" && e.targetId === o.targetId).length
    assert.strictEqual(started, o.attempts, `one Started event per attempt for ${o.targetId}`)
    assert.isAtLeast(o.durationMs, 0)
    if (o.startedAt !== undefined && o.endedAt !== undefined) assert.isAtMost(o.startedAt, o.endedAt)
  }
  // per target and stream, chunk sequence numbers count up from 0 within each attempt: a gap is lost output
  const next = new Map<string, number>()
  for (const e of events) {
    if (e._tag === "Started") {
      next.set(`${e.targetId}\u0000stdout`, 0)
      next.set(`${e.targetId}\u0000stderr`, 0)
    } else if (e._tag === "Output") {
      const k = `${e.chunk.targetId}\u0000${e.chunk.stream}`
      const expected = next.get(k) ?? 0
      assert.strictEqual(e.chunk.seq, expected, `output of ${e.chunk.targetId} ${e.chunk.stream}: seq without gaps`)
      next.set(k, expected + 1)
    }
  }
}

/** @internal */
export const makeCtx = (options: ConformanceOptions) =>
  Effect.gen(function*() {
    const simulated = options.simulated === true
    const registry = yield* Transport.Registry
    const sample = options.targets(1)
    assert.isAtLeast(sample.length, 1, "options.targets(1) must give a target")
    const kind = sample[0]!.kind
    const found = registry.get(kind)
    if (Option.isNone(found)) {
      return yield* Effect.dieMessage(
        `the layer registers no transport for target kind ${JSON.stringify(kind)} (registered: ${
          registry.kinds().join(", ") || "none"
        })`
      )
    }
    const transport = found.value
    const memory = Option.getOrUndefined(yield* Effect.serviceOption(InMemory))
    if (simulated && memory === undefined) {
      return yield* Effect.dieMessage(
        "simulated: true needs a layer that also provides InMemory (InMemoryTransport.layer)"
      )
    }
    const caps = transport.capabilities
    const declared: Declared = {
      liveOutput: options.liveOutput ?? caps.output === "live",
      outputWhileRunning: options.liveOutput === true || caps.output !== "final",
      cancel: options.cancel ?? caps.cancel,
      maxOutputBytes: options.maxOutputBytes ?? caps.maxInlineOutputBytes,
      cappedOutputKeeps: options.cappedOutputKeeps ?? "first",
      textOutput: options.textOutput === true,
      signals: options.signals ?? true,
      stdin: caps.stdin,
      secrets: caps.secrets
    }
    const killGrace = Duration.decode(options.killGrace ?? Duration.seconds(1))
    const timeout = Duration.decode(options.timeout ?? Duration.seconds(2))
    const margin = Duration.toMillis(options.margin ?? (simulated ? 0 : Duration.seconds(5)))
    const run = <A, E, R>(effect: Effect.Effect<A, E, R>) => (simulated ? drive(effect) : effect)

    const configure = (spec: RunSpec) =>
      Effect.gen(function*() {
        if (memory === undefined) return
        yield* memory.reset
        yield* memory.setDefault(spec.behaviour)
        for (const [id, b] of Object.entries(spec.behaviours ?? {})) yield* memory.setBehaviour(id, b)
      })

    const exec = (spec: RunSpec) =>
      Effect.gen(function*() {
        const targets = spec.targets ?? options.targets(1)
        yield* configure(spec)
        const collector = makeCollector()
        const plan = RunPlan.make({
          targets,
          job: spec.job,
          policy: { killGrace, ...spec.policy },
          sinks: [collector.sink],
          ...(spec.captureBytes === undefined ? {} : { captureBytes: spec.captureBytes })
        })
        const cancelWhen = spec.cancelWhen?.(collector)
        const report = yield* run(Runner.run(plan, cancelWhen === undefined ? {} : { cancelWhen }))
        const result: RunResult = { ...collector, report, outcome: report.outcomes[0]!, targets }
        checkRun(result)
        if (memory !== undefined) {
          assert.strictEqual(yield* memory.running, 0, "every execution ended or was killed when the run returned")
        }
        return result
      })

    const direct = (spec: RunSpec) =>
      Effect.gen(function*() {
        const target = (spec.targets ?? options.targets(1))[0]!
        yield* configure(spec)
        const source = spec.job.source
        if (source._tag !== "Command" && source._tag !== "Script") {
          return yield* Effect.dieMessage("direct runs take a Command or a Script")
        }
        const invocation: Transport.Invocation = {
          runId: `conformance-${C.randomHex(4)}`,
          attempt: 1,
          source,
          args: spec.job.args,
          env: spec.job.env,
          secrets: spec.job.secrets,
          stdin: typeof spec.job.stdin === "string" ? C.bytes(spec.job.stdin) : spec.job.stdin,
          killGrace
        }
        return yield* run(transport.run(target, invocation))
      })

    const helper = (target: Target, script: string, args: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const on = options.helperTarget?.(target) ?? target
        const r = yield* exec({ job: ScriptSource.job(sh(script), { args }), behaviour: [Step.exit(0)], targets: [on] })
        if (on.id === target.id) return r
        // read by the case's target id: the helper's output is that target's check
        const id = (targetId: string) => (targetId === target.id ? on.id : targetId)
        return {
          ...r,
          bytes: (targetId: string, stream: StreamName) => r.bytes(id(targetId), stream),
          text: (targetId: string, stream: StreamName) => r.text(id(targetId), stream)
        }
      })

    const ctx: Ctx = {
      simulated,
      transport,
      memory,
      declared,
      options,
      targets: options.targets,
      killGrace,
      timeout,
      margin,
      exec,
      direct,
      helper
    }
    return ctx
  })

// ---------------------------------------------------------------------------------------------------------------
// shared expectations
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const text = (c: Outcome.Captured) => Outcome.capturedText(c)

/** @internal */
export const expectTag = <T extends Outcome.OutcomeTag>(
  o: Outcome.Outcome,
  tag: T
): Extract<Outcome.Outcome, { _tag: T }> => {
  assert.strictEqual(o._tag, tag, `outcome of ${o.targetId}: ${JSON.stringify(Schema.encodeSync(Outcome.Outcome)(o))}`)
  return o as Extract<Outcome.Outcome, { _tag: T }>
}

const normalizeSignal = (s: string) => (s.startsWith("SIG") ? s : `SIG${s}`)

/** A death by `signal`: `Signaled{signal}` (canonical `SIG` names), or, declared without signals, `Failed{128+n}`. */
const expectSignal = (ctx: Ctx, o: Outcome.Outcome, signal: string) => {
  if (ctx.declared.signals) {
    const s = expectTag(o, "Signaled")
    assert.strictEqual(s.signal, signal, "signal names are canonical (SIGKILL, SIGTERM)")
  } else {
    assert.notStrictEqual(o._tag, "Succeeded", "a death by a signal is never Succeeded")
    if (o._tag === "Signaled") assert.strictEqual(normalizeSignal(o.signal), signal)
    else assert.strictEqual(expectTag(o, "Failed").exitCode, 128 + C.signalNumbers[signal]!, "declared signals: false")
  }
}

/** What a script's bytes look like once they came back: as written, or (declared `textOutput`) decoded as UTF-8. */
const asDelivered = (ctx: Ctx, expected: Uint8Array): Uint8Array =>
  ctx.declared.textOutput ? C.bytes(decoder.decode(expected)) : expected

/** The output is over the declared service cap: the transport must flag it truncated. */
/** @internal */
export const overCap = (ctx: Ctx, expected: Uint8Array): boolean =>
  ctx.declared.maxOutputBytes !== undefined && expected.length > ctx.declared.maxOutputBytes

/**
 * Output that must arrive whole (as the script wrote it, or its UTF-8 decoding when declared `textOutput`), or,
 * under a declared service cap, as a whole part of it: its first bytes (at least the cap), or its last bytes (at
 * least half the cap: a transport's own protocol lines may share the service's cap, and are taken out).
 */
const expectBytes = (ctx: Ctx, got: Uint8Array, written: Uint8Array, what: string) => {
  const expected = asDelivered(ctx, written)
  const cap = ctx.declared.maxOutputBytes
  if (cap === undefined || expected.length <= cap) {
    assert.isTrue(C.sameBytes(got, expected), `${what}: ${C.firstDifference(got, expected)}`)
  } else if (ctx.declared.cappedOutputKeeps === "first") {
    assert.isAtLeast(got.length, cap, `${what}: at least the declared ${cap} bytes arrive`)
    assert.isTrue(
      C.sameBytes(got, expected.subarray(0, got.length)),
      `${what}: what arrives is the start of the output`
    )
  } else {
    assert.isAtLeast(got.length, Math.floor(cap / 2), `${what}: the last bytes arrive (declared cap ${cap})`)
    assert.isAtMost(got.length, cap, `${what}: no more than the declared cap ${cap}`)
    assert.isTrue(
      C.sameBytes(got, expected.subarray(expected.length - got.length)),
      `${what}: what arrives is the end of the output, whole`
    )
  }
}

/** Simulated runs: a service cap that cuts the stream says so, as a real transport's does. */
const simulatedCut = (ctx: Ctx, stream: StreamName, written: Uint8Array) =>
  overCap(ctx, written)
    ? { truncated: { [stream]: `simulated: the service keeps ${ctx.declared.maxOutputBytes} bytes of ${stream}` } }
    : {}

/** Under a declared cap, output over it is flagged as cut by the service, naming the cap and how to get it all. */
const expectServiceTruncation = (ctx: Ctx, captured: Outcome.Captured, written: Uint8Array, what: string) => {
  if (!overCap(ctx, written)) return
  assert.isTrue(captured.truncated, `${what}: over the declared cap of ${ctx.declared.maxOutputBytes} bytes: truncated`)
  assert.isString(captured.truncatedBy, `${what}: truncatedBy says what cut the output and how to get all of it`)
  assert.isAbove(captured.truncatedBy!.length, 0)
}

/** Honest kill reporting: `kills` → confirmed; `none` → never confirmed; `best-effort` → either. */
/** @internal */
export const expectConfirmation = (ctx: Ctx, confirmed: boolean) => {
  if (ctx.declared.cancel === "kills") assert.isTrue(confirmed, "cancel: kills → the kill is confirmed")
  if (ctx.declared.cancel === "none") assert.isFalse(confirmed, "cancel: none → a kill is never reported confirmed")
}

/** Real transports: the processes a case printed are gone (checked on the target). */
/** @internal */
export const expectGone = (ctx: Ctx, target: Target, pids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    if (ctx.simulated || pids.length === 0) return
    const check = yield* ctx.helper(target, C.allGoneScript(10), pids)
    assert.strictEqual(
      check.outcome._tag,
      "Succeeded",
      `the processes of the killed execution are gone: ${text(check.outcome.stdout)}${text(check.outcome.stderr)}`
    )
  })

/**
 * How long the scripts a case kills would run on their own: a minute, or, when the transport cannot end them
 * (`cancel: "none"`), a few seconds past the timeout, so the execution that goes on frees its target soon.
 */
const holdSeconds = (ctx: Ctx): number =>
  ctx.declared.cancel === "none" ? Math.ceil(Duration.toMillis(ctx.timeout) / 1000) + 3 : 60

/** The process-table check found processes carrying the mark (it exits 0 only when none is left). */
const foundMarked = (r: RunResult) => r.outcome._tag !== "Succeeded" && text(r.outcome.stdout).includes("pid ")

/** Where a case checks the process table: its target, or, under `cancel: "none"`, a second one (see `testing.ts`). */
const checkTarget = (ctx: Ctx, target: Target): Target => ctx.declared.cancel === "none" ? ctx.targets(2)[1]! : target

/**
 * Output only at the end: the execution on `target` is known to run once the process table shows processes
 * carrying the case's mark (polled from {@link checkTarget}).
 */
const seenRunning = (ctx: Ctx, run: Collector, target: Target, hex: string) =>
  run.waitForStarted(target.id).pipe(
    Effect.zipRight(
      ctx.helper(checkTarget(ctx, target), C.markedProcessesScript, [hex, "0", "check"]).pipe(
        Effect.filterOrFail(foundMarked),
        Effect.retry({ schedule: Schedule.spaced(Duration.millis(250)), times: 120 })
      )
    )
  )

/**
 * Under `cancel: "none"` the execution a case ended goes on: its processes (found by the case's mark) are killed,
 * then the case waits until its target takes a job again (the service refuses one while another runs).
 */
const endLeftovers = (ctx: Ctx, target: Target, hex: string) =>
  ctx.simulated || ctx.declared.cancel !== "none"
    ? Effect.void
    : killMarked(ctx, checkTarget(ctx, target), hex).pipe(
      Effect.zipRight(Effect.ignore(Effect.exit(ctx.helper(target, "exit 0\n", []))))
    )

const cleanup = (ctx: Ctx, target: Target, pids: () => ReadonlyArray<string>) =>
  Effect.suspend(() =>
    ctx.simulated || pids().length === 0
      ? Effect.void
      : Effect.ignore(Effect.exit(ctx.helper(target, C.cleanupScript, pids())))
  )

/**
 * Runs `cleanup` after `self` succeeded or failed (not when interrupted), in the normal, interruptible flow:
 * a cleanup job is a Runner run, whose timeouts and fibers need interruption (a finalizer would run it
 * uninterruptibly).
 */
/** @internal */
export const andThenCleanup =
  <R2>(cleanup: Effect.Effect<void, never, R2>) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | R2> =>
    Effect.flatMap(Effect.exit(self), (exit) => Effect.zipRight(cleanup, exit))

/** @internal */
export const secretsIn = (
  result: { readonly report: RunReport.RunReport; readonly events: ReadonlyArray<RunEvent.RunEvent> },
  secret: string
) => {
  const places: Array<string> = []
  if (RunReport.encodeJson(result.report).includes(secret)) places.push("the report")
  const encode = Schema.encodeSync(RunEvent.RunEventJson)
  result.events.forEach((e, i) => {
    const json = JSON.stringify(encode(e))
    const chunkText = e._tag === "Output" ? decoder.decode(e.chunk.bytes) : ""
    if (json.includes(secret) || chunkText.includes(secret)) places.push(`event ${i} (${e._tag})`)
  })
  return places
}

// ---------------------------------------------------------------------------------------------------------------
// the process tree, checked from the process table (real transports)
// ---------------------------------------------------------------------------------------------------------------

/**
 * A case of the suite as a value: registered by {@link conformance}, or run directly by a test of the suite itself
 * ({@link runCase}).
 *
 * @internal
 */
export interface Case {
  readonly title: string
  readonly run: (ctx: Ctx) => Effect.Effect<void, unknown, Transport.Registry>
}

/**
 * KILLs every process of the target carrying the mark, in a fiber of its own (a finalizer runs uninterruptibly,
 * and a helper run needs interruption for its timeouts), bounded by the helper's own timeout.
 */
/** @internal */
export const killMarked = (ctx: Ctx, target: Target, hex: string) =>
  ctx.simulated ? Effect.void : Effect.ignore(
    Effect.exit(ctx.exec({
      job: ScriptSource.job(sh(C.markedProcessesScript), { args: [hex, "10", "kill"] }),
      behaviour: [Step.exit(0)],
      targets: [target],
      policy: { timeout: Duration.seconds(30) }
    }))
  ).pipe(Effect.interruptible, Effect.forkDaemon, Effect.flatMap(Fiber.await), Effect.asVoid)

/**
 * The execution's scope is closed early (by its timeout, or by a cancel) while a grandchild in a session of its
 * own ignores TERM and HUP. Afterwards the target's process table, searched for the case's mark (in the
 * environment every descendant inherits and in the grandchild's argv), must hold none of the execution's processes
 * (`cancel: "kills"`), and the kill must be reported as it is: confirmed under `"kills"`, and never confirmed with
 * a process left. Under `cancel: "none"` (the service cannot end an execution) the kill is reported unconfirmed and
 * the processes are indeed still there; the checks then run on a second target, the first one being busy with the
 * execution that goes on. With output only at the end, the process table, not the output, shows the grandchild
 * running.
 */
const killTreeCase = (path: "timeout" | "cancel"): Case => ({
  title: path === "timeout"
    ? "timeout kills a setsid grandchild ignoring TERM and HUP: none of the execution's processes is left in the process table, killConfirmed told truthfully (declared cancel: none → they are left, unconfirmed)"
    : "cancel kills a setsid grandchild ignoring TERM and HUP: none of the execution's processes is left in the process table, confirmed told truthfully (declared cancel: none → they are left, unconfirmed)",
  run: (ctx) => {
    const target = ctx.targets(1)[0]!
    const none = ctx.declared.cancel === "none"
    const checkOn = checkTarget(ctx, target)
    const { hex, mark } = C.newMark()
    return Effect.gen(function*() {
      if (ctx.simulated) return
      const context = yield* Effect.context<Transport.Registry>()
      const check = (seconds: number) => ctx.helper(checkOn, C.markedProcessesScript, [hex, String(seconds), "check"])
      const found = foundMarked
      // cancel path: before the cancel, the same check must see the running grandchild (a check that sees
      // nothing proves nothing: e.g. a process table it cannot read)
      let seenBefore: RunResult | undefined
      const running = (run: Collector) =>
        ctx.declared.outputWhileRunning
          ? run.waitForText(target.id, "stdout", "grandchild ").pipe(Effect.zipRight(check(0)))
          : seenRunning(ctx, run, target, hex)
      const seeThenCancel = (run: Collector) =>
        running(run).pipe(
          Effect.tap((r) => Effect.sync(() => (seenBefore = r))),
          Effect.provide(context),
          Effect.exit,
          Effect.asVoid
        )
      const r = yield* ctx.exec({
        job: ScriptSource.job(sh(C.setsidGrandchildScript(mark, path === "timeout")), {
          env: { [C.MARK_VARIABLE]: mark }
        }),
        behaviour: [Step.hang],
        targets: [target],
        policy: path === "timeout" ? { timeout: ctx.timeout, killGrace: ctx.killGrace } : { killGrace: ctx.killGrace },
        ...(path === "cancel" ? { cancelWhen: seeThenCancel } : {})
      })
      const stdout = r.text(target.id, "stdout")
      const stderr = r.text(target.id, "stderr")
      assert.notInclude(stderr, "no setsid", "the case needs setsid on the target")
      assert.notInclude(stdout, "never")
      const grandchild = C.pidsAfter(stdout, "grandchild")
      if (ctx.declared.outputWhileRunning) {
        assert.strictEqual(grandchild.length, 1, `the grandchild started: ${stdout}${stderr}`)
      }
      if (path === "cancel") {
        const seen = seenBefore === undefined ? "" : text(seenBefore.outcome.stdout)
        assert.include(
          seen,
          ctx.declared.outputWhileRunning ? `pid ${grandchild[0]} ` : "pid ",
          `while the execution ran, the process-table check on the target found its grandchild by the mark: ${seen}`
        )
      }
      const confirmed = path === "timeout"
        ? expectTag(r.outcome, "TimedOut").killConfirmed
        : expectTag(r.outcome, "Cancelled").confirmed
      if (path === "cancel") assert.isTrue(r.report.interrupted, "the report says the run was interrupted")
      const said = `${path === "timeout" ? "killConfirmed" : "confirmed"}: ${confirmed}`
      if (!none) {
        // the scope is closed: the transport's kill, its grace included, is over; allow for the reaping
        const seconds = Math.max(1, Math.ceil((Duration.toMillis(ctx.killGrace) + ctx.margin) / 1000))
        const after = yield* check(seconds)
        if (after.outcome._tag !== "Succeeded" && (ctx.declared.cancel === "kills" || confirmed)) {
          assert.fail(
            `${said} (declared cancel: ${ctx.declared.cancel}), yet processes of the execution are still running ` +
              `${seconds} s after its scope closed (found by the mark ${mark} in the target's process table; ` +
              `the check ended ${after.outcome._tag}):\n${text(after.outcome.stdout)}${text(after.outcome.stderr)}`
          )
        }
      } else {
        // declared cancel: none: closing the scope ended nothing, and the transport does not claim otherwise
        const after = yield* check(0)
        assert.isTrue(
          found(after),
          `${said} (declared cancel: none), so the execution's processes are still running after its scope closed; ` +
            `the process-table check found none: ${text(after.outcome.stdout)}${text(after.outcome.stderr)}`
        )
      }
      expectConfirmation(ctx, confirmed)
    }).pipe(Effect.ensuring(killMarked(ctx, checkOn, hex)))
  }
})

/**
 * The process-tree cases, run for real transports (whatever they declare: `kills` asserts the most).
 *
 * @internal
 */
export const killTreeCases: ReadonlyArray<Case> = [killTreeCase("timeout"), killTreeCase("cancel")]

/**
 * Runs one case against the transport the environment's registry serves for `options.targets`: the effect fails
 * (dies with the assertion) where the registered test would fail. For tests of the suite itself.
 *
 * @internal
 */
export const runCase = (c: Case, options: ConformanceOptions): Effect.Effect<void, unknown, Transport.Registry> =>
  Effect.flatMap(makeCtx(options), c.run)

// ---------------------------------------------------------------------------------------------------------------
// the suite
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const conformance = <E>(
  name: string,
  transportLayer: Layer.Layer<Transport.Registry, E>,
  options: ConformanceOptions
): void => {
  const simulated = options.simulated === true
  const testTimeout = options.testTimeout ?? (simulated ? 30_000 : 60_000)
  const withCtx = <A>(f: (ctx: Ctx) => Effect.Effect<A, unknown, Transport.Registry>) => () =>
    Effect.flatMap(makeCtx(options), f)

  layer(transportLayer, {
    excludeTestServices: !simulated,
    timeout: options.layerTimeout ?? Duration.seconds(60)
  })(`transport conformance: ${name}`, (it) => {
    const test = (title: string, f: (ctx: Ctx) => Effect.Effect<unknown, unknown, Transport.Registry>) =>
      it.effect(title, withCtx(f) as () => Effect.Effect<unknown, unknown, never>, testTimeout)

    test("declares what it serves and what it can do, consistently", (ctx) =>
      Effect.sync(() => {
        const ts = ctx.targets(6)
        assert.strictEqual(ts.length, 6, "options.targets(6) gives 6 targets")
        assert.strictEqual(new Set(ts.map((t) => t.id)).size, 6, "target ids are distinct")
        for (const t of ts) assert.include(ctx.transport.kinds, t.kind, "the transport serves the targets' kind")
        const caps = ctx.transport.capabilities
        if (options.liveOutput === true) {
          assert.strictEqual(caps.output, "live", "declared liveOutput, capabilities say otherwise")
        }
        if (options.cancel !== undefined) {
          assert.strictEqual(caps.cancel, options.cancel, "declared cancel differs from capabilities.cancel")
        }
        if (options.maxOutputBytes !== undefined && caps.maxInlineOutputBytes !== undefined) {
          assert.strictEqual(
            caps.maxInlineOutputBytes,
            options.maxOutputBytes,
            "declared maxOutputBytes differs from capabilities"
          )
        }
        assert.isString(ctx.transport.name)
        assert.isAbove(ctx.transport.name.length, 0)
      }))

    // -- exit codes ----------------------------------------------------------------------------------------
    for (const code of [0, 1, 255]) {
      test(`exit code ${code} is ${code === 0 ? "Succeeded" : `Failed{exitCode: ${code}}`}`, (ctx) =>
        Effect.gen(function*() {
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh(`echo "exiting ${code}"\nexit ${code}\n`)),
            behaviour: [Step.stdout(`exiting ${code}\n`), Step.exit(code)]
          })
          if (code === 0) expectTag(r.outcome, "Succeeded")
          else assert.strictEqual(expectTag(r.outcome, "Failed").exitCode, code)
          assert.strictEqual(r.outcome.attempts, 1)
          assert.strictEqual(text(r.outcome.stdout), `exiting ${code}\n`)
          assert.strictEqual(r.report.summary.byOutcome[code === 0 ? "Succeeded" : "Failed"], 1)
        }))
    }

    // -- signals -------------------------------------------------------------------------------------------
    for (const sig of ["KILL", "TERM"] as const) {
      test(`death by SIG${sig} is Signaled{signal: "SIG${sig}"} (declared signals: false → Failed{128+n}), never Succeeded`, (ctx) =>
        Effect.gen(function*() {
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh(`echo dying\nkill -s ${sig} $$\nsleep 5\necho survived\n`)),
            behaviour: [Step.stdout("dying\n"), Step.signal(`SIG${sig}`)]
          })
          expectSignal(ctx, r.outcome, `SIG${sig}`)
          assert.strictEqual(text(r.outcome.stdout), "dying\n")
        }))
    }

    test("a signal after stdin EOF is reported as the signal", (ctx) =>
      Effect.gen(function*() {
        const stdin = ctx.declared.stdin ? "line 1\nline 2\n" : undefined
        const lines = stdin === undefined ? 0 : 2
        const r = yield* ctx.exec({
          job: ScriptSource.job(
            sh(`n=$(cat | wc -l | tr -d ' ')\necho "read $n lines"\nkill -s TERM $$\nsleep 5\n`),
            stdin === undefined ? {} : { stdin }
          ),
          behaviour: [
            Step.emitWith((inv) => [stdoutChunk(`read ${countLines(inv.stdin)} lines\n`)]),
            Step.signal("SIGTERM")
          ]
        })
        expectSignal(ctx, r.outcome, "SIGTERM")
        assert.strictEqual(text(r.outcome.stdout), `read ${lines} lines\n`)
      }))

    // -- draining --------------------------------------------------------------------------------------------
    test("output written just before the exit is kept (exit resolves after the drain)", (ctx) =>
      Effect.gen(function*() {
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(`printf 'no newline at the end'\nprintf 'stderr without newline' >&2\nexit 7\n`)),
          behaviour: [Step.stdout("no newline at the end"), Step.stderr("stderr without newline"), Step.exit(7)]
        })
        assert.strictEqual(expectTag(r.outcome, "Failed").exitCode, 7)
        assert.strictEqual(r.text(r.outcome.targetId, "stdout"), "no newline at the end")
        assert.strictEqual(r.text(r.outcome.targetId, "stderr"), "stderr without newline")
        assert.strictEqual(text(r.outcome.stdout), "no newline at the end")
        assert.strictEqual(text(r.outcome.stderr), "stderr without newline")
      }))

    test("stdout and stderr are both drained, each in order", (ctx) =>
      Effect.gen(function*() {
        const n = 200
        const out = Array.from({ length: n }, (_, i) => `out ${i}\n`)
        const err = Array.from({ length: n }, (_, i) => `err ${i}\n`)
        const r = yield* ctx.exec({
          job: ScriptSource.job(
            sh(`i=0\nwhile [ "$i" -lt ${n} ]; do echo "out $i"; echo "err $i" >&2; i=$((i + 1)); done\n`)
          ),
          behaviour: out.flatMap((o, i) => [Step.stdout(o), Step.stderr(err[i]!)])
        })
        expectTag(r.outcome, "Succeeded")
        assert.strictEqual(r.text(r.outcome.targetId, "stdout"), out.join(""))
        assert.strictEqual(r.text(r.outcome.targetId, "stderr"), err.join(""))
      }))

    test("a 2 MiB flood on stderr alone does not hang the run", (ctx) =>
      Effect.gen(function*() {
        const lines = (2 * C.MiB) / 64
        const flood = C.numberedLines(lines)
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(`${C.numberedLinesScript(lines, true)}\necho done\n`)),
          behaviour: {
            steps: [Step.stderr(flood, { chunkSize: 16 * 1024 }), Step.stdout("done\n"), Step.exit(0)],
            ...simulatedCut(ctx, "stderr", flood)
          }
        })
        expectTag(r.outcome, "Succeeded")
        assert.strictEqual(r.text(r.outcome.targetId, "stdout"), "done\n")
        expectBytes(ctx, r.bytes(r.outcome.targetId, "stderr"), flood, "stderr")
        expectServiceTruncation(ctx, r.outcome.stderr, flood, "stderr")
        assert.isFalse(r.outcome.stdout.truncated, "stdout is complete")
      }))

    test("10 MiB of stdout arrive intact (declared cap: the part the service keeps, flagged truncatedBy); the report keeps a bounded head and tail with truncation flags", (ctx) =>
      Effect.gen(function*() {
        const lines = (10 * C.MiB) / 64
        const big = C.numberedLines(lines)
        const spec: RunSpec = {
          job: ScriptSource.job(sh(C.numberedLinesScript(lines, false))),
          behaviour: {
            steps: [Step.stdout(big, { chunkSize: 64 * 1024 }), Step.exit(0)],
            ...simulatedCut(ctx, "stdout", big)
          }
        }
        const collected = yield* ctx.direct(spec)
        assert.deepStrictEqual(collected.exit, Transport.exited(0))
        expectBytes(ctx, collected.stdout, big, "stdout through transport.run")
        assert.strictEqual(collected.stderr.length, 0)

        const captureBytes = 64 * 1024
        const r = yield* ctx.exec({ ...spec, captureBytes })
        expectTag(r.outcome, "Succeeded")
        const got = r.bytes(r.outcome.targetId, "stdout")
        expectBytes(ctx, got, big, "stdout through the Runner's sinks")
        const cap = r.outcome.stdout
        assert.strictEqual(cap.totalBytes, got.length, "totalBytes counts every byte")
        assert.isTrue(cap.truncated, "the capture is truncated")
        expectServiceTruncation(ctx, cap, big, "stdout")
        if (got.length > captureBytes) {
          assert.strictEqual(
            cap.droppedBytes,
            got.length - captureBytes,
            "droppedBytes: what is in neither head nor tail"
          )
          assert.strictEqual(cap.head, decoder.decode(got.subarray(0, captureBytes / 2)), "the head is the first bytes")
          assert.strictEqual(
            cap.tail,
            decoder.decode(got.subarray(got.length - captureBytes / 2)),
            "the tail is the last bytes"
          )
        } else {
          // a service cap kept less than runcmd's capture: all of it is in the report
          assert.strictEqual(cap.droppedBytes, 0, "runcmd dropped nothing")
          assert.strictEqual(cap.head + cap.tail, decoder.decode(got), "what arrived is all in the report")
        }
        assert.isFalse(r.outcome.stderr.truncated)
      }))

    test(
      options.textOutput === true
        ? "binary output (all 256 byte values) arrives on both streams as the service's UTF-8 text (declared textOutput)"
        : "binary output (all 256 byte values) arrives intact on both streams",
      (ctx) =>
        Effect.gen(function*() {
          const spec: RunSpec = {
            job: ScriptSource.job(sh(C.allBytesScript)),
            behaviour: [Step.stdout(C.allBytes), Step.stderr(C.allBytesReversed), Step.exit(0)]
          }
          const collected = yield* ctx.direct(spec)
          assert.deepStrictEqual(collected.exit, Transport.exited(0))
          expectBytes(ctx, collected.stdout, C.allBytes, "stdout through transport.run")
          expectBytes(ctx, collected.stderr, C.allBytesReversed, "stderr through transport.run")
          const r = yield* ctx.exec(spec)
          expectTag(r.outcome, "Succeeded")
          expectBytes(ctx, r.bytes(r.outcome.targetId, "stdout"), C.allBytes, "stdout through the Runner")
          expectBytes(ctx, r.bytes(r.outcome.targetId, "stderr"), C.allBytesReversed, "stderr through the Runner")
        })
    )

    // -- round trips -----------------------------------------------------------------------------------------
    const argvOf = (inv: Transport.Invocation) =>
      inv.source._tag === "Command" ? [...inv.source.argv.slice(2), ...inv.args] : [...inv.args]

    test("argv round-trips byte for byte (Command)", (ctx) =>
      Effect.gen(function*() {
        const r = yield* ctx.exec({
          job: ScriptSource.job(ScriptSource.command("printf", "%s\\0", ...C.trickyValues)),
          behaviour: [Step.emitWith((inv) => [stdoutChunk(C.nulJoined(argvOf(inv)))]), Step.exit(0)]
        })
        expectTag(r.outcome, "Succeeded")
        const got = r.bytes(r.outcome.targetId, "stdout")
        assert.isTrue(
          C.sameBytes(got, C.nulJoined(C.trickyValues)),
          `argv: ${C.firstDifference(got, C.nulJoined(C.trickyValues))}`
        )
      }))

    test("args round-trip byte for byte as a script's positional parameters", (ctx) =>
      Effect.gen(function*() {
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(`printf '%s\\0' "$@"\n`), { args: C.trickyValues }),
          behaviour: [Step.emitWith((inv) => [stdoutChunk(C.nulJoined(argvOf(inv)))]), Step.exit(0)]
        })
        expectTag(r.outcome, "Succeeded")
        const got = r.bytes(r.outcome.targetId, "stdout")
        assert.isTrue(
          C.sameBytes(got, C.nulJoined(C.trickyValues)),
          `args: ${C.firstDifference(got, C.nulJoined(C.trickyValues))}`
        )
      }))

    test("environment values round-trip byte for byte", (ctx) =>
      Effect.gen(function*() {
        const env: Record<string, string> = {}
        C.trickyValues.forEach((v, i) => {
          env[`RUNCMD_CONFORMANCE_${i}`] = v
        })
        const names = Object.keys(env)
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(`printf '%s\\0' ${names.map((n) => `"$${n}"`).join(" ")}\n`), { env }),
          behaviour: [
            Step.emitWith((inv) => [stdoutChunk(C.nulJoined(names.map((n) => inv.env[n] ?? "<unset>")))]),
            Step.exit(0)
          ]
        })
        expectTag(r.outcome, "Succeeded")
        const got = r.bytes(r.outcome.targetId, "stdout")
        assert.isTrue(
          C.sameBytes(got, C.nulJoined(C.trickyValues)),
          `env: ${C.firstDifference(got, C.nulJoined(C.trickyValues))}`
        )
      }))

    test("the working directory is honoured, whatever its name", (ctx) =>
      Effect.gen(function*() {
        const target = ctx.targets(1)[0]!
        const top = `runcmd-conformance-${C.randomHex(6)}`
        const relative = `${top}/it's a "dir" with $dollar, ünï and spaces/-dash`
        let cwd = `/srv/${relative}`
        let created = false
        if (!ctx.simulated) {
          const setup = yield* ctx.helper(
            target,
            `base=$(cd "\${TMPDIR:-/tmp}" && pwd -P) || exit 1\nmkdir -p -- "$base/$1" || exit 1\nprintf '%s' "$(cd -P -- "$base/$1" && pwd -P)"\n`,
            [relative]
          )
          assert.strictEqual(setup.outcome._tag, "Succeeded", `creating ${relative}: ${text(setup.outcome.stderr)}`)
          cwd = setup.text(target.id, "stdout")
          created = true
        }
        yield* Effect.gen(function*() {
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh(`printf '%s' "$(pwd -P)"\n`)),
            behaviour: [Step.emitWith((inv) => [stdoutChunk(inv.cwd ?? "<none>")]), Step.exit(0)],
            targets: [target],
            policy: { cwd }
          })
          expectTag(r.outcome, "Succeeded")
          assert.strictEqual(r.text(target.id, "stdout"), cwd)
        }).pipe(
          andThenCleanup(
            created
              ? Effect.ignore(Effect.exit(ctx.helper(
                target,
                `base=$(cd "\${TMPDIR:-/tmp}" && pwd -P) && rm -rf -- "$base/$1"\n`,
                [top]
              )))
              : Effect.void
          )
        )
      }))

    test("stdin round-trips byte for byte (declared stdin: false → a plan with stdin is refused)", (ctx) =>
      Effect.gen(function*() {
        const input = C.concat([
          C.bytes("line 1\n'single' \"double\" $x `y` ünï\n"),
          C.allBytes,
          C.bytes("no final newline")
        ])
        const spec: RunSpec = {
          job: ScriptSource.job(sh("cat\n"), { stdin: input }),
          behaviour: [Step.echoStdin("stdout"), Step.exit(0)]
        }
        if (!ctx.declared.stdin) {
          const refused = yield* Effect.either(ctx.exec(spec))
          assert.isTrue(Either.isLeft(refused), "a plan with stdin is refused")
          if (Either.isLeft(refused)) assert.strictEqual(refused.left.reason, "UnsupportedByTransport")
          return
        }
        const collected = yield* ctx.direct(spec)
        expectBytes(ctx, collected.stdout, input, "stdin via transport.run")
        const r = yield* ctx.exec(spec)
        expectTag(r.outcome, "Succeeded")
        expectBytes(ctx, r.bytes(r.outcome.targetId, "stdout"), input, "stdin via the Runner")
        const asText = yield* ctx.exec({
          ...spec,
          job: ScriptSource.job(sh("cat\n"), { stdin: "text stdin ✓\nsecond line" })
        })
        assert.strictEqual(asText.text(asText.outcome.targetId, "stdout"), "text stdin ✓\nsecond line")
      }))

    // -- files -----------------------------------------------------------------------------------------------
    test("shipped files: in a private $RUNCMD_FILES, byte for byte, with their modes, removed afterwards (declared files: false → refused)", (ctx) =>
      Effect.gen(function*() {
        const ini = "key = it's $HOME `id`\nünï ✓\n"
        const files: ReadonlyArray<ScriptSource.JobFile> = [
          { name: "conf/app.ini", content: ini },
          { name: "bin/tool.sh", content: "#!/bin/sh\necho tool ran\n", mode: 0o700 },
          { name: "data.bin", content: C.allBytes }
        ]
        const script = `d="$RUNCMD_FILES"
printf 'dir=%s\\n' "$d"
ls -ld "$d" | cut -c1-10
ls -l "$d/conf/app.ini" | cut -c1-10
ls -l "$d/bin/tool.sh" | cut -c1-10
"$d/bin/tool.sh"
cat "$d/conf/app.ini"
cat "$d/data.bin"
`
        const spec: RunSpec = {
          job: ScriptSource.job(sh(script), { files }),
          behaviour: [
            Step.emitWith((inv) => [stdoutChunk(`dir=${inv.env[Transport.FILES_ENV] ?? "<unset>"}\n`)]),
            Step.exit(0)
          ]
        }
        if (ctx.transport.capabilities.files !== true) {
          const refused = yield* Effect.either(ctx.exec(spec))
          assert.isTrue(Either.isLeft(refused), "a plan with files is refused")
          if (Either.isLeft(refused)) assert.strictEqual(refused.left.reason, "UnsupportedByTransport")
          return
        }
        const r = yield* ctx.exec(spec)
        expectTag(r.outcome, "Succeeded")
        if (ctx.memory !== undefined) {
          // simulated: what the transport was given
          const started = (yield* ctx.memory.starts)[0]!.invocation.files ?? []
          assert.deepStrictEqual(started.map((f) => [f.name, f.mode]), [
            ["conf/app.ini", 0o600],
            ["bin/tool.sh", 0o700],
            ["data.bin", 0o600]
          ])
          assert.isTrue(C.sameBytes(started[2]!.bytes, C.allBytes), "bytes as given")
          return
        }
        const out = r.bytes(r.outcome.targetId, "stdout")
        const data = asDelivered(ctx, C.allBytes)
        const head = new TextDecoder().decode(out.subarray(0, out.length - data.length))
        const lines = head.split("\n")
        const dir = lines[0]!.replace(/^dir=/, "")
        assert.match(dir, /^\//, `RUNCMD_FILES is an absolute directory: ${lines[0]}`)
        assert.deepStrictEqual(lines.slice(1, 5), ["drwx------", "-rw-------", "-rwx------", "tool ran"])
        assert.strictEqual(lines.slice(5).join("\n"), ini)
        assert.isTrue(
          C.sameBytes(out.subarray(out.length - data.length), data),
          `data.bin byte for byte${ctx.declared.textOutput ? " (declared textOutput: as UTF-8 text)" : ""}`
        )
        const after = yield* ctx.helper(r.targets[0]!, `if [ -e "$1" ]; then echo present; else echo gone; fi\n`, [dir])
        assert.strictEqual(
          after.text(after.outcome.targetId, "stdout"),
          "gone\n",
          "the directory is removed after the execution"
        )
      }))

    // -- secrets ---------------------------------------------------------------------------------------------
    test("a secret is delivered, and appears nowhere in the report, events or errors (also split across chunks)", (ctx) =>
      Effect.gen(function*() {
        const secret = `RcSecret${C.randomHex(10)}Value`
        const name = "RUNCMD_CONFORMANCE_SECRET"
        const script = `printf 'secret=%s\\n' "$${name}"
printf 'stderr:%s\\n' "$${name}" >&2
first=$(printf '%s' "$${name}" | cut -c1-10)
rest=$(printf '%s' "$${name}" | cut -c11-)
printf 'split=%s' "$first"
sleep 1
printf '%s\\n' "$rest"
exit 3
`
        const spec: RunSpec = {
          job: ScriptSource.job(sh(script), { secrets: { [name]: Redacted.make(secret) } }),
          behaviour: (_target, inv) => {
            const s = inv.secrets[name] === undefined ? "" : Redacted.value(inv.secrets[name]!)
            return [
              Step.stdout(`secret=${s}\n`),
              Step.stderr(`stderr:${s}\n`),
              Step.stdout(`split=${s.slice(0, 10)}`),
              Step.sleep("1 second"),
              Step.stdout(`${s.slice(10)}\n`),
              Step.exit(3)
            ]
          }
        }
        if (!ctx.declared.secrets) {
          const refused = yield* Effect.either(ctx.exec(spec))
          assert.isTrue(Either.isLeft(refused), "a transport without a secure channel refuses a plan with secrets")
          if (Either.isLeft(refused)) {
            assert.strictEqual(refused.left.reason, "UnsupportedByTransport")
            assert.notInclude(JSON.stringify(refused.left) + refused.left.message, secret)
          }
          return
        }
        const r = yield* ctx.exec(spec)
        assert.strictEqual(expectTag(r.outcome, "Failed").exitCode, 3)
        assert.deepStrictEqual(secretsIn(r, secret), [], "the secret value appears nowhere")
        const out = r.text(r.outcome.targetId, "stdout")
        const err = r.text(r.outcome.targetId, "stderr")
        assert.notInclude(out + err, secret)
        assert.strictEqual(
          out,
          `secret=${REPLACEMENT}\nsplit=${REPLACEMENT}\n`,
          "the secret was delivered, then redacted"
        )
        assert.strictEqual(err, `stderr:${REPLACEMENT}\n`)
        assert.include(text(r.outcome.stdout), `split=${REPLACEMENT}`)
        // and it was never in argv, the environment or the script text
        if (ctx.memory !== undefined) {
          const starts = yield* ctx.memory.starts
          assert.strictEqual(starts.length, 1)
          const inv = starts[0]!.invocation
          assert.notInclude(JSON.stringify({ source: inv.source, args: inv.args, env: inv.env }), secret)
          assert.strictEqual(Redacted.value(inv.secrets[name]!), secret, "delivered as a Redacted secret")
        }
      }))

    // -- timeouts and cancellation ---------------------------------------------------------------------------
    test("timeout: TERM reaches the whole group at once → TimedOut, well before the kill grace (declared cancel: none → TimedOut, unconfirmed)", (ctx) =>
      Effect.gen(function*() {
        const target = ctx.targets(1)[0]!
        let pids: ReadonlyArray<string> = []
        const t = Duration.toMillis(ctx.timeout)
        const grace = Duration.seconds(30)
        const { hex, mark } = C.newMark()
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(`sleep ${holdSeconds(ctx)} &\necho "pids $$ $!"\nwait\necho never\n`), {
            env: { [C.MARK_VARIABLE]: mark }
          }),
          behaviour: [Step.stdout("pids 1 2\n"), Step.hang],
          targets: [target],
          policy: { timeout: ctx.timeout, killGrace: grace }
        }).pipe(
          Effect.tap((r) => Effect.sync(() => (pids = C.pidsAfter(r.text(target.id, "stdout"), "pids")))),
          andThenCleanup(cleanup(ctx, target, () => pids)),
          andThenCleanup(endLeftovers(ctx, target, hex))
        )
        const o = expectTag(r.outcome, "TimedOut")
        assert.strictEqual(o.phase, "execution")
        assert.strictEqual(o.limit, "timeout")
        expectConfirmation(ctx, o.killConfirmed)
        assert.isAtLeast(o.durationMs, t, "not before the timeout")
        assert.isAtMost(o.durationMs, t + ctx.margin, "TERM to the group ends it without waiting for the grace")
        if (ctx.declared.outputWhileRunning) {
          assert.include(text(o.stdout), "pids ", "output before the timeout is kept")
        }
        assert.notInclude(text(o.stdout), "never")
        if (o.killConfirmed) yield* expectGone(ctx, target, pids)
        if (ctx.memory !== undefined) {
          const cancels = yield* ctx.memory.cancels
          assert.strictEqual(cancels.length, 1)
          assert.strictEqual(cancels[0]!.signal, "SIGTERM")
        }
      }))

    test("timeout kills the whole process tree (TERM ignored, a grandchild) → TimedOut{killConfirmed} within the grace (declared cancel: none → unconfirmed)", (ctx) =>
      Effect.gen(function*() {
        const target = ctx.targets(1)[0]!
        let pids: ReadonlyArray<string> = []
        const t = Duration.toMillis(ctx.timeout)
        const g = Duration.toMillis(ctx.killGrace)
        const hold = holdSeconds(ctx)
        const script = `trap '' TERM
sh -c 'echo "middle $$"; sleep ${hold} & echo "grandchild $!"; wait' &
echo "child $$"
i=0
while [ "$i" -lt ${hold} ]; do sleep 1; i=$((i + 1)); done
`
        const { hex, mark } = C.newMark()
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(script), { env: { [C.MARK_VARIABLE]: mark } }),
          behaviour: { steps: [Step.stdout("child 1\nmiddle 2\ngrandchild 3\n"), Step.hang], ignoreTerm: true },
          targets: [target],
          policy: { timeout: ctx.timeout, killGrace: ctx.killGrace }
        }).pipe(
          Effect.tap((r) =>
            Effect.sync(() => {
              const out = r.text(target.id, "stdout")
              pids = [...C.pidsAfter(out, "child"), ...C.pidsAfter(out, "middle"), ...C.pidsAfter(out, "grandchild")]
            })
          ),
          andThenCleanup(cleanup(ctx, target, () => pids)),
          andThenCleanup(endLeftovers(ctx, target, hex))
        )
        const o = expectTag(r.outcome, "TimedOut")
        assert.strictEqual(o.phase, "execution")
        assert.strictEqual(o.limit, "timeout")
        expectConfirmation(ctx, o.killConfirmed)
        assert.isAtLeast(o.durationMs, t, "not before the timeout")
        assert.isAtMost(o.durationMs, t + g + ctx.margin, "KILL follows TERM after the grace")
        if (!ctx.simulated && ctx.declared.outputWhileRunning) {
          assert.strictEqual(pids.length, 3, `the script printed its pids: ${text(o.stdout)}`)
        }
        if (o.killConfirmed) yield* expectGone(ctx, target, pids)
        if (ctx.memory !== undefined) {
          const cancels = yield* ctx.memory.cancels
          assert.strictEqual(cancels.length, 1)
          assert.strictEqual(cancels[0]!.signal, "SIGKILL", "TERM ignored: KILL after the grace")
          assert.strictEqual(cancels[0]!.endedAt - cancels[0]!.at, g)
        }
      }))

    test("cancel (cancelWhen) kills in-flight executions → Cancelled{confirmed}; the rest are Skipped (declared cancel: none → unconfirmed; output only at the end → cancelled once started)", (ctx) =>
      Effect.gen(function*() {
        const targets = ctx.targets(3)
        const first = targets[0]!
        let pids: ReadonlyArray<string> = []
        const { hex, mark } = C.newMark()
        const context = yield* Effect.context<Transport.Registry>()
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(`sleep ${holdSeconds(ctx)} &\necho "pids $$ $!"\necho ready\nwait\necho never\n`), {
            env: { [C.MARK_VARIABLE]: mark }
          }),
          behaviour: [Step.stdout("pids 1 2\nready\n"), Step.hang],
          targets,
          policy: { concurrency: 1, killGrace: ctx.killGrace },
          cancelWhen: (run) =>
            ctx.declared.outputWhileRunning || ctx.simulated
              ? run.waitForText(first.id, "stdout", "ready")
              : seenRunning(ctx, run, first, hex).pipe(Effect.provide(context), Effect.ignore)
        }).pipe(
          Effect.tap((r) => Effect.sync(() => (pids = C.pidsAfter(r.text(first.id, "stdout"), "pids")))),
          andThenCleanup(cleanup(ctx, first, () => pids)),
          andThenCleanup(endLeftovers(ctx, first, hex))
        )
        assert.isTrue(r.report.interrupted, "the report says the run was interrupted")
        const o = expectTag(r.report.outcomes[0]!, "Cancelled")
        expectConfirmation(ctx, o.confirmed)
        if (ctx.declared.outputWhileRunning) assert.include(text(o.stdout), "ready", "output before the cancel is kept")
        assert.isBelow(o.durationMs, 60_000, "cancelled, not run to completion")
        for (const s of r.report.outcomes.slice(1)) assert.strictEqual(expectTag(s, "Skipped").why, "Cancelled")
        if (o.confirmed) yield* expectGone(ctx, first, pids)
        if (ctx.memory !== undefined) {
          assert.strictEqual((yield* ctx.memory.starts).length, 1, "nothing else started")
          const cancels = yield* ctx.memory.cancels
          assert.strictEqual(cancels.length, 1)
          assert.strictEqual(cancels[0]!.confirmed, o.confirmed)
        }
      }))

    // -- the process tree, from the process table (real transports) -------------------------------------
    if (!simulated) {
      for (const c of killTreeCases) test(c.title, c.run)
    }

    // -- concurrency -----------------------------------------------------------------------------------------
    test("the concurrency limit is honoured (6 targets, concurrency 2: never more than 2 running)", (ctx) =>
      Effect.gen(function*() {
        const targets = ctx.targets(6)
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh("sleep 1\necho done\n")),
          behaviour: [Step.sleep("1 second"), Step.stdout("done\n"), Step.exit(0)],
          targets,
          policy: { concurrency: 2 }
        })
        for (const o of r.report.outcomes) expectTag(o, "Succeeded")
        // intervals [Started, Finished) per target; the most that overlap at any instant
        const marks: Array<{ readonly at: number; readonly delta: number }> = []
        for (const e of r.events) {
          if (e._tag === "Started") marks.push({ at: e.at, delta: 1 })
          if (e._tag === "Finished") marks.push({ at: e.at, delta: -1 })
        }
        marks.sort((a, b) => a.at - b.at || a.delta - b.delta)
        let now = 0
        let max = 0
        for (const m of marks) {
          now += m.delta
          max = Math.max(max, now)
        }
        assert.strictEqual(max, 2, "at most 2 (and, with 6 targets, exactly 2) ran at once")
        if (ctx.memory !== undefined) assert.strictEqual(yield* ctx.memory.maxConcurrent, 2)
        if (ctx.simulated && ctx.transport.capabilities.output === "live") {
          assert.strictEqual(r.report.durationMs, 3000, "3 waves of 1 s")
        }
      }))

    // -- missing status, errors ------------------------------------------------------------------------------
    test("a missing exit status is never Succeeded", (ctx) =>
      Effect.gen(function*() {
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh("echo before\nexec >&- 2>&-\nkill -s KILL $$\n")),
          behaviour: [Step.stdout("before\n"), Step.loseExitStatus()]
        })
        assert.notStrictEqual(r.outcome._tag, "Succeeded")
        assert.include(["Signaled", "Failed", "TransportFailed"], r.outcome._tag)
        assert.strictEqual(text(r.outcome.stdout), "before\n")
        if (ctx.simulated) assert.strictEqual(expectTag(r.outcome, "TransportFailed").remoteState, "unknown")
        else expectSignal(ctx, r.outcome, "SIGKILL")
      }))

    test("a program that does not exist is not Succeeded (Failed{127}, or a typed error)", (ctx) =>
      Effect.gen(function*() {
        const r = yield* ctx.exec({
          job: ScriptSource.job(ScriptSource.command("runcmd-conformance-no-such-program", "--version")),
          behaviour: [Step.stderr("runcmd-conformance-no-such-program: not found\n"), Step.exit(127)]
        })
        if (r.outcome._tag === "Failed") assert.strictEqual(r.outcome.exitCode, 127)
        else {
          assert.include(["Rejected", "TransportFailed"], r.outcome._tag)
          const o = r.outcome as Outcome.Rejected | Outcome.TransportFailed
          assert.strictEqual(o.error.reason, "SpawnFailed")
        }
      }))

    test(
      options.unreachableTarget === undefined && !simulated
        ? "errors are typed (declared: targets are always reachable → a target is reached)"
        : "errors are typed: an unreachable target is Unreachable with a reason",
      (ctx) =>
        Effect.gen(function*() {
          if (!ctx.simulated && options.unreachableTarget === undefined) {
            const r = yield* ctx.exec({ job: ScriptSource.job(sh("exit 0\n")), behaviour: [Step.exit(0)] })
            expectTag(r.outcome, "Succeeded")
            return
          }
          const target = ctx.simulated ? ctx.targets(1)[0]! : options.unreachableTarget!()
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh("echo reached\n")),
            behaviour: [Step.stdout("reached\n"), Step.exit(0)],
            behaviours: {
              [target.id]: [Step.refuse("ConnectRefused", { description: "connection refused (simulated)" })]
            },
            targets: [target]
          })
          const o = expectTag(r.outcome, "Unreachable")
          assert.strictEqual(classify(o.error.reason as never), "Unreachable", `reason ${o.error.reason}`)
          assert.strictEqual(o.error.transport, ctx.transport.name)
          assert.strictEqual(o.error.phase, "delivery")
          assert.isAbove(o.error.message.length, 0)
          assert.strictEqual(text(o.stdout), "")
        })
    )

    // -- delivery ---------------------------------------------------------------------------------------------
    test("live output arrives while the script runs (declared not live: complete and in order)", (ctx) =>
      Effect.gen(function*() {
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh("echo first\nsleep 2\necho second\n")),
          behaviour: [Step.stdout("first\n"), Step.sleep("2 seconds"), Step.stdout("second\n"), Step.exit(0)]
        })
        expectTag(r.outcome, "Succeeded")
        assert.strictEqual(r.text(r.outcome.targetId, "stdout"), "first\nsecond\n")
        if (ctx.declared.liveOutput) {
          const outputs = r.events.filter((e): e is RunEvent.Output => e._tag === "Output")
          const at = (needle: string) =>
            outputs.find((e) => decoder.decode(e.chunk.bytes).includes(needle))?.chunk.at ?? Number.NaN
          assert.isAtLeast(at("second") - at("first"), 1000, "the first line arrived before the script slept")
        }
      }))

    test("a grandchild holding the output pipe does not hold the run once the script exited", (ctx) =>
      Effect.gen(function*() {
        const target = ctx.targets(1)[0]!
        let pids: ReadonlyArray<string> = []
        const limit = Duration.toMillis(options.pipeHoldLimit ?? Duration.seconds(30))
        const r = yield* ctx.exec({
          job: ScriptSource.job(sh(`sleep 120 &\necho "pids $!"\necho done\nexit 0\n`)),
          behaviour: [Step.stdout("pids 1\ndone\n"), Step.exit(0)],
          targets: [target]
        }).pipe(
          Effect.tap((r) => Effect.sync(() => (pids = C.pidsAfter(r.text(target.id, "stdout"), "pids")))),
          andThenCleanup(cleanup(ctx, target, () => pids))
        )
        expectTag(r.outcome, "Succeeded")
        assert.include(text(r.outcome.stdout), "done\n")
        assert.isBelow(r.outcome.durationMs, limit)
      }))

    // -- fault injection (simulated only: the in-memory transport can break on demand) ----------------------
    if (simulated) {
      test("simulated: a transport failure after some output is TransportFailed, remote state unknown, output kept", (ctx) =>
        Effect.gen(function*() {
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh("echo partial\n")),
            behaviour: [Step.stdout("partial\n"), Step.sleep("1 second"), Step.fail("ConnectionLost")]
          })
          const o = expectTag(r.outcome, "TransportFailed")
          assert.strictEqual(o.remoteState, "unknown")
          assert.strictEqual(o.error.reason, "ConnectionLost")
          assert.strictEqual(text(o.stdout), "partial\n")
        }))

      test("simulated: busy (409) and throttled (429) targets are Unreachable with their reason", (ctx) =>
        Effect.gen(function*() {
          const [busy, throttled] = ctx.targets(2)
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh("exit 0\n")),
            behaviour: [Step.exit(0)],
            behaviours: {
              [busy!.id]: [Step.refuse("TargetBusy", { detail: { status: 409 } })],
              [throttled!.id]: [Step.refuse("Throttled", { detail: { status: 429, retryAfterMs: 1000 } })]
            },
            targets: [busy!, throttled!]
          })
          assert.strictEqual(expectTag(r.report.outcomes[0]!, "Unreachable").error.reason, "TargetBusy")
          const t = expectTag(r.report.outcomes[1]!, "Unreachable")
          assert.strictEqual(t.error.reason, "Throttled")
          assert.deepStrictEqual(t.error.detail, { status: 429, retryAfterMs: 1000 })
        }))

      test("simulated: slow delivery (a late start, slow chunks) completes with every byte", (ctx) =>
        Effect.gen(function*() {
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh("echo a; echo b; echo c\n")),
            behaviour: {
              steps: [Step.stdout("a\nb\nc\n", { chunkSize: 2 }), Step.exit(0)],
              startDelay: "5 seconds",
              chunkDelay: "500 millis"
            }
          })
          expectTag(r.outcome, "Succeeded")
          assert.strictEqual(r.text(r.outcome.targetId, "stdout"), "a\nb\nc\n")
          assert.strictEqual(r.outcome.durationMs, 5000 + 2 * 500)
        }))

      test("simulated: a kill that is never confirmed is reported unconfirmed", (ctx) =>
        Effect.gen(function*() {
          const r = yield* ctx.exec({
            job: ScriptSource.job(sh("sleep 60\n")),
            behaviour: { steps: [Step.hang], confirmKill: false },
            policy: { timeout: ctx.timeout }
          })
          assert.isFalse(expectTag(r.outcome, "TimedOut").killConfirmed)
        }))
    }
  })
}

const countLines = (input: Uint8Array | undefined) => {
  if (input === undefined) return 0
  let n = 0
  for (const b of input) if (b === 10) n++
  return n
}
