/**
 * `@runcmd/transport-azure/testing`: an ARM emulator for tests (runcmd's and its users'). An HTTPS server on
 * 127.0.0.1 with a certificate generated when it starts, speaking the Compute routes Run Command uses, as the real
 * `@azure/arm-compute` client drives them:
 *
 * - action `runCommand` on VMs and scale-set VMs (202 with `Azure-AsyncOperation` and `Location`; the result as the
 *   service returns it: `[stdout]`/`[stderr]` in one message on Linux, two component statuses on Windows), and a
 *   409 for a second one on the same VM while the first runs;
 * - managed `runCommands` PUT / GET (`$expand=instanceView`) / DELETE / list as long-running operations; a PUT of
 *   the same definition again runs nothing again; DELETE kills the script (TERM, grace, KILL, and every process
 *   still carrying the execution's mark);
 * - VM, scale-set and instance listings with tags and power state (`statusOnly=true`, `$expand=instanceView`);
 * - the 4 KB output cap of the instance view, and append-blob output to `outputBlobUri`/`errorBlobUri` (use
 *   {@link Azurite});
 * - 429 with `Retry-After` on demand ({@link Emulator.throttle}), lost responses on demand
 *   ({@link Emulator.dropResponses}); every request recorded ({@link Emulator.requests});
 * - every api-version from 2020-06-01 on;
 * - its own records over HTTP for a test or benchmark in another process: `GET /_emulator/requests` (every request,
 *   as {@link Emulator.requests}) and `GET /_emulator/history` (every script run, as {@link Emulator.history}).
 *
 * Scripts really run as local processes (`/bin/sh`; `pwsh` for Windows VMs) with the run command's parameters and
 * protected parameters in their environment.
 *
 * @example
 * ```ts
 * import { ComputeManagementClient } from "@azure/arm-compute"
 * import * as Emulator from "@runcmd/transport-azure/testing"
 *
 * const emulator = await Emulator.start({ vms: 2 })
 * const client = new ComputeManagementClient(Emulator.credential, emulator.subscription, emulator.clientOptions)
 * const result = await client.virtualMachines.runCommand(emulator.resourceGroup, "vm-0", {
 *   commandId: "RunShellScript",
 *   script: ["echo hello"]
 * }, { updateIntervalInMs: 10 })
 * await emulator.close()
 * ```
 *
 * @since 0.1.0
 */
import type { AccessToken, TokenCredential } from "@azure/core-auth"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as AzuriteInternal from "./internal/emulator/azurite.js"
import * as Server from "./internal/emulator/server.js"

/**
 * @since 0.1.0
 * @category models
 */
export type PowerState = Server.PowerState

/**
 * @since 0.1.0
 * @category models
 */
export type VmSpec = Server.VmSpec

/**
 * @since 0.1.0
 * @category models
 */
export type ScaleSetSpec = Server.ScaleSetSpec

/**
 * @since 0.1.0
 * @category models
 */
export type EmulatorOptions = Server.Options

/**
 * ARM's per-subscription token buckets, as the emulator keeps them (`EmulatorOptions.rateLimits`).
 *
 * @since 0.1.0
 * @category models
 */
export type RateLimits = Server.RateLimits

/**
 * @since 0.1.0
 * @category models
 */
export type Bucket = Server.Bucket

/**
 * @since 0.1.0
 * @category models
 */
export type RecordedRequest = Server.RecordedRequest

/**
 * @since 0.1.0
 * @category models
 */
export type Throttle = Server.Throttle

/**
 * @since 0.1.0
 * @category models
 */
export type Drop = Server.Drop

/**
 * A running emulator.
 *
 * @since 0.1.0
 * @category models
 */
export interface Emulator extends Server.Emulator {
  /** What a `ComputeManagementClient` needs to reach it: `{ endpoint, tlsOptions: { ca } }`. */
  readonly clientOptions: { readonly endpoint: string; readonly tlsOptions: { readonly ca: string } }
}

/**
 * The emulator could not start (no `openssl`, the port taken...).
 *
 * @since 0.1.0
 * @category errors
 */
export class EmulatorError extends Data.TaggedError("EmulatorError")<{
  readonly reason: "StartFailed"
  readonly description: string
  readonly cause?: unknown
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `the ARM emulator could not start: ${this.description}`
  }
}

/**
 * A fixed token: the emulator checks that a bearer token is sent, not what it is. For tests only.
 *
 * @since 0.1.0
 * @category constants
 */
export const credential: TokenCredential = {
  getToken: async (): Promise<AccessToken> => ({
    token: "runcmd-emulator-token",
    expiresOnTimestamp: Date.now() + 3_600_000
  })
}

const withClientOptions = (e: Server.Emulator): Emulator => ({
  ...e,
  clientOptions: { endpoint: e.endpoint, tlsOptions: { ca: e.ca } }
})

/**
 * Starts an emulator (a Promise, for code without Effect). Call `close` when done.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = async (options?: EmulatorOptions): Promise<Emulator> =>
  withClientOptions(await Server.start(options))

/**
 * An emulator for the life of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: EmulatorOptions): Effect.Effect<Emulator, EmulatorError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => start(options),
      catch: (cause) => new EmulatorError({ reason: "StartFailed", description: String(cause), cause })
    }),
    (e) => Effect.promise(() => e.close()).pipe(Effect.timeoutOption("30 seconds"))
  ).pipe(Effect.withSpan("Emulator.make"))

/**
 * Azurite's blob service in this process (127.0.0.1, a free port, in memory, no telemetry), for the append blobs
 * of managed run commands. Needs the `azurite` package (3.35.0, a devDependency).
 *
 * @since 0.1.0
 * @category models
 */
export type Azurite = AzuriteInternal.Azurite

/**
 * @since 0.1.0
 * @category constructors
 */
export const Azurite: {
  readonly start: () => Promise<Azurite>
  readonly make: Effect.Effect<Azurite, EmulatorError, Scope.Scope>
} = {
  start: AzuriteInternal.start,
  make: Effect.acquireRelease(
    Effect.tryPromise({
      try: AzuriteInternal.start,
      catch: (cause) => new EmulatorError({ reason: "StartFailed", description: String(cause), cause })
    }),
    (a) => Effect.promise(() => a.close()).pipe(Effect.timeoutOption("30 seconds"))
  )
}

/**
 * What `runcmd emulate azure` prints: one JSON line.
 *
 * @since 0.1.0
 * @category models
 */
export interface Announcement {
  readonly endpoint: string
  readonly subscription: string
  readonly resourceGroup: string
  readonly location: string
  readonly vms: ReadonlyArray<string>
  readonly scaleSets: ReadonlyArray<{ readonly name: string; readonly instanceIds: ReadonlyArray<string> }>
  /** The CA certificate to trust (`NODE_EXTRA_CA_CERTS`, `REQUESTS_CA_BUNDLE`, `tlsOptions.ca`). */
  readonly caCertificate: string
}

/**
 * Parses `[--port N] [--vms N] [--scale-set NAME:N]...` (the arguments of `runcmd emulate azure`).
 *
 * @since 0.1.0
 * @category utils
 */
export const parseArgs = (argv: ReadonlyArray<string>): EmulatorOptions => {
  let port: number | undefined
  let vms: number | undefined
  const scaleSets: Array<ScaleSetSpec> = []
  const count = (flag: string, value: string | undefined, min: number) => {
    const n = Number(value)
    if (value === undefined || !Number.isInteger(n) || n < min || n > 65535) {
      throw new Error(`${flag} wants an integer of at least ${min}, got ${JSON.stringify(value ?? "")}`)
    }
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [
      arg,
      undefined
    ]
    const value = () => inline ?? argv[++i]
    if (flag === "--port") port = count("--port", value(), 0)
    else if (flag === "--vms") vms = count("--vms", value(), 0)
    else if (flag === "--scale-set") {
      const v = value() ?? ""
      const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*):(\d+)$/.exec(v)
      if (m === null) throw new Error(`--scale-set wants NAME:COUNT (e.g. web:3), got ${JSON.stringify(v)}`)
      scaleSets.push({ name: m[1]!, instances: count("--scale-set", m[2], 1) })
    } else throw new Error(`unknown argument ${JSON.stringify(arg)} (known: --port N, --vms N, --scale-set NAME:N)`)
  }
  return {
    ...(port === undefined ? {} : { port }),
    ...(vms === undefined ? {} : { vms }),
    ...(scaleSets.length === 0 ? {} : { scaleSets })
  }
}

/**
 * The emulator as a process (`runcmd emulate azure [--port N] [--vms N] [--scale-set NAME:N]`): starts it, writes
 * one JSON line ({@link Announcement}) to `write` (default stdout), and serves until `signal` aborts (default:
 * SIGINT or SIGTERM). Throws on bad arguments (the message names the flag).
 *
 * @since 0.1.0
 * @category constructors
 */
export const main = async (
  argv: ReadonlyArray<string>,
  options?: {
    readonly write?: ((line: string) => void) | undefined
    readonly signal?: AbortSignal | undefined
    /** Options the arguments do not reach (e.g. `agentNice`), over those the arguments give. */
    readonly emulator?: EmulatorOptions | undefined
  }
): Promise<void> => {
  const emulator = await start({ ...parseArgs(argv), ...options?.emulator })
  const announcement: Announcement = {
    endpoint: emulator.endpoint,
    subscription: emulator.subscription,
    resourceGroup: emulator.resourceGroup,
    location: emulator.location,
    vms: emulator.vmNames(),
    scaleSets: emulator.scaleSets(),
    caCertificate: emulator.caPath
  }
  const write = options?.write ?? ((line: string) => process.stdout.write(line))
  write(`${JSON.stringify(announcement)}\n`)
  await new Promise<void>((resolve) => {
    if (options?.signal !== undefined) {
      if (options.signal.aborted) return resolve()
      options.signal.addEventListener("abort", () => resolve(), { once: true })
      return
    }
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
