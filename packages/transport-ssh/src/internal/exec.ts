/** @internal */
import type { RawChunk } from "@runcmd/core/OutputChunk"
import type { ExitStatus, RawExecution } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import type { ClientChannel } from "ssh2"
import type * as Scope from "effect/Scope"
import type * as SshTarget from "../SshTarget.js"
import * as Errors from "./errors.js"
import * as Launch from "./launch.js"
import * as Pool from "./pool.js"

/** Buffered output bytes (both streams) above which the channel is paused, and below which it resumes. */
const HIGH_WATER = 1024 * 1024
const LOW_WATER = 256 * 1024

type Item = { readonly _tag: "Data"; readonly bytes: Uint8Array } | { readonly _tag: "End" }

/**
 * Opens an exec channel on a pooled connection (no pty). `bind` runs synchronously in ssh2's callback, before
 * any further packet is parsed: a fast command's data, exit status and close may arrive in the same read.
 *
 * @internal
 */
export const openExec = (
  pooled: Pool.Pooled,
  command: string,
  bind: (channel: ClientChannel) => void
): Effect.Effect<ClientChannel, Pool.OpenFailure> =>
  Effect.suspend(() => {
    let opened: ClientChannel | undefined
    const open = Effect.async<ClientChannel, Pool.OpenFailure>((resume) => {
      let cancelled = false
      try {
        pooled.connection.client.exec(command, {}, (err, channel) => {
          if (cancelled) {
            if (!err) discard(channel)
            return
          }
          if (err) {
            resume(Effect.fail(Pool.classifyOpenError(err, pooled)))
            return
          }
          opened = channel
          bind(channel)
          resume(Effect.succeed(channel))
        })
      } catch (e) {
        resume(Effect.fail(Pool.classifyOpenError(e, pooled)))
      }
      return Effect.sync(() => {
        cancelled = true
      })
    })
    // interrupted after the channel opened (even right after): close it; the bootstrap then reads EOF and exits
    return Effect.uninterruptible(
      Effect.interruptible(open).pipe(Effect.onInterrupt(() => Effect.sync(() => opened !== undefined && discard(opened))))
    )
  })

const discard = (channel: ClientChannel) => {
  channel.on("error", () => {})
  channel.resume()
  channel.stderr.resume()
  try {
    channel.end()
    channel.close()
  } catch {
    // connection gone
  }
}

/** Runs a short command on its own channel and collects its stdout (for kill scripts). @internal */
export const runCollect = (
  pool: Pool.Pool,
  target: SshTarget.SshTarget,
  command: string,
  options: { readonly prefer?: Pool.Pooled | undefined; readonly stdin?: string | undefined }
): Effect.Effect<{ readonly stdout: string; readonly status: ExitStatus | undefined }, TransportError> =>
  Effect.gen(function*() {
    const done = yield* Deferred.make<void>()
    let out = ""
    let status: ExitStatus | undefined
    const bind = (channel: ClientChannel) => {
      channel.on("error", () => {})
      channel.on("data", (d: Buffer) => {
        if (out.length < 65536) out += d.toString("utf8")
      })
      channel.stderr.on("data", () => {})
      channel.on("exit", (code: number | null | undefined, signal?: string) => {
        status = typeof code === "number" ? { _tag: "Exited", code } : { _tag: "Signaled", signal: normaliseSignal(signal) }
      })
      channel.on("close", () => Deferred.unsafeDone(done, Exit.void))
      channel.end(options.stdin ?? "")
    }
    return yield* Effect.acquireUseRelease(
      pool.withChannel(target, (p) => openExec(p, command, bind), { urgent: true, prefer: options.prefer }),
      ({ lease }) =>
        Effect.suspend(() => {
          const offClose = lease.pooled.connection.onClose(() => Deferred.unsafeDone(done, Exit.void))
          return Deferred.await(done).pipe(Effect.ensuring(Effect.sync(offClose)))
        }).pipe(Effect.map(() => ({ stdout: out, status }))),
      ({ lease, value: channel }) =>
        Effect.sync(() => {
          try {
            channel.close()
          } catch {
            // gone
          }
          lease.release()
        })
    )
  })

/** `SIGTERM` whether ssh2 says `TERM` or `SIGTERM`. @internal */
export const normaliseSignal = (signal: string | undefined): string =>
  signal === undefined || signal === "" ? "SIGUNKNOWN" : signal.startsWith("SIG") ? signal : `SIG${signal}`

/** @internal */
export interface ExecOptions {
  readonly pool: Pool.Pool
  readonly target: SshTarget.SshTarget
  readonly launch: Launch.Launch
  readonly killGrace: Duration.Duration
  /** Upper bound on the kill on scope close, beyond the grace. */
  readonly killTimeout: Duration.Duration
  /**
   * After the exit status, how long the channel may stay open with no output (processes left behind holding
   * the output pipe) before they are killed and the channel closed.
   */
  readonly exitGrace: Duration.Duration
}

/**
 * Starts one execution: exec the launch's command line, drive the wrapper over stdin, drain both streams into
 * one output stream (pausing the channel above a high-water mark), report the exit from the `exit` event. When
 * the scope closes before the process ended, the kill script runs over a second channel.
 *
 * @internal
 */
export const start = (options: ExecOptions): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const { launch, pool, target } = options
    let channel: ClientChannel | undefined
    let channelClosed = false
    let exitStatus: ExitStatus | undefined
    let lease: Pool.Lease | undefined
    const closed = yield* Deferred.make<void>()
    const killConfirmed = yield* Deferred.make<boolean>()

    // output plumbing: two queues, one byte budget; the channel pauses above HIGH_WATER
    const stdoutQ = yield* Queue.unbounded<Item>()
    const stderrQ = yield* Queue.unbounded<Item>()
    let buffered = 0
    let paused = false
    let stdoutEnded = false
    let stderrEnded = false
    const pause = () => {
      if (paused || channel === undefined) return
      paused = true
      channel.pause()
      channel.stderr.pause()
    }
    const resume = () => {
      if (!paused || channel === undefined) return
      paused = false
      channel.resume()
      channel.stderr.resume()
    }
    let lastActivity = Date.now()
    const exitSeen = yield* Deferred.make<void>()
    const onData = (q: Queue.Queue<Item>) => (data: Buffer) => {
      lastActivity = Date.now()
      buffered += data.length
      Queue.unsafeOffer(q, { _tag: "Data", bytes: data })
      if (buffered > HIGH_WATER) pause()
    }
    const endStdout = () => {
      if (stdoutEnded) return
      stdoutEnded = true
      Queue.unsafeOffer(stdoutQ, { _tag: "End" })
    }
    const endStderr = () => {
      if (stderrEnded) return
      stderrEnded = true
      Queue.unsafeOffer(stderrQ, { _tag: "End" })
    }
    const onClosed = () => {
      if (channelClosed) return
      channelClosed = true
      lease?.release()
      Deferred.unsafeDone(closed, Exit.void)
      // ssh2 has pushed EOF on both streams; what they still buffer (at most a window each) must reach the queues
      // before they end: let both flow, and end the queues on their `end` events (or shortly after, at the latest)
      if (channel === undefined) {
        endStdout()
        endStderr()
        return
      }
      paused = false
      channel.resume()
      channel.stderr.resume()
      const t = setTimeout(() => {
        endStdout()
        endStderr()
      }, 2000)
      t.unref()
    }
    const bind = (ch: ClientChannel) => {
      channel = ch
      ch.on("error", () => {
        // errors surface as a close without exit status
      })
      ch.on("data", onData(stdoutQ))
      ch.stderr.on("data", onData(stderrQ))
      ch.on("end", endStdout)
      ch.stderr.on("end", endStderr)
      ch.on("exit", (code: number | null | undefined, signal?: string) => {
        exitStatus = typeof code === "number" ? { _tag: "Exited", code } : { _tag: "Signaled", signal: normaliseSignal(signal) }
        lastActivity = Date.now()
        Deferred.unsafeDone(exitSeen, Exit.void)
      })
      ch.on("close", onClosed)
    }

    const opened = yield* Effect.acquireRelease(
      pool.withChannel(target, (p) => openExec(p, launch.commandLine, bind)),
      (opened) =>
        Effect.sync(() => {
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
    )
    lease = opened.lease
    if (channelClosed) lease.release()
    const pooled = lease.pooled
    const ch = opened.value
    const offClose = pooled.connection.onClose(onClosed)
    yield* Effect.addFinalizer(() => Effect.sync(offClose))

    const fromQueue = (q: Queue.Queue<Item>): Stream.Stream<Uint8Array, TransportError> =>
      Stream.repeatEffectChunkOption(
        Effect.flatMap(Queue.takeBetween(q, 1, 16), (items) => {
          const out: Array<Uint8Array> = []
          let ended = false
          for (const item of items) {
            if (item._tag === "End") {
              ended = true
              break
            }
            buffered -= item.bytes.length
            out.push(item.bytes)
          }
          if (paused && buffered < LOW_WATER) resume()
          if (ended) {
            // put the end back so a later pull ends too
            Queue.unsafeOffer(q, { _tag: "End" })
            return out.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(out)) : Effect.fail(Option.none())
          }
          return Effect.succeed(Chunk.unsafeFromArray(out))
        })
      )

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

    // the wrapper's protocol lines (PGID, status, sudo prompt) are read from stderr by the driver
    const stderrDone = yield* Deferred.make<void>()
    const stderrClean = yield* launch.drive({ writeStdin, endStdin, stderr: fromQueue(stderrQ) })
    const output: Stream.Stream<RawChunk, TransportError> = Stream.merge(
      Stream.map(fromQueue(stdoutQ), (bytes): RawChunk => ({ stream: "stdout", bytes })),
      Stream.map(stderrClean, (bytes): RawChunk => ({ stream: "stderr", bytes })).pipe(
        Stream.ensuring(Deferred.succeed(stderrDone, undefined))
      )
    )

    // the status the wrapper reported is known once stderr has been read to its end (the caller drains the
    // output before awaiting the exit, as core's Execution does)
    const exit: Effect.Effect<ExitStatus, TransportError> = Effect.flatMap(Deferred.await(closed), () => {
      if (exitStatus !== undefined) {
        const status = exitStatus
        return Effect.zipRight(Deferred.await(stderrDone), launch.interpretExit(status))
      }
      const lost = pooled.connection.closedBecause()
      return Effect.fail(Errors.make(
        "ConnectionLost",
        "execution",
        lost === undefined
          ? `the channel to ${pooled.connection.label} closed without an exit status (the remote state is unknown)`
          : `${lost.description}; no exit status received (the remote state is unknown)`,
        { targetId: target.id, detail: { hop: pooled.connection.label }, cause: lost }
      ))
    })

    // the kill: TERM the group and every process carrying the token, KILL after the grace, report what is left
    const runKill = (why: "scope" | "pipe") =>
      Effect.gen(function*() {
        const pgid = yield* launch.pgidNow
        const script = launch.killScript(Option.getOrUndefined(pgid), options.killGrace)
        const budget = Duration.sum(options.killGrace, options.killTimeout)
        const result = yield* runCollect(pool, target, script, {
          prefer: pooled.connection.isOpen() ? pooled : undefined
        }).pipe(Effect.timeout(budget), Effect.option)
        return Option.isSome(result) && Launch.isKillConfirmed(result.value.stdout)
      }).pipe(Effect.withSpan("SshTransport.kill", { attributes: { "runcmd.target": target.id, "runcmd.why": why } }))

    // scope closing before the process ended (timeout, cancel, or a lost connection): kill over a second channel
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (exitStatus !== undefined && channelClosed) {
          yield* Deferred.succeed(killConfirmed, true)
          return
        }
        // not exited, or exited with processes left holding the output pipe
        const confirmed = yield* runKill("scope")
        yield* Deferred.succeed(killConfirmed, confirmed)
        // the channel closes once the process is gone; wait briefly so its session slot is freed in order
        yield* Deferred.await(closed).pipe(Effect.timeout(Duration.millis(confirmed ? 1000 : 100)), Effect.ignore)
      }).pipe(Effect.uninterruptible)
    )

    // the script exited but the channel stays open: something it started still holds the output pipe. Once no
    // output came for `exitGrace` (not counting time the consumer held the channel paused), kill what is left of
    // the execution (its group and token) so the pipe closes; close the channel ourselves as a last resort.
    const forceClose = Effect.sync(() => {
      if (channelClosed) return
      try {
        ch.close()
      } catch {
        // gone
      }
      onClosed()
    })

    yield* Effect.gen(function*() {
      yield* Deferred.await(exitSeen)
      const graceMs = Duration.toMillis(options.exitGrace)
      for (;;) {
        if (channelClosed) return
        if (paused) lastActivity = Date.now()
        if (Date.now() - lastActivity >= graceMs) break
        yield* Deferred.await(closed).pipe(Effect.timeout(Duration.millis(100)), Effect.ignore)
      }
      yield* runKill("pipe")
      const waitMs = Duration.toMillis(options.killGrace) + 5000
      yield* Deferred.await(closed).pipe(Effect.timeout(Duration.millis(waitMs)), Effect.ignore)
      yield* forceClose
    }).pipe(Effect.interruptible, Effect.forkScoped)

    return {
      output,
      exit,
      killConfirmed: Deferred.isDone(killConfirmed).pipe(
        Effect.flatMap((done) => (done ? Deferred.await(killConfirmed) : Effect.succeed(false)))
      )
    } satisfies RawExecution
  })
