/**
 * The connection itself: a TCP connection (or a jump host's forwarded channel), the SSH handshake with the hop's
 * host-key verification and authentication, and the live `Connection` handed to the pool.
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as net from "node:net"
import type { Duplex } from "node:stream"
// ssh2 is CommonJS: Node's ESM loader only sees its default export reliably
import ssh2 from "ssh2"
import type { Client } from "ssh2"
import type * as SshTarget from "../SshTarget.js"
import * as Authentication from "./authentication.js"
import * as Errors from "./errors.js"
import { hopLabel } from "./hop.js"
import * as HostKeyVerification from "./hostKeyVerification.js"

let nextId = 1

/** One live, authenticated SSH connection (to a target or a jump host). @internal */
export interface Connection {
  readonly id: number
  readonly client: Client
  /** `user@host:port` */
  readonly label: string
  readonly isOpen: () => boolean
  /** Why it closed, once it has (a `ConnectionLost` error). */
  readonly closedBecause: () => TransportError | undefined
  /** Called once when the connection closes, for whatever reason. */
  readonly onClose: (listener: (reason: TransportError) => void) => () => void
  /** Ends it gracefully (then destroys it after a short delay if the peer does not close). */
  readonly end: () => void
  readonly destroy: () => void
}

/** @internal */
export interface ConnectOptions {
  readonly targetId?: string | undefined
  readonly hopIndex: number
  readonly hops: number
  /** An already open stream to the host (a jump host's `forwardOut`); otherwise a TCP connection is made. */
  readonly sock?: Duplex | undefined
  readonly defaults: {
    readonly connectTimeout: Duration.Duration
    readonly readyTimeout: Duration.Duration
    readonly keepalive: SshTarget.Keepalive
  }
}

const tcpConnect = (
  hop: SshTarget.Hop,
  timeout: Duration.Duration,
  ctx: Omit<Errors.ConnectContext, "authMethodsTried" | "debug" | "ready">,
  holder: Holder
) =>
  Effect.async<net.Socket, TransportError>((resume) => {
    let socket: net.Socket
    const fail = (err: Errors.Ssh2Error) =>
      Errors.fromConnect(Object.assign(err, { level: "tcp" }), {
        ...ctx,
        authMethodsTried: [],
        debug: [],
        ready: false
      })
    try {
      socket = net.connect({ host: hop.host, port: hop.port })
    } catch (e) {
      resume(Effect.fail(fail(e instanceof Error ? e : new Error(String(e)))))
      return
    }
    holder.socket = socket
    socket.setNoDelay(true)
    const timer = setTimeout(() => {
      cleanup()
      socket.destroy()
      resume(Effect.fail(fail(Object.assign(new Error("connect ETIMEDOUT"), { code: "ETIMEDOUT" }))))
    }, Math.max(1, Duration.toMillis(timeout)))
    const onError = (e: Error) => {
      cleanup()
      socket.destroy()
      resume(Effect.fail(fail(e)))
    }
    const onConnect = () => {
      cleanup()
      resume(Effect.succeed(socket))
    }
    const cleanup = () => {
      clearTimeout(timer)
      socket.off("error", onError)
      socket.off("connect", onConnect)
    }
    socket.once("error", onError)
    socket.once("connect", onConnect)
    return Effect.sync(() => {
      cleanup()
      socket.destroy()
    })
  })

const DEBUG_LINES = 60

/**
 * The packets ssh2 writes in one tick leave in one system call: ssh2 writes each packet on its own, and with Nagle
 * off each write is a `send` (on loopback also a wake-up of the peer) — e.g. a channel's data, EOF and close, or
 * the handshake's NEWKEYS and service request. The socket is corked at the first write of a tick and uncorked on
 * the next one (`process.nextTick`), so nothing waits longer than the current tick.
 */
const coalesceWrites = (sock: Duplex): void => {
  const write = sock.write
  let corked = false
  const uncork = () => {
    corked = false
    sock.uncork()
  }
  sock.write = function(this: Duplex, ...args: Parameters<Duplex["write"]>) {
    if (!corked) {
      corked = true
      sock.cork()
      process.nextTick(uncork)
    }
    return write.apply(this, args as never)
  } as Duplex["write"]
}

/** What a connect attempt has created so far: destroyed if the attempt is interrupted at any point. */
interface Holder {
  socket?: Duplex | undefined
  client?: Client | undefined
}

/**
 * Connects and authenticates one hop. The socket (own or given) has Nagle off; the client has a permanent `error`
 * listener from construction; the host key is checked by the hop's own policy.
 *
 * @internal
 */
export const connect = (hop: SshTarget.Hop, options: ConnectOptions): Effect.Effect<Connection, TransportError> =>
  Effect.suspend(() => {
    const holder: Holder = { socket: options.sock }
    // interruptible while it waits, and whatever it created is destroyed when interrupted, including right after
    // it succeeded; callers may run it from uninterruptible regions (pool bookkeeping, finalizers)
    return Effect.uninterruptible(
      Effect.interruptible(connectWith(hop, options, holder)).pipe(
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            holder.client?.destroy()
            holder.socket?.destroy()
          })
        )
      )
    )
  })

const connectWith = (
  hop: SshTarget.Hop,
  options: ConnectOptions,
  holder: Holder
): Effect.Effect<Connection, TransportError> =>
  Effect.gen(function*() {
    const label = hopLabel(hop)
    const ctxBase = { targetId: options.targetId, hop: label, hopIndex: options.hopIndex, hops: options.hops }
    const fail = (reason: "AuthFailed" | "HostKeyRejected") => (description: string, cause?: unknown) =>
      Errors.make(reason, "delivery", description, {
        targetId: options.targetId,
        detail: { hop: label },
        cause
      })
    const auth = yield* Authentication.resolve(hop, fail("AuthFailed"))
    const verify = yield* HostKeyVerification.make(hop, fail("HostKeyRejected"))
    const sock = options.sock ??
      (yield* tcpConnect(hop, hop.connectTimeout ?? options.defaults.connectTimeout, ctxBase, holder))
    coalesceWrites(sock)
    const keepalive = hop.keepalive ?? options.defaults.keepalive
    const readyTimeout = hop.readyTimeout ?? options.defaults.readyTimeout
    return yield* Effect.async<Connection, TransportError>((resume) => {
      const client = new ssh2.Client()
      holder.client = client
      const debug: Array<string> = []
      let ready = false
      let identified = false
      let settled = false
      let closed = false
      let closedBecause: TransportError | undefined
      let lastError: Errors.Ssh2Error | undefined
      let rejection: Errors.HostKeyRejection | undefined
      const { authHandler, progress } = Authentication.handler(auth, hop.user)
      const listeners = new Set<(reason: TransportError) => void>()
      const ctx = (): Errors.ConnectContext => ({
        ...ctxBase,
        hostKeyRejection: rejection,
        authMethodsTried: progress.tried,
        authMethodsOffered: progress.offered(),
        debug,
        ready,
        identified
      })
      const markClosed = () => {
        if (closed) return
        closed = true
        const description = lastError === undefined
          ? `connection to ${label} closed`
          : `connection to ${label} lost: ${lastError.message}`
        closedBecause = Errors.make("ConnectionLost", "execution", description, {
          targetId: options.targetId,
          detail: { hop: label },
          cause: lastError
        })
        for (const l of [...listeners]) {
          try {
            l(closedBecause)
          } catch {
            // a listener must not break the others
          }
        }
        listeners.clear()
      }
      // permanent: ssh2 may emit several errors (a handshake timeout is followed by "Connection lost")
      client.on("error", (err: Errors.Ssh2Error) => {
        lastError = err
        if (!settled) {
          settled = true
          const error = Errors.fromConnect(err, ctx())
          client.destroy()
          sock.destroy()
          resume(Effect.fail(error))
        }
      })
      client.on("close", () => {
        markClosed()
        if (!settled) {
          settled = true
          resume(Effect.fail(Errors.fromConnect(lastError ?? new Error("Connection lost before handshake"), ctx())))
        }
      })
      client.on("end", () => {
        // the socket ended: no more traffic either way
      })
      client.on("ready", () => {
        ready = true
        if (settled) return
        settled = true
        // stop formatting per-packet debug lines now that the handshake is done
        const proto = (client as unknown as { _protocol?: { _debug?: unknown } })._protocol
        if (proto !== undefined) proto._debug = undefined
        let ending: ReturnType<typeof setTimeout> | undefined
        const connection: Connection = {
          id: nextId++,
          client,
          label,
          isOpen: () => !closed,
          closedBecause: () => closedBecause,
          onClose: (listener) => {
            if (closed) {
              listener(closedBecause!)
              return () => {}
            }
            listeners.add(listener)
            return () => listeners.delete(listener)
          },
          end: () => {
            if (closed || ending !== undefined) return
            try {
              client.end()
            } catch {
              // already gone
            }
            ending = setTimeout(() => {
              client.destroy()
              sock.destroy()
            }, 2000)
            ending.unref()
          },
          destroy: () => {
            client.destroy()
            sock.destroy()
          }
        }
        resume(Effect.succeed(connection))
      })
      const keepaliveMs = keepalive === false ? 0 : Duration.toMillis(keepalive.interval)
      try {
        client.connect({
          sock,
          username: hop.user,
          readyTimeout: Math.max(1, Duration.toMillis(readyTimeout)),
          keepaliveInterval: keepaliveMs,
          keepaliveCountMax: keepalive === false ? 3 : keepalive.countMax,
          ...(hop.algorithms === undefined ? {} : { algorithms: hop.algorithms as never }),
          debug: (line: string) => {
            if (ready) return
            if (!identified && line.startsWith("Remote ident")) identified = true
            debug.push(line)
            if (debug.length > DEBUG_LINES) debug.shift()
          },
          hostVerifier: (key: Buffer, callback: (valid: boolean) => void) => {
            verify(key).then(
              (r) => {
                rejection = r
                callback(r === undefined)
              },
              (e: unknown) => {
                rejection = { description: `host key check failed: ${String(e)}`, detail: {} }
                callback(false)
              }
            )
          },
          authHandler
        } as never)
        client.setNoDelay(true)
      } catch (e) {
        settled = true
        sock.destroy()
        resume(
          Effect.fail(
            Errors.make("ProtocolError", "delivery", `cannot start SSH to ${label}: ${(e as Error).message}`, {
              targetId: options.targetId,
              cause: e
            })
          )
        )
      }
      return Effect.sync(() => {
        if (!ready) {
          settled = true
          client.destroy()
          sock.destroy()
        }
      })
    })
  })

/**
 * Opens a `direct-tcpip` channel through `via` to the next hop (the `sock` for its connection).
 *
 * @internal
 */
export const forwardOut = (
  via: Connection,
  next: SshTarget.Hop,
  ctx: { readonly targetId?: string | undefined; readonly hopIndex: number; readonly hops: number }
): Effect.Effect<Duplex, TransportError> =>
  Effect.suspend(() => {
    let opened: Duplex | undefined
    const open = Effect.async<Duplex, TransportError>((resume) => {
      let done = false
      try {
        via.client.forwardOut("127.0.0.1", 0, next.host, next.port, (err, stream) => {
          if (done) {
            stream?.destroy()
            return
          }
          done = true
          if (err) {
            const lost = !via.isOpen()
            resume(Effect.fail(Errors.make(
              lost ? "ConnectionLost" : "ConnectRefused",
              "delivery",
              `jump host ${via.label} could not reach ${hopLabel(next)}: ${err.message}`,
              {
                targetId: ctx.targetId,
                detail: { hop: hopLabel(next), hopIndex: ctx.hopIndex, via: via.label },
                cause: err
              }
            )))
            return
          }
          opened = stream
          resume(Effect.succeed(stream))
        })
      } catch (e) {
        done = true
        resume(Effect.fail(Errors.make("ConnectionLost", "delivery", `jump host ${via.label} is not connected`, {
          targetId: ctx.targetId,
          cause: e
        })))
      }
      return Effect.sync(() => {
        done = true
      })
    })
    return Effect.uninterruptible(
      Effect.interruptible(open).pipe(Effect.onInterrupt(() => Effect.sync(() => opened?.destroy())))
    )
  })
