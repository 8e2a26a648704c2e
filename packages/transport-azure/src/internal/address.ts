/**
 * Where a run command lives: a VM or a uniform scale-set instance, and the SDK calls for each.
 *
 * @internal
 */
import type { ComputeManagementClient } from "@azure/arm-compute"
import type { AzureTarget } from "../AzureTarget.js"

/** @internal */
export interface Address {
  readonly subscription: string
  readonly resourceGroup: string
  readonly location: string | undefined
  /** `vm:<rg>/<name>` or `vmss:<rg>/<set>/<id>`: the per-VM lock and cache key. */
  readonly key: string
  readonly describe: string
  readonly vm?: string | undefined
  readonly scaleSet?: string | undefined
  readonly instanceId?: string | undefined
}

/** @internal */
export const of = (target: AzureTarget): Address =>
  target.kind === "azure-vm"
    ? {
      subscription: target.subscription,
      resourceGroup: target.resourceGroup,
      location: target.location,
      key: `${target.subscription}/${target.resourceGroup}/${target.vmName}`.toLowerCase(),
      describe: `VM ${target.vmName} (resource group ${target.resourceGroup})`,
      vm: target.vmName
    }
    : {
      subscription: target.subscription,
      resourceGroup: target.resourceGroup,
      location: target.location,
      key: `${target.subscription}/${target.resourceGroup}/${target.scaleSet}/${target.instanceId}`.toLowerCase(),
      describe:
        `instance ${target.instanceId} of scale set ${target.scaleSet} (resource group ${target.resourceGroup})`,
      scaleSet: target.scaleSet,
      instanceId: target.instanceId
    }

/** What the transport reads of a run command (the SDK's flattened model). */
export interface RunCommandView {
  readonly name?: string | undefined
  readonly provisioningState?: string | undefined
  readonly instanceView?: {
    readonly executionState?: string | undefined
    readonly executionMessage?: string | undefined
    readonly exitCode?: number | undefined
    readonly output?: string | undefined
    readonly error?: string | undefined
    readonly startTime?: Date | undefined
    readonly endTime?: Date | undefined
  } | undefined
}

type Options = { readonly abortSignal?: AbortSignal; readonly onResponse?: (r: any) => void }

const opts = (signal: AbortSignal | undefined, extra: Record<string, unknown> = {}): any => ({
  ...extra,
  ...(signal === undefined ? {} : { abortSignal: signal })
})

/** The SDK calls for one address. */
export const calls = (client: ComputeManagementClient, a: Address) => {
  const rg = a.resourceGroup
  const isVm = a.vm !== undefined
  return {
    /** Location and power state (`PowerState/running`...). */
    describeMachine: async (signal?: AbortSignal) => {
      const m = isVm
        ? await client.virtualMachines.get(rg, a.vm!, opts(signal, { expand: "instanceView" }))
        : await client.virtualMachineScaleSetVMs.get(
          rg,
          a.scaleSet!,
          a.instanceId!,
          opts(signal, { expand: "instanceView" })
        )
      const power = m.instanceView?.statuses?.find((s) => s.code?.startsWith("PowerState/") === true)?.code
      return { location: m.location, powerState: power?.slice("PowerState/".length) }
    },
    put: async (name: string, body: any, signal?: AbortSignal) => {
      const poller = isVm
        ? client.virtualMachineRunCommands.createOrUpdate(rg, a.vm!, name, body, opts(signal))
        : client.virtualMachineScaleSetVMRunCommands.createOrUpdate(
          rg,
          a.scaleSet!,
          a.instanceId!,
          name,
          body,
          opts(signal)
        )
      await poller.submitted()
    },
    get: (name: string, signal?: AbortSignal, onResponse?: Options["onResponse"]): Promise<RunCommandView> =>
      (isVm
        ? client.virtualMachineRunCommands.getByVirtualMachine(
          rg,
          a.vm!,
          name,
          opts(signal, { expand: "instanceView", onResponse })
        )
        : client.virtualMachineScaleSetVMRunCommands.get(
          rg,
          a.scaleSet!,
          a.instanceId!,
          name,
          opts(signal, { expand: "instanceView", onResponse })
        )) as Promise<RunCommandView>,
    /**
     * DELETE, answered: ARM accepted the deletion (202, then carried out on its side) or it was done at once (200,
     * 204). Nothing is polled: the caller decides whether it must see the resource gone.
     */
    requestRemoval: async (name: string, signal?: AbortSignal) => {
      const poller = isVm
        ? client.virtualMachineRunCommands.delete(rg, a.vm!, name, opts(signal))
        : client.virtualMachineScaleSetVMRunCommands.delete(rg, a.scaleSet!, a.instanceId!, name, opts(signal))
      await poller.submitted()
    },
    /** DELETE, then its operation polled until it ended. */
    remove: async (name: string, intervalMs: number, signal?: AbortSignal) => {
      const o = opts(signal, { updateIntervalInMs: intervalMs })
      const poller = isVm
        ? client.virtualMachineRunCommands.delete(rg, a.vm!, name, o)
        : client.virtualMachineScaleSetVMRunCommands.delete(rg, a.scaleSet!, a.instanceId!, name, o)
      await poller.pollUntilDone()
    },
    list: async (expand: boolean, signal?: AbortSignal): Promise<Array<RunCommandView>> => {
      const o = opts(signal, expand ? { expand: "instanceView" } : {})
      const out: Array<RunCommandView> = []
      const it = isVm
        ? client.virtualMachineRunCommands.listByVirtualMachine(rg, a.vm!, o)
        : client.virtualMachineScaleSetVMRunCommands.list(rg, a.scaleSet!, a.instanceId!, o)
      for await (const rc of it) out.push(rc as unknown as RunCommandView)
      return out
    },
    action: (input: { commandId: string; script: Array<string> }, intervalMs: number, signal?: AbortSignal) =>
      isVm
        ? client.virtualMachines.runCommand(rg, a.vm!, input, opts(signal, { updateIntervalInMs: intervalMs }))
        : client.virtualMachineScaleSetVMs.runCommand(
          rg,
          a.scaleSet!,
          a.instanceId!,
          input,
          opts(signal, { updateIntervalInMs: intervalMs })
        )
  }
}
