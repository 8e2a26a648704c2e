/**
 * The test setup: the ARM emulator and Azurite on loopback, and the transport pointed at them with the fake
 * credential and fast polling.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as AzureTarget from "../src/AzureTarget.js"
import * as AzureTransport from "../src/AzureTransport.js"
import * as Emulator from "../src/testing.js"

export const SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
export const RESOURCE_GROUP = "runcmd-rg"

export const vmTarget = (i: number, extra: { readonly os?: "linux" | "windows" } = {}) =>
  AzureTarget.vm(`vm-${i}`, {
    subscription: SUBSCRIPTION,
    resourceGroup: RESOURCE_GROUP,
    vmName: `vm-${i}`,
    location: "eastus",
    ...extra
  })

export const fast = {
  pollInterval: "20 millis",
  pollMax: "100 millis",
  deleteTimeout: "30 seconds",
  busyTimeout: "60 seconds"
} as const

/** The options that point the transport at an emulator. */
export const transportOptions = (
  emulator: Emulator.Emulator,
  extra: AzureTransport.Options = {}
): AzureTransport.Options => ({
  credential: Emulator.credential,
  endpoint: emulator.endpoint,
  ca: emulator.ca,
  ...fast,
  ...extra
})

/** A layer: an emulator (and Azurite when `storage`), and the transport on them; `ready` receives both. */
export const layer = (options: {
  readonly emulator?: Emulator.EmulatorOptions | undefined
  readonly storage?: boolean | undefined
  readonly transport?: AzureTransport.Options | undefined
  readonly ready?: ((emulator: Emulator.Emulator, azurite: Emulator.Azurite | undefined) => void) | undefined
}) =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const emulator = yield* Emulator.make(options.emulator)
      const azurite = options.storage === true ? yield* Emulator.Azurite.make : undefined
      const containerUrl = azurite === undefined
        ? undefined
        : yield* Effect.promise(() => azurite.containerSasUrl("runcmd-output"))
      options.ready?.(emulator, azurite)
      return AzureTransport.layer(
        transportOptions(emulator, {
          ...(containerUrl === undefined ? {} : { storage: { containerUrl } }),
          ...options.transport
        })
      )
    })
  )
