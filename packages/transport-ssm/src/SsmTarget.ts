/**
 * The `ssm` target kind: an instance managed by AWS Systems Manager (EC2 `i-…` or hybrid `mi-…`), in a region,
 * reached with the credentials of an optional named profile (else the SDK's default chain, or the provider given
 * to the layer); `os: windows` instances run `AWS-RunPowerShellScript`, the others `AWS-RunShellScript`.
 *
 * ```yaml
 * targets:
 *   - { id: web-1, kind: ssm, instanceId: i-0123456789abcdef0, region: eu-west-1, labels: { role: web } }
 *   - { id: win-1, kind: ssm, instanceId: mi-0123456789abcdef0, region: eu-west-1, os: windows, profile: ops }
 * ```
 *
 * @since 0.1.0
 */
import * as Target from "@runcmd/core/Target"
import * as Schema from "effect/Schema"

/**
 * An SSM managed instance id: `i-` (EC2) or `mi-` (hybrid) followed by 8 or 17 hex digits.
 *
 * @since 0.1.0
 * @category schemas
 */
export const InstanceId = Schema.String.pipe(
  Schema.pattern(/^m?i-[0-9a-f]{8}([0-9a-f]{9})?$/, {
    message: () =>
      "an SSM instance id is i- (EC2) or mi- (hybrid) followed by 8 or 17 lowercase hex digits, like i-0123456789abcdef0"
  })
)

/**
 * An AWS region name such as `eu-west-1`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Region = Schema.String.pipe(
  Schema.pattern(/^[a-z]{2}(-[a-z]+)+-\d+$/, {
    message: () => "a region is an AWS region name such as us-east-1 or eu-west-1"
  })
)

/**
 * The `ssm` target kind's schema.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SsmTarget = Target.make("ssm", {
  instanceId: InstanceId,
  region: Region,
  /** A named profile of the AWS config files for this target's account; default: the layer's credentials. */
  profile: Schema.optional(Schema.String.pipe(Schema.minLength(1)))
})

/**
 * @since 0.1.0
 * @category models
 */
export type SsmTarget = typeof SsmTarget.Type

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly id: string
  readonly instanceId: string
  readonly region: string
  readonly labels?: Record<string, string> | undefined
  readonly os?: Target.Os | undefined
  readonly profile?: string | undefined
}): SsmTarget =>
  Schema.decodeUnknownSync(SsmTarget)({
    kind: "ssm",
    id: options.id,
    instanceId: options.instanceId,
    region: options.region,
    labels: options.labels ?? {},
    os: options.os ?? "linux",
    ...(options.profile === undefined ? {} : { profile: options.profile })
  })

/**
 * @since 0.1.0
 * @category refinements
 */
export const isSsmTarget = (target: Target.Target): target is SsmTarget => target.kind === "ssm"
