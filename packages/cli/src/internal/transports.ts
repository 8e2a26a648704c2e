/**
 * The transports the CLI carries: local (the embedded default), SSH, AWS SSM, Azure Run Command and WinRM, each
 * loaded only when a run has a target of its kind (`--help`, `inventory check` and `report` load none of them;
 * the cloud SDKs stay outside the command's bundle and are required on first use). Transports are configured
 * from the environment (`RUNCMD_SSH_*`, `RUNCMD_SSM_*`, `RUNCMD_AZURE_*`, `RUNCMD_WINRM_*`, see each package's
 * README); credentials come from each cloud SDK's own default chain.
 *
 * @since 0.1.0
 * @internal
 */
import type * as Inventory from "@runcmd/core/Inventory"
import * as Target from "@runcmd/core/Target"
import type * as Transport from "@runcmd/core/Transport"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"

/**
 * The target kinds an inventory may use (their schemas are small modules, loaded with the inventory).
 *
 * @internal
 */
export const kinds: Effect.Effect<ReadonlyArray<Target.TargetSchema>> = Effect.promise(() =>
  Promise.all([
    import("@runcmd/transport-ssh/SshTarget").then((m) => [m.SshTarget]),
    import("@runcmd/transport-ssm/SsmTarget").then((m) => [m.SsmTarget]),
    import("@runcmd/transport-azure/AzureTarget").then((m) => m.kinds),
    import("@runcmd/transport-winrm/WinRmTarget").then((m) => [m.WinRmTarget])
  ])
).pipe(Effect.map((schemas): ReadonlyArray<Target.TargetSchema> => [Target.Local, ...schemas.flat()]))

/**
 * A transport that could not be set up.
 *
 * @internal
 */
export class TransportSetupError extends Data.TaggedError("TransportSetupError")<{ readonly message: string }> {}

const load = <A>(name: string, module: () => Promise<A>): Effect.Effect<A, TransportSetupError> =>
  Effect.tryPromise({
    try: module,
    catch: (cause) =>
      new TransportSetupError({
        message: `cannot load the ${name} transport: ${cause instanceof Error ? cause.message : String(cause)}`
      })
  })

type RegistryLayer = Layer.Layer<Transport.Registry, TransportSetupError | Transport.DuplicateTransport>

// a transport's own configuration problem (a bad RUNCMD_* value...) as a setup error naming it
const setup = <E>(name: string, layer: Layer.Layer<Transport.Registry, E>): RegistryLayer =>
  Layer.mapError(
    layer,
    (error): TransportSetupError | Transport.DuplicateTransport =>
      typeof error === "object" && error !== null && "_tag" in error && error._tag === "DuplicateTransport"
        ? error as unknown as Transport.DuplicateTransport
        : new TransportSetupError({
          message: `cannot set up the ${name} transport: ${
            typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)
          }`
        })
  )

/**
 * The local transport (it brings execa), with its `RUNCMD_LOCAL_*` settings.
 *
 * @internal
 */
export const localLayer: RegistryLayer = Layer.unwrapEffect(
  load("local", () => import("@runcmd/transport-local/LocalTransport")).pipe(
    Effect.map((LocalTransport) => setup("local", LocalTransport.layerConfig(LocalTransport.configFromEnv)))
  )
)

/**
 * The SSH transport (`RUNCMD_SSH_*`), loaded only for runs that have SSH targets (it brings the ssh2 client).
 *
 * @internal
 */
export const sshLayer: RegistryLayer = Layer.unwrapEffect(
  load("SSH", () => import("@runcmd/transport-ssh/SshTransport")).pipe(
    Effect.map((SshTransport) => setup("SSH", SshTransport.layerConfig(SshTransport.configFromEnv)))
  )
)

/**
 * The AWS SSM transport (`RUNCMD_SSM_*`), for runs with `ssm` targets.
 *
 * @internal
 */
export const ssmLayer: RegistryLayer = Layer.unwrapEffect(
  load("SSM", () => import("@runcmd/transport-ssm/SsmTransport")).pipe(
    Effect.map((SsmTransport) => setup("SSM", SsmTransport.layerConfig()))
  )
)

/**
 * The Azure Run Command transport (`RUNCMD_AZURE_*`), for runs with `azure-vm` or `azure-vmss-vm` targets.
 *
 * @internal
 */
export const azureLayer: RegistryLayer = Layer.unwrapEffect(
  load("Azure", () => import("@runcmd/transport-azure/AzureTransport")).pipe(
    Effect.map((AzureTransport) =>
      setup("Azure", AzureTransport.layerConfig(Config.mapOrFail(AzureTransport.configFromEnv, azureCliOptionsEither)))
    )
  )
)

/**
 * What the CLI adds to the Azure transport's own settings: `RUNCMD_AZURE_CA_FILE` (a PEM to trust for the ARM
 * endpoint, e.g. `runcmd emulate azure`'s) and `RUNCMD_AZURE_ACCESS_TOKEN` (a bearer token, e.g. from
 * `az account get-access-token`, used instead of `DefaultAzureCredential`; never printed).
 */
const azureCliOptionsEither = <O extends object>(options: O): Either.Either<O, ConfigError.ConfigError> => {
  try {
    return Either.right(azureCliOptions(options))
  } catch (error) {
    return Either.left(ConfigError.InvalidData(["RUNCMD_AZURE_CA_FILE"], (error as Error).message))
  }
}

const readCa = (file: string): string => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch (error) {
    throw new Error(`RUNCMD_AZURE_CA_FILE=${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? error})`)
  }
}

const azureCliOptions = <O extends object>(options: O): O => {
  const caFile = process.env.RUNCMD_AZURE_CA_FILE
  const token = process.env.RUNCMD_AZURE_ACCESS_TOKEN
  return {
    ...options,
    ...(caFile === undefined || caFile === "" ? {} : { ca: readCa(caFile) }),
    ...(token === undefined || token === "" ? {} : {
      credential: {
        getToken: () => Promise.resolve({ token, expiresOnTimestamp: Date.now() + 3_600_000 })
      }
    })
  }
}

/**
 * The WinRM transport (`RUNCMD_WINRM_*`), for runs with `winrm` targets.
 *
 * @internal
 */
export const winrmLayer: RegistryLayer = Layer.unwrapEffect(
  load("WinRM", () => import("@runcmd/transport-winrm/WinRmTransport")).pipe(
    Effect.map((WinRmTransport) => setup("WinRM", WinRmTransport.layerConfig(WinRmTransport.configFromEnv)))
  )
)

/**
 * The transports for these targets: local always, each other one only when a target of its kind is among them.
 *
 * @internal
 */
export const layerFor = (targets: ReadonlyArray<Target.Target>): RegistryLayer => {
  const present = new Set(targets.map((t) => t.kind))
  const layers: Array<RegistryLayer> = [localLayer]
  if (present.has("ssh")) layers.push(sshLayer)
  if (present.has("ssm")) layers.push(ssmLayer)
  if (present.has("azure-vm") || present.has("azure-vmss-vm")) layers.push(azureLayer)
  if (present.has("winrm")) layers.push(winrmLayer)
  return Layer.mergeAll(...(layers as [RegistryLayer, ...Array<RegistryLayer>]))
}

/**
 * The Azure transport's options as the CLI sets them (its `RUNCMD_AZURE_*` variables and the CLI's own), for the
 * `azure run-commands` commands.
 *
 * @internal
 */
export const azureOptions = Effect.flatMap(
  Effect.promise(() => import("@runcmd/transport-azure/AzureTransport")),
  (AzureTransport) => Config.mapOrFail(AzureTransport.configFromEnv, azureCliOptionsEither)
)

// an importer whose module (and SDK) is loaded only when an inventory entry uses its key
const lazyImporter = (key: string, make: () => Promise<Inventory.Importer>): Inventory.Importer => {
  let loaded: Promise<Inventory.Importer> | undefined
  return {
    key,
    import: (entry) => Effect.flatMap(Effect.promise(() => (loaded ??= make())), (importer) => importer.import(entry))
  }
}

/**
 * The inventory importers the CLI knows: `imports: [{ sshConfig: FILE }]`, `[{ ssm: { region, tags } }]` (AWS
 * credentials from the SDK's chain, `RUNCMD_SSM_ENDPOINT`) and `[{ azure: { subscription, tags } }]` (the Azure
 * transport's `RUNCMD_AZURE_*` settings).
 *
 * @internal
 */
export const importers: ReadonlyArray<Inventory.Importer> = [
  lazyImporter("sshConfig", () => import("@runcmd/transport-ssh/SshConfig").then((m) => m.importer)),
  lazyImporter("ssm", () =>
    import("@runcmd/transport-ssm/SsmTransport").then((m) => {
      const endpoint = process.env.RUNCMD_SSM_ENDPOINT
      return m.makeImporter(endpoint === undefined || endpoint === "" ? {} : { endpoint })
    })),
  lazyImporter("azure", () =>
    import("@runcmd/transport-azure/AzureTransport").then(async (AzureTransport) => {
      const AzureDiscovery = await import("@runcmd/transport-azure/AzureDiscovery")
      const options = await Effect.runPromise(Effect.orElseSucceed(AzureTransport.configFromEnv, () => ({})))
      return AzureDiscovery.importer(azureCliOptions(options))
    }))
]
