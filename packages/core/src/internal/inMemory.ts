/**
 * The in-memory transport: scripted behaviours instead of processes, every delay on the Effect `Clock` (so
 * `TestClock` drives it), a log of what was started, how it ended and what was cancelled.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Take from "effect/Take"
import type { RawChunk, StreamName } from "../OutputChunk.js"
import { toBytes } from "../OutputChunk.js"
import * as Target from "../Target.js"
import * as Transport from "../Transport.js"
import { type ErrorPhase, TransportError, type TransportErrorReason } from "../TransportError.js"

// ---------------------------------------------------------------------------------------------------------------
// targets
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const InMemoryTarget = Target.make("memory", {})

/** @internal */
export type InMemoryTarget = typeof InMemoryTarget.Type

/** @internal */
export const memoryTarget = (id: string, labels: Record<string, string> = {}): InMemoryTarget => ({
  kind: "memory",
  id,
  labels,
  os: "linux"
})

// ---------------------------------------------------------------------------------------------------------------
// behaviours
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export type Step =
  | {
    readonly _tag: "Emit"
    readonly stream: StreamName
    readonly bytes: Uint8Array
    readonly chunkSize?: number | undefined
  }
  | { readonly _tag: "EmitStdin"; readonly stream: StreamName }
  | { readonly _tag: "EmitWith"; readonly f: (invocation: Transport.Invocation) => ReadonlyArray<RawChunk> }
  | { readonly _tag: "Sleep"; readonly duration: Duration.DurationInput }
  | { readonly _tag: "Exit"; readonly code: number }
  | { readonly _tag: "Signal"; readonly signal: string }
  | {
    readonly _tag: "Fail"
    readonly reason: TransportErrorReason
    readonly phase: ErrorPhase
    readonly description: string
    readonly detail?: Record<string, unknown> | undefined
    /** `start`: `start` fails (must be the first step); `output`: the output stream (and exit) fail; `exit`:
     * the output ends normally and only the exit status is missing. */
    readonly during: "start" | "output" | "exit"
  }
  | { readonly _tag: "Hang" }

/** @internal */
export interface Behaviour {
  readonly steps: ReadonlyArray<Step>
  /** Time `start` takes before it returns (connecting, delivering). */
  readonly startDelay?: Duration.DurationInput | undefined
  /** Delay between two chunks (slow delivery). */
  readonly chunkDelay?: Duration.DurationInput | undefined
  /** TERM is ignored: a kill waits the invocation's `killGrace`, then KILLs. */
  readonly ignoreTerm?: boolean | undefined
  /** Time a TERM-respecting process takes to die after TERM (capped at the kill grace; default 0). */
  readonly termDelay?: Duration.DurationInput | undefined
  /** `false`: the kill is asked for but never confirmed (like a cloud service); default `true`. */
  readonly confirmKill?: boolean | undefined
  /** The streams the simulated service cut (an inline output cap), reported after the exit. */
  readonly truncated?: Transport.OutputTruncation | undefined
}

/** @internal */
export type BehaviourInput =
  | Behaviour
  | ReadonlyArray<Step>
  | ((target: Target.Target, invocation: Transport.Invocation) => Behaviour | ReadonlyArray<Step>)

const isSteps = (u: Behaviour | ReadonlyArray<Step>): u is ReadonlyArray<Step> => Array.isArray(u)

const resolve = (input: BehaviourInput, target: Target.Target, invocation: Transport.Invocation): Behaviour => {
  const b = typeof input === "function" ? input(target, invocation) : input
  return isSteps(b) ? { steps: b } : b
}

/** @internal */
export interface FailOptions {
  readonly phase?: ErrorPhase | undefined
  readonly description?: string | undefined
  readonly detail?: Record<string, unknown> | undefined
}

const failStep = (
  reason: TransportErrorReason,
  phase: ErrorPhase,
  during: "start" | "output",
  options: FailOptions | undefined
): Step => ({
  _tag: "Fail",
  reason,
  phase: options?.phase ?? phase,
  description: options?.description ?? `simulated ${reason}`,
  detail: options?.detail,
  during
})

/** @internal */
export const Step = {
  stdout: (data: string | Uint8Array, options?: { readonly chunkSize?: number | undefined }): Step => ({
    _tag: "Emit",
    stream: "stdout",
    bytes: toBytes(data),
    chunkSize: options?.chunkSize
  }),
  stderr: (data: string | Uint8Array, options?: { readonly chunkSize?: number | undefined }): Step => ({
    _tag: "Emit",
    stream: "stderr",
    bytes: toBytes(data),
    chunkSize: options?.chunkSize
  }),
  echoStdin: (stream: StreamName = "stdout"): Step => ({ _tag: "EmitStdin", stream }),
  emitWith: (f: (invocation: Transport.Invocation) => ReadonlyArray<RawChunk>): Step => ({ _tag: "EmitWith", f }),
  sleep: (duration: Duration.DurationInput): Step => ({ _tag: "Sleep", duration: Duration.decode(duration) }),
  exit: (code: number): Step => ({ _tag: "Exit", code }),
  signal: (signal: string): Step => ({ _tag: "Signal", signal }),
  hang: { _tag: "Hang" } as Step,
  fail: (reason: TransportErrorReason, options?: FailOptions): Step => failStep(reason, "execution", "output", options),
  refuse: (reason: TransportErrorReason, options?: FailOptions): Step => failStep(reason, "delivery", "start", options),
  loseExitStatus: (
    options?: {
      readonly reason?: TransportErrorReason | undefined
      readonly description?: string | undefined
    }
  ): Step => ({
    _tag: "Fail",
    reason: options?.reason ?? "ProtocolError",
    phase: "execution",
    description: options?.description ?? "the execution ended without an exit status",
    during: "exit"
  })
}

// ---------------------------------------------------------------------------------------------------------------
// the log
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export interface StartRecord {
  /** Sequence number of the execution in this transport (1, 2...). */
  readonly execution: number
  readonly targetId: string
  readonly kind: string
  readonly attempt: number
  readonly runId: string
  readonly invocation: Transport.Invocation
  /** Clock time `start` was called. */
  readonly at: number
}

/** @internal */
export interface EndRecord {
  readonly execution: number
  readonly targetId: string
  readonly attempt: number
  readonly at: number
  /** How the process ended on its own; undefined when it failed with `error`. */
  readonly status?: Transport.ExitStatus | undefined
  readonly error?: TransportError | undefined
}

/** @internal */
export interface CancelRecord {
  readonly execution: number
  readonly targetId: string
  readonly attempt: number
  /** Clock time the scope was closed before the exit. */
  readonly at: number
  /** Clock time the cancellation ended (after the grace when TERM was ignored). */
  readonly endedAt: number
  /** The scope closed while `start` was still running (nothing had started yet). */
  readonly duringStart: boolean
  /** The last signal the simulated process received (`SIGTERM`, or `SIGKILL` after the grace); undefined if the
   * kill was not confirmed. */
  readonly signal?: string | undefined
  readonly confirmed: boolean
}

// ---------------------------------------------------------------------------------------------------------------
// the transport
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export interface Options {
  /** Transport name (default `memory`). */
  readonly name?: string | undefined
  /** Target kinds served (default `["memory"]`). */
  readonly kinds?: ReadonlyArray<string> | undefined
  /** Behaviour per target id. */
  readonly behaviours?: { readonly [targetId: string]: BehaviourInput } | undefined
  /** Behaviour of targets without one (default: exit 0, no output). */
  readonly default?: BehaviourInput | undefined
  /** Overrides of the capabilities (default: live output, kills, secrets, stdin, run-as, files: recorded in `starts`). */
  readonly capabilities?: Partial<Transport.Capabilities> | undefined
  /**
   * Per target, whether its job is ended when the controller is lost (`Transport.MakeOptions.
   * terminatesOnControllerLoss`; it narrows `capabilities.terminatesOnControllerLoss`). Absent: as the capability.
   */
  readonly terminatesOnControllerLoss?: ((target: Target.Target) => boolean) | undefined
  /** With `output: "polled"`: how often output is delivered (default 1 second). */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** Capacity of the pipe between the simulated process and its reader, in chunks (default 16): a process
   * whose output is not read blocks, as a real one does. */
  readonly pipeCapacity?: number | undefined
}

/** @internal */
export interface InMemoryTransport {
  readonly transport: Transport.Transport
  readonly starts: Effect.Effect<ReadonlyArray<StartRecord>>
  readonly ends: Effect.Effect<ReadonlyArray<EndRecord>>
  readonly cancels: Effect.Effect<ReadonlyArray<CancelRecord>>
  /** The most executions observed running at once (from `start` until the process ended or was killed). */
  readonly maxConcurrent: Effect.Effect<number>
  /** Executions running now. */
  readonly running: Effect.Effect<number>
  /** Sets the behaviour of one target. */
  readonly setBehaviour: (targetId: string, behaviour: BehaviourInput) => Effect.Effect<void>
  /** Sets the behaviour of targets without one. */
  readonly setDefault: (behaviour: BehaviourInput) => Effect.Effect<void>
  /** Clears the logs and the maximum, and restores the behaviours given to `make`. */
  readonly reset: Effect.Effect<void>
}

/** @internal */
export class InMemory extends Context.Tag("@runcmd/core/testing/InMemory")<InMemory, InMemoryTransport>() {}

/** @internal */
export const defaultCapabilities: Transport.Capabilities = {
  output: "live",
  cancel: "kills",
  secrets: true,
  stdin: true,
  runAs: true,
  native: false,
  files: true
}

const EMPTY = new Uint8Array(0)

/** @internal */
export const make = (options: Options = {}): Effect.Effect<InMemoryTransport> => Effect.sync(() => unsafeMake(options))

const unsafeMake = (options: Options): InMemoryTransport => {
  const name = options.name ?? "memory"
  const capabilities: Transport.Capabilities = { ...defaultCapabilities, ...options.capabilities }
  const pollInterval = Duration.decode(options.pollInterval ?? Duration.seconds(1))
  const pipeCapacity = Math.max(1, options.pipeCapacity ?? 16)
  const initialDefault: BehaviourInput = options.default ?? [Step.exit(0)]
  let byTarget = new Map<string, BehaviourInput>(Object.entries(options.behaviours ?? {}))
  let fallback: BehaviourInput = initialDefault
  let starts: Array<StartRecord> = []
  let ends: Array<EndRecord> = []
  let cancels: Array<CancelRecord> = []
  let executions = 0
  let running = 0
  let maxConcurrent = 0

  const error = (step: Extract<Step, { _tag: "Fail" }>, target: Target.Target) =>
    new TransportError({
      reason: step.reason,
      transport: name,
      phase: step.phase,
      description: step.description,
      targetId: target.id,
      ...(step.detail === undefined ? {} : { detail: step.detail })
    })

  const start = (target: Target.Target, invocation: Transport.Invocation) =>
    Effect.gen(function*() {
      const behaviour = resolve(byTarget.get(target.id) ?? fallback, target, invocation)
      const execution = ++executions
      const startedAt = yield* Clock.currentTimeMillis
      starts.push({
        execution,
        targetId: target.id,
        kind: target.kind,
        attempt: invocation.attempt,
        runId: invocation.runId,
        invocation,
        at: startedAt
      })
      running++
      maxConcurrent = Math.max(maxConcurrent, running)
      // what the simulated process is doing; `ended` once it exited (or failed) on its own
      const state = {
        phase: "starting" as "starting" | "running" | "ended" | "killed",
        stopped: false
      }
      // completes when the process ends on its own
      const endedSignal = yield* Deferred.make<void>()
      const stop = () => {
        if (!state.stopped) {
          state.stopped = true
          running--
        }
      }
      const recordEnd = (at: number, outcome: { status?: Transport.ExitStatus; error?: TransportError }) => {
        ends.push({ execution, targetId: target.id, attempt: invocation.attempt, at, ...outcome })
      }

      const confirmKill = behaviour.confirmKill ?? true
      const killGrace = invocation.killGrace
      const termDelay = Duration.min(Duration.decode(behaviour.termDelay ?? 0), killGrace)
      let confirmed = true
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      // made once the process is past its start steps (a kill during start completes nothing)
      const started: { exit?: Deferred.Deferred<Transport.ExitStatus, TransportError> } = {}
      let shutdown: Effect.Effect<void> = Effect.void

      // Closing the scope: if the process has not ended, TERM, the grace if TERM is ignored, KILL; recorded.
      // The simulated process keeps running (and writing) until it is killed.
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          if (state.phase === "starting" || state.phase === "running") {
            const duringStart = state.phase === "starting"
            const at = yield* Clock.currentTimeMillis
            let signal: string | undefined
            if (duringStart) {
              signal = undefined
              confirmed = true
            } else if (!confirmKill) {
              // asked to stop; the service never says whether it did
              signal = undefined
              confirmed = false
            } else if (behaviour.ignoreTerm === true) {
              // TERM ignored: it runs on until it exits by itself or KILL comes at the end of the grace
              // (forked, interruptible watchers: finalizers run uninterruptibly, a race there would wait for both)
              const gate = yield* Deferred.make<void>()
              const watchers = [
                yield* Effect.forkDaemon(
                  Effect.interruptible(Effect.zipRight(Effect.sleep(killGrace), Deferred.succeed(gate, undefined)))
                ),
                yield* Effect.forkDaemon(
                  Effect.interruptible(Effect.zipRight(Deferred.await(endedSignal), Deferred.succeed(gate, undefined)))
                )
              ]
              yield* Deferred.await(gate)
              yield* Fiber.interruptAll(watchers)
              // it may have exited on its own during the grace
              signal = (state.phase as string) === "ended" ? "SIGTERM" : "SIGKILL"
              confirmed = true
            } else {
              if (Duration.toMillis(termDelay) > 0) yield* Effect.sleep(termDelay)
              signal = "SIGTERM"
              confirmed = true
            }
            if ((state.phase as string) !== "ended") state.phase = "killed"
            yield* Fiber.interruptAll(fibers)
            if (started.exit !== undefined) {
              yield* Deferred.succeed(started.exit, Transport.signaled(signal ?? "SIGTERM"))
            }
            stop()
            const endedAt = yield* Clock.currentTimeMillis
            cancels.push({
              execution,
              targetId: target.id,
              attempt: invocation.attempt,
              at,
              endedAt,
              duringStart,
              signal,
              confirmed
            })
          }
          yield* Fiber.interruptAll(fibers)
          yield* shutdown
        })
      )

      if (behaviour.startDelay !== undefined) yield* Effect.sleep(behaviour.startDelay)

      const [first, ...rest] = behaviour.steps
      if (first !== undefined && first._tag === "Fail" && first.during === "start") {
        const e = error(first, target)
        state.phase = "ended"
        stop()
        recordEnd(yield* Clock.currentTimeMillis, { error: e })
        return yield* Effect.fail(e)
      }
      const steps = first === undefined
        ? []
        : first._tag === "Fail" && first.during === "start"
        ? rest
        : behaviour.steps

      // the pipe: what the reader sees; in `polled`/`final` mode the service holds output in `held` first
      const pipe = yield* Queue.bounded<Take.Take<RawChunk, TransportError>>(pipeCapacity)
      const exit = yield* Deferred.make<Transport.ExitStatus, TransportError>()
      started.exit = exit
      shutdown = Queue.shutdown(pipe)
      const held: Array<Take.Take<RawChunk, TransportError>> = []
      let terminal = false
      const capped = capabilities.maxInlineOutputBytes
      const written = { stdout: 0, stderr: 0 }

      const flushHeld = Effect.suspend(() => {
        const items = held.splice(0, held.length)
        return Effect.forEach(items, (t) => Queue.offer(pipe, t), { discard: true })
      })
      const deliver = (take: Take.Take<RawChunk, TransportError>, isTerminal: boolean): Effect.Effect<void> => {
        if (capabilities.output === "live") return Queue.offer(pipe, take)
        held.push(take)
        if (isTerminal) terminal = true
        return capabilities.output === "final" && isTerminal ? flushHeld : Effect.void
      }

      let emitted = false
      const emit = (stream: StreamName, bytes: Uint8Array, chunkSize?: number) =>
        Effect.gen(function*() {
          const size = chunkSize !== undefined && chunkSize > 0 ? chunkSize : Math.max(bytes.length, 1)
          for (let offset = 0; offset < bytes.length; offset += size) {
            if (emitted && behaviour.chunkDelay !== undefined) yield* Effect.sleep(behaviour.chunkDelay)
            emitted = true
            let piece = bytes.subarray(offset, Math.min(bytes.length, offset + size))
            if (capped !== undefined) {
              const room = Math.max(0, capped - written[stream])
              if (piece.length > room) piece = piece.subarray(0, room)
            }
            written[stream] += piece.length
            if (piece.length > 0) yield* deliver(Take.of({ stream, bytes: piece }), false)
          }
        })

      const end = (outcome: Transport.ExitStatus | TransportError, failOutput: boolean) =>
        Effect.gen(function*() {
          if (state.phase === "killed") return
          state.phase = "ended"
          stop()
          yield* Deferred.succeed(endedSignal, undefined)
          const at = yield* Clock.currentTimeMillis
          if (outcome instanceof TransportError) {
            recordEnd(at, { error: outcome })
            yield* Deferred.fail(exit, outcome)
            yield* deliver(failOutput ? Take.fail(outcome) : Take.end, true)
          } else {
            recordEnd(at, { status: outcome })
            yield* Deferred.succeed(exit, outcome)
            yield* deliver(Take.end, true)
          }
        })

      const runSteps = Effect.gen(function*() {
        for (const step of steps) {
          switch (step._tag) {
            case "Emit":
              yield* emit(step.stream, step.bytes, step.chunkSize)
              break
            case "EmitStdin":
              yield* emit(step.stream, invocation.stdin ?? EMPTY)
              break
            case "EmitWith":
              for (const c of step.f(invocation)) yield* emit(c.stream, c.bytes)
              break
            case "Sleep":
              yield* Effect.sleep(step.duration)
              break
            case "Exit":
              return yield* end(Transport.exited(step.code), false)
            case "Signal":
              return yield* end(Transport.signaled(step.signal), false)
            case "Fail":
              return yield* end(error(step, target), step.during !== "exit")
            case "Hang":
              return yield* Effect.never
          }
        }
        return yield* end(Transport.exited(0), false)
      })

      state.phase = "running"
      fibers.push(yield* Effect.forkDaemon(Effect.interruptible(runSteps)))
      if (capabilities.output === "polled") {
        fibers.push(
          yield* Effect.forkDaemon(Effect.interruptible(
            Effect.gen(function*() {
              for (;;) {
                yield* Effect.sleep(pollInterval)
                const done = terminal
                yield* flushHeld
                if (done) return
              }
            })
          ))
        )
      }

      const raw: Transport.RawExecution = {
        pump: (emitChunk) =>
          Effect.gen(function*() {
            for (;;) {
              const take = yield* Queue.take(pipe)
              if (Take.isDone(take)) return
              if (Take.isFailure(take)) {
                return yield* Effect.failCause(Take.match(take, {
                  onEnd: () => Cause.empty,
                  onFailure: (cause) => cause,
                  onSuccess: () => Cause.empty
                }))
              }
              for (
                const chunk of Take.match(take, {
                  onEnd: () => Chunk.empty(),
                  onFailure: () => Chunk.empty(),
                  onSuccess: (c) => c
                })
              ) {
                yield* emitChunk(chunk)
              }
            }
          }),
        exit: Deferred.await(exit),
        killConfirmed: Effect.sync(() => confirmed),
        ...(behaviour.truncated === undefined ? {} : { truncated: Effect.succeed(behaviour.truncated) })
      }
      return raw
    })

  const transport = Transport.make({
    name,
    kinds: options.kinds ?? ["memory"],
    capabilities,
    terminatesOnControllerLoss: options.terminatesOnControllerLoss,
    start
  })

  return {
    transport,
    starts: Effect.sync(() => starts.slice()),
    ends: Effect.sync(() => ends.slice()),
    cancels: Effect.sync(() => cancels.slice()),
    maxConcurrent: Effect.sync(() => maxConcurrent),
    running: Effect.sync(() => running),
    setBehaviour: (targetId, behaviour) => Effect.sync(() => void byTarget.set(targetId, behaviour)),
    setDefault: (behaviour) =>
      Effect.sync(() => {
        fallback = behaviour
      }),
    reset: Effect.sync(() => {
      starts = []
      ends = []
      cancels = []
      maxConcurrent = running
      byTarget = new Map(Object.entries(options.behaviours ?? {}))
      fallback = initialDefault
    })
  }
}

/** @internal */
export const layer = (
  options: Options = {}
): Layer.Layer<Transport.Registry | InMemory, Transport.DuplicateTransport> =>
  Transport.layer(Effect.map(InMemory, (m) => m.transport)).pipe(
    Layer.provideMerge(Layer.effect(InMemory, make(options)))
  )

/** @internal */
export const secretValue = (invocation: Transport.Invocation, name: string): string | undefined => {
  const s = invocation.secrets[name]
  return s === undefined ? undefined : Redacted.value(s)
}

/** @internal */
export const chunkOf = (stream: StreamName, data: string | Uint8Array): RawChunk => ({ stream, bytes: toBytes(data) })

/** @internal */
export const concatChunks = (chunks: Chunk.Chunk<Uint8Array> | ReadonlyArray<Uint8Array>): Uint8Array => {
  const list = Array.isArray(chunks) ? chunks : Chunk.toReadonlyArray(chunks as Chunk.Chunk<Uint8Array>)
  return Buffer.concat(list as Array<Uint8Array>)
}
