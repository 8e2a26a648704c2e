/**
 * The error a plan, policy, inventory or script is refused with before anything runs.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

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
    return this.path === ""
      ? `${this.reason}: ${this.description}`
      : `${this.reason} at ${this.path}: ${this.description}`
  }
}
