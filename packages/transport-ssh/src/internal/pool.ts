/** @internal */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as SshTarget from "../SshTarget.js"
import * as Connection from "./connection.js"
import * as Errors from "./errors.js"
import * as Hop from "./hop.js"

/** @internal */
export interface PoolOptions {
  /**
   * Executions' channels open at once per connection. The server's MaxSessions (10 by default) must leave room for
   * two more: the connection's lifeline and an urgent kill channel.
   */
  readonly maxChannels: number
  /** Connections per host (and credentials, and jump chain). */
  readonly maxConnectionsPerHost: number
  /** A connection with no channel open is closed after this long. */
  readonly idleTimeToLive: Duration.Duration
  readonly connectTimeout: Duration.Duration
  readonly readyTimeout: Duration.Duration
  readonly keepalive: SshTarget.Keepalive
  /** Attempts at opening a channel the server refuses for lack of sessions, before `ChannelLimitReached`. */
  readonly channelOpenAttempts: number
}

/** A pooled connection and its bookkeeping. @internal */
export interface Pooled {
  readonly key: string
  readonly connection: Connection.Connection
  /** Channels (exec, sftp, kill) currently open, as far as the server is concerned. */
  channels: number
  /** Connections tunnelled through this one (it is a jump host for them). */
  dependents: number
  /** Of `channels`, those held for the connection's own use (its lifeline): they count, but do not keep it busy. */
  reserved: number
  /** Ends the connection's own channels (its lifeline) and waits for them to close: run before a shutdown. */
  closeOwn: Effect.Effect<void> | undefined
  /** The same without waiting: run before an idle connection is closed. */
  endOwn: (() => void) | undefined
  /** The channel cap in force: lowered when the server refuses sessions, raised again as opens succeed. */
  cap: number
  successesSinceRefusal: number
  /** Refused opens in a row: a connection that refuses even with nothing open is replaced. */
  refusalsInARow: number
  idleTimer: ReturnType<typeof setTimeout> | undefined
  /** The jump host connection this one runs through (released when this one closes). */
  readonly parent: Pooled | undefined
  released: boolean
}

interface HostSlot {
  readonly key: string
  readonly conns: Set<Pooled>
  connecting: number
  readonly waiters: Array<() => void>
}

/** A channel slot on a pooled connection; release it exactly once, when the channel has closed. @internal */
export interface Lease {
  readonly pooled: Pooled
  readonly release: () => void
}

/** @internal */
export interface Pool {
  readonly options: PoolOptions
  /** A channel slot on a connection to the target (opening one, or waiting for a slot). */
  readonly lease: (target: SshTarget.SshTarget) => Effect.Effect<Lease, TransportError>
  /**
   * A slot for an urgent channel (a kill): on `prefer` when it is open, else on any open connection to the
   * target, else on a fresh one; never waits behind queued executions.
   */
  readonly leaseUrgent: (
    target: SshTarget.SshTarget,
    prefer: Pooled | undefined
  ) => Effect.Effect<Lease, TransportError>
  /** Opens a session channel on a lease with `open`, retrying refusals (MaxSessions) on this or other connections. */
  readonly withChannel: <A>(
    target: SshTarget.SshTarget,
    open: (pooled: Pooled) => Effect.Effect<A, OpenFailure>,
    options?: { readonly urgent?: boolean | undefined; readonly prefer?: Pooled | undefined }
  ) => Effect.Effect<{ readonly value: A; readonly lease: Lease }, TransportError>
  /**
   * Counts a channel of the connection's own (the lifeline): one of the server's sessions (`channels`), outside the
   * executions' cap, and it does not keep the connection from going idle. Returns its release (once).
   */
  readonly reserve: (pooled: Pooled) => () => void
  /** Drops a connection from the pool (after a failure on it) and closes it. */
  readonly evict: (pooled: Pooled) => void
  readonly stats: () => { readonly connections: number; readonly channels: number; readonly hosts: number }
  readonly shutdown: Effect.Effect<void>
}

/** Why a channel could not be opened: refused by the server, connection gone, or another failure. @internal */
export type OpenFailure =
  | { readonly _tag: "Refused"; readonly cause: unknown }
  | { readonly _tag: "Gone"; readonly cause: unknown }
  | { readonly _tag: "Failed"; readonly error: TransportError }

/** @internal */
export const classifyOpenError = (err: unknown, pooled: Pooled): OpenFailure =>
  Errors.isSessionLimit(err) || Errors.isChannelOpenFailure(err)
    ? { _tag: "Refused", cause: err }
    : !pooled.connection.isOpen() || Errors.isNotConnected(err)
    ? { _tag: "Gone", cause: err }
    : {
      _tag: "Failed",
      error: Errors.make(
        "ProtocolError",
        "delivery",
        `cannot open a channel on ${pooled.connection.label}: ${(err as Error)?.message}`,
        {
          cause: err
        }
      )
    }

const chainKey = (hops: ReadonlyArray<SshTarget.Hop>): string => hops.map(Hop.hopIdentity).join(" -> ")

/** A target's hops and pool key, computed once per target object (the key hashes the credentials). */
const routes = new WeakMap<SshTarget.SshTarget, { readonly hops: ReadonlyArray<SshTarget.Hop>; readonly key: string }>()

const routeOf = (target: SshTarget.SshTarget) => {
  let route = routes.get(target)
  if (route === undefined) {
    const hops = [...target.via, target]
    route = { hops, key: chainKey(hops) }
    // an agent without its own socket is keyed by SSH_AUTH_SOCK as it is at each lease
    if (hops.every((h) => h.auth.type !== "agent" || h.auth.socket !== undefined)) routes.set(target, route)
  }
  return route
}

/** @internal */
export const make = (options: PoolOptions): Pool => {
  const hosts = new Map<string, HostSlot>()
  let closed = false

  const slotFor = (key: string): HostSlot => {
    let slot = hosts.get(key)
    if (slot === undefined) {
      slot = { key, conns: new Set(), connecting: 0, waiters: [] }
      hosts.set(key, slot)
    }
    return slot
  }

  const wake = (slot: HostSlot, all = false) => {
    if (all) {
      for (const w of slot.waiters.splice(0)) w()
    } else {
      slot.waiters.shift()?.()
    }
  }

  const dropIfEmpty = (slot: HostSlot) => {
    if (slot.conns.size === 0 && slot.connecting === 0 && slot.waiters.length === 0) hosts.delete(slot.key)
  }

  const releaseParent = (pooled: Pooled) => {
    if (pooled.released) return
    pooled.released = true
    const parent = pooled.parent
    if (parent !== undefined) {
      parent.dependents--
      maybeIdle(parent)
    }
  }

  const remove = (pooled: Pooled) => {
    const slot = hosts.get(pooled.key)
    if (pooled.idleTimer !== undefined) clearTimeout(pooled.idleTimer)
    pooled.idleTimer = undefined
    if (slot !== undefined && slot.conns.delete(pooled)) {
      wake(slot, true)
      dropIfEmpty(slot)
    }
    releaseParent(pooled)
  }

  const evict = (pooled: Pooled) => {
    remove(pooled)
    pooled.connection.end()
  }

  const busy = (pooled: Pooled) => pooled.channels - pooled.reserved > 0 || pooled.dependents > 0

  const maybeIdle = (pooled: Pooled) => {
    if (busy(pooled) || !pooled.connection.isOpen()) return
    if (pooled.idleTimer !== undefined) clearTimeout(pooled.idleTimer)
    if (closed) {
      evict(pooled)
      return
    }
    pooled.idleTimer = setTimeout(() => {
      pooled.idleTimer = undefined
      if (busy(pooled)) return
      pooled.endOwn?.()
      evict(pooled)
    }, Math.max(0, Duration.toMillis(options.idleTimeToLive)))
    pooled.idleTimer.unref()
  }

  const touch = (pooled: Pooled) => {
    if (pooled.idleTimer !== undefined) {
      clearTimeout(pooled.idleTimer)
      pooled.idleTimer = undefined
    }
  }

  const register = (
    key: string,
    connection: Connection.Connection,
    parent: Pooled | undefined,
    cap: number
  ): Pooled => {
    const pooled: Pooled = {
      key,
      connection,
      channels: 0,
      dependents: 0,
      reserved: 0,
      closeOwn: undefined,
      endOwn: undefined,
      cap,
      successesSinceRefusal: 0,
      refusalsInARow: 0,
      idleTimer: undefined,
      parent,
      released: false
    }
    slotFor(key).conns.add(pooled)
    connection.onClose(() => remove(pooled))
    // idle until someone leases it (a caller interrupted right after the connect leaves it to expire)
    maybeIdle(pooled)
    return pooled
  }

  const closedError = () => Errors.make("ConnectionLost", "delivery", "the SSH transport was shut down")

  /** Opens a connection to `hops[hops.length-1]`, through the (pooled) connections to the hops before it. */
  const open = (
    target: SshTarget.SshTarget,
    hops: ReadonlyArray<SshTarget.Hop>,
    cap: number
  ): Effect.Effect<Pooled, TransportError> =>
    // bookkeeping is uninterruptible; the connects inside stay interruptible where they wait
    Effect.uninterruptible(Effect.gen(function*() {
      const index = hops.length - 1
      const hop = hops[index]!
      const ctx = { targetId: target.id, hopIndex: index, hops: target.via.length + 1 }
      const defaults = {
        connectTimeout: options.connectTimeout,
        readyTimeout: options.readyTimeout,
        keepalive: options.keepalive
      }
      if (index === 0) {
        const connection = yield* retryDropped(Connection.connect(hop, { ...ctx, defaults }))
        return register(chainKey(hops), connection, undefined, cap)
      }
      const parent = yield* acquireDependent(target, hops.slice(0, index))
      const connection = yield* Connection.forwardOut(parent.connection, hop, ctx).pipe(
        Effect.flatMap((sock) => Connection.connect(hop, { ...ctx, sock, defaults })),
        Effect.onError(() =>
          Effect.sync(() => {
            parent.dependents--
            maybeIdle(parent)
          })
        )
      )
      return register(chainKey(hops), connection, parent, cap)
    }))

  /** A connection to a jump host, shared by everything tunnelled through it (no channel slot taken). */
  const acquireDependent = (
    target: SshTarget.SshTarget,
    hops: ReadonlyArray<SshTarget.Hop>
  ): Effect.Effect<Pooled, TransportError> => {
    const key = chainKey(hops)
    const attempt: Effect.Effect<Pooled, TransportError> = Effect.suspend(() => {
      if (closed) return Effect.fail(closedError())
      const slot = slotFor(key)
      for (const p of slot.conns) {
        if (p.connection.isOpen()) {
          p.dependents++
          touch(p)
          return Effect.succeed(p)
        }
      }
      if (slot.connecting > 0) return Effect.zipRight(waitFor(slot), attempt)
      slot.connecting++
      return open(target, hops, options.maxChannels).pipe(
        Effect.map((p) => {
          p.dependents++
          return p
        }),
        Effect.ensuring(Effect.sync(() => {
          slot.connecting--
          wake(slot, true)
          dropIfEmpty(slot)
        }))
      )
    })
    return Effect.uninterruptible(attempt)
  }

  const waitFor = (slot: HostSlot): Effect.Effect<void> =>
    Effect.interruptible(Effect.async<void>((resume) => {
      const w = () => resume(Effect.void)
      slot.waiters.push(w)
      return Effect.sync(() => {
        const i = slot.waiters.indexOf(w)
        if (i !== -1) slot.waiters.splice(i, 1)
      })
    }))

  const makeLease = (pooled: Pooled): Lease => {
    pooled.channels++
    touch(pooled)
    let done = false
    return {
      pooled,
      release: () => {
        if (done) return
        done = true
        pooled.channels--
        const slot = hosts.get(pooled.key)
        if (slot !== undefined) wake(slot)
        maybeIdle(pooled)
      }
    }
  }

  const reserve = (pooled: Pooled): () => void => {
    pooled.channels++
    pooled.reserved++
    let done = false
    return () => {
      if (done) return
      done = true
      pooled.channels--
      pooled.reserved--
      const slot = hosts.get(pooled.key)
      if (slot !== undefined) wake(slot)
      maybeIdle(pooled)
    }
  }

  const capOf = (target: SshTarget.SshTarget) => Math.max(1, target.maxChannels ?? options.maxChannels)

  const lease = (target: SshTarget.SshTarget): Effect.Effect<Lease, TransportError> => {
    const { hops, key } = routeOf(target)
    const cap = capOf(target)
    const attempt: Effect.Effect<Lease, TransportError> = Effect.suspend(() => {
      if (closed) return Effect.fail(closedError())
      const slot = slotFor(key)
      let best: Pooled | undefined
      for (const p of slot.conns) {
        if (!p.connection.isOpen() || p.channels - p.reserved >= Math.min(p.cap, cap)) continue
        // fill the busiest connection first, so idle ones can expire
        if (best === undefined || p.channels > best.channels) best = p
      }
      if (best !== undefined) return Effect.succeed(makeLease(best))
      if (slot.conns.size + slot.connecting < Math.max(1, options.maxConnectionsPerHost)) {
        slot.connecting++
        return open(target, hops, cap).pipe(
          Effect.map(makeLease),
          Effect.ensuring(Effect.sync(() => {
            slot.connecting--
            wake(slot, true)
            dropIfEmpty(slot)
          }))
        )
      }
      return Effect.zipRight(waitFor(slot), attempt)
    })
    // a lease is taken atomically with its connection; only the waits (slot, connect) are interruptible
    return Effect.uninterruptible(attempt)
  }

  const leaseUrgent = (target: SshTarget.SshTarget, prefer: Pooled | undefined): Effect.Effect<Lease, TransportError> =>
    Effect.uninterruptible(Effect.suspend(() => {
      if (closed) return Effect.fail(closedError())
      if (prefer !== undefined && prefer.connection.isOpen()) return Effect.succeed(makeLease(prefer))
      const { hops, key } = routeOf(target)
      const slot = hosts.get(key)
      if (slot !== undefined) {
        for (const p of slot.conns) {
          if (p.connection.isOpen() && p.channels - p.reserved < p.cap + 1) return Effect.succeed(makeLease(p))
        }
      }
      return Effect.map(open(target, hops, capOf(target)), makeLease)
    }))

  const withChannel = <A>(
    target: SshTarget.SshTarget,
    openOn: (pooled: Pooled) => Effect.Effect<A, OpenFailure>,
    opts: { readonly urgent?: boolean | undefined; readonly prefer?: Pooled | undefined } = {}
  ): Effect.Effect<{ readonly value: A; readonly lease: Lease }, TransportError> =>
    // uninterruptible bookkeeping: a lease is released on every path; the waits are interruptible, and `openOn`
    // must clean up a channel it opened when interrupted (see exec's openExec)
    Effect.uninterruptible(Effect.gen(function*() {
      const urgent = opts.urgent === true
      let refusals = 0
      let gone = 0
      let prefer = opts.prefer
      for (;;) {
        const l = urgent ? yield* leaseUrgent(target, prefer) : yield* lease(target)
        const exit = yield* Effect.exit(Effect.interruptible(openOn(l.pooled)))
        if (Exit.isSuccess(exit)) {
          const p = l.pooled
          p.refusalsInARow = 0
          if (p.cap < capOf(target) && ++p.successesSinceRefusal >= 8) {
            p.cap++
            p.successesSinceRefusal = 0
          }
          return { value: exit.value, lease: l }
        }
        l.release()
        if (Exit.isInterrupted(exit)) return yield* Effect.interrupt
        const failure = Exit.isFailure(exit) ? exit.cause : undefined
        const f = failure === undefined ? undefined : (failure._tag === "Fail" ? failure.error : undefined)
        if (f === undefined) return yield* Effect.die(Exit.isFailure(exit) ? exit.cause : "channel open failed")
        if (f._tag === "Failed") return yield* Effect.fail(f.error)
        if (f._tag === "Gone") {
          evict(l.pooled)
          prefer = undefined
          if (++gone > 3) {
            return yield* Effect.fail(Errors.make(
              "ConnectionLost",
              "delivery",
              `the connection to ${l.pooled.connection.label} kept closing before a channel could be opened`,
              { targetId: target.id, cause: f.cause }
            ))
          }
          continue
        }
        // refused: the server is at its session limit (or has not freed a slot yet); lower this connection's cap
        // so the next attempt goes to another connection when there is room, and back off
        refusals++
        const p = l.pooled
        p.successesSinceRefusal = 0
        p.cap = Math.max(1, Math.min(p.cap, p.channels - p.reserved))
        // refusing with nothing of ours open: its sessions are stuck (leaked channels) or it allows none; replace it
        if (p.channels - p.reserved === 0 && ++p.refusalsInARow >= 3) evict(p)
        prefer = undefined
        if (refusals >= options.channelOpenAttempts) {
          return yield* Effect.fail(Errors.make(
            "ChannelLimitReached",
            "delivery",
            `${p.connection.label} refused ${refusals} channel opens in a row (server session limit, MaxSessions); ` +
              `lower maxChannels or raise MaxSessions`,
            {
              targetId: target.id,
              detail: { attempts: refusals, channelsOpen: p.channels, cap: p.cap, maxChannels: capOf(target) },
              cause: f.cause
            }
          ))
        }
        yield* Effect.interruptible(
          Effect.sleep(Duration.millis(Math.min(500, 10 * 2 ** Math.min(refusals, 6)) * (0.5 + Math.random())))
        )
      }
    }))

  const stats = () => {
    let connections = 0
    let channels = 0
    for (const slot of hosts.values()) {
      for (const p of slot.conns) {
        connections++
        // the executions' channels (a lifeline is the connection's own)
        channels += p.channels - p.reserved
      }
    }
    return { connections, channels, hosts: hosts.size }
  }

  const shutdown: Effect.Effect<void> = Effect.suspend(() => {
    closed = true
    const all: Array<Pooled> = []
    for (const slot of hosts.values()) {
      for (const p of slot.conns) all.push(p)
      wake(slot, true)
    }
    // close tunnelled connections before the jump hosts they run through
    all.sort((a, b) => depth(b) - depth(a))
    // the lifelines first: their loops on the hosts have ended when the transport's scope has closed
    const own = Effect.all(all.map((p) => p.closeOwn ?? Effect.void), { concurrency: "unbounded", discard: true })
      .pipe(Effect.timeout(Duration.seconds(1)), Effect.ignore)
    const gone = all.map((p) =>
      Effect.async<void>((resume) => {
        p.connection.onClose(() => resume(Effect.void))
      })
    )
    // bounded: a peer that does not answer the disconnect is destroyed by `end` after 2 s anyway
    return Effect.zipRight(
      own,
      Effect.suspend(() => {
        for (const p of all) evict(p)
        return Effect.all(gone, { concurrency: "unbounded", discard: true }).pipe(
          Effect.timeout(Duration.millis(2500)),
          Effect.ignore
        )
      })
    )
  })

  return { options, lease, leaseUrgent, withChannel, reserve, evict, stats, shutdown }
}

const depth = (p: Pooled): number => (p.parent === undefined ? 0 : 1 + depth(p.parent))

/**
 * A server that drops us before the handshake (OpenSSH past `MaxStartups`, a busy bastion) is tried again a few
 * times, with jitter: nothing has run yet.
 */
const retryDropped = <A>(connect: Effect.Effect<A, TransportError>): Effect.Effect<A, TransportError> =>
  Effect.gen(function*() {
    for (let attempt = 1;; attempt++) {
      const exit = yield* Effect.exit(connect)
      if (Exit.isSuccess(exit)) return exit.value
      const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      const dropped = error !== undefined && (error.reason === "ConnectRefused" || error.reason === "ConnectionLost") &&
        error.phase === "delivery" && error.detail?.retryable === true
      if (!dropped || attempt > 3) return yield* exit
      // only the wait is interruptible: a connection that succeeded is always handed back
      yield* Effect.interruptible(Effect.sleep(Duration.millis(100 * 2 ** (attempt - 1) * (0.5 + Math.random()))))
    }
  })
