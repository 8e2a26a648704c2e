/**
 * The local lifeline: one watchdog process per transport layer (core's `Lifeline` script under `/bin/sh`, in its
 * own session), started with the first execution it must watch. The transport tells it each execution's token
 * before the spawn and its process groups after, and to forget the execution once it has ended; when runcmd dies
 * by any means its pipe reaches EOF and it ends what it still knows (TERM, the grace, KILL). A watchdog that died
 * (killed by someone) is started again at the next execution and told every execution still live.
 *
 * @internal
 */
import * as CoreLifeline from "@runcmd/core/Lifeline"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as cp from "node:child_process"
import type { Writable } from "node:stream"

/** @internal */
export interface Watch {
  /** Another process group of the execution (the wrapper's user group). */
  readonly group: (pgid: number) => void
  /** The execution has ended: forget it. Idempotent. */
  readonly forget: () => void
}

/** @internal */
export interface Lifeline {
  /** Tells the watchdog about an execution before it is spawned. */
  readonly watch: (token: string, grace: Duration.Duration) => Watch
  /** The watchdog's pid, when one runs (tests). */
  readonly pid: () => number | undefined
  /**
   * Closes the pipe: the watchdog sees EOF and ends what it still knows (nothing, once the layer killed its own);
   * completes when it has exited (at most `waitMs`).
   */
  readonly close: (waitMs: number) => Effect.Effect<void>
}

/** How long a group or an end may wait to be written with the next message. */
const DEFER_MS = 20

interface Entry {
  readonly token: string
  readonly grace: Duration.Duration
  readonly groups: Array<number>
}

/** @internal */
export const make = (): Lifeline => {
  const live = new Map<number, Entry>()
  let nextId = 1
  let child: cp.ChildProcess | undefined
  let stdin: Writable | undefined
  let closed = false

  // a new execution is told at once (before its spawn); groups and ends wait for the next write or a short
  // timer: one write (and one wake-up of the watchdog) per execution in a steady stream of them
  let pending = ""
  let timer: ReturnType<typeof setTimeout> | undefined
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    if (pending === "" || stdin === undefined || closed) return
    stdin.write(pending)
    pending = ""
  }
  const send = (line: string, now: boolean) => {
    if (stdin === undefined || closed) return
    pending += line
    if (now) flush()
    else if (timer === undefined) {
      timer = setTimeout(flush, DEFER_MS)
      timer.unref()
    }
  }

  const spawn = () => {
    const c = cp.spawn(CoreLifeline.argv[0]!, CoreLifeline.argv.slice(1), {
      // its own session: the terminal's Ctrl-C and HUP, and signals to runcmd's group, do not reach it
      detached: true,
      stdio: ["pipe", "ignore", "ignore"]
    })
    const pipe = c.stdin!
    pipe.on("error", () => {})
    c.on("error", () => {})
    c.on("exit", () => {
      if (child !== c) return
      child = undefined
      stdin = undefined
    })
    // neither the process nor its pipe keeps runcmd's event loop alive
    c.unref()
    ;(pipe as unknown as { unref?: () => void }).unref?.()
    child = c
    stdin = pipe
    pending = ""
    pipe.write(CoreLifeline.preamble)
    // a watchdog started again learns every execution still live
    for (const [id, entry] of live) {
      pipe.write(CoreLifeline.watch(id, entry.groups[0], entry.grace, entry.token))
      for (const g of entry.groups.slice(1)) pipe.write(CoreLifeline.group(id, g))
    }
  }

  return {
    watch: (token, grace) => {
      if (!closed && child === undefined) spawn()
      const id = nextId++
      const entry: Entry = { token, grace, groups: [] }
      live.set(id, entry)
      send(CoreLifeline.watch(id, undefined, grace, token), true)
      let done = false
      return {
        group: (pgid) => {
          if (done || entry.groups.includes(pgid)) return
          entry.groups.push(pgid)
          send(CoreLifeline.group(id, pgid), false)
        },
        forget: () => {
          if (done) return
          done = true
          live.delete(id)
          send(CoreLifeline.forget(id), false)
        }
      }
    },
    pid: () => child?.pid,
    close: (waitMs) =>
      Effect.async<void>((resume) => {
        const c = child
        flush()
        closed = true
        child = undefined
        stdin?.end()
        stdin = undefined
        if (c === undefined || c.exitCode !== null || c.signalCode !== null) return resume(Effect.void)
        const timer = setTimeout(() => resume(Effect.void), waitMs)
        c.once("exit", () => {
          clearTimeout(timer)
          resume(Effect.void)
        })
      })
  }
}
