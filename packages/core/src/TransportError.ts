/**
 * The one error every transport fails with, and how its reasons classify outcomes and retries.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@runcmd/core/TransportError")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * Why a transport failed. Retry decisions and outcome classification key off this, never off message text.
 *
 * @since 0.1.0
 * @category models
 */
export const TransportErrorReason = Schema.Literal(
  // never reached the target
  "ConnectRefused",
  "ConnectTimeout",
  "HandshakeTimeout",
  "DnsFailed",
  "NotManaged",
  "TargetNotFound",
  // reached it and was refused
  "HandshakeFailed",
  "AuthFailed",
  "HostKeyRejected",
  "EscalationFailed",
  "Unauthorized",
  "Unsupported",
  // reached it, but busy: retryable before delivery
  "ChannelLimitReached",
  "TargetBusy",
  "Throttled",
  // broke mid-run
  "ConnectionLost",
  "SpawnFailed",
  "ProtocolError",
  "OutputLost",
  "Unknown"
)

/**
 * @since 0.1.0
 * @category models
 */
export type TransportErrorReason = typeof TransportErrorReason.Type

/**
 * Whether the script may have started when the error happened. `delivery` errors are always safe to retry;
 * `execution` errors are retried only for idempotent scripts.
 *
 * @since 0.1.0
 * @category models
 */
export const ErrorPhase = Schema.Literal("delivery", "execution")

/**
 * @since 0.1.0
 * @category models
 */
export type ErrorPhase = typeof ErrorPhase.Type

/**
 * The one error every transport fails with; transport-specific detail goes in `detail` and `cause`.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransportError extends Schema.TaggedError<TransportError>("@runcmd/core/TransportError")(
  "TransportError",
  {
    reason: TransportErrorReason,
    transport: Schema.String,
    phase: ErrorPhase,
    description: Schema.String,
    targetId: Schema.optional(Schema.String),
    /** Structured facts for the reason (algorithm lists, methods tried, fingerprints, retry-after ms...). */
    detail: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId

  /**
   * @since 0.1.0
   */
  override get message(): string {
    const where = this.targetId === undefined ? "" : ` on ${this.targetId}`
    return `${this.transport}: ${this.reason}${where}: ${this.description}`
  }
}

/**
 * The constructor a transport's errors share: its name fixed, `detail` and `cause` optional (core's
 * `Transport.make` adds the target id).
 *
 * @example
 * ```ts
 * const fail = TransportError.forTransport("mine")
 * fail("ConnectRefused", "delivery", "connection refused by host:22", { detail: { port: 22 } })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const forTransport = (transport: string) =>
(
  reason: TransportErrorReason,
  phase: ErrorPhase,
  description: string,
  extra: {
    readonly detail?: Record<string, unknown> | undefined
    readonly cause?: unknown
    /** For errors raised outside one execution (a connection shared by targets); `make` stamps the rest. */
    readonly targetId?: string | undefined
  } = {}
): TransportError =>
  new TransportError({
    reason,
    transport,
    phase,
    description,
    ...(extra.targetId === undefined ? {} : { targetId: extra.targetId }),
    ...(extra.detail === undefined ? {} : { detail: extra.detail }),
    ...(extra.cause === undefined ? {} : { cause: extra.cause })
  })

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTransportError = (u: unknown): u is TransportError => Predicate.hasProperty(u, TypeId)

/**
 * Which outcome a failure maps to.
 *
 * @since 0.1.0
 * @category models
 */
export type FailureClass = "Unreachable" | "Rejected" | "TransportFailed"

/**
 * Every reason's outcome class and whether it is worth retrying at all (whether a retry is *safe* also depends on
 * the phase and the policy). `classify` and `isTransient` read this one table.
 *
 * @since 0.1.0
 * @category models
 */
export const reasons: {
  readonly [R in TransportErrorReason]: { readonly class: FailureClass; readonly transient: boolean }
} = {
  ConnectRefused: { class: "Unreachable", transient: true },
  ConnectTimeout: { class: "Unreachable", transient: true },
  HandshakeTimeout: { class: "Unreachable", transient: true },
  DnsFailed: { class: "Unreachable", transient: true },
  NotManaged: { class: "Unreachable", transient: false },
  TargetNotFound: { class: "Unreachable", transient: false },
  ChannelLimitReached: { class: "Unreachable", transient: true },
  TargetBusy: { class: "Unreachable", transient: true },
  Throttled: { class: "Unreachable", transient: true },
  HandshakeFailed: { class: "Rejected", transient: false },
  AuthFailed: { class: "Rejected", transient: false },
  HostKeyRejected: { class: "Rejected", transient: false },
  EscalationFailed: { class: "Rejected", transient: false },
  Unauthorized: { class: "Rejected", transient: false },
  Unsupported: { class: "Rejected", transient: false },
  ConnectionLost: { class: "TransportFailed", transient: true },
  SpawnFailed: { class: "TransportFailed", transient: false },
  ProtocolError: { class: "TransportFailed", transient: true },
  OutputLost: { class: "TransportFailed", transient: false },
  Unknown: { class: "TransportFailed", transient: true }
}

/**
 * Which outcome a failure with this reason maps to.
 *
 * @since 0.1.0
 * @category utils
 */
export const classify = (reason: TransportErrorReason): FailureClass => reasons[reason].class

/**
 * Reasons worth retrying at all; whether a retry is *safe* also depends on the phase and the policy.
 *
 * @since 0.1.0
 * @category utils
 */
export const isTransient = (reason: TransportErrorReason): boolean => reasons[reason].transient
