/** @internal */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import type { Duplex } from "node:stream"
// ssh2 is CommonJS: Node's ESM loader only sees its default export reliably
import ssh2 from "ssh2"
import type { AnyAuthMethod, AuthenticationType, Client, ParsedKey } from "ssh2"
import * as KnownHosts from "../KnownHosts.js"
import * as SshTarget from "../SshTarget.js"
import * as Errors from "./errors.js"

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

/** @internal */
export const hopLabel = (hop: SshTarget.Hop): string => `${hop.user}@${hop.host}:${hop.port}`

const secret = crypto.randomBytes(32)

/** A stable, non-reversible identity of a hop's credentials and trust settings (for pool keys). @internal */
export const hopIdentity = (hop: SshTarget.Hop): string => {
  const h = crypto.createHmac("sha256", secret)
  const auth = hop.auth
  switch (auth.type) {
    case "key":
      h.update("key\0")
      if (auth.key !== undefined) h.update(Redacted.value(auth.key))
      else h.update("path\0" + auth.path)
      if (auth.passphrase !== undefined) h.update("\0pp\0" + Redacted.value(auth.passphrase))
      break
    case "agent":
      h.update("agent\0" + (auth.socket ?? process.env.SSH_AUTH_SOCK ?? ""))
      break
    case "password":
      h.update("password\0" + Redacted.value(auth.password))
      break
  }
  h.update("\0hostKey\0" + JSON.stringify(hop.hostKey))
  h.update("\0alg\0" + JSON.stringify(hop.algorithms ?? null))
  h.update("\0ka\0" + JSON.stringify(hop.keepalive ?? null))
  return `${hop.user}@${hop.host}:${hop.port}#${h.digest("base64url").slice(0, 22)}`
}

/** Credentials resolved and parsed before dialling, so a bad key fails fast and clearly. */
interface ResolvedAuth {
  readonly methods: ReadonlyArray<(username: string) => AnyAuthMethod>
  readonly names: ReadonlyArray<AuthenticationType>
}

const resolveAuth = (hop: SshTarget.Hop, fail: (description: string, cause?: unknown) => TransportError) =>
  Effect.gen(function*() {
    const auth = hop.auth
    switch (auth.type) {
      case "key": {
        const text = auth.key !== undefined
          ? Redacted.value(auth.key)
          : yield* Effect.tryPromise({
            try: () => fs.promises.readFile(KnownHosts.expandHome(auth.path!), "utf8"),
            catch: (e) => fail(`cannot read the private key file ${auth.path}: ${(e as Error).message}`, e)
          })
        const parsed = ssh2.utils.parseKey(
          text,
          auth.passphrase === undefined ? undefined : Redacted.value(auth.passphrase)
        )
        if (parsed instanceof Error) {
          // the ssh2 message never contains the key or the passphrase
          return yield* Effect.fail(
            fail(`cannot use the private key${auth.path === undefined ? "" : ` ${auth.path}`}: ${parsed.message}`)
          )
        }
        const key: ParsedKey = Array.isArray(parsed) ? parsed[0] : parsed
        return {
          methods: [(username: string): AnyAuthMethod => ({ type: "publickey", username, key })],
          names: ["publickey"]
        } satisfies ResolvedAuth
      }
      case "agent": {
        const socket = auth.socket ?? process.env.SSH_AUTH_SOCK
        if (socket === undefined || socket === "") {
          return yield* Effect.fail(fail("agent authentication: no agent socket (set `socket` or SSH_AUTH_SOCK)"))
        }
        return {
          methods: [(username: string): AnyAuthMethod => ({ type: "agent", username, agent: socket })],
          names: ["agent"]
        } satisfies ResolvedAuth
      }
      case "password": {
        const password = auth.password
        return {
          methods: [
            (username: string): AnyAuthMethod => ({ type: "password", username, password: Redacted.value(password) }),
            (username: string): AnyAuthMethod => ({
              type: "keyboard-interactive",
              username,
              prompt: (_name, _instructions, _lang, prompts, finish) => finish(prompts.map(() => Redacted.value(password)))
            })
          ],
          names: ["password", "keyboard-interactive"]
        } satisfies ResolvedAuth
      }
    }
  })

/** A host-key check: synchronous where possible; `accept-new` writes its store. */
type Verifier = (key: Buffer) => Promise<Errors.HostKeyRejection | undefined>

const makeVerifier = (hop: SshTarget.Hop, fail: (description: string, cause?: unknown) => TransportError) =>
  Effect.gen(function*() {
    const policy = hop.hostKey
    const presentedDetail = (key: Buffer) => ({
      policy: policy.policy,
      host: hop.host,
      port: hop.port,
      presented: `${KnownHosts.blobType(key) ?? "unknown"} ${KnownHosts.fingerprint(key)}`,
      presentedFingerprint: KnownHosts.fingerprint(key)
    })
    const explain = (verdict: KnownHosts.Verdict, key: Buffer, where: string): Errors.HostKeyRejection | undefined => {
      const name = KnownHosts.hostName(hop.host, hop.port)
      switch (verdict._tag) {
        case "Known":
          return undefined
        case "Unknown":
          return {
            description: `host key of ${name} is not in ${where} (presented ${KnownHosts.fingerprint(key)})`,
            detail: { ...presentedDetail(key), expected: [] }
          }
        case "Mismatch":
          return {
            description: `HOST KEY CHANGED for ${name}: presented ${KnownHosts.fingerprint(key)}, ${where} expects ${
              verdict.expected.join(" or ")
            } (possible man-in-the-middle; if the host was reinstalled, update ${where})`,
            detail: {
              ...presentedDetail(key),
              expected: verdict.expected,
              expectedFingerprints: verdict.entries.map((e) => KnownHosts.fingerprint(e.key)),
              entries: verdict.entries.map((e) => `${e.file ?? ""}:${e.line}`)
            }
          }
        case "Revoked":
          return {
            description: `host key of ${name} (${KnownHosts.fingerprint(key)}) is marked @revoked in ${
              verdict.entry.file ?? where
            }:${verdict.entry.line}`,
            detail: { ...presentedDetail(key), revoked: `${verdict.entry.file ?? ""}:${verdict.entry.line}` }
          }
        case "CertAuthorityUnsupported":
          return {
            description: `${where} lists only @cert-authority keys for ${name}: host certificates are not supported ` +
              `by runcmd's SSH transport; add the host's own key (ssh-keyscan) or pin its fingerprint`,
            detail: { ...presentedDetail(key), unsupported: "cert-authority" }
          }
      }
    }
    switch (policy.policy) {
      case "insecure": {
        yield* Effect.logWarning(
          `ssh: host key checking is OFF for ${hopLabel(hop)} (hostKey.policy "insecure"): any server is trusted`
        )
        const verifier: Verifier = () => Promise.resolve(undefined)
        return verifier
      }
      case "pinned": {
        const pins = new Set(policy.fingerprints.map((f) => f.replace(/=+$/, "")))
        const verifier: Verifier = (key) => {
          const fp = KnownHosts.fingerprint(key)
          return Promise.resolve(
            pins.has(fp) ? undefined : {
              description: `host key of ${KnownHosts.hostName(hop.host, hop.port)} is ${fp}, not a pinned one (${
                [...pins].join(", ")
              })`,
              detail: { ...presentedDetail(key), expected: [...pins], expectedFingerprints: [...pins] }
            }
          )
        }
        return verifier
      }
      case "strict": {
        const files = policy.knownHosts ?? KnownHosts.defaultFiles()
        const known = yield* KnownHosts.readFiles(files).pipe(
          Effect.mapError((e) => fail(`cannot read known_hosts (${files.join(", ")}): ${e.message}`, e))
        )
        const verifier: Verifier = (key) =>
          Promise.resolve(explain(KnownHosts.verify(known, hop.host, hop.port, key), key, files.join(", ")))
        return verifier
      }
      case "accept-new": {
        const verifier: Verifier = (key) =>
          KnownHosts.acceptNew(policy.store, hop.host, hop.port, key).then(
            (verdict) => explain(verdict, key, policy.store),
            (e: Error) => ({
              description: `cannot use the host key store ${policy.store}: ${e.message}`,
              detail: { ...presentedDetail(key), store: policy.store }
            })
          )
        return verifier
      }
    }
  })

const tcpConnect = (
  hop: SshTarget.Hop,
  timeout: Duration.Duration,
  ctx: Omit<Errors.ConnectContext, "authMethodsTried" | "debug" | "ready">,
  holder: Holder
) =>
  Effect.async<net.Socket, TransportError>((resume) => {
    let socket: net.Socket
    const fail = (err: Errors.Ssh2Error) =>
      Errors.fromConnect(Object.assign(err, { level: "tcp" }), { ...ctx, authMethodsTried: [], debug: [], ready: false })
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

const connectWith = (hop: SshTarget.Hop, options: ConnectOptions, holder: Holder): Effect.Effect<Connection, TransportError> =>
  Effect.gen(function*() {
    const label = hopLabel(hop)
    const ctxBase = { targetId: options.targetId, hop: label, hopIndex: options.hopIndex, hops: options.hops }
    const fail = (reason: "AuthFailed" | "HostKeyRejected") => (description: string, cause?: unknown) =>
      Errors.make(reason, "delivery", description, {
        targetId: options.targetId,
        detail: { hop: label },
        cause
      })
    const auth = yield* resolveAuth(hop, fail("AuthFailed"))
    const verify = yield* makeVerifier(hop, fail("HostKeyRejected"))
    const sock = options.sock ?? (yield* tcpConnect(hop, hop.connectTimeout ?? options.defaults.connectTimeout, ctxBase, holder))
    const keepalive = hop.keepalive ?? options.defaults.keepalive
    const readyTimeout = hop.readyTimeout ?? options.defaults.readyTimeout
    return yield* Effect.async<Connection, TransportError>((resume) => {
      const client = new ssh2.Client()
      holder.client = client
      const debug: Array<string> = []
      let ready = false
      let settled = false
      let closed = false
      let closedBecause: TransportError | undefined
      let lastError: Errors.Ssh2Error | undefined
      let rejection: Errors.HostKeyRejection | undefined
      const tried: Array<string> = []
      let nextMethod = 0
      let offered: ReadonlyArray<string> | undefined
      const listeners = new Set<(reason: TransportError) => void>()
      const ctx = (): Errors.ConnectContext => ({
        ...ctxBase,
        hostKeyRejection: rejection,
        authMethodsTried: tried,
        authMethodsOffered: offered,
        debug,
        ready
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
          authHandler: (
            methodsLeft: ReadonlyArray<string> | null | undefined,
            _partial: boolean | null,
            next: (method: AnyAuthMethod | false) => void
          ) => {
            if (methodsLeft !== null && methodsLeft !== undefined) offered = methodsLeft
            while (nextMethod < auth.methods.length) {
              const i = nextMethod++
              const name = auth.names[i]!
              if (offered === undefined || offered.includes(name)) {
                tried.push(name)
                next(auth.methods[i]!(hop.user))
                return
              }
            }
            next(false)
          }
        } as never)
        client.setNoDelay(true)
      } catch (e) {
        settled = true
        sock.destroy()
        resume(Effect.fail(Errors.make("ProtocolError", "delivery", `cannot start SSH to ${label}: ${(e as Error).message}`, {
          targetId: options.targetId,
          cause: e
        })))
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
              { targetId: ctx.targetId, detail: { hop: hopLabel(next), hopIndex: ctx.hopIndex, via: via.label }, cause: err }
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
