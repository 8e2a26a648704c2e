/**
 * Typed errors: what a transport can fail with, and what a bad plan is refused with.
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
 * @since 0.1.0
 * @category utils
 */
export const classify = (reason: TransportErrorReason): FailureClass => {
  switch (reason) {
    case "ConnectRefused":
    case "ConnectTimeout":
    case "HandshakeTimeout":
    case "DnsFailed":
    case "NotManaged":
    case "TargetNotFound":
    case "ChannelLimitReached":
    case "TargetBusy":
    case "Throttled":
      return "Unreachable"
    case "HandshakeFailed":
    case "AuthFailed":
    case "HostKeyRejected":
    case "EscalationFailed":
    case "Unauthorized":
    case "Unsupported":
      return "Rejected"
    case "ConnectionLost":
    case "SpawnFailed":
    case "ProtocolError":
    case "OutputLost":
    case "Unknown":
      return "TransportFailed"
  }
}

/**
 * Reasons worth retrying at all; whether a retry is *safe* also depends on the phase and the policy.
 *
 * @since 0.1.0
 * @category utils
 */
export const isTransient = (reason: TransportErrorReason): boolean => {
  switch (reason) {
    case "ConnectRefused":
    case "ConnectTimeout":
    case "HandshakeTimeout":
    case "DnsFailed":
    case "ChannelLimitReached":
    case "TargetBusy":
    case "Throttled":
    case "ConnectionLost":
    case "ProtocolError":
    case "Unknown":
      return true
    default:
      return false
  }
}

/**
 * Why a plan is refused before anything runs.
 *
 * @since 0.1.0
 * @category models
 */
export const InvalidPlanReason = Schema.Literal(
  "DecodeFailed",
  "NoTargets",
  "DuplicateTargetId",
  "SelectorMatchedNothing",
  "NoTransportForKind",
  "UnsupportedByTransport",
  "ChecksumMismatch",
  "FetchFailed",
  "FileUnreadable",
  "InvalidInventory",
  "InvalidValue"
)

/**
 * @since 0.1.0
 * @category models
 */
export type InvalidPlanReason = typeof InvalidPlanReason.Type

/**
 * A plan, policy, inventory or script that cannot run; names the field (`path`) and the fix.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidPlan extends Schema.TaggedError<InvalidPlan>("@runcmd/core/InvalidPlan")("InvalidPlan", {
  reason: InvalidPlanReason,
  /** Where the problem is: a field path (`policy.concurrency`), a file (`inventory.yaml: groups.web.hosts[2]`)... */
  path: Schema.String,
  description: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.path === "" ? `${this.reason}: ${this.description}` : `${this.reason} at ${this.path}: ${this.description}`
  }
}
