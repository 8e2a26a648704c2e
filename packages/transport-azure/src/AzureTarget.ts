/**
 * The target kinds of the Azure transport: `azure-vm` (a virtual machine, also a member of a flexible scale set)
 * and `azure-vmss-vm` (an instance of a uniform scale set). In an inventory:
 *
 * ```yaml
 * targets:
 *   - { id: web-1, kind: azure-vm, subscription: 00000000-0000-0000-0000-000000000000, resourceGroup: prod, vmName: web-1 }
 *   - { id: api-0, kind: azure-vmss-vm, subscription: ..., resourceGroup: prod, scaleSet: api, instanceId: "0", os: windows }
 * ```
 *
 * @since 0.1.0
 */
import * as Target from "@runcmd/core/Target"
import * as Schema from "effect/Schema"

const NonEmpty = (what: string) =>
  Schema.String.pipe(Schema.minLength(1, { message: () => `${what} must not be empty` }))

/**
 * An Azure subscription id (a GUID).
 *
 * @since 0.1.0
 * @category schemas
 */
export const SubscriptionId = Schema.String.pipe(
  Schema.pattern(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, {
    message: () => "subscription must be a subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)"
  })
)

const common = {
  subscription: SubscriptionId,
  resourceGroup: NonEmpty("resourceGroup"),
  /** The region (`eastus`); read from the VM when absent. */
  location: Schema.optional(NonEmpty("location"))
}

/**
 * A virtual machine (`kind: azure-vm`); members of a flexible scale set are VMs too.
 *
 * @since 0.1.0
 * @category schemas
 */
export const AzureVm = Target.make("azure-vm", { ...common, vmName: NonEmpty("vmName") })

/**
 * @since 0.1.0
 * @category models
 */
export type AzureVm = typeof AzureVm.Type

/**
 * An instance of a uniform scale set (`kind: azure-vmss-vm`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const AzureVmssVm = Target.make("azure-vmss-vm", {
  ...common,
  scaleSet: NonEmpty("scaleSet"),
  instanceId: NonEmpty("instanceId")
})

/**
 * @since 0.1.0
 * @category models
 */
export type AzureVmssVm = typeof AzureVmssVm.Type

/**
 * Either Azure kind.
 *
 * @since 0.1.0
 * @category models
 */
export type AzureTarget = AzureVm | AzureVmssVm

/**
 * The schemas of both kinds, for `Target.union`, inventories and the CLI.
 *
 * @since 0.1.0
 * @category schemas
 */
export const kinds: ReadonlyArray<Target.TargetSchema> = [AzureVm, AzureVmssVm]

/**
 * @since 0.1.0
 * @category constructors
 */
export const vm = (
  id: string,
  fields: {
    readonly subscription: string
    readonly resourceGroup: string
    readonly vmName: string
    readonly location?: string | undefined
    readonly os?: Target.Os | undefined
    readonly labels?: Record<string, string> | undefined
  }
): AzureVm => ({
  kind: "azure-vm",
  id,
  labels: fields.labels ?? {},
  os: fields.os ?? "linux",
  subscription: fields.subscription,
  resourceGroup: fields.resourceGroup,
  vmName: fields.vmName,
  ...(fields.location === undefined ? {} : { location: fields.location })
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const vmssVm = (
  id: string,
  fields: {
    readonly subscription: string
    readonly resourceGroup: string
    readonly scaleSet: string
    readonly instanceId: string
    readonly location?: string | undefined
    readonly os?: Target.Os | undefined
    readonly labels?: Record<string, string> | undefined
  }
): AzureVmssVm => ({
  kind: "azure-vmss-vm",
  id,
  labels: fields.labels ?? {},
  os: fields.os ?? "linux",
  subscription: fields.subscription,
  resourceGroup: fields.resourceGroup,
  scaleSet: fields.scaleSet,
  instanceId: fields.instanceId,
  ...(fields.location === undefined ? {} : { location: fields.location })
})

/**
 * Whether a target is one of the Azure kinds (checked by its schema).
 *
 * @since 0.1.0
 * @category refinements
 */
export const isAzureTarget: (u: unknown) => u is AzureTarget = Schema.is(Schema.Union(AzureVm, AzureVmssVm))
