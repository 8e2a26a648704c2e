/**
 * One local execution: spawn the wrapper's bootstrap (execa, detached: its own process group), drive the wrapper
 * protocol over stdin/stderr, drain both streams, observe the exit, and kill on scope close.
 *
 * @internal
 */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Target } from "@runcmd/core/Target"
import type { ExitStatus, Invocation, RawExecution } from "@runcmd/core/Transport"
import { TransportError } from "@runcmd/core/TransportError"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { execa } from "execa"
import type { Readable } from "node:stream"
import { type Selector, signalAll, survivors } from "./processes.js"
import * as registry from "./registry.js"
import { end, fromReadable, write } from "./streams.js"

/** @internal */
export interface Settings {
  readonly exitGrace: Duration.Duration
  readonly killWait: Duration.Duration
  readonly env: { readonly [name: string]: string | undefined }
  readonly shell: string
  readonly owner: symbol
}

const POLL = Duration.millis(50)

/** Processes die in real time: waits on them use the live clock whatever clock the caller runs under. */
const liveClock = Clock.make()
const nap = Effect.withClock(Effect.sleep(POLL), liveClock)
/** A stream still open this long after the holders were killed, with nothing flowing, is closed by us. */
const IDLE_BEFORE_DESTROY = 1000

/** @internal */
export const start = (
  settings: Settings,
  target: Target,
  invocation: Invocation
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const error = (
      reason: TransportError["reason"],
      phase: TransportError["phase"],
      description: string,
      cause?: unknown
    ) => new TransportError({ reason, transport: "local", phase, targetId: target.id, description, cause })

    const launch = ScriptRender.posix(invocation, { transport: "local" })
    const [, ...args] = launch.argv

    const child = yield* Effect.try({
      try: () =>
        execa(settings.shell, args, {
          detached: true,
          cleanup: false,
          buffer: false,
          reject: false,
          stripFinalNewline: false,
          encoding: "buffer",
          stdin: "pipe",
          stdout: "pipe",
          stderr: "pipe",
          extendEnv: false,
          env: settings.env as Record<string, string>,
          windowsHide: true
        }),
      catch: (cause) => error("SpawnFailed", "delivery", `cannot start ${settings.shell}: ${String(cause)}`, cause)
    })
    // execa's own result promise is not used (completion is observed below); never let it reject unhandled
    void Promise.resolve(child).catch(() => {})

    const exited = yield* Deferred.make<ExitStatus>()
    let hasExited = false
    child.on("exit", (code, signal) => {
      hasExited = true
      Deferred.unsafeDone(
        exited,
        Effect.succeed<ExitStatus>(
          signal !== null ? { _tag: "Signaled", signal } : { _tag: "Exited", code: code ?? 255 }
        )
      )
    })
    yield* Effect.async<void, TransportError>((resume) => {
      if (child.pid !== undefined) {
        resume(Effect.void)
        return
      }
      child.once("spawn", () => resume(Effect.void))
      child.once("error", (cause) =>
        resume(Effect.fail(error("SpawnFailed", "delivery", `cannot start ${settings.shell}: ${cause.message}`, cause))))
    })
    const pid = child.pid!
    const stdin = child.stdin!
    const stdout = child.stdout! as Readable
    const stderr = child.stderr! as Readable
    stdin.on("error", () => {})

    // the user's PGID as soon as the wrapper reports it
    let userGroup: number | undefined
    yield* launch.pgid.pipe(
      Effect.tap((g) =>
        Effect.sync(() => {
          userGroup = g
        })
      ),
      Effect.forkScoped
    )
    const selector = (): Selector => ({
      groups: userGroup === undefined ? [pid] : [pid, userGroup],
      token: { variable: launch.tokenVariable, value: launch.token }
    })

    const deregister = registry.register({ selector, owner: settings.owner })

    // pipe state, for the exit grace
    const ended = { stdout: false, stderr: false }
    let lastData = Date.now()
    for (const [name, readable] of [["stdout", stdout], ["stderr", stderr]] as const) {
      readable.on("data", () => {
        lastData = Date.now()
      })
      readable.once("close", () => {
        ended[name] = true
      })
    }
    const bothEnded = () => ended.stdout && ended.stderr
    const idle = (readable: Readable) =>
      readable.readableFlowing === true && readable.readableLength === 0 && Date.now() - lastData >= IDLE_BEFORE_DESTROY

    const ioError = (what: string) => (cause: unknown) =>
      error("OutputLost", "execution", `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause)

    const stderrParsed = yield* Deferred.make<void>()
    const filteredStderr = yield* launch.drive({
      writeStdin: (bytes) => write(stdin, bytes, ioError("stdin")),
      endStdin: end(stdin),
      stderr: fromReadable(stderr, ioError("stderr")).pipe(Stream.ensuring(Deferred.succeed(stderrParsed, undefined)))
    })

    // exit grace: after the wrapper exits, descendants may hold the pipes only so long
    yield* Effect.gen(function*() {
      yield* Deferred.await(exited)
      const deadline = Date.now() + Duration.toMillis(settings.exitGrace)
      while (!bothEnded() && Date.now() < deadline) yield* nap
      if (bothEnded()) return
      yield* Effect.logDebug("local: descendants hold the output open after the exit grace; killing them").pipe(
        Effect.annotateLogs({ targetId: target.id })
      )
      signalAll(selector(), "SIGKILL")
      while (!bothEnded()) {
        for (const readable of [stdout, stderr]) {
          if (!readable.destroyed && idle(readable)) readable.destroy()
        }
        yield* nap
      }
    }).pipe(Effect.forkScoped)

    const confirmed = yield* Ref.make(false)

    const waitGone = (limit: Duration.Duration) =>
      Effect.gen(function*() {
        const until = Date.now() + Duration.toMillis(limit)
        for (;;) {
          const gone = hasExited && survivors(selector()).length === 0
          if (gone || Date.now() >= until) return gone
          yield* nap
        }
      })

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // keep both pipes drained while the processes die (a blocked write must not keep them alive)
        for (const readable of [stdout, stderr]) {
          readable.removeAllListeners("data")
          if (!readable.destroyed) readable.resume()
        }
        const running = !hasExited
        let gone = !running && survivors(selector()).length === 0
        if (!gone) {
          signalAll(selector(), "SIGTERM")
          gone = yield* waitGone(invocation.killGrace)
          if (!gone) {
            signalAll(selector(), "SIGKILL")
            gone = yield* waitGone(settings.killWait)
          }
        }
        yield* Ref.set(confirmed, gone)
        stdin.destroy()
        stdout.destroy()
        stderr.destroy()
        deregister()
      }).pipe(Effect.withSpan("LocalTransport.kill", { attributes: { targetId: target.id } }))
    )

    const output = Stream.merge(
      fromReadable(stdout, ioError("stdout")).pipe(Stream.map((bytes) => ({ stream: "stdout" as const, bytes }))),
      filteredStderr.pipe(Stream.map((bytes) => ({ stream: "stderr" as const, bytes })))
    )

    const exit = Effect.gen(function*() {
      const status = yield* Deferred.await(exited)
      yield* Deferred.await(stderrParsed)
      return yield* launch.interpretExit(status).pipe(
        Effect.mapError((e) =>
          new TransportError({
            reason: e.reason,
            transport: e.transport,
            phase: e.phase,
            description: e.description,
            targetId: target.id,
            ...(e.detail === undefined ? {} : { detail: e.detail })
          })
        )
      )
    })

    return {
      output,
      exit,
      killConfirmed: Ref.get(confirmed)
    } satisfies RawExecution
  })
