/**
 * Calls to SSM and S3: each draws a token from the account's and region's limiter, is aborted when its fiber is
 * interrupted, and on throttling or a transient failure backs off (exponential, full jitter) and tries again;
 * failures become core's `TransportError` with a reason.
 *
 * @internal
 */
import { TransportError, type TransportErrorReason } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type { Limiter } from "./limiter.js"

/** @internal */
export const TRANSPORT = "ssm"

const THROTTLING = new Set([
  "ThrottlingException",
  "Throttling",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "RequestThrottled",
  "RequestThrottledException",
  "SlowDown",
  "ProvisionedThroughputExceededException"
])

interface AwsError {
  readonly name?: string
  readonly message?: string
  readonly code?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
}

const asAws = (e: unknown): AwsError => (typeof e === "object" && e !== null ? e as AwsError : {})

/** @internal */
export const errorName = (e: unknown): string => asAws(e).name ?? "Error"

/** @internal */
export const isThrottling = (e: unknown): boolean =>
  THROTTLING.has(errorName(e)) || asAws(e).$metadata?.httpStatusCode === 429

const NETWORK = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EAI_AGAIN", "ENOTFOUND"])

/** A failure after which the same request may simply be tried again (the service did nothing, or it is a read). */
const isTransient = (e: unknown): boolean => {
  const a = asAws(e)
  const status = a.$metadata?.httpStatusCode
  return (status !== undefined && status >= 500 && status !== 501) || NETWORK.has(a.code ?? "") ||
    a.name === "TimeoutError" || a.name === "InternalServerError"
}

const reasonOf = (e: unknown): TransportErrorReason => {
  const name = errorName(e)
  const code = asAws(e).code ?? ""
  if (isThrottling(e)) return "Throttled"
  if (name === "InvalidInstanceId") return "TargetNotFound"
  if (name === "UnsupportedPlatformType" || name === "InvalidDocument") return "Unsupported"
  if (
    name === "AccessDeniedException" || name === "UnrecognizedClientException" ||
    name === "InvalidSignatureException" || name === "ExpiredTokenException" || name === "CredentialsProviderError"
  ) return "Unauthorized"
  if (code === "ECONNREFUSED") return "ConnectRefused"
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "DnsFailed"
  if (code === "ETIMEDOUT" || name === "TimeoutError") return "ConnectTimeout"
  return "Unknown"
}

/** @internal */
export const toTransportError = (
  e: unknown,
  operation: string,
  phase: "delivery" | "execution",
  reason?: TransportErrorReason
): TransportError =>
  new TransportError({
    reason: reason ?? reasonOf(e),
    transport: TRANSPORT,
    phase,
    description: `${operation}: ${errorName(e)}: ${asAws(e).message ?? String(e)}`,
    detail: { operation, error: errorName(e) },
    cause: e
  })

/** @internal */
export interface CallOptions {
  readonly limiter: Limiter
  /** Retry transient failures too (reads); writes retry throttling only (the service refused them). */
  readonly idempotent: boolean
  /** Give up after this many throttled tries (default: never; a poll is bounded by its execution). */
  readonly maxThrottled?: number | undefined
  readonly backoff: { readonly base: Duration.Duration; readonly max: Duration.Duration }
  readonly phase: "delivery" | "execution"
  /** Counts calls by operation (the bench reads it). */
  readonly onCall?: ((operation: string) => void) | undefined
}

/** @internal */
export const call = <A>(
  operation: string,
  send: (signal: AbortSignal) => Promise<A>,
  options: CallOptions
): Effect.Effect<A, TransportError> => {
  const base = Duration.toMillis(options.backoff.base)
  const max = Duration.toMillis(options.backoff.max)
  const attempt = (n: number, throttled: number): Effect.Effect<A, TransportError> =>
    Effect.zipRight(
      options.limiter.take,
      Effect.tryPromise({
        try: (signal) => {
          options.onCall?.(operation)
          return send(signal)
        },
        catch: (e) => e
      })
    ).pipe(
      Effect.catchAll((e) => {
        const throttle = isThrottling(e)
        const retry = throttle
          ? options.maxThrottled === undefined || throttled < options.maxThrottled
          : options.idempotent && isTransient(e) && n < 5
        if (!retry) return Effect.fail(toTransportError(e, operation, options.phase))
        // full jitter: a random delay up to the exponential bound spreads the fleet's retries
        const bound = Math.min(max, base * 2 ** Math.min(n, 16))
        return Effect.flatMap(Random.nextIntBetween(0, Math.max(1, Math.floor(bound)) + 1), (delay) =>
          Effect.zipRight(
            Effect.logDebug(`ssm: ${operation} ${throttle ? "throttled" : "failed"}, retrying in ${delay} ms`),
            Effect.delay(attempt(n + 1, throttle ? throttled + 1 : throttled), Duration.millis(delay))
          ))
      })
    )
  return attempt(0, 0)
}
