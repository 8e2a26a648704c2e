/**
 * One local execution: the job's files shipped, the launch chosen (`launch.ts`: the program itself in a new
 * session, or core's POSIX wrapper with the stages, secrets and stdin on its stdin), the process spawned as the
 * leader of its own group, both pipes fed into core's `OutputBuffer` (the wrapper's stderr through its protocol
 * driver first), the exit observed, and closing the scope early kills the groups and every token carrier (TERM,
 * the kill grace, KILL) and confirms they are gone.
 *
 * @internal
 */
import * as OutputBuffer from "@runcmd/core/OutputBuffer"
import type * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Target } from "@runcmd/core/Target"
import type { ExitStatus, Invocation, RawExecution } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import type { Readable, Writable } from "node:stream"
import * as Errors from "./errors.js"
import * as Files from "./files.js"
import * as Launch from "./launch.js"
import type * as Lifeline from "./lifeline.js"
import * as PowerShell from "./powershell.js"
import { anyLeft, type Selector, signalAll, survivors } from "./processes.js"
import * as registry from "./registry.js"
import { end, write } from "./stdin.js"

/** @internal */
export interface Settings {
  readonly exitGrace: Duration.Duration
  /** How long the kill may take beyond the kill grace (KILL, then the check that everything is gone). */
  readonly killTimeout: Duration.Duration
  readonly env: { readonly [name: string]: string | undefined }
  readonly shell: string
  /** Spawn the program itself when the wrapper has nothing to do (no run-as, a command or sh/bash script). */
  readonly direct: boolean
  readonly owner: symbol
  /** The program that runs PowerShell scripts (`pwsh` on PATH by default). */
  readonly powershell?: string | undefined
  /** The layer's watchdog; absent when turned off (`lifeline: false`). */
  readonly lifeline: Lifeline.Lifeline | undefined
}

/**
 * A pipe hands over up to 64 KiB per read, so there is little to join: the consumer is woken at once rather than
 * after the I/O phase (measured: 128 MiB through a pump ran ~25% slower with the deferred wake).
 */
export const BUFFER: OutputBuffer.Options = { deferWake: false }

const POLL_MS = 50
/** A stream still open this long after the holders were killed, with nothing flowing, is closed by us. */
const IDLE_BEFORE_DESTROY = 1000

// processes die in real time: waits on them use the timer, whatever clock the caller's Effects run under
const sleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** @internal */
export const start = (
  settings: Settings,
  target: Target,
  invocation: Invocation
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  // the files' finalizer comes first, so it runs after the execution's (which end its processes)
  Effect.flatMap(Files.ship(invocation), (shipped) => {
    if (PowerShell.isPowerShell(shipped)) {
      const program = settings.powershell ?? PowerShell.DEFAULT_PROGRAM
      return PowerShell.start(settings, program, target, shipped, (token) => watch(settings, shipped, token))
    }
    const launch = Launch.choose(shipped, settings)
    return Effect.flatMap(watch(settings, shipped, launch.launch.token), (watched) =>
      launch._tag === "Direct"
        ? startDirect(settings, target, shipped, launch.launch, watched)
        : startWrapped(settings, target, shipped, launch.launch, watched))
  })

const unwatched: Lifeline.Watch = { group: () => {}, forget: () => {} }

/**
 * The execution told to the layer's watchdog before anything is spawned (so that a controller dying right after the
 * spawn still leaves it known by its token), and forgotten after the execution's own finalizer has ended it; a job
 * that must outlive the controller (`onControllerLoss: "continue"`) is not told.
 */
const watch = (
  settings: Settings,
  invocation: Invocation,
  token: string
): Effect.Effect<Lifeline.Watch, never, Scope.Scope> =>
  settings.lifeline === undefined || invocation.onControllerLoss === "continue"
    ? Effect.succeed(unwatched)
    : Effect.acquireRelease(
      Effect.sync(() => settings.lifeline!.watch(token, invocation.killGrace)),
      (watched) => Effect.sync(watched.forget)
    )

/** Waits for the child's `spawn` or `error` (a failed spawn has no pid and reports why on the next tick). */
export const spawned = (child: cp.ChildProcess): Effect.Effect<NodeJS.ErrnoException | undefined> =>
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
  launch: ScriptRender.DirectLaunch,
  watched: Lifeline.Watch
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const hasStdin = invocation.stdin !== undefined && invocation.stdin.length > 0
    const child = yield* Effect.try({
      try: () =>
        cp.spawn(launch.file, launch.args, {
          detached: true,
          ...(launch.cwd === undefined ? {} : { cwd: launch.cwd }),
          env: { ...settings.env, ...launch.environment() },
          stdio: [hasStdin ? "pipe" : "ignore", "pipe", "pipe"]
        }),
      catch: (cause) =>
        Errors.make("SpawnFailed", "delivery", `cannot start ${launch.file}: ${String(cause)}`, { cause })
    })
    const failure = yield* spawned(child)
    if (failure !== undefined) return yield* notStarted(launch, failure)
    const pid = child.pid!
    watched.group(pid)
    if (hasStdin) {
      child.stdin!.on("error", () => {})
      child.stdin!.end(invocation.stdin)
    }
    const selector: Selector = { groups: [pid], token: { variable: launch.tokenVariable, value: launch.token } }
    const output = OutputBuffer.make<TransportError>(BUFFER)
    OutputBuffer.attachReadable(output, "stdout", child.stdout!, Errors.io("stdout"))
    OutputBuffer.attachReadable(output, "stderr", child.stderr!, Errors.io("stderr"))
    const supervised = yield* supervise(settings, target, invocation, child, () => selector, [output])
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
const notStarted = (launch: ScriptRender.DirectLaunch, error: NodeJS.ErrnoException) => {
  if (launch.cwd !== undefined && !isDirectory(launch.cwd)) {
    return Effect.fail(
      Errors.make(
        "SpawnFailed",
        "delivery",
        `the working directory ${JSON.stringify(launch.cwd)} does not exist or is not accessible`,
        { detail: { wrapper: "CwdNotFound", cwd: launch.cwd } }
      )
    )
  }
  const code = error.code === "ENOENT" ? 127 : error.code === "EACCES" ? 126 : undefined
  if (code === undefined) {
    return Effect.fail(
      Errors.make("SpawnFailed", "delivery", `cannot start ${launch.file}: ${error.message}`, { cause: error })
    )
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
  invocation: Invocation,
  launch: ScriptRender.WrapperLaunch,
  watched: Lifeline.Watch
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const [, ...args] = launch.argv
    const child = yield* Effect.try({
      try: () =>
        cp.spawn(settings.shell, args, {
          detached: true,
          env: settings.env,
          stdio: ["pipe", "pipe", "pipe"]
        }),
      catch: (cause) =>
        Errors.make("SpawnFailed", "delivery", `cannot start ${settings.shell}: ${String(cause)}`, { cause })
    })
    const failure = yield* spawned(child)
    if (failure !== undefined) {
      return yield* Errors.make("SpawnFailed", "delivery", `cannot start ${settings.shell}: ${failure.message}`, {
        cause: failure
      })
    }
    const pid = child.pid!
    watched.group(pid)
    // the user's PGID as soon as the wrapper reports it
    let userGroup: number | undefined
    yield* launch.pgid.pipe(
      Effect.tap((g) =>
        Effect.sync(() => {
          userGroup = g
          watched.group(g)
        })
      ),
      Effect.forkScoped
    )
    const selector = (): Selector => ({
      groups: userGroup === undefined ? [pid] : [pid, userGroup],
      token: { variable: launch.tokenVariable, value: launch.token }
    })
    return yield* superviseDriven(settings, target, invocation, child, selector, launch)
  })

/**
 * A child driven over its stdin whose stderr carries the launch's protocol lines (core's POSIX wrapper, the
 * PowerShell twin): stdout into the output, stderr through the launch's driver first (what it cleans goes into the
 * output at once), both pipes paused while the output is above its high-water mark; supervised, and its exit
 * interpreted once the driver has read all of stderr (the status line, a failed `cd`, are there).
 */
export const superviseDriven = (
  settings: Settings,
  target: Target,
  invocation: Invocation,
  child: cp.ChildProcess,
  selector: () => Selector,
  launch: Pick<ScriptRender.WrapperLaunch, "drive" | "interpretExit">
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const stdin = child.stdin! as Writable
    const stderr = child.stderr! as Readable
    stdin.on("error", () => {})
    const output = OutputBuffer.make<TransportError>(BUFFER)
    OutputBuffer.attachReadable(output, "stdout", child.stdout!, Errors.io("stdout"))
    output.addProducer({
      pause: () => void stderr.pause(),
      resume: () => {
        if (!stderr.destroyed) stderr.resume()
      }
    })
    const rawStderr = OutputBuffer.make<TransportError>(BUFFER)
    rawStderr.end("stdout")
    OutputBuffer.attachReadable(rawStderr, "stderr", stderr, Errors.io("stderr"))
    const cleanStderr = yield* launch.drive({
      writeStdin: (bytes) => write(stdin, bytes, Errors.io("stdin")),
      endStdin: end(stdin),
      stderr: Stream.map(OutputBuffer.toStream(rawStderr), (chunk) => chunk.bytes)
    })
    const stderrParsed = Effect.unsafeMakeLatch(false)
    yield* cleanStderr.pipe(
      Stream.runForEach((bytes) => Effect.sync(() => output.push("stderr", bytes))),
      Effect.catchAll((e) => Effect.sync(() => output.fail(e))),
      Effect.ensuring(Effect.zipRight(Effect.sync(() => output.end("stderr")), stderrParsed.open)),
      Effect.forkScoped
    )
    const supervised = yield* supervise(settings, target, invocation, child, selector, [output, rawStderr], stderr)
    const exit = Effect.gen(function*() {
      const status = yield* supervised.exited
      yield* stderrParsed.await
      return yield* launch.interpretExit(status)
    })
    return { pump: output.pump, exit, killConfirmed: supervised.killConfirmed } satisfies RawExecution
  })

/**
 * The process's life after the spawn: its exit, the exit grace for descendants that keep the pipes open, the
 * registry entry (host signals, layer close), and the finalizer that kills what is left and confirms it.
 */
export const supervise = (
  settings: Settings,
  target: Target,
  invocation: Invocation,
  child: cp.ChildProcess,
  selector: () => Selector,
  /** The execution's buffers: discarded when the scope closes, and ended before the exit grace is skipped. */
  buffers: ReadonlyArray<OutputBuffer.OutputBuffer<TransportError>>,
  stderrPipe?: Readable
) =>
  Effect.gen(function*() {
    const pid = child.pid!
    const startedAt = Date.now()
    const outputEnded = () => buffers.every((b) => b.ended())
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
      if (!pipesClosed() || !outputEnded()) graceTimer = setTimeout(afterGrace, Duration.toMillis(settings.exitGrace))
      for (const wake of exitWaiters.splice(0)) wake(status)
    })
    const deregister = registry.register({
      selector,
      owner: settings.owner,
      continues: invocation.onControllerLoss === "continue"
    })

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
          const gone = status !== undefined && survivors(selector(), POLL_MS / 2).length === 0
          if (gone || Date.now() >= until) return gone
          yield* sleep(POLL_MS)
        }
      })

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        // keep both pipes drained while the processes die (a blocked write must not keep them alive)
        for (const b of buffers) b.discard()
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
            gone = yield* waitGone(Duration.toMillis(settings.killTimeout))
          }
          confirmed = gone
        }).pipe(
          Effect.ensuring(cleanup),
          Effect.withSpan("LocalTransport.kill", {
            attributes: { "runcmd.target.id": target.id, "runcmd.transport": Errors.TRANSPORT }
          })
        )
      })
    )
    return { exited, killConfirmed: Effect.sync(() => confirmed) }
  })
