/**
 * One HTTP(S) connection to a WinRM listener, requests on it one at a time: Basic over HTTPS, or NTLMv2 over HTTP
 * with every body sealed (the NTLM context belongs to the TCP connection, so each connection authenticates once and
 * is re-authenticated when its socket was replaced). The TLS certificate is checked by the target's policy before
 * any request (and so any credential) is written.
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import * as Tls from "node:tls"
import type { WinRmTarget } from "../WinRmTarget.js"
import * as Errors from "./errors.js"
import * as Ntlm from "./ntlm/ntlm.js"
import * as Xml from "./xml.js"

/** What a connection needs, resolved once per client (CA files read, NT hash computed). @internal */
export interface Settings {
  readonly endpoint: string
  readonly url: URL
  readonly https: boolean
  readonly auth:
    | { readonly type: "basic"; readonly header: Redacted.Redacted<string> }
    | {
      readonly type: "ntlm"
      readonly user: string
      readonly domain: string
      readonly ntHash: Redacted.Redacted<Uint8Array>
    }
  readonly ca: ReadonlyArray<string> | undefined
  readonly pinned: ReadonlyArray<string> | undefined
  readonly insecure: boolean
  readonly connectTimeoutMs: number
}

/** Splits `DOMAIN\user` and `user@domain`; `domain` given separately wins. @internal */
export const ntlmIdentity = (user: string, domain: string | undefined): { user: string; domain: string } => {
  const backslash = user.indexOf("\\")
  if (backslash >= 0) return { domain: domain ?? user.slice(0, backslash), user: user.slice(backslash + 1) }
  const at = user.indexOf("@")
  if (at >= 0) return { domain: domain ?? user.slice(at + 1), user: user.slice(0, at) }
  return { user, domain: domain ?? "" }
}

const normalizeFingerprint = (s: string) => s.replace(/:/g, "").toUpperCase()

/** @internal */
export const settings = (
  target: WinRmTarget,
  endpoint: string,
  ca: ReadonlyArray<string> | undefined,
  connectTimeoutMs: number
): Settings => {
  const auth = target.auth
  if (auth.type !== "basic" && auth.type !== "ntlm") throw new Error("unsupported auth")
  return {
    endpoint,
    url: new URL(endpoint),
    https: target.scheme === "https",
    auth: auth.type === "basic"
      ? {
        type: "basic",
        header: Redacted.make(
          `Basic ${Buffer.from(`${auth.user}:${Redacted.value(auth.password)}`, "utf8").toString("base64")}`
        )
      }
      : {
        type: "ntlm",
        ...ntlmIdentity(auth.user, auth.domain),
        ntHash: Redacted.make(Ntlm.ntowfv1(Redacted.value(auth.password)))
      },
    ca,
    pinned: target.certificate?.policy === "pinned" ? target.certificate.sha256.map(normalizeFingerprint) : undefined,
    insecure: target.certificate?.policy === "insecure",
    connectTimeoutMs
  }
}

/** @internal */
export interface Connection {
  readonly agent: Http.Agent
  session: Ntlm.Session | undefined
  socket: Net.Socket | undefined
  broken: boolean
}

const tlsConnect = (s: Settings) =>
(
  options: Https.RequestOptions,
  callback: (error: Error | null, socket?: Net.Socket) => void
): undefined => {
  let called = false
  const done = (error: Error | null, socket?: Net.Socket) => {
    if (called) return
    called = true
    clearTimeout(timer)
    callback(error, socket)
  }
  const host = s.url.hostname.replace(/^\[|\]$/g, "")
  const verifyChain = s.pinned === undefined && !s.insecure
  const socket = Tls.connect({
    host,
    port: Number(options.port),
    ...(Net_isIp(host) ? {} : { servername: host }),
    ...(s.ca === undefined ? {} : { ca: [...s.ca] }),
    rejectUnauthorized: verifyChain
  })
  const timer = setTimeout(() => {
    socket.destroy()
    done(Object.assign(new Error("connect timeout"), { code: "ERR_RUNCMD_CONNECT_TIMEOUT" }))
  }, s.connectTimeoutMs)
  socket.once("secureConnect", () => {
    if (s.pinned !== undefined) {
      const fingerprint = normalizeFingerprint(socket.getPeerX509Certificate()?.fingerprint256 ?? "")
      if (!s.pinned.includes(fingerprint)) {
        socket.destroy()
        return done(
          Object.assign(new Error(`the certificate's SHA-256 fingerprint ${fingerprint} is not pinned`), {
            code: "ERR_RUNCMD_CERTIFICATE_PIN"
          })
        )
      }
    }
    done(null, socket)
  })
  socket.once("error", (error) => done(error))
  return undefined
}

const Net_isIp = (host: string) => /^[\d.]+$/.test(host) || host.includes(":")

/** @internal */
export const makeConnection = (s: Settings): Connection => {
  const options = { keepAlive: true, maxSockets: 1, maxFreeSockets: 1, scheduling: "lifo" as const }
  const agent = s.https ? new Https.Agent(options) : new Http.Agent(options)
  if (s.https) {
    ;(agent as unknown as { createConnection: unknown }).createConnection = tlsConnect(s)
  }
  return { agent, session: undefined, socket: undefined, broken: false }
}

/** @internal */
export const closeConnection = (c: Connection): void => {
  c.broken = true
  c.agent.destroy()
}

interface Response {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: Buffer
  readonly socket: Net.Socket
}

/** One request on the connection; `prepare` runs once the socket is known (it may refuse it by returning null). */
const request = (
  s: Settings,
  c: Connection,
  headers: Record<string, string>,
  prepare: (socket: Net.Socket) => Buffer | null,
  phase: "delivery" | "execution"
): Effect.Effect<Response | "socket-replaced", TransportError> =>
  Effect.async<Response | "socket-replaced", TransportError>((resume, signal) => {
    const module = s.https ? Https : Http
    const req = module.request({
      protocol: s.url.protocol,
      hostname: s.url.hostname.replace(/^\[|\]$/g, ""),
      port: s.url.port,
      path: s.url.pathname,
      method: "POST",
      agent: c.agent,
      headers: { "User-Agent": "runcmd-winrm", ...headers },
      signal
    })
    let replaced = false
    req.once("socket", (socket: Net.Socket) => {
      const body = prepare(socket)
      if (body === null) {
        replaced = true
        req.destroy()
        return resume(Effect.succeed("socket-replaced"))
      }
      req.setHeader("Content-Length", body.length)
      req.end(body)
    })
    req.once("response", (res) => {
      const parts: Array<Buffer> = []
      res.on("data", (d: Buffer) => parts.push(d))
      res.once("end", () =>
        resume(Effect.succeed({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts),
          socket: req.socket!
        })))
      res.once("error", (error) => resume(Effect.fail(Errors.fromNetwork(error, s.endpoint, phase))))
    })
    req.once("error", (error) => {
      if (replaced || signal.aborted) return
      c.broken = true
      resume(Effect.fail(Errors.fromNetwork(error, s.endpoint, phase)))
    })
    return Effect.sync(() => {
      // an abandoned request (an interrupted long poll): its connection and NTLM context go with it
      c.broken = true
      req.destroy()
    })
  })

const authFailed = (s: Settings) =>
  Errors.make(
    "AuthFailed",
    "delivery",
    `the WinRM service at ${s.endpoint} refused the credentials (HTTP 401, ${s.auth.type} authentication)`,
    { detail: { endpoint: s.endpoint, auth: s.auth.type } }
  )

/** The NTLM handshake on this connection (two empty POSTs), leaving a sealed session bound to its socket. */
const handshake = (s: Settings, c: Connection): Effect.Effect<void, TransportError> =>
  Effect.gen(function*() {
    if (s.auth.type !== "ntlm") return
    const auth = s.auth
    const negotiate = Ntlm.negotiate()
    const first = yield* request(s, c, { Authorization: `Negotiate ${negotiate.toString("base64")}` }, () =>
      Buffer.alloc(0), "delivery")
    if (first === "socket-replaced") {
      return yield* Effect.fail(authFailed(s))
    }
    const challenge = /(?:Negotiate|NTLM)\s+(\S+)/i.exec(String(first.headers["www-authenticate"] ?? ""))
    if (first.status !== 401 || challenge === null) {
      return yield* Effect.fail(
        first.status === 401
          ? Errors.make("Unsupported", "delivery", `${s.endpoint} does not offer NTLM (Negotiate) authentication`)
          : Errors.make(
            "ProtocolError",
            "delivery",
            `${s.endpoint} answered the NTLM negotiation with HTTP ${first.status}`
          )
      )
    }
    let result: Ntlm.ClientResult
    try {
      result = Ntlm.authenticate(negotiate, Buffer.from(challenge[1]!, "base64"), {
        user: auth.user,
        domain: auth.domain,
        ntHash: Redacted.value(auth.ntHash)
      })
    } catch (error) {
      return yield* Effect.fail(
        Errors.make("HandshakeFailed", "delivery", `NTLM with ${s.endpoint}: ${(error as Error).message}`)
      )
    }
    const socket = first.socket
    const second = yield* request(s, c, { Authorization: `Negotiate ${result.authenticate.toString("base64")}` }, (
      used
    ) =>
      used === socket ? Buffer.alloc(0) : null, "delivery")
    if (second === "socket-replaced") {
      return yield* Effect.fail(
        Errors.make("HandshakeFailed", "delivery", `${s.endpoint} closed the connection during the NTLM handshake`)
      )
    }
    if (second.status === 401) {
      return yield* Effect.fail(authFailed(s))
    }
    if (second.status !== 200) {
      return yield* Effect.fail(
        Errors.make(
          "ProtocolError",
          "delivery",
          `${s.endpoint} answered the NTLM authentication with HTTP ${second.status}`
        )
      )
    }
    c.session = result.session
    c.socket = socket
  })

/**
 * Posts one envelope and reads the answer: the parsed envelope (a fault included: HTTP 500 carries one), or a
 * `TransportError` for anything else (401, a body that is not XML, the network).
 *
 * @internal
 */
export const post = (
  s: Settings,
  c: Connection,
  envelope: string,
  phase: "delivery" | "execution"
): Effect.Effect<Xml.Element, TransportError> =>
  Effect.gen(function*() {
    const body = Buffer.from(envelope, "utf8")
    let response: Response | "socket-replaced" = "socket-replaced"
    for (let attempt = 0; attempt < 3 && response === "socket-replaced"; attempt++) {
      if (s.auth.type === "ntlm") {
        if (c.session === undefined || c.socket === undefined || c.socket.destroyed) yield* handshake(s, c)
        const session = c.session!
        const socket = c.socket
        response = yield* request(
          s,
          c,
          { "Content-Type": Ntlm.ENCRYPTED_CONTENT_TYPE },
          (used) => {
            if (used !== socket) {
              // a new socket has no NTLM context: authenticate again, then send
              c.session = undefined
              c.socket = undefined
              return null
            }
            return Ntlm.wrap(session, body)
          },
          phase
        )
      } else {
        const auth = s.auth
        response = yield* request(
          s,
          c,
          { "Content-Type": "application/soap+xml;charset=UTF-8", Authorization: Redacted.value(auth.header) },
          () => body,
          phase
        )
      }
    }
    if (response === "socket-replaced") {
      return yield* Effect.fail(Errors.make("ConnectionLost", phase, `the connection to ${s.endpoint} kept closing`))
    }
    if (response.status === 401) {
      c.session = undefined
      return yield* Effect.fail(authFailed(s))
    }
    let text: string
    const contentType = String(response.headers["content-type"] ?? "")
    if (contentType.startsWith("multipart/encrypted")) {
      if (c.session === undefined) {
        return yield* Effect.fail(Errors.make("ProtocolError", phase, `${s.endpoint} sent an encrypted answer unasked`))
      }
      try {
        text = Ntlm.unwrap(c.session, response.body).toString("utf8")
      } catch (error) {
        c.broken = true
        return yield* Effect.fail(
          Errors.make("ProtocolError", phase, `an answer of ${s.endpoint} did not verify: ${(error as Error).message}`)
        )
      }
    } else {
      text = response.body.toString("utf8")
    }
    if (text.trim() === "") {
      return yield* Effect.fail(
        Errors.make("ProtocolError", phase, `${s.endpoint} answered HTTP ${response.status} with an empty body`, {
          detail: { status: response.status }
        })
      )
    }
    try {
      return Xml.parse(text)
    } catch {
      return yield* Effect.fail(
        Errors.make(
          "ProtocolError",
          phase,
          `${s.endpoint} answered HTTP ${response.status} with a body that is not XML`,
          {
            detail: { status: response.status }
          }
        )
      )
    }
  })

/** A fresh WS-Addressing message id. @internal */
export const messageId = (): string => `uuid:${Crypto.randomUUID().toUpperCase()}`
