/** @internal */
import type { RawChunk } from "@runcmd/core/OutputChunk"
import type { ExitStatus, RawExecution } from "@runcmd/core/Transport"
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
import * as Launch from "./launch.js"
import * as Pool from "./pool.js"

/** Received output bytes (both streams) not yet taken by the consumer above which the channel is paused, and
 * below which it resumes. ssh2 holds at most its window (2 MiB) more. */
const HIGH_WATER = 1024 * 1024
const LOW_WATER = 256 * 1024
/**
 * Small chunks that arrived while the consumer was busy are handed on together, concatenated up to this size: the
 * per-chunk costs downstream (stamping, events, sinks) are then paid once per batch. A chunk of `SOLO` bytes or
 * more (ssh2 delivers bulk output in 32 KiB packets) goes on as it is: copying it costs more (allocation, GC) than
 * the event it would save.
 */
const MAX_BATCH = 256 * 1024
const SOLO = 16 * 1024
/** stderr goes through the wrapper's protocol parser: smaller batches. */
const MAX_STDERR_BATCH = 64 * 1024

/** Data received from one of the channel's streams and not yet taken. */
interface Inbox {
  readonly chunks: Array<Buffer>
  bytes: number
  ended: boolean
  waiter: (() => void) | undefined
  wakeScheduled: boolean
}

const makeInbox = (): Inbox => ({ chunks: [], bytes: 0, ended: false, waiter: undefined, wakeScheduled: false })

/** Wakes the consumer after the current I/O phase, so that the packets read in it are taken together. */
const wake = (inbox: Inbox) => {
  if (inbox.waiter === undefined || inbox.wakeScheduled) return
  inbox.wakeScheduled = true
  setImmediate(() => {
    inbox.wakeScheduled = false
    const waiter = inbox.waiter
    inbox.waiter = undefined
    waiter?.()
  })
}

/** Takes the first chunk as it is when it is large; else the small chunks at the front, up to `max` bytes, as one. */
const takeBatch = (inbox: Inbox, max: number): Buffer => {
  const chunks = inbox.chunks
  const first = chunks[0]!
  let n = 1
  let size = first.length
  if (size < SOLO) {
    while (n < chunks.length && chunks[n]!.length < SOLO && size + chunks[n]!.length <= max) size += chunks[n++]!.length
  }
  inbox.bytes -= size
  if (n === 1) return chunks.shift()!
  return Buffer.concat(chunks.splice(0, n), size)
}

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
 * Starts one execution: exec the launch's command line, drive the wrapper over stdin, push both streams to the
 * consumer through `pump` (small chunks that arrived while it was busy go together; the channel is paused above a
 * high-water mark), report the exit from the `exit` event. When the scope closes before the process ended, the
 * kill script runs over a second channel, and what the server still sends is read and dropped.
 *
 * @internal
 */
export const start = (options: ExecOptions): Effect.Effect<RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const { launch, pool, target } = options
    // for the exit-grace watcher, started from ssh2's `exit` event only when the channel stays open after it
    const runtime = yield* Effect.runtime<never>()
    let channel: ClientChannel | undefined
    let channelClosed = false
    let exitStatus: ExitStatus | undefined
    let lease: Pool.Lease | undefined
    let offClose: (() => void) | undefined
    let killResult: boolean | undefined
    const closed = Deferred.unsafeMake<void>(FiberId.none)

    // output plumbing: one inbox per stream, one byte budget; the channel pauses above HIGH_WATER
    const out = makeInbox()
    const err = makeInbox()
    let paused = false
    // after the close, ssh2 only flushes what it buffered (bounded by its window): never pause again
    let draining = false
    // once the scope closes nobody consumes: output is read and dropped, so the server can flush and close
    let discarding = false
    const pause = () => {
      if (paused || draining || discarding || channel === undefined) return
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
    const take = (inbox: Inbox, max: number): Effect.Effect<Buffer | undefined> =>
      Effect.suspend(() => {
        if (inbox.bytes > 0) {
          const batch = takeBatch(inbox, max)
          if (paused && out.bytes + err.bytes < LOW_WATER) resume()
          return Effect.succeed(batch)
        }
        if (inbox.ended) return Effect.succeed(undefined)
        return Effect.zipRight(
          Effect.async<void>((wakeUp) => {
            inbox.waiter = () => wakeUp(Effect.void)
            return Effect.sync(() => {
              inbox.waiter = undefined
            })
          }),
          take(inbox, max)
        )
      })

    let lastActivity = 0
    const onData = (inbox: Inbox) => (data: Buffer) => {
      if (exitStatus !== undefined) lastActivity = Date.now()
      if (discarding) return
      inbox.chunks.push(data)
      inbox.bytes += data.length
      if (out.bytes + err.bytes > HIGH_WATER) pause()
      wake(inbox)
    }
    const end = (inbox: Inbox) => () => {
      if (inbox.ended) return
      inbox.ended = true
      wake(inbox)
    }
    const endStdout = end(out)
    const endStderr = end(err)
    const onClosed = () => {
      if (channelClosed) return
      channelClosed = true
      stopWatch()
      lease?.release()
      Deferred.unsafeDone(closed, Exit.void)
      // ssh2 has pushed EOF on both streams; what they still buffer (at most a window) must reach the inboxes
      // before they end: let both flow, and end the inboxes on their `end` events (or shortly after, at the latest)
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
    const graceMs = Duration.toMillis(options.exitGrace)
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
      ch.on("data", onData(out))
      ch.stderr.on("data", onData(err))
      ch.on("end", endStdout)
      ch.stderr.on("end", endStderr)
      ch.on("exit", (code: number | null | undefined, signal?: string) => {
        exitStatus = typeof code === "number" ? { _tag: "Exited", code } : { _tag: "Signaled", signal: normaliseSignal(signal) }
        onExit()
      })
      ch.on("close", onClosed)
    }

    // the kill: TERM the group and every process carrying the token, KILL after the grace, report what is left
    const runKill = (why: "scope" | "pipe", pooled: Pool.Pooled) =>
      Effect.gen(function*() {
        const pgid = yield* launch.pgidNow
        const script = launch.killScript(Option.getOrUndefined(pgid), options.killGrace)
        const budget = Duration.sum(options.killGrace, options.killTimeout)
        // interruptible: in a finalizer, a timeout cannot otherwise stop what it times
        const result = yield* Effect.interruptible(runCollect(pool, target, script, {
          prefer: pooled.connection.isOpen() ? pooled : undefined
        })).pipe(Effect.timeout(budget), Effect.option)
        return Option.isSome(result) && Launch.isKillConfirmed(result.value.stdout)
      }).pipe(Effect.withSpan("SshTransport.kill", { attributes: { "runcmd.target": target.id, "runcmd.why": why } }))

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
      if (channelClosed || lease === undefined) return Effect.void
      const pooled = lease.pooled
      return runKill("pipe", pooled).pipe(
        Effect.zipRight(
          Deferred.await(closed).pipe(
            Effect.timeout(Duration.millis(Duration.toMillis(options.killGrace) + 5000)),
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
          offClose?.()
          return Effect.void
        }
        return releaseSlow(opened)
      })
    const releaseSlow = (opened: { readonly value: ClientChannel; readonly lease: Pool.Lease }) =>
      Effect.gen(function*() {
        stopWatch()
        if (watchFiber !== undefined) yield* Fiber.interrupt(watchFiber)
        if (!channelClosed) {
          discarding = true
          out.chunks.length = 0
          err.chunks.length = 0
          out.bytes = err.bytes = 0
          resume()
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
        offClose?.()
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

    const opened = yield* Effect.acquireRelease(
      pool.withChannel(target, (p) => openExec(p, launch.commandLine, bind)),
      release
    )
    lease = opened.lease
    if (channelClosed) lease.release()
    const pooled = lease.pooled
    const ch = opened.value
    offClose = pooled.connection.onClose(onClosed)

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
    const rawStderr: Stream.Stream<Uint8Array> = Stream.repeatEffectOption(
      Effect.flatMap(take(err, MAX_STDERR_BATCH), (bytes) => bytes === undefined ? Effect.fail(Option.none()) : Effect.succeed(bytes))
    )
    const stderrClean = yield* launch.drive({ writeStdin, endStdin, stderr: rawStderr })
    let stderrDone = false
    const stderrWaiters: Array<() => void> = []
    const markStderrDone = Effect.sync(() => {
      stderrDone = true
      for (const w of stderrWaiters.splice(0)) w()
    })
    const awaitStderrDone = Effect.suspend(() =>
      stderrDone ? Effect.void : Effect.async<void>((resume) => {
        stderrWaiters.push(() => resume(Effect.void))
      })
    )

    // one loop calls the consumer's `emit`, never twice at once: stdout from the inbox, stderr (as the driver
    // cleaned it) handed over by a child fiber, which waits while what it handed over is not taken
    const pump = (emit: (chunk: RawChunk) => Effect.Effect<void>): Effect.Effect<void, TransportError> =>
      Effect.suspend(() => {
        const errq: Array<Uint8Array> = []
        let errBytes = 0
        let errEnd: Exit.Exit<void, TransportError> | undefined
        let errWaiter: (() => void) | undefined
        const handOver = (bytes: Uint8Array): Effect.Effect<void> =>
          Effect.suspend(() => {
            errq.push(bytes)
            errBytes += bytes.length
            wake(out)
            if (errBytes < MAX_STDERR_BATCH) return Effect.void
            return Effect.async<void>((resume) => {
              errWaiter = () => resume(Effect.void)
            })
          })
        const stderrLoop = Stream.runForEach(stderrClean, handOver).pipe(
          Effect.exit,
          Effect.flatMap((exit) =>
            Effect.sync(() => {
              errEnd = exit
              wake(out)
            })
          ),
          Effect.ensuring(markStderrDone)
        )
        const loop: Effect.Effect<void, TransportError> = Effect.suspend(() => {
          if (errEnd !== undefined && Exit.isFailure(errEnd)) return errEnd
          if (errq.length > 0) {
            const bytes = errq.length === 1 ? errq[0]! : Buffer.concat(errq, errBytes)
            errq.length = 0
            errBytes = 0
            const waiter = errWaiter
            errWaiter = undefined
            waiter?.()
            return Effect.zipRight(emit({ stream: "stderr", bytes }), loop)
          }
          if (out.bytes > 0) {
            const bytes = takeBatch(out, MAX_BATCH)
            if (paused && out.bytes + err.bytes < LOW_WATER) resume()
            return Effect.zipRight(emit({ stream: "stdout", bytes }), loop)
          }
          if (out.ended && errEnd !== undefined) return Effect.void
          return Effect.zipRight(
            Effect.async<void>((wakeUp) => {
              out.waiter = () => wakeUp(Effect.void)
              return Effect.sync(() => {
                out.waiter = undefined
              })
            }),
            loop
          )
        })
        return Effect.zipRight(Effect.fork(stderrLoop), loop)
      })

    // the status the wrapper reported is known once stderr has been read to its end (the caller drains the
    // output before awaiting the exit, as core's Execution does)
    const exit: Effect.Effect<ExitStatus, TransportError> = Effect.flatMap(Deferred.await(closed), () => {
      if (exitStatus !== undefined) {
        const status = exitStatus
        return Effect.zipRight(awaitStderrDone, launch.interpretExit(status))
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

    return {
      pump,
      exit,
      killConfirmed: Effect.sync(() => killResult ?? false)
    } satisfies RawExecution
  })
