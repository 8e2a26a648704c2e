/**
 * Discovery of managed instances by tags (`DescribeInstanceInformation`), for inventories' `imports: [{ ssm: … }]`.
 *
 * @internal
 */
import {
  DescribeInstanceInformationCommand,
  type DescribeInstanceInformationCommandOutput,
  type InstanceInformationStringFilter,
  SSMClient,
  type SSMClientConfig
} from "@aws-sdk/client-ssm"
import type * as Inventory from "@runcmd/core/Inventory"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as SsmTarget from "../SsmTarget.js"
import { call } from "./calls.js"
import * as Limiter from "./limiter.js"

/** @internal */
export interface DiscoverOptions {
  readonly region: string
  /** Every tag must match (`tag:<key>` filters). */
  readonly tags?: { readonly [key: string]: string } | undefined
  /** A named profile for the credentials. */
  readonly profile?: string | undefined
  /** Ping statuses to include. Default `["Online"]`. */
  readonly pingStatus?: ReadonlyArray<"Online" | "ConnectionLost" | "Inactive"> | undefined
}

interface ClientOptions {
  readonly credentials?: SSMClientConfig["credentials"] | undefined
  readonly endpoint?: string | undefined
}

/** @internal */
export const discover = (
  options: DiscoverOptions,
  client?: ClientOptions
): Effect.Effect<ReadonlyArray<SsmTarget.SsmTarget>, TransportError> =>
  Effect.acquireUseRelease(
    Effect.sync(() =>
      new SSMClient({
        region: options.region,
        maxAttempts: 1,
        ...(client?.credentials === undefined ? {} : { credentials: client.credentials }),
        ...(client?.credentials === undefined && options.profile !== undefined ? { profile: options.profile } : {}),
        ...(client?.endpoint === undefined ? {} : { endpoint: client.endpoint })
      })
    ),
    (ssm) =>
      Effect.gen(function*() {
        const limiter = Limiter.forKey(
          `${client?.endpoint ?? "aws"}|${options.profile ?? "default"}|${options.region}`,
          { perSecond: 20, burst: 40 }
        )
        const filters: Array<InstanceInformationStringFilter> = [
          ...Object.entries(options.tags ?? {}).map(([k, v]) => ({ Key: `tag:${k}`, Values: [v] })),
          { Key: "PingStatus", Values: [...(options.pingStatus ?? ["Online"])] }
        ]
        const targets: Array<SsmTarget.SsmTarget> = []
        let token: string | undefined
        do {
          const page: DescribeInstanceInformationCommandOutput = yield* call(
            "DescribeInstanceInformation",
            (abortSignal) =>
              ssm.send(
                new DescribeInstanceInformationCommand({
                  Filters: filters,
                  MaxResults: 50,
                  ...(token === undefined ? {} : { NextToken: token })
                }),
                { abortSignal }
              ),
            {
              limiter,
              idempotent: true,
              maxThrottled: 20,
              phase: "delivery",
              backoff: { base: Duration.millis(100), max: Duration.seconds(5) }
            }
          )
          for (const info of page.InstanceInformationList ?? []) {
            if (info.InstanceId === undefined) continue
            targets.push(SsmTarget.make({
              id: info.InstanceId,
              instanceId: info.InstanceId,
              region: options.region,
              os: info.PlatformType === "Windows" ? "windows" : "linux",
              labels: { ...options.tags },
              ...(options.profile === undefined ? {} : { profile: options.profile })
            }))
          }
          token = page.NextToken
        } while (token !== undefined)
        return targets
      }),
    (ssm) => Effect.sync(() => ssm.destroy())
  ).pipe(Effect.withSpan("SsmTransport.discover", { attributes: { "runcmd.ssm.region": options.region } }))

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** @internal */
export const make = (client?: ClientOptions): Inventory.Importer => ({
  key: "ssm",
  import: ({ value }) =>
    Effect.gen(function*() {
      if (!isRecord(value)) {
        return yield* Effect.fail("an ssm import is { region: eu-west-1, tags: { role: web } } (tags optional)")
      }
      const region = value.region
      if (typeof region !== "string" || !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
        return yield* Effect.fail("ssm.region must be an AWS region name such as eu-west-1")
      }
      const tags = value.tags ?? {}
      if (!isRecord(tags) || Object.values(tags).some((v) => typeof v !== "string")) {
        return yield* Effect.fail("ssm.tags must map tag keys to values, like { role: web }")
      }
      const profile = value.profile
      if (profile !== undefined && (typeof profile !== "string" || profile === "")) {
        return yield* Effect.fail("ssm.profile must be the name of an AWS profile")
      }
      const unknown = Object.keys(value).filter((k) => !["region", "tags", "profile"].includes(k))
      if (unknown.length > 0) {
        return yield* Effect.fail(`ssm import: unknown key ${unknown[0]} (known: region, tags, profile)`)
      }
      return yield* discover(
        { region, tags: tags as Record<string, string>, ...(profile === undefined ? {} : { profile }) },
        client
      ).pipe(Effect.mapError((e) => `ssm discovery in ${region} failed: ${e.description}`))
    })
})
