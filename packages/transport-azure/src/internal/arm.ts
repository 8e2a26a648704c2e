/**
 * ARM access shared by every execution of a transport: one `ComputeManagementClient` per subscription, and one
 * rate limiter per subscription, as a pipeline policy every request goes through (LRO polls of the SDK included):
 * at most `maxInFlight` requests at once; paced when ARM's `x-ms-ratelimit-remaining-subscription-reads` /
 * `-writes` / `-deletes` say the subscription's bucket runs low (one request per 1/remaining of a second: slower as it
 * empties, before ARM answers 429); and after a 429 every request of the subscription waits until the `Retry-After`
 * has passed, then the throttled request is sent again (a throttled call never fails; the caller's deadline bounds
 * it through the abort signal).
 *
 * @internal
 */
import { ComputeManagementClient } from "@azure/arm-compute"
import type { TokenCredential } from "@azure/core-auth"
import { type ErrorPhase, forTransport, type TransportError } from "@runcmd/core/TransportError"

/** @internal */
export const TRANSPORT = "azure"

/** @internal */
export const error = forTransport(TRANSPORT)

interface Headers {
  get(name: string): string | undefined
}
interface PipelineRequest {
  readonly abortSignal?: AbortSignal | undefined
  readonly method?: string | undefined
}
interface PipelineResponse {
  readonly status: number
  readonly headers: Headers
}
type SendRequest = (request: any) => Promise<PipelineResponse>

/** Milliseconds to wait from a throttled response's headers (`retry-after-ms`, `x-ms-retry-after-ms`, `Retry-After`). */
export const retryAfterMs = (headers: Headers | undefined): number | undefined => {
  if (headers === undefined) return undefined
  for (const name of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const v = Number(headers.get(name))
    if (headers.get(name) !== undefined && Number.isFinite(v) && v >= 0) return v
  }
  const after = headers.get("retry-after")
  if (after === undefined) return undefined
  const seconds = Number(after)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(after)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

/** @internal */
export interface LimiterStats {
  readonly requests: number
  readonly throttled: number
  readonly waitedMs: number
  /** Requests delayed because ARM said the bucket runs low, and for how long in all. */
  readonly paced: number
  readonly pacedMs: number
}

/** ARM's bucket a request draws from. */
type Kind = "reads" | "writes" | "deletes"

const kindOf = (method: string | undefined): Kind =>
  method === "GET" || method === "HEAD" ? "reads" : method === "DELETE" ? "deletes" : "writes"

/**
 * The pause between requests of one kind when `remaining` tokens are left: none at or above `lowWater`, else a
 * second shared among them (ARM refills its buckets every second), so the spending slows as the bucket empties.
 */
export const paceMs = (remaining: number | undefined, lowWater: number): number =>
  remaining === undefined || remaining >= lowWater ? 0 : Math.ceil(1000 / Math.max(1, remaining))

/** @internal */
export interface Limiter {
  readonly policy: { readonly name: string; readonly sendRequest: (request: any, next: SendRequest) => Promise<any> }
  readonly stats: () => LimiterStats
}

const abortable = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted === true) return reject(signal.reason ?? new Error("aborted"))
    const timer = setTimeout(done, ms)
    function done() {
      signal?.removeEventListener("abort", onAbort)
      resolve()
    }
    function onAbort() {
      clearTimeout(timer)
      reject(signal?.reason ?? new Error("aborted"))
    }
    signal?.addEventListener("abort", onAbort, { once: true })
  })

/** @internal */
export const makeLimiter = (maxInFlight: number, defaultRetryAfterMs: number): Limiter => {
  const lowWater = Math.max(10, 2 * maxInFlight)
  // per kind: the pause ARM's last answer asks for, and the time the next request may leave
  const pace = { reads: { gap: 0, next: 0 }, writes: { gap: 0, next: 0 }, deletes: { gap: 0, next: 0 } }
  let paced = 0
  let pacedMs = 0
  let inFlight = 0
  const waiting: Array<() => void> = []
  let pausedUntil = 0
  let requests = 0
  let throttled = 0
  let waitedMs = 0
  const acquire = async (signal: AbortSignal | undefined) => {
    while (inFlight >= maxInFlight) {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener("abort", onAbort)
          resolve()
        }
        const onAbort = () => {
          const i = waiting.indexOf(wake)
          if (i >= 0) waiting.splice(i, 1)
          reject(signal?.reason ?? new Error("aborted"))
        }
        waiting.push(wake)
        signal?.addEventListener("abort", onAbort, { once: true })
      })
    }
    inFlight++
  }
  const release = () => {
    inFlight--
    waiting.shift()?.()
  }
  return {
    stats: () => ({ requests, throttled, waitedMs, paced, pacedMs }),
    policy: {
      name: "runcmdArmRateLimiter",
      sendRequest: async (request: PipelineRequest, next: SendRequest) => {
        const kind = kindOf(request.method)
        for (;;) {
          const wait = pausedUntil - Date.now()
          if (wait > 0) {
            waitedMs += wait
            await abortable(wait, request.abortSignal)
          }
          const p = pace[kind]
          if (p.gap > 0) {
            // a slot of its own: requests waiting together leave one gap apart, not all at once
            const now = Date.now()
            const slot = Math.max(now, p.next)
            p.next = slot + p.gap
            if (slot > now) {
              paced++
              pacedMs += slot - now
              await abortable(slot - now, request.abortSignal)
            }
          }
          await acquire(request.abortSignal)
          let response: PipelineResponse
          try {
            requests++
            response = await next(request)
          } finally {
            release()
          }
          if (response.status !== 429) {
            const header = response.headers.get(`x-ms-ratelimit-remaining-subscription-${kind}`)
            if (header !== undefined && Number.isFinite(Number(header))) {
              const p = pace[kind]
              p.gap = paceMs(Number(header), lowWater)
              // slots taken under a longer pause move up to the new one
              p.next = Math.min(p.next, Date.now() + p.gap)
            }
            return response
          }
          throttled++
          const ms = retryAfterMs(response.headers) ?? defaultRetryAfterMs
          pausedUntil = Math.max(pausedUntil, Date.now() + ms)
        }
      }
    }
  }
}

/** @internal */
export interface ClientSettings {
  readonly credential: TokenCredential
  readonly endpoint?: string | undefined
  readonly ca?: string | undefined
  readonly maxInFlight: number
  readonly defaultRetryAfterMs: number
}

/** @internal */
export interface Clients {
  readonly get: (subscription: string) => ComputeManagementClient
  readonly limiter: (subscription: string) => Limiter
}

/** @internal */
export const makeClients = (settings: ClientSettings): Clients => {
  const clients = new Map<string, ComputeManagementClient>()
  const limiters = new Map<string, Limiter>()
  const limiter = (subscription: string) => {
    const key = subscription.toLowerCase()
    let l = limiters.get(key)
    if (l === undefined) {
      l = makeLimiter(settings.maxInFlight, settings.defaultRetryAfterMs)
      limiters.set(key, l)
    }
    return l
  }
  return {
    limiter,
    get: (subscription) => {
      const key = subscription.toLowerCase()
      let client = clients.get(key)
      if (client === undefined) {
        client = new ComputeManagementClient(settings.credential, subscription, {
          ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
          ...(settings.ca === undefined ? {} : { tlsOptions: { ca: settings.ca } }),
          // transient failures are retried by the transport; throttling by the limiter
          retryOptions: { maxRetries: 0 },
          additionalPolicies: [{ position: "perCall", policy: limiter(subscription).policy as any }],
          userAgentOptions: { userAgentPrefix: "runcmd-transport-azure" }
        })
        clients.set(key, client)
      }
      return client
    }
  }
}

/** What a failed SDK call carries (`RestError`). */
interface RestErrorLike {
  readonly statusCode?: number
  readonly code?: string
  readonly message?: string
  readonly name?: string
  readonly response?: { readonly headers?: Headers }
}

/** @internal */
export const statusOf = (e: unknown): number | undefined =>
  typeof e === "object" && e !== null ? (e as RestErrorLike).statusCode : undefined

/** @internal */
export const codeOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null ? (e as RestErrorLike).code : undefined

/** Network-level failures worth another try. */
const NETWORK = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "REQUEST_SEND_ERROR"
])

/** @internal */
export const isTransient = (e: unknown): boolean => {
  const status = statusOf(e)
  if (status !== undefined) {
    return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505)
  }
  const code = codeOf(e)
  return code !== undefined && NETWORK.has(code)
}

/** Maps a failed ARM call to a `TransportError` (the message of ARM's error body, never a request body). */
export const fromRest = (e: unknown, phase: ErrorPhase, what: string): TransportError => {
  const status = statusOf(e)
  const code = codeOf(e) ?? "unknown"
  const message = (typeof e === "object" && e !== null ? (e as RestErrorLike).message : undefined) ?? String(e)
  const detail = { statusCode: status, code }
  const describe = `${what}: ${status === undefined ? "" : `${status} `}${code}: ${message}`
  if (status === 401) return error("AuthFailed", "delivery", describe, { detail })
  if (status === 403) return error("Unauthorized", "delivery", describe, { detail })
  if (status === 404) return error("TargetNotFound", "delivery", describe, { detail })
  if (status === 409) return error("TargetBusy", phase, describe, { detail })
  if (status === 429) return error("Throttled", phase, describe, { detail })
  if (status === 400) return error("Unsupported", "delivery", describe, { detail })
  if (status === undefined && NETWORK.has(code)) return error("ConnectionLost", phase, describe, { detail })
  return error("Unknown", phase, describe, { detail })
}
