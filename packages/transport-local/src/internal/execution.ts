/**
 * One local execution. Without run-as, a command or a sh/bash script is spawned **directly** in a new session
 * (core's `ScriptRender.direct`: the program, its env with the secrets and the token; no wrapper process at
 * all); everything else runs core's POSIX wrapper (`/bin/sh -c BOOTSTRAP` with the stages, secrets and stdin on
 * its stdin). Either way the process leads its own group, both pipes are drained into a coalescing buffer that
 * the consumer pumps, the exit is observed, and closing the scope early kills the groups and every token carrier
 * (TERM, the kill grace, KILL) and confirms they are gone.
 *
 * @internal
 */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Target } from "@runcmd/core/Target"
import { type ExitStatus, FILES_ENV, type Invocation, type RawExecution } from "@runcmd/core/Transport"
import { TransportError } from "@runcmd/core/TransportError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import type { Readable, Writable } from "node:stream"
import * as Files from "./files.js"
import * as Output from "./output.js"
import { anyLeft, type Selector, signalAll, survivors } from "./processes.js"
import * as registry from "./registry.js"
import { end, fromReadable, write } from "./streams.js"

/** @internal */
export interface Settings {
  readonly exitGrace: Duration.Duration
  readonly killWait: Duration.Duration
  readonly env: { readonly [name: string]: string | undefined }
  readonly shell: string
  /** Spawn the program itself when the wrapper has nothing to do (no run-as, a command or sh/bash script). */
  readonly direct: boolean
  readonly owner: symbol
}

const POLL_MS = 50
/** A stream still open this long after the holders were killed, with nothing flowing, is closed by us. */
const IDLE_BEFORE_DESTROY = 1000

// processes die in real time: waits on them use the timer, whatever clock the caller's Effects run under
const sleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

type Fail = (
  reason: TransportError["reason"],
  phase: TransportError["phase"],
  description: string,
  options?: { readonly cause?: unknown; readonly detail?: Record<string, unknown> }
) => TransportError

const failWith = (target: Target): Fail => (reason, phase, description, options) =>
  new TransportError({
    reason,
    transport: "local",
    phase,
    targetId: target.id,
    description,
    ...(options?.cause === undefined ? {} : { cause: options.cause }),
    ...(options?.detail === undefined ? {} : { detail: options.detail })
  })

/** @internal */
export const start = (
  settings: Settings,
  target: Target,
  invocation: Invocation
): Effect.Effect<RawExecution, TransportError, Scope.Scope> => {
  const files = invocation.files ?? []
  if (files.length === 0) return launch(settings, target, invocation)
  // the directory's finalizer comes first, so it runs after the execution's (which end its processes)
  return Effect.flatMap(
    Files.ship(files, (description, cause) => failWith(target)("SpawnFailed", "delivery", description, { cause })),
    (dir) => launch(settings, target, { ...invocation, env: { ...invocation.env, [FILES_ENV]: dir } })
  )
}

const launch = (
  settings: Settings,
  target: Target,
  invocation: Invocation
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.suspend(() => {
    const launch = settings.direct ? ScriptRender.direct(invocation) : Option.none()
    return Option.isSome(launch)
      ? startDirect(settings, target, invocation, launch.value)
      : startWrapped(settings, target, invocation)
  })

/** Waits for the child's `spawn` or `error` (a failed spawn has no pid and reports why on the next tick). */
const spawned = (child: cp.ChildProcess): Effect.Effect<NodeJS.ErrnoException | undefined> =>
  child.pid !== undefined
    ? Effect.succeed(undefined)
    : Effect.async<NodeJS.ErrnoException | undefined>((resume) => {
      child.once("error", (e) => resume(Effect.succeed(e as NodeJS.ErrnoException)))
      child.once("spawn", () => resume(Effect.succeed(undefined)))
    })

const startDirect = (
  settings: Settings,
  target: Target,
  invocation: Invocation,
  launch: ScriptRender.DirectLaunch
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const fail = failWith(target)
    const hasStdin = invocation.stdin !== undefined && invocation.stdin.length > 0
    const child = yield* Effect.try({
      try: () =>
        cp.spawn(launch.file, launch.args, {
          detached: true,
          ...(launch.cwd === undefined ? {} : { cwd: launch.cwd }),
          env: { ...settings.env, ...launch.environment() },
          stdio: [hasStdin ? "pipe" : "ignore", "pipe", "pipe"]
        }),
      catch: (cause) => fail("SpawnFailed", "delivery", `cannot start ${launch.file}: ${String(cause)}`, { cause })
    })
    const failure = yield* spawned(child)
    if (failure !== undefined) return yield* notStarted(fail, launch, failure)
    const pid = child.pid!
    if (hasStdin) {
      child.stdin!.on("error", () => {})
      child.stdin!.end(invocation.stdin)
    }
    const selector: Selector = { groups: [pid], token: { variable: launch.tokenVariable, value: launch.token } }
    const output = Output.make()
    const ioError = (what: string) => (cause: unknown) =>
      fail("OutputLost", "execution", `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    output.attach("stdout", child.stdout!, ioError("stdout"))
    output.attach("stderr", child.stderr!, ioError("stderr"))
    const supervised = yield* supervise(settings, target, invocation, child, () => selector, output)
    return {
      pump: output.pump,
      exit: supervised.exited,
      killConfirmed: supervised.killConfirmed
    } satisfies RawExecution
  })

/**
 * A program that could not be started is what a shell makes of it: exit 127 (not found) or 126 (not
 * executable) with the reason on stderr, as the wrapper and SSH report it; a missing `cwd` is `SpawnFailed`.
 */
const notStarted = (fail: Fail, launch: ScriptRender.DirectLaunch, error: NodeJS.ErrnoException) => {
  if (launch.cwd !== undefined && !isDirectory(launch.cwd)) {
    return Effect.fail(
      fail("SpawnFailed", "delivery", `the working directory ${JSON.stringify(launch.cwd)} does not exist or is not accessible`, {
        detail: { wrapper: "CwdNotFound", cwd: launch.cwd }
      })
    )
  }
  const code = error.code === "ENOENT" ? 127 : error.code === "EACCES" ? 126 : undefined
  if (code === undefined) {
    return Effect.fail(fail("SpawnFailed", "delivery", `cannot start ${launch.file}: ${error.message}`, { cause: error }))
  }
  const message = `runcmd: ${launch.file}: ${code === 127 ? "not found" : "Permission denied"}\n`
  const raw: RawExecution = {
    pump: (emit) => emit({ stream: "stderr", bytes: new TextEncoder().encode(message) }),
    exit: Effect.succeed<ExitStatus>({ _tag: "Exited", code }),
    killConfirmed: Effect.succeed(true)
  }
  return Effect.succeed(raw)
}

const isDirectory = (dir: string): boolean => {
  try {
    return fs.statSync(dir).isDirectory()
  } catch {
    return false
  }
}

const startWrapped = (
  settings: Settings,
  target: Target,
  invocation: Invocation
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const fail = failWith(target)
    const launch = ScriptRender.posix(invocation, { transport: "local" })
    const [, ...args] = launch.argv
    const child = yield* Effect.try({
      try: () =>
        cp.spawn(settings.shell, args, {
          detached: true,
          env: settings.env,
          stdio: ["pipe", "pipe", "pipe"]
        }),
      catch: (cause) => fail("SpawnFailed", "delivery", `cannot start ${settings.shell}: ${String(cause)}`, { cause })
    })
    const failure = yield* spawned(child)
    if (failure !== undefined) {
      return yield* fail("SpawnFailed", "delivery", `cannot start ${settings.shell}: ${failure.message}`, { cause: failure })
    }
    const pid = child.pid!
    const stdin = child.stdin! as Writable
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

    const output = Output.make()
    const ioError = (what: string) => (cause: unknown) =>
      fail("OutputLost", "execution", `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    output.attach("stdout", child.stdout!, ioError("stdout"))
    // stderr goes through the wrapper's protocol parser first
    const filteredStderr = yield* launch.drive({
      writeStdin: (bytes) => write(stdin, bytes, ioError("stdin")),
      endStdin: end(stdin),
      stderr: fromReadable(stderr, ioError("stderr"))
    })
    const stderrParsed = yield* Deferred.make<void>()
    yield* filteredStderr.pipe(
      Stream.runForEach((bytes) => Effect.sync(() => output.push("stderr", bytes))),
      Effect.catchAll((e) => Effect.sync(() => output.fail(e))),
      Effect.ensuring(Effect.zipRight(Effect.sync(() => output.end("stderr")), Deferred.succeed(stderrParsed, undefined))),
      Effect.forkScoped
    )
    const supervised = yield* supervise(settings, target, invocation, child, selector, output, stderr)

    const exit = Effect.gen(function*() {
      const status = yield* supervised.exited
      // the status line is on stderr: the parser must have seen all of it
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
    return { pump: output.pump, exit, killConfirmed: supervised.killConfirmed } satisfies RawExecution
  })

/**
 * The process's life after the spawn: its exit, the exit grace for descendants that keep the pipes open, the
 * registry entry (host signals, layer close), and the finalizer that kills what is left and confirms it.
 */
const supervise = (
  settings: Settings,
  target: Target,
  invocation: Invocation,
  child: cp.ChildProcess,
  selector: () => Selector,
  output: Output.Output,
  stderrPipe?: Readable
) =>
  Effect.gen(function*() {
    const pid = child.pid!
    const startedAt = Date.now()
    let status: ExitStatus | undefined
    const exitWaiters: Array<(status: ExitStatus) => void> = []
    let graceTimer: ReturnType<typeof setTimeout> | undefined
    let reaper: ReturnType<typeof setInterval> | undefined
    // the stderr pipe itself, when a parser sits between it and the buffer (wrapper)
    const pipes = [child.stdout!, stderrPipe ?? child.stderr!]
    const pipesClosed = () => pipes.every((p) => p.destroyed || p.readableEnded)

    // exit grace: after the exit, descendants may hold the pipes only so long; then they are killed and
    // the pipes closed once nothing flows any more
    const afterGrace = () => {
      graceTimer = undefined
      if (pipesClosed()) return
      signalAll(selector(), "SIGKILL")
      let lastData = Date.now()
      for (const p of pipes) p.on("data", () => (lastData = Date.now()))
      reaper = setInterval(() => {
        if (pipesClosed()) {
          clearInterval(reaper)
          reaper = undefined
          return
        }
        for (const p of pipes) {
          if (!p.destroyed && p.readableLength === 0 && Date.now() - lastData >= IDLE_BEFORE_DESTROY) p.destroy()
        }
      }, POLL_MS)
    }
    child.once("exit", (code, signal) => {
      status = signal !== null ? { _tag: "Signaled", signal } : { _tag: "Exited", code: code ?? 255 }
      if (!pipesClosed() || !output.ended()) graceTimer = setTimeout(afterGrace, Duration.toMillis(settings.exitGrace))
      for (const wake of exitWaiters.splice(0)) wake(status)
    })
    const deregister = registry.register({ selector, owner: settings.owner })

    const exited = Effect.suspend(() =>
      status !== undefined ? Effect.succeed(status) : Effect.async<ExitStatus>((resume) => {
        exitWaiters.push((s) => resume(Effect.succeed(s)))
      })
    )

    let confirmed = false
    const waitGone = (limitMs: number) =>
      Effect.gen(function*() {
        const until = Date.now() + limitMs
        for (;;) {
          const gone = status !== undefined && survivors(selector()).length === 0
          if (gone || Date.now() >= until) return gone
          yield* sleep(POLL_MS)
        }
      })

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        // keep both pipes drained while the processes die (a blocked write must not keep them alive)
        output.detach()
        const cleanup = Effect.sync(() => {
          if (graceTimer !== undefined) clearTimeout(graceTimer)
          if (reaper !== undefined) clearInterval(reaper)
          child.stdin?.destroy()
          child.stdout?.destroy()
          child.stderr?.destroy()
          deregister()
        })
        // the common case: the process exited and left nothing behind (no /proc scan of the whole host)
        if (status !== undefined && !anyLeft(selector(), pid, Date.now() - startedAt)) {
          confirmed = true
          return cleanup
        }
        return Effect.gen(function*() {
          signalAll(selector(), "SIGTERM")
          let gone = yield* waitGone(Duration.toMillis(invocation.killGrace))
          if (!gone) {
            signalAll(selector(), "SIGKILL")
            gone = yield* waitGone(Duration.toMillis(settings.killWait))
          }
          confirmed = gone
        }).pipe(
          Effect.ensuring(cleanup),
          Effect.withSpan("LocalTransport.kill", { attributes: { targetId: target.id } })
        )
      })
    )
    return { exited, killConfirmed: Effect.sync(() => confirmed) }
  })
