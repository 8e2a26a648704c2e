/**
 * Azure VMs and scale-set instances found by tags, as targets: over a subscription or one resource group, every
 * VM whose tags match and every instance of a matching scale set (uniform: `azure-vmss-vm` targets; flexible: its
 * member VMs, as `azure-vm`). Each target is labelled with its tags, `azure-resource-group`, `azure-power-state`
 * (and `azure-scale-set`); a VM that is not running stays a target and the transport reports it `Unreachable`
 * before sending anything. In inventories:
 *
 * ```yaml
 * imports:
 *   - azure: { subscription: 00000000-0000-0000-0000-000000000000, resourceGroup: prod, tags: { role: web } }
 *     group: web
 * ```
 *
 * @since 0.1.0
 */
import * as Inventory from "@runcmd/core/Inventory"
import * as Targets from "@runcmd/core/Targets"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as AzureTarget from "./AzureTarget.js"
import * as AzureTransport from "./AzureTransport.js"

/**
 * What to discover.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Query = Schema.Struct({
  subscription: AzureTarget.SubscriptionId,
  resourceGroup: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  /** Every tag must match (`"*"`: the tag is present, any value). No tags: every VM. */
  tags: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Query = typeof Query.Type

/**
 * Discovery failed (ARM refused the listing, the credential failed...).
 *
 * @since 0.1.0
 * @category errors
 */
export class DiscoveryError extends Schema.TaggedError<DiscoveryError>("@runcmd/transport-azure/DiscoveryError")(
  "DiscoveryError",
  {
    reason: Schema.Literal("ListFailed"),
    description: Schema.String,
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.description
  }
}

const matches = (tags: Readonly<Record<string, string>> | undefined, wanted: Query["tags"]) =>
  wanted === undefined ||
  Object.entries(wanted).every(([k, v]) => tags !== undefined && k in tags && (v === "*" || tags[k] === v))

const powerOf = (statuses: ReadonlyArray<{ readonly code?: string | undefined }> | undefined) =>
  statuses?.find((s) => s.code?.startsWith("PowerState/") === true)?.code?.slice("PowerState/".length) ?? "unknown"

const osOf = (
  osType: string | undefined
) => (osType?.toLowerCase() === "windows" ? "windows" as const : "linux" as const)

const groupOf = (id: string | undefined) => /\/resourceGroups\/([^/]+)\//i.exec(id ?? "")?.[1] ?? ""

const collect = async <T>(it: AsyncIterable<T>) => {
  const out: Array<T> = []
  for await (const x of it) out.push(x)
  return out
}

/**
 * The targets matching `query`, with the ARM access of `arm` (see `AzureTransport.makeArm`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const discover = (
  arm: AzureTransport.Arm,
  query: Query
): Effect.Effect<ReadonlyArray<AzureTarget.AzureTarget>, DiscoveryError> =>
  Effect.tryPromise({
    try: async () => {
      const client = arm.clients.get(query.subscription)
      const rg = query.resourceGroup
      const [vms, sets] = await Promise.all([
        collect(
          rg === undefined
            ? client.virtualMachines.listAll({ statusOnly: "true" })
            : client.virtualMachines.list(rg, { expand: "instanceView" })
        ),
        collect(rg === undefined ? client.virtualMachineScaleSets.listAll() : client.virtualMachineScaleSets.list(rg))
      ])
      const matchedSets = sets.filter((s) => matches(s.tags, query.tags))
      const flexible = new Set(
        matchedSets.filter((s) => s.orchestrationMode === "Flexible").map((s) => (s.id ?? "").toLowerCase())
      )
      const targets: Array<AzureTarget.AzureTarget> = []
      for (const vm of vms) {
        const member = vm.virtualMachineScaleSet?.id?.toLowerCase()
        if (!matches(vm.tags, query.tags) && (member === undefined || !flexible.has(member))) continue
        const group = groupOf(vm.id)
        targets.push(AzureTarget.vm(vm.name ?? "", {
          subscription: query.subscription,
          resourceGroup: group,
          vmName: vm.name ?? "",
          ...(vm.location === undefined ? {} : { location: vm.location }),
          os: osOf(vm.storageProfile?.osDisk?.osType),
          labels: {
            ...vm.tags,
            "azure-resource-group": group,
            "azure-power-state": powerOf(vm.instanceView?.statuses),
            ...(member === undefined ? {} : { "azure-scale-set": member.slice(member.lastIndexOf("/") + 1) })
          }
        }))
      }
      for (const set of matchedSets) {
        if (set.orchestrationMode === "Flexible") continue
        const group = groupOf(set.id)
        const instances = await collect(
          client.virtualMachineScaleSetVMs.list(group, set.name ?? "", { expand: "instanceView" })
        )
        for (const instance of instances) {
          targets.push(AzureTarget.vmssVm(instance.name ?? `${set.name}_${instance.instanceId}`, {
            subscription: query.subscription,
            resourceGroup: group,
            scaleSet: set.name ?? "",
            instanceId: instance.instanceId ?? "",
            ...(instance.location === undefined ? {} : { location: instance.location }),
            os: osOf(
              instance.storageProfile?.osDisk?.osType ?? set.virtualMachineProfile?.storageProfile?.osDisk?.osType
            ),
            labels: {
              ...set.tags,
              ...instance.tags,
              "azure-resource-group": group,
              "azure-scale-set": set.name ?? "",
              "azure-power-state": powerOf(instance.instanceView?.statuses)
            }
          }))
        }
      }
      return targets
    },
    catch: (cause) =>
      new DiscoveryError({
        reason: "ListFailed",
        description: `listing the VMs of subscription ${query.subscription}${
          query.resourceGroup === undefined ? "" : ` (resource group ${query.resourceGroup})`
        } failed: ${(cause as Error)?.message ?? String(cause)}`,
        cause
      })
  }).pipe(
    Effect.withSpan("AzureDiscovery.discover", { attributes: { "runcmd.azure.subscription": query.subscription } })
  )

/**
 * The inventory importer for `imports: [{ azure: { subscription, resourceGroup?, tags? } }]`, with the ARM access
 * of `options` (credential, endpoint).
 *
 * @since 0.1.0
 * @category constructors
 */
export const importer = (options: AzureTransport.Options = {}): Inventory.Importer => {
  let arm: AzureTransport.Arm | undefined
  return {
    key: "azure",
    import: ({ options: extra, value }) =>
      Effect.gen(function*() {
        if (Object.keys(extra).length > 0) {
          return yield* Effect.fail(
            `unknown option ${
              Object.keys(extra).join(", ")
            } (an azure import takes { subscription, resourceGroup?, tags? }, and group, labels)`
          )
        }
        const decoded = Schema.decodeUnknownEither(Query, { onExcessProperty: "error" })(value)
        if (Either.isLeft(decoded)) {
          const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
          const where = issue === undefined || issue.path.length === 0 ? "" : `${issue.path.join(".")}: `
          return yield* Effect.fail(
            `${where}${
              issue?._tag === "Unexpected"
                ? "unknown field (known: subscription, resourceGroup, tags)"
                : issue?.message ?? "expected { subscription, resourceGroup?, tags? }"
            }`
          )
        }
        arm ??= yield* AzureTransport.makeArm(options)
        return yield* discover(arm, decoded.right).pipe(Effect.mapError((e) => e.description))
      })
  }
}

/**
 * A layer adding the importer to inventories read in its scope (`Targets.layerInventory`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerImporter = (options: AzureTransport.Options = {}): Layer.Layer<Inventory.Importers> =>
  Inventory.layerImporter(importer(options))

/**
 * The matching VMs and instances as a source of core's `Targets` (read once per layer unless `cache` says otherwise).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  query: Query,
  options: AzureTransport.Options & { readonly cache?: Targets.Source["cache"] } = {}
): Layer.Layer<Targets.Targets> =>
  Targets.layerSource({
    name: `azure subscription ${query.subscription}${
      query.resourceGroup === undefined ? "" : `/${query.resourceGroup}`
    }`,
    discover: Effect.flatMap(AzureTransport.makeArm(options), (arm) => discover(arm, query)).pipe(
      Effect.mapError((e) =>
        new Targets.TargetsError({ reason: "DiscoveryFailed", source: "azure", description: e.description })
      )
    ),
    cache: options.cache
  })
