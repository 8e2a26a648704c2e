/**
 * One SSH execution: the job's files shipped, the launch chosen (`launch.ts`), an exec channel opened on a pooled
 * connection and driven, its output fed into core's `OutputBuffer`, the exit read from the channel, and the kill
 * run over a second channel when the scope closes early.
 *
 * @internal
 */
import * as OutputBuffer from "@runcmd/core/OutputBuffer"
import type { ExitStatus, Invocation, RawExecution } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ClientChannel } from "ssh2"
import type * as SshTarget from "../SshTarget.js"
import * as Errors from "./errors.js"
import { normalizeSignal, openExec, runCollect } from "./exec.js"
import * as Files from "./files.js"
import * as Launch from "./launch.js"
import * as Lifeline from "./lifeline.js"
import type * as LoginShell from "./loginShell.js"
import type * as Pool from "./pool.js"

/** stderr goes through the launch's protocol parser: smaller batches. */
const MAX_STDERR_BATCH = 64 * 1024

/** @internal */
export interface Settings {
  readonly pool: Pool.Pool
  /** How long the kill may take beyond the kill grace (the kill script over a second channel). */
  readonly killTimeout: Duration.Duration
  /**
   * After the exit status, how long the channel may stay open with no output (processes left behind holding
   * the output pipe) before they are killed and the channel closed.
   */
  readonly exitGrace: Duration.Duration
  /** Use the direct launch through the login shell when the invocation allows it. */
  readonly direct: boolean
  /** The target user's login shell (declared, or asked once per user and host). */
  readonly loginShell: (target: SshTarget.SshTarget) => Effect.Effect<LoginShell.Answer, TransportError>
  /** The lifelines of the pooled connections; absent when turned off (`lifeline: false`). */
  readonly lifelines: Lifeline.Lifelines | undefined
}

/** @internal */
export const start = (
  settings: Settings,
  target: SshTarget.SshTarget,
  invocation: Invocation
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    // the files' finalizer comes first, so it runs after the execution's (which end its processes)
    const shipped = yield* Files.ship(settings.pool, target, invocation)
    const login = yield* settings.loginShell(target)
    const launch = yield* Launch.choose(shipped, {
      direct: settings.direct,
      loginShell: Effect.succeed(login)
    })
    return yield* exec(settings, target, launch, invocation, login)
  })

/**
 * Runs one launch: exec its command line, drive it over stdin, push stdout (and stderr, as the launch's driver
 * cleaned it) into the output buffer that the consumer pumps (the channel is paused above its high-water mark),
 * report the exit from the `exit` event. When the scope closes before the process ended, the kill script runs over
 * a second channel, and what the server still sends is read and dropped.
 */
const exec = (
  settings: Settings,
  target: SshTarget.SshTarget,
  launch: Launch.Launch,
  invocation: Invocation,
  login: LoginShell.Answer
): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const { pool } = settings
    const killGrace = invocation.killGrace
    // for the exit-grace watcher, started from ssh2's `exit` event only when the channel stays open after it
    const runtime = yield* Effect.runtime<never>()
    let channel: ClientChannel | undefined
    let channelClosed = false
    let exitStatus: ExitStatus | undefined
    // set once the channel is open (ssh2's callbacks may run before)
    const held: { lease: Pool.Lease | undefined; offClose: (() => void) | undefined } = {
      lease: undefined,
      offClose: undefined
    }
    let killResult: boolean | undefined
    const closed = Deferred.unsafeMake<void>(FiberId.none)

    // output plumbing: stdout into the output buffer, raw stderr to the launch's driver (which puts what it cleaned
    // into the output buffer at once); the channel pauses while the output is above its high-water mark
    const output = OutputBuffer.make<TransportError>()
    const rawStderr = OutputBuffer.make<TransportError>({ maxBatch: MAX_STDERR_BATCH })
    rawStderr.end("stdout")
    let paused = false
    // after the close, ssh2 only flushes what it buffered (bounded by its window): never pause again
    let draining = false
    output.addProducer({
      pause: () => {
        if (paused || draining || channel === undefined) return
        paused = true
        channel.pause()
        channel.stderr.pause()
      },
      resume: () => {
        if (!paused || channel === undefined) return
        paused = false
        channel.resume()
        channel.stderr.resume()
      }
    })

    let lastActivity = 0
    const onStdout = (data: Buffer) => {
      if (exitStatus !== undefined) lastActivity = Date.now()
      output.push("stdout", data)
    }
    const onStderr = (data: Buffer) => {
      if (exitStatus !== undefined) lastActivity = Date.now()
      rawStderr.push("stderr", data)
    }
    const endStdout = () => output.end("stdout")
    const endStderr = () => rawStderr.end("stderr")
    const onClosed = () => {
      if (channelClosed) return
      channelClosed = true
      stopWatch()
      held.lease?.release()
      Deferred.unsafeDone(closed, Exit.void)
      // ssh2 has pushed EOF on both streams; what they still buffer (at most a window) must reach the buffers
      // before they end: let both flow, and end the buffers on their `end` events (or shortly after, at the latest)
      if (channel === undefined) {
        endStdout()
        endStderr()
        return
      }
      draining = true
      paused = false
      channel.resume()
      channel.stderr.resume()
      const t = setTimeout(() => {
        endStdout()
        endStderr()
      }, 2000)
      t.unref()
    }

    // the script exited but the channel stays open: something it started still holds the output pipe. Once no
    // output came for `exitGrace` (not counting time the consumer held the channel paused), kill what is left of
    // the execution (its group and token) so the pipe closes; close the channel ourselves as a last resort. A
    // timer, not a fiber: the channel almost always closes right after the exit.
    let watchTimer: ReturnType<typeof setInterval> | undefined
    let watchFiber: Fiber.RuntimeFiber<void> | undefined
    const stopWatch = () => {
      if (watchTimer === undefined) return
      clearInterval(watchTimer)
      watchTimer = undefined
    }
    const graceMs = Duration.toMillis(settings.exitGrace)
    const onExit = () => {
      if (channelClosed || watchTimer !== undefined || watchFiber !== undefined) return
      lastActivity = Date.now()
      watchTimer = setInterval(() => {
        if (channelClosed) return stopWatch()
        if (paused) lastActivity = Date.now()
        if (Date.now() - lastActivity < graceMs) return
        stopWatch()
        watchFiber = Runtime.runFork(runtime)(afterExitKill)
      }, Math.max(1, Math.min(100, graceMs)))
    }

    const bind = (ch: ClientChannel) => {
      channel = ch
      ch.on("error", () => {
        // errors surface as a close without exit status
      })
      ch.on("data", onStdout)
      ch.stderr.on("data", onStderr)
      ch.on("end", endStdout)
      ch.stderr.on("end", endStderr)
      ch.on("exit", (code: number | null | undefined, signal?: string) => {
        exitStatus = typeof code === "number"
          ? { _tag: "Exited", code }
          : { _tag: "Signaled", signal: normalizeSignal(signal) }
        onExit()
      })
      ch.on("close", onClosed)
    }

    // the kill: TERM the group and every process carrying the token, KILL after the grace, report what is left;
    // through the connection's lifeline when it has one (no session to open), else over a channel of its own
    const lifelines = settings.lifelines
    const runKill = (why: "scope" | "pipe", pooled: Pool.Pooled) =>
      Effect.gen(function*() {
        const pgid = Option.getOrUndefined(yield* launch.pgidNow)
        const budget = Duration.sum(killGrace, settings.killTimeout)
        if (lifelines !== undefined && launch.lifelineKill !== undefined) {
          // interruptible: in a finalizer, a timeout cannot otherwise stop what it times
          const answer = yield* Effect.interruptible(lifelines.kill(pooled, launch.lifelineKill(pgid, killGrace))).pipe(
            Effect.timeout(budget),
            Effect.option
          )
          // no answer within the budget: not confirmed (truthfully); no lifeline: a channel of its own
          if (Option.isNone(answer)) return false
          if (answer.value !== undefined) return Launch.isKillConfirmed(answer.value)
        }
        const result = yield* Effect.interruptible(runCollect(pool, target, launch.killScript(pgid, killGrace), {
          prefer: pooled.connection.isOpen() ? pooled : undefined
        })).pipe(Effect.timeout(budget), Effect.option)
        return Option.isSome(result) && Launch.isKillConfirmed(result.value.stdout)
      }).pipe(
        Effect.withSpan("SshTransport.kill", {
          attributes: { "runcmd.target.id": target.id, "runcmd.transport": Errors.TRANSPORT, "runcmd.kill.reason": why }
        })
      )

    const forceClose = Effect.sync(() => {
      if (channelClosed || channel === undefined) return
      try {
        channel.close()
      } catch {
        // gone
      }
      onClosed()
    })

    const afterExitKill: Effect.Effect<void> = Effect.suspend(() => {
      if (channelClosed || held.lease === undefined) return Effect.void
      const pooled = held.lease.pooled
      return runKill("pipe", pooled).pipe(
        Effect.zipRight(
          Deferred.await(closed).pipe(
            Effect.timeout(Duration.millis(Duration.toMillis(killGrace) + 5000)),
            Effect.ignore
          )
        ),
        Effect.zipRight(forceClose)
      )
    })

    // one finalizer: stop the watcher; if the scope closes before the process ended (timeout, cancel, a lost
    // connection), or after the exit with processes left holding the output, kill over a second channel; then
    // close the channel and free its slot
    const release = (opened: { readonly value: ClientChannel; readonly lease: Pool.Lease }) =>
      Effect.suspend(() => {
        // the common case: the process exited and the channel closed, nothing left to do
        if (exitStatus !== undefined && channelClosed && watchFiber === undefined) {
          stopWatch()
          killResult = true
          held.offClose?.()
          return Effect.void
        }
        return releaseSlow(opened)
      })
    const releaseSlow = (opened: { readonly value: ClientChannel; readonly lease: Pool.Lease }) =>
      Effect.gen(function*() {
        stopWatch()
        if (watchFiber !== undefined) yield* Fiber.interrupt(watchFiber)
        if (!channelClosed) {
          // nobody consumes any more: what the server still sends is read and dropped, so it can flush and close
          output.discard()
          rawStderr.discard()
        }
        if (exitStatus !== undefined && channelClosed) {
          killResult = true
        } else {
          const confirmed = yield* runKill("scope", opened.lease.pooled)
          killResult = confirmed
          // the channel closes once the process is gone; wait briefly so its session slot is freed in order
          yield* Effect.interruptible(Deferred.await(closed)).pipe(
            Effect.timeout(Duration.millis(confirmed ? 1000 : 100)),
            Effect.ignore
          )
        }
        held.offClose?.()
        if (channelClosed) return
        try {
          opened.value.close()
        } catch {
          // connection gone
        }
        // give the server a moment to free the session, then free our slot anyway
        const t = setTimeout(() => opened.lease.release(), 2000)
        t.unref()
      })

    // the lifeline of the connection learns the token before the execution's channel is opened, and forgets it
    // after the release below has ended the execution (a job that must outlive runcmd is not told)
    const token = launch.token
    let watched: Lifeline.Watch | undefined
    // the loop needs /bin/sh on the host (see Lifeline.supported)
    const openOn = lifelines === undefined || token === undefined || target.os === "windows" ||
        !Lifeline.supported(login)
      ? (p: Pool.Pooled) => openExec(p, launch.commandLine, bind)
      : invocation.onControllerLoss === "continue"
      // not told, and spared: the loop discovers the connection's executions
      ? (p: Pool.Pooled) => Effect.suspend(() => (lifelines.spare(p, token), openExec(p, launch.commandLine, bind)))
      : (p: Pool.Pooled) =>
        Effect.flatMap(lifelines.watch(p, token, killGrace, login), (w) => {
          watched = w
          return openExec(p, launch.commandLine, bind).pipe(Effect.onError(() => Effect.sync(w.forget)))
        })
    yield* Effect.addFinalizer(() => Effect.sync(() => watched?.forget()))
    const opened = yield* Effect.acquireRelease(pool.withChannel(target, openOn), release)
    if (watched !== undefined && launch.pgid !== undefined) {
      const w = watched
      // a run-as job runs as another user, out of the login user's sweep: the lifeline keeps its kill for EOF
      const recipe = invocation.runAs !== undefined ? launch.lifelineKill : undefined
      yield* launch.pgid.pipe(
        Effect.tap((g) =>
          Effect.sync(() => {
            w.group(g)
            if (recipe !== undefined) w.recipe(recipe(g, killGrace))
          })
        ),
        Effect.forkScoped
      )
    }
    held.lease = opened.lease
    if (channelClosed) opened.lease.release()
    const pooled = opened.lease.pooled
    const ch = opened.value
    held.offClose = pooled.connection.onClose(onClosed)

    // stdin: write with backpressure, then half-close (never before every byte was handed to ssh2)
    const writeStdin = (bytes: Uint8Array): Effect.Effect<void> =>
      Effect.async<void>((resume) => {
        if (channelClosed || !ch.writable) return resume(Effect.void)
        const ok = ch.write(bytes)
        if (ok) return resume(Effect.void)
        const done = () => {
          ch.off("drain", done)
          ch.off("close", done)
          resume(Effect.void)
        }
        ch.on("drain", done)
        ch.on("close", done)
      })
    const endStdin: Effect.Effect<void> = Effect.sync(() => {
      if (!channelClosed && ch.writable) ch.end()
    })

    // the wrapper's protocol lines (PGID, status, sudo prompt) are read from stderr by the driver, from now on
    const cleanStderr = yield* launch.drive({
      writeStdin,
      endStdin,
      stderr: Stream.map(OutputBuffer.toStream(rawStderr), (chunk) => chunk.bytes)
    })
    const stderrDone = Effect.unsafeMakeLatch(false)
    yield* cleanStderr.pipe(
      Stream.runForEach((bytes) => Effect.sync(() => output.push("stderr", bytes))),
      Effect.catchAll((e) => Effect.sync(() => output.fail(e))),
      Effect.ensuring(Effect.zipRight(Effect.sync(() => output.end("stderr")), stderrDone.open)),
      Effect.forkScoped
    )

    // the status the wrapper reported is known once stderr has been read to its end (the caller drains the
    // output before awaiting the exit, as core's Execution does)
    const exit: Effect.Effect<ExitStatus, TransportError> = Effect.flatMap(Deferred.await(closed), () => {
      if (exitStatus !== undefined) {
        const status = exitStatus
        return Effect.zipRight(stderrDone.await, launch.interpretExit(status))
      }
      const lost = pooled.connection.closedBecause()
      return Effect.fail(Errors.make(
        "ConnectionLost",
        "execution",
        lost === undefined
          ? `the channel to ${pooled.connection.label} closed without an exit status (the remote state is unknown)`
          : `${lost.description}; no exit status received (the remote state is unknown)`,
        { detail: { hop: pooled.connection.label }, cause: lost }
      ))
    })

    return {
      pump: output.pump,
      exit,
      killConfirmed: Effect.sync(() => killResult ?? false)
    } satisfies RawExecution
  })
