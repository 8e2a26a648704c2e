/** @internal */
import { forTransport, type TransportError } from "@runcmd/core/TransportError"

/** @internal */
export const TRANSPORT = "ssh"

/**
 * A `TransportError` of this transport. Core's `Transport.make` adds the target id to the errors of an execution;
 * `targetId` is for errors raised outside one (connections shared by targets, SFTP).
 *
 * @internal
 */
export const make = forTransport(TRANSPORT)

/** What ssh2 puts on its errors. @internal */
export interface Ssh2Error extends Error {
  readonly level?: string
  readonly code?: string
  readonly errno?: number
  readonly reason?: number | string
  readonly fatal?: boolean
}

/** The host-key verdict recorded by the verifier, used to explain ssh2's bare "Host denied". @internal */
export interface HostKeyRejection {
  readonly description: string
  readonly detail: Record<string, unknown>
}

/** Facts gathered while connecting one hop, to explain a failure. @internal */
export interface ConnectContext {
  readonly targetId?: string | undefined
  /** `user@host:port` of the hop that failed, and its position (0 = first jump host). */
  readonly hop: string
  readonly hopIndex: number
  readonly hops: number
  readonly hostKeyRejection?: HostKeyRejection | undefined
  readonly authMethodsTried: ReadonlyArray<string>
  readonly authMethodsOffered?: ReadonlyArray<string> | undefined
  readonly debug: ReadonlyArray<string>
  readonly ready: boolean
  /** Whether the server sent its identification (`SSH-2.0-…`): before it, nothing SSH has answered. */
  readonly identified?: boolean | undefined
}

const where = (ctx: ConnectContext): string =>
  ctx.hops > 1
    ? (ctx.hopIndex < ctx.hops - 1
      ? ` (jump host ${ctx.hopIndex + 1}: ${ctx.hop})`
      : ` (via ${ctx.hops - 1} jump host(s))`)
    : ""

const baseDetail = (ctx: ConnectContext): Record<string, unknown> => ({
  hop: ctx.hop,
  ...(ctx.hops > 1 ? { hopIndex: ctx.hopIndex, hops: ctx.hops } : {})
})

const ALG_LINE =
  /^Handshake: \((local|remote)\) (KEX method|Host key format|C->S cipher|S->C cipher|C->S MAC|S->C MAC|C->S compression|S->C compression): (.*)$/

const algorithmLists = (debug: ReadonlyArray<string>, category: string) => {
  let local: Array<string> | undefined
  let remote: Array<string> | undefined
  for (const line of debug) {
    const m = ALG_LINE.exec(line)
    if (m === null || m[2] !== category) continue
    // without the pseudo-algorithms that only signal extensions
    const list = m[3]!.split(",").filter((s) =>
      s !== "" && !/^(ext-info-[cs]|kex-strict-[cs]-v00@openssh\.com)$/.test(s)
    )
    if (m[1] === "local") local = list
    else remote = list
  }
  return { local, remote }
}

const CATEGORY: ReadonlyArray<readonly [RegExp, string, string]> = [
  [/key exchange/, "KEX method", "kex"],
  [/host key format/, "Host key format", "serverHostKey"],
  [/C->S cipher/, "C->S cipher", "cipher"],
  [/S->C cipher/, "S->C cipher", "cipher"],
  [/C->S MAC/, "C->S MAC", "hmac"],
  [/S->C MAC/, "S->C MAC", "hmac"],
  [/compression/, "C->S compression", "compress"]
]

/**
 * Maps an error ssh2 (or the socket) raised while connecting one hop. Every such error is phase `delivery`:
 * nothing has run yet.
 *
 * @internal
 */
export const fromConnect = (err: Ssh2Error, ctx: ConnectContext): TransportError => {
  const at = where(ctx)
  const extra = (detail: Record<string, unknown>) => ({
    targetId: ctx.targetId,
    detail: { ...baseDetail(ctx), ...detail },
    cause: err
  })
  const level = err.level
  if (ctx.hostKeyRejection !== undefined) {
    return make(
      "HostKeyRejected",
      "delivery",
      ctx.hostKeyRejection.description + at,
      extra(ctx.hostKeyRejection.detail)
    )
  }
  if (level === "client-socket" || level === "client-dns" || level === "tcp") {
    const code = err.code
    if (level === "client-dns" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME") {
      return make("DnsFailed", "delivery", `cannot resolve ${ctx.hop}${at}: ${err.message}`, extra({ code }))
    }
    if (code === "ETIMEDOUT") {
      return make("ConnectTimeout", "delivery", `TCP connect to ${ctx.hop} timed out${at}`, extra({ code }))
    }
    if (code === "ECONNREFUSED" || code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "EADDRNOTAVAIL") {
      return make("ConnectRefused", "delivery", `cannot connect to ${ctx.hop}${at}: ${err.message}`, extra({ code }))
    }
    if (ctx.identified !== true) return refusedBeforeSsh(ctx, at, err.message, extra({ code, retryable: true }))
    return make("ConnectionLost", "delivery", `connection to ${ctx.hop} failed${at}: ${err.message}`, extra({ code }))
  }
  if (level === "client-timeout") {
    if (!ctx.ready) {
      return make(
        "HandshakeTimeout",
        "delivery",
        `no SSH handshake/authentication from ${ctx.hop} within the ready timeout${at}`,
        extra({ debugTail: ctx.debug.slice(-8) })
      )
    }
    return make("ConnectionLost", "delivery", `connection to ${ctx.hop} lost (${err.message})${at}`, extra({}))
  }
  if (level === "client-authentication" || level === "agent") {
    return make(
      "AuthFailed",
      "delivery",
      `authentication as ${ctx.hop} failed${at}: tried ${ctx.authMethodsTried.join(", ") || "nothing"}` +
        (ctx.authMethodsOffered === undefined ? "" : `; the server accepts ${ctx.authMethodsOffered.join(", ")}`) +
        (level === "agent" ? ` (agent: ${err.message})` : ""),
      extra({
        methods: [...ctx.authMethodsTried],
        ...(ctx.authMethodsOffered === undefined ? {} : { serverMethods: [...ctx.authMethodsOffered] })
      })
    )
  }
  if (level === "handshake") {
    const found = CATEGORY.find(([re]) => re.test(err.message))
    if (found !== undefined) {
      const lists = algorithmLists(ctx.debug, found[1])
      return make(
        "HandshakeFailed",
        "delivery",
        `${err.message} with ${ctx.hop}${at}` +
          (lists.remote === undefined ? "" : `; the server offers ${lists.remote.join(",")}`),
        extra({
          category: found[2],
          ...(lists.local === undefined ? {} : { clientAlgorithms: lists.local }),
          ...(lists.remote === undefined ? {} : { serverAlgorithms: lists.remote })
        })
      )
    }
    return make(
      "HandshakeFailed",
      "delivery",
      `${err.message} with ${ctx.hop}${at}`,
      extra({ debugTail: ctx.debug.slice(-8) })
    )
  }
  if (err.message === "Connection lost before handshake") {
    if (ctx.identified !== true) return refusedBeforeSsh(ctx, at, err.message, extra({ retryable: true }))
    return make(
      "ConnectionLost",
      "delivery",
      `${ctx.hop} closed the connection before the SSH handshake${at} (server busy: MaxStartups, or not an SSH server)`,
      extra({ retryable: true })
    )
  }
  return make("ConnectionLost", "delivery", `connection to ${ctx.hop} failed${at}: ${err.message}`, extra({ level }))
}

/**
 * The connection was accepted and dropped before the server said a word of SSH (OpenSSH past `MaxStartups`, a proxy
 * or firewall resetting it, not an SSH server): the host is not reachable over SSH now, `ConnectRefused` (an
 * `Unreachable` outcome, worth a retry: nothing ran).
 */
const refusedBeforeSsh = (
  ctx: ConnectContext,
  at: string,
  message: string,
  extra: { readonly targetId?: string | undefined; readonly detail: Record<string, unknown>; readonly cause: unknown }
): TransportError =>
  make(
    "ConnectRefused",
    "delivery",
    `${ctx.hop} closed the connection before the SSH handshake${at} (${message}; server busy: MaxStartups, a proxy ` +
      `refusing it, or not an SSH server)`,
    extra
  )

/** ssh2's channel open refusal: `(SSH) Channel open failure: ...` with a numeric `reason`. @internal */
export const isChannelOpenFailure = (err: unknown): err is Ssh2Error =>
  err instanceof Error && /Channel open failure/.test(err.message)

/** A refusal because of the server's session limit (SSH_OPEN_CONNECT_FAILED = 2, or ADMINISTRATIVELY_PROHIBITED = 1). @internal */
export const isSessionLimit = (err: unknown): boolean =>
  isChannelOpenFailure(err) && ((err as Ssh2Error).reason === 2 || (err as Ssh2Error).reason === 1)

/** The connection is gone (exec after end, no response). @internal */
export const isNotConnected = (err: unknown): boolean =>
  err instanceof Error && /Not connected|No response from server|Channel not open|socket/i.test(err.message) &&
  !isChannelOpenFailure(err)
