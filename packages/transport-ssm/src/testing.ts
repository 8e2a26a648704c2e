/**
 * The SSM emulator, for runcmd's tests and its users': a real HTTP server on 127.0.0.1 speaking AWS JSON 1.1
 * (`SendCommand`, `GetCommandInvocation`, `ListCommandInvocations`, `ListCommands`, `CancelCommand`,
 * `DescribeInstanceInformation`, `PutParameter`/`GetParameter`/`DeleteParameter`), whose managed instances really
 * execute the commands as local processes (each in its own working directory, with tags, a platform and a ping
 * status; Windows instances run `AWS-RunPowerShellScript` with the real `pwsh`), following the service's status
 * machine (`Pending` → `InProgress` → `Success`/`Failed`/`TimedOut`/`Cancelled`; an offline instance gives
 * `Delayed` then `DeliveryTimedOut`), capping inline output at 24,000 characters (2,500 in
 * `ListCommandInvocations` details), writing the full output to an S3-compatible store when asked, injecting
 * faults on demand (throttling, 5xx, an `InvocationDoesNotExist` window, an instance offline before or during a
 * run) and recording every request it served.
 *
 * The instances find an `aws` command first on their `PATH` that answers `aws ssm get-parameter` from the
 * emulator's Parameter Store, and see the variables the SSM agent sets for every command it runs:
 * `AWS_SSM_INSTANCE_ID`, `AWS_SSM_REGION_NAME`, `AWS_SSM_PLATFORM_NAME` and `AWS_SSM_PLATFORM_VERSION`.
 *
 * @example
 * ```ts
 * import * as Emulator from "@runcmd/transport-ssm/testing"
 * import { SSMClient, SendCommandCommand } from "@aws-sdk/client-ssm"
 *
 * const emulator = await Emulator.start({ instances: 2 })
 * const client = new SSMClient(emulator.clientConfig())
 * await client.send(new SendCommandCommand({
 *   DocumentName: "AWS-RunShellScript", InstanceIds: [...emulator.instanceIds], Parameters: { commands: ["echo hi"] }
 * }))
 * await emulator.close()
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as server from "./internal/emulator/server.js"
import type { InstanceSpec, PingStatus, S3Output } from "./internal/emulator/service.js"
import * as SsmTarget from "./SsmTarget.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Default 0: any free port. The server listens on 127.0.0.1 only. */
  readonly port?: number | undefined
  /** Default `us-east-1`. */
  readonly region?: string | undefined
  /** How many Linux instances, or each instance's id, platform, tags, ping status. Default one Linux instance. */
  readonly instances?: number | ReadonlyArray<InstanceSpec> | undefined
  /** An S3-compatible store for `OutputS3BucketName` (path-style; the bucket must exist). */
  readonly s3?: S3Output | undefined
  /** Between `SendCommand` and an online instance starting the command. Default 20 ms. */
  readonly deliveryDelay?: Duration.DurationInput | undefined
  /** After `CancelCommand` TERMs a command's process group, when it is KILLed. Default 10 s. */
  readonly cancelKillAfter?: Duration.DurationInput | undefined
  /** Where instances' working directories go. Default: a fresh temporary directory, removed on close. */
  readonly workDir?: string | undefined
  /** The `pwsh` Windows instances run. Default: `RUNCMD_PWSH`, `PATH`, `~/.dotnet/tools/pwsh`. */
  readonly pwsh?: string | undefined
  /** Seed for fault injection. */
  readonly seed?: number | undefined
}

export type {
  /**
   * @since 0.1.0
   * @category models
   */
  InstanceSpec,
  /**
   * @since 0.1.0
   * @category models
   */
  PingStatus,
  /**
   * @since 0.1.0
   * @category models
   */
  S3Output
}

/**
 * One request the emulator served.
 *
 * @since 0.1.0
 * @category models
 */
export type RecordedRequest = server.RecordedRequest

/**
 * A managed instance of the emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface ManagedInstance {
  readonly id: string
  readonly platform: "Linux" | "Windows"
  readonly tags: { readonly [key: string]: string }
  readonly pingStatus: PingStatus
  /** Its working directory: commands run here unless `workingDirectory` is given. */
  readonly dir: string
}

/**
 * One command execution on one instance, as the emulator saw it.
 *
 * @since 0.1.0
 * @category models
 */
export interface InvocationRecord {
  readonly commandId: string
  readonly instanceId: string
  readonly status: string
  readonly statusDetails: string
  /** How many times the instance started it (never more than 1). */
  readonly executions: number
}

/**
 * A running emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface Emulator {
  /** `http://127.0.0.1:<port>`. */
  readonly endpoint: string
  readonly port: number
  readonly region: string
  /** The ids of the instances it started with. */
  readonly instanceIds: ReadonlyArray<string>
  readonly instances: () => ReadonlyArray<ManagedInstance>
  readonly addInstance: (spec?: InstanceSpec) => ManagedInstance
  /** `ssm` targets for its instances (ids `ssm-0`, `ssm-1`... unless given). */
  readonly targets: (options?: {
    readonly ids?: ReadonlyArray<string> | undefined
    readonly labels?: Record<string, string> | undefined
  }) => ReadonlyArray<SsmTarget.SsmTarget>
  /** Every request served, in order. */
  readonly requests: () => ReadonlyArray<RecordedRequest>
  readonly countByOperation: () => Readonly<Record<string, number>>
  readonly clearRequests: () => void
  readonly invocations: () => ReadonlyArray<InvocationRecord>
  /** Names of the parameters stored now, and of those deleted. */
  readonly parameters: () => { readonly stored: ReadonlyArray<string>; readonly deleted: ReadonlyArray<string> }
  readonly faults: {
    /** Answer `ThrottlingException` to a share (`rate`, 0..1) of the requests (of `operations`, default all). */
    readonly throttle: (rate: number, operations?: ReadonlyArray<string>) => void
    /** Answer HTTP 500 `InternalServerError` to a share of the requests. */
    readonly serverErrors: (rate: number, operations?: ReadonlyArray<string>) => void
    /** New invocations stay unknown (`InvocationDoesNotExist`, absent from lists) this long after `SendCommand`. */
    readonly invocationDoesNotExist: (window: Duration.DurationInput) => void
    /** The instance stops answering (`ConnectionLost`): commands for it wait `Delayed`, then `DeliveryTimedOut`. */
    readonly offline: (instanceId: string, status?: Exclude<PingStatus, "Online">) => void
    /**
     * The instance goes offline mid-run: its agent loses the connection (`ConnectionLost`) as soon as it starts its
     * next command. The command runs on, but the service hears nothing more: the invocation stays `InProgress`
     * (its output as last heard), a `CancelCommand` leaves it `Cancelling` until the agent is back, and a command
     * still unreported when it expires (`TimeoutSeconds` + `executionTimeout` after it was sent) ends `TimedOut`
     * with `DeliveryTimedOut`, as the service does. `online(instanceId)` reconnects it: the agent reports what
     * ended meanwhile and gets the cancels sent meanwhile.
     */
    readonly disconnectMidRun: (instanceId: string) => void
    /** The instance is connected again (see `offline` and `disconnectMidRun`). */
    readonly online: (instanceId: string) => void
    /** No more faults (instances stay as they are). */
    readonly clear: () => void
  }
  /** The SSM client configuration for this emulator: endpoint, region, static fake credentials. */
  readonly clientConfig: () => {
    readonly endpoint: string
    readonly region: string
    readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
  }
  /** Stops the server, kills every process it started, removes its directory. */
  readonly close: () => Promise<void>
}

/**
 * Starts an emulator (a Promise, for tests in any style; close it with `close`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = async (options: Options = {}): Promise<Emulator> => {
  const started = await server.start({
    port: options.port,
    region: options.region,
    instances: options.instances,
    s3: options.s3,
    deliveryDelayMs: options.deliveryDelay === undefined ? undefined : Duration.toMillis(options.deliveryDelay),
    cancelKillAfterMs: options.cancelKillAfter === undefined ? undefined : Duration.toMillis(options.cancelKillAfter),
    workDir: options.workDir,
    pwsh: options.pwsh,
    seed: options.seed
  })
  const service = started.service
  const view = (i: typeof service.instances extends Map<string, infer I> ? I : never): ManagedInstance => ({
    id: i.id,
    platform: i.platform,
    tags: { ...i.tags },
    pingStatus: i.pingStatus,
    dir: i.dir
  })
  const instanceIds = [...service.instances.keys()]
  return {
    endpoint: started.endpoint,
    port: started.port,
    region: started.region,
    instanceIds,
    instances: () => [...service.instances.values()].map(view),
    addInstance: (spec) => view(service.addInstance(spec)),
    targets: (o) =>
      [...service.instances.values()].map((i, n) =>
        SsmTarget.make({
          id: o?.ids?.[n] ?? `ssm-${n}`,
          instanceId: i.id,
          region: started.region,
          os: i.platform === "Windows" ? "windows" : "linux",
          labels: { ...i.tags, ...o?.labels }
        })
      ),
    requests: () => [...started.recorded],
    countByOperation: () => {
      const counts: Record<string, number> = {}
      for (const r of started.recorded) counts[r.operation] = (counts[r.operation] ?? 0) + 1
      return counts
    },
    clearRequests: () => {
      started.recorded.length = 0
    },
    invocations: () =>
      [...service.invocations.values()].map((i) => ({
        commandId: i.commandId,
        instanceId: i.instanceId,
        status: i.status,
        statusDetails: i.statusDetails,
        executions: i.executions
      })),
    parameters: () => ({ stored: [...service.parameters.keys()], deleted: [...service.deletedParameters] }),
    faults: {
      throttle: (rate, operations) => started.setThrottle({ rate, operations }),
      serverErrors: (rate, operations) => started.setServerErrors({ rate, operations }),
      invocationDoesNotExist: (window) => service.setVisibilityWindow(Duration.toMillis(window)),
      offline: (id, status = "ConnectionLost") => started.setPingStatus(id, status),
      disconnectMidRun: (id) => service.disconnectOnStart(id),
      online: (id) => started.setPingStatus(id, "Online"),
      clear: () => {
        started.setThrottle(undefined)
        started.setServerErrors(undefined)
        service.setVisibilityWindow(0)
      }
    },
    clientConfig: () => ({
      endpoint: started.endpoint,
      region: started.region,
      credentials: { accessKeyId: "AKIDEMULATOR", secretAccessKey: "emulator-secret" }
    }),
    close: started.close
  }
}

/**
 * Starts an emulator in a scope (closed with it).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Emulator, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => start(options)),
    (emulator) => Effect.promise(() => emulator.close())
  ).pipe(Effect.withSpan("SsmEmulator.make"))

/**
 * The emulator as a service, for tests built from layers.
 *
 * @since 0.1.0
 * @category tags
 */
export class SsmEmulator extends Context.Tag("@runcmd/transport-ssm/testing/SsmEmulator")<SsmEmulator, Emulator>() {}

/**
 * A layer running an emulator for as long as it is in use.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<SsmEmulator> => Layer.scoped(SsmEmulator, make(options))

const usage = "usage: runcmd emulate ssm [--port N] [--instances N] [--region R] [--windows N] [--s3-endpoint URL]"

/**
 * The emulator as a process (`runcmd emulate ssm [--port N] [--instances N] [--region R]`): prints one JSON line
 * on stdout (`{"endpoint", "region", "instanceIds"}`), then serves until SIGINT or SIGTERM. Rejects with a usage
 * message on a bad argument.
 *
 * @since 0.1.0
 * @category main
 */
export const main = async (argv: ReadonlyArray<string>): Promise<void> => {
  const values: Record<string, string> = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const eq = arg.indexOf("=")
    const [name, inline] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined]
    if (!["--port", "--instances", "--region", "--windows", "--s3-endpoint"].includes(name)) {
      throw new Error(`unknown option ${JSON.stringify(arg)}\n${usage}`)
    }
    const value = inline ?? argv[++i]
    if (value === undefined) throw new Error(`${name} needs a value\n${usage}`)
    values[name.slice(2)] = value
  }
  const count = (name: string, fallback: number, max: number) => {
    const raw = values[name]
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isInteger(n) || n < 0 || n > max) {
      throw new Error(`--${name} must be a whole number 0..${max}\n${usage}`)
    }
    return n
  }
  const port = count("port", 0, 65535)
  const linux = count("instances", 1, 10_000)
  const windows = count("windows", 0, 10_000)
  const region = values.region ?? "us-east-1"
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
    throw new Error(`--region must be a region name like us-east-1\n${usage}`)
  }
  const emulator = await start({
    port,
    region,
    instances: [
      ...Array.from({ length: linux }, (): InstanceSpec => ({ platform: "Linux" })),
      ...Array.from({ length: windows }, (): InstanceSpec => ({ platform: "Windows" }))
    ],
    ...(values["s3-endpoint"] === undefined ? {} : { s3: { endpoint: values["s3-endpoint"] } })
  })
  process.stdout.write(
    JSON.stringify({ endpoint: emulator.endpoint, region: emulator.region, instanceIds: emulator.instanceIds }) + "\n"
  )
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop)
      process.off("SIGTERM", stop)
      resolve()
    }
    process.on("SIGINT", stop)
    process.on("SIGTERM", stop)
  })
  await emulator.close()
}
