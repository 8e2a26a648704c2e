/**
 * The SSH lifeline: one exec channel per pooled connection running core's `Lifeline` loop under `/bin/sh` on the
 * host, opened before the first execution it must watch and held for the connection's life (one session of the
 * connection, counted against its channel cap by `Pool.reserve`). The loop discovers the connection's executions
 * itself (core's `Lifeline`, `d`: the token carriers with its own `SSH_CONNECTION`, started after it), so an
 * execution costs nothing on the lifeline when it starts; when it has ended, its token is spared (batched, at most
 * twice a second), and the process groups the wrapper reports are told the same way. Until the loop has said it
 * discovers (or where it cannot), each execution's token is written to it before the execution's own channel is
 * opened (SSH keeps a connection's packets in order, so the host knows the token before the job can start). A job
 * that must outlive runcmd is spared before it starts. When the connection is
 * gone (runcmd died, the network dropped, the client host rebooted; a half-open connection once the server's
 * keepalive or TCP gives up) sshd closes the loop's stdin and it ends what it still knows: TERM, the grace, KILL.
 * A lifeline that ended while its connection lives (someone killed it) is opened again by the next execution and
 * told every execution still live. Under a PowerShell login shell (Linux, macOS) pwsh `exec`s the loop, which then
 * answers like any other; a connection closed on purpose before its loop has answered (a pwsh still starting) has
 * its lifeline's session killed by sshd (a `signal` request), so no pwsh outlives the connection.
 *
 * It is also the kill path: a kill script written to it runs on the host at once, in the background, and its answer
 * comes back on the channel's stdout. A kill needs no new session, so kills do not queue behind each other or behind
 * the server's MaxSessions when many executions time out at once.
 *
 * @internal
 */
import * as CoreLifeline from "@runcmd/core/Lifeline"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { ClientChannel } from "ssh2"
import type * as LoginShell from "./loginShell.js"
import * as Pool from "./pool.js"
import * as PowerShell from "./powershell.js"

/** @internal */
export interface Watch {
  /** Another process group of the execution (the one the wrapper reports). */
  readonly group: (pgid: number) => void
  /**
   * How to end the execution at EOF besides the sweep: a POSIX kill script (a run-as job, whose processes the login
   * user's sweep cannot reach).
   */
  readonly recipe: (script: string) => void
  /** The execution has ended: forget it. Idempotent. */
  readonly forget: () => void
}

interface Entry {
  readonly token: string
  readonly grace: Duration.Duration
  readonly groups: Array<number>
  recipe: string | undefined
  /** Told to the loop by id (`+`, `g` or `r`): forgotten by id at its end. */
  told: boolean
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
  /** Kills written and not answered yet, by kill id: each gets the kill script's output, or undefined if lost. */
  readonly kills: Map<number, (output: string | undefined) => void>
  /** The loop answered `d` (`d on` or `d off`): it runs. */
  running: boolean
  /** The loop said it discovers the executions (`d on`): they are not told one by one. */
  discovering: boolean
  /** The longest kill grace told with `d`, in ms. */
  discoverGraceMs: number
  /** Tokens of jobs that must outlive runcmd on this connection: told to every lifeline it opens. */
  readonly spared: Set<string>
}

/** How long a group, an end or a spare may wait to be written with the next message. */
const DEFER_MS = 500

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
    grace: Duration.Duration,
    login: LoginShell.Answer
  ) => Effect.Effect<Watch, Pool.OpenFailure>
  /**
   * Runs a POSIX kill script through the lifeline of `pooled` and returns its output (`runcmd-kill:…`), or
   * `undefined` at once when the connection has no lifeline open (the caller opens a channel for the kill), or
   * when the lifeline closes before answering.
   */
  readonly kill: (pooled: Pool.Pooled, script: string) => Effect.Effect<string | undefined>
  /**
   * Tells the lifeline of `pooled` (now, and any it opens later) to spare the processes of an execution about to
   * start: a job that must outlive runcmd (`onControllerLoss: "continue"`).
   */
  readonly spare: (pooled: Pool.Pooled, token: string) => void
  /** What the lifelines of this transport hold now (for tests and inspection). */
  readonly stats: () => Stats
  /**
   * Completes once every open lifeline has read everything written to it so far (the deferred messages are written
   * first): a round trip through each loop. For tests that must not race a message against the connection's end.
   */
  readonly sync: Effect.Effect<void>
}

/** @internal */
export interface Stats {
  /** Lifeline channels open. */
  readonly open: number
  /** Of those, the loops that have answered (they run on the host). */
  readonly running: number
  /** Live executions watched, over every lifeline. */
  readonly watched: number
  /** Of those, the ones whose own kill the lifeline keeps for EOF (run-as jobs whose wrapper has reported). */
  readonly recipes: number
}

/**
 * Whether the lifeline runs for a login shell: any POSIX host (the loop needs `/bin/sh`); not Windows.
 *
 * @internal
 */
export const supported = (login: LoginShell.Answer): boolean => !login.windows

/** What a PowerShell login shell prints when it could not become the loop (see `PowerShell.execCommand`). */
const NO_EXEC = `${CoreLifeline.NAME}: pwsh could not exec /bin/sh`

/**
 * The channel's command: the loop itself under a POSIX login shell; under PowerShell (sshd runs `pwsh -c <it>`),
 * pwsh replaces itself by the loop (`exec`), so the loop owns the channel's pipes and sees their EOF when the
 * connection is gone. (A loop started as pwsh's child would keep a pwsh between it and sshd for the connection's
 * life: sshd closes the channel's stdin as soon as its own child, pwsh, exits, so pwsh must stay or become the loop.)
 */
const commandLineFor = (login: LoginShell.Answer): string =>
  PowerShell.isPowerShellShell(login)
    ? PowerShell.execCommand(CoreLifeline.argv, NO_EXEC, CoreLifeline.NAME)
    : CoreLifeline.commandLine

/** @internal */
export const make = (pool: Pool.Pool): Lifelines => {
  const states = new WeakMap<Pool.Pooled, State>()
  /** The connections whose lifeline is open now. */
  const opened = new Map<State, Pool.Pooled>()
  let nextId = 1

  const stateOf = (pooled: Pool.Pooled): State => {
    let state = states.get(pooled)
    if (state === undefined) {
      state = {
        channel: undefined,
        opening: undefined,
        live: new Map(),
        lost: 0,
        pending: "",
        timer: undefined,
        kills: new Map(),
        running: false,
        discovering: false,
        discoverGraceMs: 0,
        spared: new Set()
      }
      states.set(pooled, state)
    }
    return state
  }

  // what must be known before an execution starts is written at once; groups, ends and spares wait for the next
  // such message or a timer: a steady stream of executions costs a packet now and then, not one each
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

  const open = (
    pooled: Pool.Pooled,
    state: State,
    login: LoginShell.Answer,
    grace: Duration.Duration
  ): Effect.Effect<void, Pool.OpenFailure> =>
    Effect.async<void, Pool.OpenFailure>((resume) => {
      const release = pool.reserve(pooled)
      try {
        pooled.connection.client.exec(commandLineFor(login), {}, (err, channel) => {
          if (err) {
            release()
            resume(Effect.fail(Pool.classifyOpenError(err, pooled)))
            return
          }
          channel.on("error", () => {})
          // the loop's answers to kills, a line each
          let out = ""
          channel.on("data", (data: Buffer) => {
            out += data.toString("utf8")
            for (let nl = out.indexOf("\n"); nl !== -1; nl = out.indexOf("\n")) {
              const line = out.slice(0, nl)
              out = out.slice(nl + 1)
              if (CoreLifeline.isDiscoveryAnswer(line)) {
                if (state.channel === channel) {
                  state.running = true
                  if (CoreLifeline.isDiscovering(line)) state.discovering = true
                }
                continue
              }
              // a login shell that cannot start the loop will not start it next time either
              if (line === NO_EXEC) state.lost = MAX_REOPENS
              const answer = CoreLifeline.parseKillAnswer(line)
              if (answer === undefined) continue
              const resolve = state.kills.get(answer.id)
              state.kills.delete(answer.id)
              resolve?.(answer.output)
            }
            // a line is short: anything longer is not ours
            if (out.length > 65536) out = ""
          })
          channel.stderr.resume()
          channel.on("close", () => {
            release()
            if (state.channel !== channel) return
            state.channel = undefined
            opened.delete(state)
            state.running = false
            state.discovering = false
            state.discoverGraceMs = 0
            if (pooled.connection.isOpen()) state.lost++
            // kills in flight are not answered: the caller falls back to a channel of its own
            const lost = [...state.kills.values()]
            state.kills.clear()
            for (const resolve of lost) resolve(undefined)
          })
          state.channel = channel
          opened.set(state, pooled)
          state.pending = ""
          // at shutdown or idle: EOF with nothing registered, and the loop on the host exits before the connection
          // closes (shutdown waits for it: `closeOwn`). One that has not answered yet may still be starting (pwsh
          // takes seconds on a loaded host): it would outlive the connection until it ran and read the EOF; with no
          // execution live it has nothing to sweep (until it answers, every execution is told, and forgotten at its
          // end), so sshd ends the session's processes now (a signal request, sent before the EOF: ssh2 sends none
          // on a channel no longer writable). False when the channel is gone already.
          const endOwn = (): boolean => {
            if (state.channel !== channel) return false
            flush(state)
            try {
              if (!state.running && state.live.size === 0) channel.signal("KILL")
              channel.end()
              return true
            } catch {
              return false
            }
          }
          pooled.endOwn = endOwn
          pooled.closeOwn = Effect.async<void>((done) => {
            channel.once("close", () => done(Effect.void))
            if (!endOwn()) done(Effect.void)
          })
          channel.write(CoreLifeline.preamble)
          // discovery asked at once; the answer comes back while the first executions are told one by one
          let longest = grace
          for (const entry of state.live.values()) longest = Duration.max(longest, entry.grace)
          state.discoverGraceMs = Duration.toMillis(longest)
          channel.write(CoreLifeline.discover(longest))
          for (const token of state.spared) channel.write(CoreLifeline.spare(token))
          // a lifeline opened again learns every execution still live (they started before it: not discovered)
          for (const [id, entry] of state.live) {
            entry.told = true
            channel.write(CoreLifeline.watch(id, entry.groups[0], entry.grace, entry.token))
            for (const g of entry.groups.slice(1)) channel.write(CoreLifeline.group(id, g))
            if (entry.recipe !== undefined) channel.write(CoreLifeline.recipe(id, entry.recipe))
          }
          resume(Effect.void)
        })
      } catch (e) {
        release()
        resume(Effect.fail(Pool.classifyOpenError(e, pooled)))
      }
    })

  const ensure = (
    pooled: Pool.Pooled,
    state: State,
    login: LoginShell.Answer,
    grace: Duration.Duration
  ): Effect.Effect<void, Pool.OpenFailure> => {
    if (state.channel !== undefined || state.lost >= MAX_REOPENS) return Effect.void
    if (state.opening === undefined) {
      // shared by every execution waiting on this connection; run to its end even when the first one is interrupted
      state.opening = Effect.runSync(Effect.cached(
        Effect.uninterruptible(open(pooled, state, login, grace)).pipe(
          Effect.ensuring(Effect.sync(() => (state.opening = undefined)))
        )
      ))
    }
    return state.opening
  }

  const kill = (pooled: Pool.Pooled, script: string) =>
    Effect.async<string | undefined>((resume) => {
      const state = states.get(pooled)
      if (state === undefined || state.channel === undefined || !state.channel.writable) {
        return resume(Effect.succeed(undefined))
      }
      const id = nextId++
      state.kills.set(id, (output) => resume(Effect.succeed(output)))
      send(state, CoreLifeline.kill(id, script), true)
      // a caller that gives up (its kill timeout) leaves the kill running on the host; its answer is dropped
      return Effect.sync(() => void state.kills.delete(id))
    })

  return {
    kill,
    stats: () => {
      let running = 0
      let watched = 0
      let recipes = 0
      for (const state of opened.keys()) {
        if (state.running) running++
        watched += state.live.size
        for (const entry of state.live.values()) if (entry.recipe !== undefined) recipes++
      }
      return { open: opened.size, running, watched, recipes }
    },
    // a kill that does nothing: the loop reads its input in order, so its answer comes after all that came before
    sync: Effect.suspend(() =>
      Effect.forEach([...opened.values()], (pooled) => kill(pooled, ":"), { concurrency: "unbounded", discard: true })
    ),
    watch: (pooled, token, grace, login) =>
      Effect.suspend(() => {
        const state = stateOf(pooled)
        return Effect.map(ensure(pooled, state, login, grace), (): Watch => {
          const id = nextId++
          const entry: Entry = { token, grace, groups: [], recipe: undefined, told: false }
          state.live.set(id, entry)
          if (!state.discovering) {
            entry.told = true
            send(state, CoreLifeline.watch(id, undefined, grace, token), true)
          } else if (Duration.toMillis(grace) > state.discoverGraceMs) {
            // the loop waits the longest grace at EOF: a longer one is told before the execution starts
            state.discoverGraceMs = Duration.toMillis(grace)
            send(state, CoreLifeline.discover(grace), true)
          }
          let done = false
          return {
            group: (pgid) => {
              if (done || entry.groups.includes(pgid)) return
              entry.groups.push(pgid)
              entry.told = true
              send(state, CoreLifeline.group(id, pgid), false)
            },
            recipe: (script) => {
              if (done) return
              entry.recipe = script
              entry.told = true
              send(state, CoreLifeline.recipe(id, script), true)
            },
            forget: () => {
              if (done) return
              done = true
              state.live.delete(id)
              if (entry.told) send(state, CoreLifeline.forget(id), false)
              // what the execution left behind on purpose lives on (the loop may discover, or may soon)
              send(state, CoreLifeline.spare(token), false)
            }
          }
        })
      }),
    spare: (pooled, token) => {
      // a spare must reach the loop before its EOF, not before the job starts: a lifeline opened later (even one
      // whose loop starts before this job) learns it with its preamble
      const state = stateOf(pooled)
      state.spared.add(token)
      send(state, CoreLifeline.spare(token), true)
    }
  }
}
