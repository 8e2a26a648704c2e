/**
 * The SSH lifeline: one exec channel per pooled connection running core's `Lifeline` loop under `/bin/sh` on the
 * host, opened before the first execution it must watch and held for the connection's life (one session of the
 * connection, counted against its channel cap by `Pool.reserve`). Each execution's token is written to it before
 * the execution's own channel is opened (SSH keeps a connection's packets in order, so the host knows the token
 * before the job can start), its process group once the wrapper reports it, and its end. When the connection is
 * gone (runcmd died, the network dropped, the client host rebooted; a half-open connection once the server's
 * keepalive or TCP gives up) sshd closes the loop's stdin and it ends what it still knows: TERM, the grace, KILL.
 * A lifeline that ended while its connection lives (someone killed it) is opened again by the next execution and
 * told every execution still live.
 *
 * @internal
 */
import * as CoreLifeline from "@runcmd/core/Lifeline"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { ClientChannel } from "ssh2"
import * as Pool from "./pool.js"

/** @internal */
export interface Watch {
  /** Another process group of the execution (the one the wrapper reports). */
  readonly group: (pgid: number) => void
  /** The execution has ended: forget it. Idempotent. */
  readonly forget: () => void
}

interface Entry {
  readonly token: string
  readonly grace: Duration.Duration
  readonly groups: Array<number>
}

/** One connection's lifeline. */
interface State {
  channel: ClientChannel | undefined
  /** The open in flight, shared by the executions that wait for it. */
  opening: Effect.Effect<void, Pool.OpenFailure> | undefined
  readonly live: Map<number, Entry>
  /** Lifelines that closed while their connection lived: after a few, this connection runs without one. */
  lost: number
  /** Messages not written yet (groups, ends), and the timer that writes them. */
  pending: string
  timer: ReturnType<typeof setTimeout> | undefined
}

/** How long a group or an end may wait to be written with the next message. */
const DEFER_MS = 20

const MAX_REOPENS = 3

/** @internal */
export interface Lifelines {
  /**
   * Tells the lifeline of `pooled` (opened first when it has none) about an execution about to start on it. Fails
   * as a channel open does (refused for lack of sessions, connection gone).
   */
  readonly watch: (
    pooled: Pool.Pooled,
    token: string,
    grace: Duration.Duration
  ) => Effect.Effect<Watch, Pool.OpenFailure>
}

/** @internal */
export const make = (pool: Pool.Pool): Lifelines => {
  const states = new WeakMap<Pool.Pooled, State>()
  let nextId = 1

  const stateOf = (pooled: Pool.Pooled): State => {
    let state = states.get(pooled)
    if (state === undefined) {
      state = { channel: undefined, opening: undefined, live: new Map(), lost: 0, pending: "", timer: undefined }
      states.set(pooled, state)
    }
    return state
  }

  // a new execution is told at once (before its channel opens); groups and ends wait for the next message or a
  // short timer: one SSH data packet per execution in a steady stream of them
  const flush = (state: State) => {
    if (state.timer !== undefined) clearTimeout(state.timer)
    state.timer = undefined
    const ch = state.channel
    if (state.pending === "" || ch === undefined || !ch.writable) return
    const data = state.pending
    state.pending = ""
    try {
      ch.write(data)
    } catch {
      // the connection is going: the host sweeps at EOF
    }
  }
  const send = (state: State, line: string, now: boolean) => {
    if (state.channel === undefined) return
    state.pending += line
    if (now) flush(state)
    else if (state.timer === undefined) {
      state.timer = setTimeout(() => flush(state), DEFER_MS)
      state.timer.unref()
    }
  }

  const open = (pooled: Pool.Pooled, state: State): Effect.Effect<void, Pool.OpenFailure> =>
    Effect.async<void, Pool.OpenFailure>((resume) => {
      const release = pool.reserve(pooled)
      try {
        pooled.connection.client.exec(CoreLifeline.commandLine, {}, (err, channel) => {
          if (err) {
            release()
            resume(Effect.fail(Pool.classifyOpenError(err, pooled)))
            return
          }
          channel.on("error", () => {})
          channel.resume()
          channel.stderr.resume()
          channel.on("close", () => {
            release()
            if (state.channel !== channel) return
            state.channel = undefined
            if (pooled.connection.isOpen()) state.lost++
          })
          state.channel = channel
          state.pending = ""
          // at shutdown: EOF with nothing registered, and the loop on the host exits before the connection closes
          pooled.closeOwn = Effect.async<void>((done) => {
            if (state.channel !== channel) return done(Effect.void)
            flush(state)
            channel.once("close", () => done(Effect.void))
            try {
              channel.end()
            } catch {
              done(Effect.void)
            }
          })
          channel.write(CoreLifeline.preamble)
          // a lifeline opened again learns every execution still live
          for (const [id, entry] of state.live) {
            channel.write(CoreLifeline.watch(id, entry.groups[0], entry.grace, entry.token))
            for (const g of entry.groups.slice(1)) channel.write(CoreLifeline.group(id, g))
          }
          resume(Effect.void)
        })
      } catch (e) {
        release()
        resume(Effect.fail(Pool.classifyOpenError(e, pooled)))
      }
    })

  const ensure = (pooled: Pool.Pooled, state: State): Effect.Effect<void, Pool.OpenFailure> => {
    if (state.channel !== undefined || state.lost >= MAX_REOPENS) return Effect.void
    if (state.opening === undefined) {
      // shared by every execution waiting on this connection; run to its end even when the first one is interrupted
      state.opening = Effect.runSync(Effect.cached(
        Effect.uninterruptible(open(pooled, state)).pipe(
          Effect.ensuring(Effect.sync(() => (state.opening = undefined)))
        )
      ))
    }
    return state.opening
  }

  return {
    watch: (pooled, token, grace) =>
      Effect.suspend(() => {
        const state = stateOf(pooled)
        return Effect.map(ensure(pooled, state), (): Watch => {
          const id = nextId++
          const entry: Entry = { token, grace, groups: [] }
          state.live.set(id, entry)
          send(state, CoreLifeline.watch(id, undefined, grace, token), true)
          let done = false
          return {
            group: (pgid) => {
              if (done || entry.groups.includes(pgid)) return
              entry.groups.push(pgid)
              send(state, CoreLifeline.group(id, pgid), false)
            },
            forget: () => {
              if (done) return
              done = true
              state.live.delete(id)
              send(state, CoreLifeline.forget(id), false)
            }
          }
        })
      })
  }
}
