/**
 * The ARM emulator: an HTTPS server on 127.0.0.1 speaking the Azure Resource Manager routes of Compute that Run
 * Command uses (action `runCommand`, managed `runCommands` as long-running operations, VM / scale-set / instance
 * listings with tags and power state), as the real SDK drives them. Every request is recorded.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import * as Agent from "./agent.js"
import * as Cert from "./cert.js"
import * as Spawner from "./spawner.js"

/** @internal */
export type PowerState = "running" | "stopped" | "deallocated" | "starting" | "stopping" | "deallocating"

/** @internal */
export interface VmSpec {
  readonly name: string
  readonly resourceGroup?: string | undefined
  readonly os?: "linux" | "windows" | undefined
  readonly tags?: Readonly<Record<string, string>> | undefined
  readonly powerState?: PowerState | undefined
  /**
   * The VM's accounts for `runAsUser` (name → password; an empty password is not checked). Absent: the accounts of
   * the host the emulator runs on (/etc/passwd), passwords not checked. Scripts run as an account of the host.
   */
  readonly users?: Readonly<Record<string, string>> | undefined
}

/** @internal */
export interface ScaleSetSpec {
  readonly name: string
  readonly instances: number
  readonly resourceGroup?: string | undefined
  readonly os?: "linux" | "windows" | undefined
  readonly tags?: Readonly<Record<string, string>> | undefined
  /** `Uniform` (default): instances addressed through the scale set; `Flexible`: member VMs. */
  readonly orchestrationMode?: "Uniform" | "Flexible" | undefined
  readonly powerStates?: Readonly<Record<string, PowerState>> | undefined
}

/** @internal */
export interface Options {
  readonly port?: number | undefined
  readonly subscription?: string | undefined
  readonly resourceGroup?: string | undefined
  readonly location?: string | undefined
  /** Linux VMs named `vm-0`... when a number. */
  readonly vms?: number | ReadonlyArray<VmSpec> | undefined
  readonly scaleSets?: ReadonlyArray<ScaleSetSpec> | undefined
  /** The service's cap on instance-view / action output per stream. Default 4096. */
  readonly outputCapBytes?: number | undefined
  /** Between TERM and KILL when a run command is deleted or times out. Default 1000 ms. */
  readonly killGraceMs?: number | undefined
  /** The `pwsh` that runs RunPowerShellScript on Windows VMs. Default: `pwsh` on PATH. */
  readonly pwsh?: string | undefined
  /** Record request bodies (default true). */
  readonly recordBodies?: boolean | undefined
  /**
   * ARM's per-subscription token buckets: every response says what is left
   * (`x-ms-ratelimit-remaining-subscription-reads` / `-writes` / `-deletes`); with `enforce`, an empty bucket answers
   * 429 with `Retry-After`. Default: generous buckets (reads 12,000 refilled at 2,000/s, writes and deletes 1,200 at
   * 200/s), not enforced.
   */
  readonly rateLimits?: RateLimits | undefined
  /**
   * Helper processes that start the VMs' scripts (a fork blocks its thread for tens of milliseconds and stalls the
   * process it forks: off the emulator's process, and on every core). Default 2; 0 starts them on the HTTP loop.
   */
  readonly agentProcesses?: number | undefined
  /**
   * How many `nice` levels below the emulator the VMs' scripts run (0–19). Default 0. On Azure a VM's script takes
   * nothing from ARM; here every VM shares the host with the emulator's ARM loop (and the client under test): a
   * positive value keeps that loop answering while a thousand scripts run, at the cost of the scripts' speed when
   * the host is busy.
   */
  readonly agentNice?: number | undefined
}

/** @internal */
export interface Bucket {
  readonly size: number
  readonly refillPerSecond: number
}

/** @internal */
export interface RateLimits {
  readonly reads?: Bucket | undefined
  readonly writes?: Bucket | undefined
  readonly deletes?: Bucket | undefined
  readonly enforce?: boolean | undefined
}

/** @internal */
export interface RecordedRequest {
  readonly method: string
  /** The path without the query. */
  readonly path: string
  readonly query: Readonly<Record<string, string>>
  readonly body: string
  readonly status: number
  readonly at: number
}

/** @internal */
export interface Throttle {
  readonly count: number
  /** The `Retry-After` the emulator sends, in milliseconds (sent as `Retry-After` seconds and `retry-after-ms`). */
  readonly retryAfterMs?: number | undefined
  readonly method?: string | undefined
  /** Only requests whose path contains this (case-insensitive). */
  readonly pathIncludes?: string | undefined
}

/** @internal */
export interface Drop {
  readonly count: number
  readonly method?: string | undefined
  readonly pathIncludes?: string | undefined
}

interface Vm {
  readonly key: string
  readonly name: string
  readonly resourceGroup: string
  readonly os: "linux" | "windows"
  readonly tags: Record<string, string>
  powerState: PowerState
  readonly id: string
  readonly users?: Readonly<Record<string, string>> | undefined
  /** Flexible scale-set membership. */
  readonly scaleSetId?: string | undefined
  readonly instanceId?: string | undefined
  /** The action run command in progress. */
  action?: Agent.Execution | undefined
}

interface ScaleSet {
  readonly name: string
  readonly resourceGroup: string
  readonly id: string
  readonly os: "linux" | "windows"
  readonly tags: Record<string, string>
  readonly orchestrationMode: "Uniform" | "Flexible"
  readonly instances: Array<Vm>
}

interface RunCommand {
  readonly name: string
  readonly id: string
  readonly type: string
  readonly location: string
  tags: Record<string, string> | undefined
  properties: Record<string, unknown>
  provisioningState: string
  execution: Agent.Execution | undefined
  deleting: boolean
}

interface Operation {
  readonly id: string
  readonly startTime: Date
  status: "InProgress" | "Succeeded" | "Failed" | "Canceled"
  endTime?: Date
  error?: { code: string; message: string }
  /** The body of the final GET on the Location URL (action run command). */
  result?: unknown
  output?: unknown
}

/** @internal */
export interface Emulator {
  readonly endpoint: string
  readonly port: number
  readonly subscription: string
  readonly resourceGroup: string
  readonly location: string
  /** The CA certificate (PEM) to trust: `tlsOptions: { ca }`. */
  readonly ca: string
  readonly caPath: string
  readonly vmNames: () => ReadonlyArray<string>
  readonly scaleSets: () => ReadonlyArray<{ readonly name: string; readonly instanceIds: ReadonlyArray<string> }>
  readonly requests: () => ReadonlyArray<RecordedRequest>
  readonly clearRequests: () => void
  /** How many scripts the agent started, per VM key (`vm-0`, `ss/0`). */
  readonly executions: () => Readonly<Record<string, number>>
  readonly throttle: (throttle: Throttle) => void
  readonly dropResponses: (drop: Drop) => void
  readonly setPowerState: (vm: string, state: PowerState, options?: { readonly scaleSet?: string }) => void
  readonly addVm: (spec: VmSpec) => void
  /** Every script the agent ran: where, when it started and ended (epoch ms). */
  readonly history: () => ReadonlyArray<
    { readonly vm: string; readonly startedAt: number; readonly endedAt: number | undefined }
  >
  /** Run commands present, per VM key. */
  readonly runCommands: () => Readonly<Record<string, ReadonlyArray<string>>>
  readonly close: () => Promise<void>
}

const json = (res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
  const text = body === undefined ? "" : JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "x-ms-request-id": randomUUID(),
    ...headers
  })
  res.end(text)
}

const armError = (
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  headers?: Record<string, string>
) => json(res, status, { error: { code, message } }, headers)

/** A token bucket refilled continuously (ARM's subscription limits). */
const makeBucket = (bucket: Bucket) => {
  let tokens = bucket.size
  let at = Date.now()
  const refill = () => {
    const now = Date.now()
    tokens = Math.min(bucket.size, tokens + ((now - at) / 1000) * bucket.refillPerSecond)
    at = now
  }
  return {
    /** Takes a token if there is one; what is left (whole tokens) either way. */
    take: (): { readonly ok: boolean; readonly remaining: number } => {
      refill()
      if (tokens < 1) return { ok: false, remaining: 0 }
      tokens -= 1
      return { ok: true, remaining: Math.floor(tokens) }
    },
    /** Milliseconds until the next token. */
    nextInMs: () => Math.ceil(((1 - tokens) / bucket.refillPerSecond) * 1000)
  }
}

/** Every api-version the service accepts for these operations: 2020-06-01 and later (previews included). */
const apiVersionOk = (v: string | null) => {
  if (v === null) return false
  const m = /^(\d{4})-(\d{2})-(\d{2})(-preview)?$/.exec(v)
  return m !== null && `${m[1]}-${m[2]}-${m[3]}` >= "2020-06-01"
}

const instanceViewStatuses = (state: PowerState) => [
  { code: "ProvisioningState/succeeded", level: "Info", displayStatus: "Provisioning succeeded" },
  { code: `PowerState/${state}`, level: "Info", displayStatus: `VM ${state}` }
]

const SEGMENT = "([^/]+)"
const route = (pattern: string) => new RegExp(`^${pattern}$`, "i")
const PREFIX = `/subscriptions/${SEGMENT}`
const RG = `${PREFIX}/resourceGroups/${SEGMENT}/providers/Microsoft\\.Compute`
const routes = {
  documents: route(`${PREFIX}/providers/Microsoft\\.Compute/locations/${SEGMENT}/runCommands`),
  document: route(`${PREFIX}/providers/Microsoft\\.Compute/locations/${SEGMENT}/runCommands/${SEGMENT}`),
  operation: route(`${PREFIX}/providers/Microsoft\\.Compute/locations/${SEGMENT}/operations/${SEGMENT}`),
  vmAction: route(`${RG}/virtualMachines/${SEGMENT}/runCommand`),
  vmRunCommand: route(`${RG}/virtualMachines/${SEGMENT}/runCommands/${SEGMENT}`),
  vmRunCommands: route(`${RG}/virtualMachines/${SEGMENT}/runCommands`),
  vmInstanceView: route(`${RG}/virtualMachines/${SEGMENT}/instanceView`),
  vm: route(`${RG}/virtualMachines/${SEGMENT}`),
  vmsInGroup: route(`${RG}/virtualMachines`),
  vmsAll: route(`${PREFIX}/providers/Microsoft\\.Compute/virtualMachines`),
  ssVmAction: route(`${RG}/virtualMachineScaleSets/${SEGMENT}/virtualMachines/${SEGMENT}/runCommand`),
  ssVmRunCommand: route(`${RG}/virtualMachineScaleSets/${SEGMENT}/virtualMachines/${SEGMENT}/runCommands/${SEGMENT}`),
  ssVmRunCommands: route(`${RG}/virtualMachineScaleSets/${SEGMENT}/virtualMachines/${SEGMENT}/runCommands`),
  ssVmInstanceView: route(`${RG}/virtualMachineScaleSets/${SEGMENT}/virtualMachines/${SEGMENT}/instanceView`),
  ssVm: route(`${RG}/virtualMachineScaleSets/${SEGMENT}/virtualMachines/${SEGMENT}`),
  ssVms: route(`${RG}/virtualMachineScaleSets/${SEGMENT}/virtualMachines`),
  ss: route(`${RG}/virtualMachineScaleSets/${SEGMENT}`),
  ssInGroup: route(`${RG}/virtualMachineScaleSets`),
  ssAll: route(`${PREFIX}/providers/Microsoft\\.Compute/virtualMachineScaleSets`)
}

/** ARM refuses request bodies over 4 MB (a script sent inline included): larger scripts go through `scriptUri`. */
const MAX_REQUEST_BYTES = 4 * 1024 * 1024

const SCHEMA = "http://schema.management.azure.com/schemas/2016-11-17/runcommands.json"

/** The run command documents the emulator knows (the two that run custom scripts). */
const documents = [
  {
    $schema: SCHEMA,
    id: "RunShellScript",
    osType: "Linux",
    label: "Executes a Linux shell script",
    description:
      "Custom multiline shell script should be defined in script property. Optional parameters can be set in parameters property.",
    script: [],
    parameters: []
  },
  {
    $schema: SCHEMA,
    id: "RunPowerShellScript",
    osType: "Windows",
    label: "Executes a PowerShell script",
    description:
      "Custom multiline PowerShell script should be defined in script property. Optional parameters can be set in parameters property.",
    script: [],
    parameters: []
  }
]

/** The properties a client may set on a managed run command (what decides whether a PUT changes it). */
const settable = [
  "source",
  "parameters",
  "protectedParameters",
  "asyncExecution",
  "runAsUser",
  "runAsPassword",
  "timeoutInSeconds",
  "outputBlobUri",
  "errorBlobUri",
  "outputBlobManagedIdentity",
  "errorBlobManagedIdentity",
  "treatFailureAsDeploymentFailure"
]

const stable = (value: unknown): string =>
  JSON.stringify(value, (_k, v) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v)

const envFromParameters = (list: unknown): Record<string, string> => {
  const env: Record<string, string> = {}
  if (!Array.isArray(list)) return env
  for (const p of list) {
    if (p !== null && typeof p === "object" && typeof p.name === "string" && typeof p.value === "string") {
      env[p.name] = p.value
    }
  }
  return env
}

/** @internal */
export const start = async (options: Options = {}): Promise<Emulator> => {
  const subscription = options.subscription ?? "00000000-0000-4000-8000-000000000001"
  const resourceGroup = options.resourceGroup ?? "runcmd-rg"
  const location = options.location ?? "eastus"
  const cap = options.outputCapBytes ?? 4096
  const killGraceMs = options.killGraceMs ?? 1000
  const recordBodies = options.recordBodies ?? true
  const limits = options.rateLimits ?? {}
  const buckets = {
    reads: makeBucket(limits.reads ?? { size: 12_000, refillPerSecond: 2_000 }),
    writes: makeBucket(limits.writes ?? { size: 1_200, refillPerSecond: 200 }),
    deletes: makeBucket(limits.deletes ?? { size: 1_200, refillPerSecond: 200 })
  }
  const certificate = await Cert.generate()
  const helpers = options.agentProcesses ?? 2
  const nice = Math.max(0, Math.min(19, options.agentNice ?? 0))
  const spawner = helpers > 0 ? Spawner.processes(helpers, nice) : Spawner.local(nice)
  let endpoint = ""

  const vms = new Map<string, Vm>()
  const scaleSets = new Map<string, ScaleSet>()
  const runCommands = new Map<string, RunCommand>()
  const operations = new Map<string, Operation>()
  const executions: Record<string, number> = {}
  const recorded: Array<RecordedRequest> = []
  const throttles: Array<{ left: number; spec: Throttle }> = []
  const drops: Array<{ left: number; spec: Drop }> = []
  const all: Array<Agent.Execution> = []
  const ran: Array<{ readonly vm: string; readonly execution: Agent.Execution }> = []

  const key = (rg: string, name: string) => `${rg.toLowerCase()}/${name.toLowerCase()}`
  const vmId = (rg: string, name: string) =>
    `/subscriptions/${subscription}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachines/${name}`
  const ssId = (rg: string, name: string) =>
    `/subscriptions/${subscription}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`

  const addVm = (spec: VmSpec) => {
    const rg = spec.resourceGroup ?? resourceGroup
    vms.set(key(rg, spec.name), {
      key: spec.name,
      name: spec.name,
      resourceGroup: rg,
      os: spec.os ?? "linux",
      tags: { ...spec.tags },
      powerState: spec.powerState ?? "running",
      id: vmId(rg, spec.name),
      users: spec.users
    })
  }
  const vmSpecs = typeof options.vms === "number"
    ? Array.from({ length: options.vms }, (_, i) => ({ name: `vm-${i}` }))
    : options.vms ?? [{ name: "vm-0" }]
  for (const spec of vmSpecs) addVm(spec)
  for (const spec of options.scaleSets ?? []) {
    const rg = spec.resourceGroup ?? resourceGroup
    const mode = spec.orchestrationMode ?? "Uniform"
    const set: ScaleSet = {
      name: spec.name,
      resourceGroup: rg,
      id: ssId(rg, spec.name),
      os: spec.os ?? "linux",
      tags: { ...spec.tags },
      orchestrationMode: mode,
      instances: []
    }
    for (let i = 0; i < spec.instances; i++) {
      const instanceId = String(i)
      const name = mode === "Uniform" ? `${spec.name}_${i}` : `${spec.name}_${randomUUID().slice(0, 8)}`
      const vm: Vm = {
        key: `${spec.name}/${instanceId}`,
        name,
        resourceGroup: rg,
        os: set.os,
        tags: { ...spec.tags },
        powerState: spec.powerStates?.[instanceId] ?? "running",
        id: mode === "Uniform" ? `${set.id}/virtualMachines/${instanceId}` : vmId(rg, name),
        scaleSetId: set.id,
        instanceId
      }
      set.instances.push(vm)
      // flexible members are ordinary VMs
      if (mode === "Flexible") vms.set(key(rg, name), { ...vm, key: name })
    }
    scaleSets.set(key(rg, spec.name), set)
  }

  const findVm = (rg: string, name: string) => vms.get(key(rg, name))
  const findInstance = (rg: string, ss: string, id: string) => {
    const set = scaleSets.get(key(rg, ss))
    return set?.orchestrationMode === "Uniform" ? set.instances.find((i) => i.instanceId === id) : undefined
  }

  const operationUrls = (id: string) => {
    const base =
      `${endpoint}/subscriptions/${subscription}/providers/Microsoft.Compute/locations/${location}/operations/${id}`
    return {
      "Azure-AsyncOperation": `${base}?p=${id}&api-version=2024-11-01`,
      Location: `${base}?p=${id}&monitor=true&api-version=2024-11-01`
    }
  }
  const newOperation = (): Operation => {
    const op: Operation = { id: randomUUID(), startTime: new Date(), status: "InProgress" }
    operations.set(op.id, op)
    return op
  }
  /** 202 Accepted for a long-running operation: where to poll it (`Azure-AsyncOperation` and `Location`, as ARM). */
  const accepted = (res: http.ServerResponse, op: Operation) => json(res, 202, undefined, operationUrls(op.id))
  const endOperation = (op: Operation, status: Operation["status"], error?: Operation["error"]) => {
    op.status = status
    op.endTime = new Date()
    if (error !== undefined) op.error = error
  }

  const runCommandBody = (rc: RunCommand, expand: boolean) => {
    const properties: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(rc.properties)) {
      // secure properties are never returned
      if (k !== "protectedParameters" && k !== "runAsPassword") properties[k] = v
    }
    properties.provisioningState = rc.provisioningState
    if (expand) {
      const ex = rc.execution
      properties.instanceView = ex === undefined
        ? { executionState: "Pending", executionMessage: "", statuses: [] }
        : {
          executionState: ex.state(),
          executionMessage: ex.message(),
          ...(ex.exitCode() === undefined ? {} : { exitCode: ex.exitCode() }),
          output: ex.output(),
          error: ex.error(),
          startTime: ex.startTime.toISOString(),
          ...(ex.endTime() === undefined ? {} : { endTime: ex.endTime()!.toISOString() }),
          statuses: []
        }
    }
    return {
      name: rc.name,
      id: rc.id,
      type: rc.type,
      location: rc.location,
      ...(rc.tags === undefined ? {} : { tags: rc.tags }),
      properties
    }
  }

  const vmBody = (vm: Vm, withInstanceView: boolean) => ({
    name: vm.name,
    id: vm.id,
    type: "Microsoft.Compute/virtualMachines",
    location,
    tags: vm.tags,
    properties: {
      vmId: randomUUID(),
      provisioningState: "Succeeded",
      storageProfile: { osDisk: { osType: vm.os === "windows" ? "Windows" : "Linux", createOption: "FromImage" } },
      osProfile: { computerName: vm.name },
      ...(vm.scaleSetId === undefined ? {} : { virtualMachineScaleSet: { id: vm.scaleSetId } }),
      ...(withInstanceView ? { instanceView: { statuses: instanceViewStatuses(vm.powerState) } } : {})
    }
  })

  const ssVmBody = (set: ScaleSet, vm: Vm, withInstanceView: boolean) => ({
    name: vm.name,
    id: vm.id,
    type: "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
    location,
    tags: vm.tags,
    instanceId: vm.instanceId,
    properties: {
      latestModelApplied: true,
      vmId: randomUUID(),
      provisioningState: "Succeeded",
      storageProfile: { osDisk: { osType: set.os === "windows" ? "Windows" : "Linux", createOption: "FromImage" } },
      osProfile: { computerName: vm.name },
      ...(withInstanceView ? { instanceView: { statuses: instanceViewStatuses(vm.powerState) } } : {})
    }
  })

  const ssBody = (set: ScaleSet) => ({
    name: set.name,
    id: set.id,
    type: "Microsoft.Compute/virtualMachineScaleSets",
    location,
    tags: set.tags,
    sku: { name: "Standard_B1s", tier: "Standard", capacity: set.instances.length },
    properties: {
      provisioningState: "Succeeded",
      orchestrationMode: set.orchestrationMode,
      virtualMachineProfile: {
        storageProfile: { osDisk: { osType: set.os === "windows" ? "Windows" : "Linux", createOption: "FromImage" } }
      }
    }
  })

  /**
   * The account a `runAsUser` runs as, or the service's refusal (the run command then ends Failed with it as its
   * execution message, and nothing runs).
   */
  const runAsAccount = async (vm: Vm, name: string, password: string | undefined): Promise<Agent.Account | string> => {
    const refuse = (why: string) =>
      `Script cannot be executed with specified runAsUser/runAsPassword parameters: ${why}`
    const listed = vm.users?.[name]
    if (vm.users !== undefined && listed === undefined) return refuse(`the user '${name}' does not exist on the VM`)
    if (listed !== undefined && listed !== "" && password !== listed) {
      return refuse(`the user name or password of '${name}' is incorrect`)
    }
    const account = await Agent.account(name)
    if (account === undefined) return refuse(`the user '${name}' does not exist on the VM`)
    const self = process.getuid?.()
    if (self !== undefined && self !== 0 && self !== account.uid) {
      return refuse(`the emulator runs as uid ${self}, not root: it can run scripts only as itself`)
    }
    return account
  }

  const notRunning = (res: http.ServerResponse, vm: Vm) =>
    armError(
      res,
      409,
      "OperationNotAllowed",
      `Operation 'RunCommand' is not allowed on VM '${vm.name}' since the VM is ${vm.powerState}.`
    )

  // -- managed run commands ----------------------------------------------------------------------------------

  const putRunCommand = (
    res: http.ServerResponse,
    vm: Vm,
    name: string,
    id: string,
    type: string,
    body: Record<string, unknown>
  ) => {
    if (typeof body.location !== "string" || body.location === "") {
      return armError(res, 400, "LocationRequired", "The location property is required for this definition.")
    }
    if (vm.powerState !== "running") return notRunning(res, vm)
    const props = (body.properties ?? {}) as Record<string, unknown>
    const source = props.source as Record<string, unknown> | undefined
    if (
      source === undefined ||
      (typeof source.script !== "string" && typeof source.scriptUri !== "string" &&
        typeof source.commandId !== "string")
    ) {
      return armError(
        res,
        400,
        "InvalidParameter",
        "One of source.script, source.scriptUri or source.commandId is required."
      )
    }
    const wanted: Record<string, unknown> = {}
    for (const k of settable) if (props[k] !== undefined) wanted[k] = props[k]
    const rcKey = id.toLowerCase()
    const existing = runCommands.get(rcKey)
    if (existing !== undefined && !existing.deleting && stable(existing.properties) === stable(wanted)) {
      // the same definition again: nothing runs again (an idempotent PUT)
      return json(res, 200, runCommandBody(existing, false))
    }
    if (existing?.deleting === true) {
      return armError(res, 409, "Conflict", `The run command ${name} is being deleted.`)
    }
    existing?.execution?.kill("Canceled")
    const rc: RunCommand = {
      name,
      id,
      type,
      location: body.location,
      tags: body.tags as Record<string, string> | undefined,
      properties: wanted,
      provisioningState: existing === undefined ? "Creating" : "Updating",
      execution: undefined,
      deleting: false
    }
    runCommands.set(rcKey, rc)
    const op = newOperation()
    const asyncExecution = props.asyncExecution === true
    const launch = async () => {
      let script = typeof source.script === "string" ? source.script : undefined
      if (script === undefined && typeof source.scriptUri === "string") {
        const response = await fetch(source.scriptUri)
        if (!response.ok) throw new Error(`downloading the script from scriptUri failed: ${response.status}`)
        script = await response.text()
      }
      if (script === undefined) {
        throw new Error(`commandId ${String(source.commandId)} is not supported by the emulator`)
      }
      const runAs = typeof props.runAsUser === "string" && props.runAsUser !== ""
        ? await runAsAccount(
          vm,
          props.runAsUser,
          typeof props.runAsPassword === "string" ? props.runAsPassword : undefined
        )
        : undefined
      if (typeof runAs !== "string") executions[vm.key] = (executions[vm.key] ?? 0) + 1
      const execution = typeof runAs === "string" ? Agent.refused(runAs) : Agent.run({
        os: vm.os,
        script,
        env: { ...envFromParameters(props.parameters), ...envFromParameters(props.protectedParameters) },
        timeoutSeconds: typeof props.timeoutInSeconds === "number" ? props.timeoutInSeconds : undefined,
        outputBlobUri: typeof props.outputBlobUri === "string" ? props.outputBlobUri : undefined,
        errorBlobUri: typeof props.errorBlobUri === "string" ? props.errorBlobUri : undefined,
        outputCapBytes: cap,
        pwsh: options.pwsh,
        killGraceMs,
        user: runAs,
        spawner
      })
      all.push(execution)
      if (typeof runAs !== "string") ran.push({ vm: vm.key, execution })
      rc.execution = execution
      if (asyncExecution) {
        rc.provisioningState = "Succeeded"
        endOperation(op, "Succeeded")
      }
      await execution.done
      if (!asyncExecution && op.status === "InProgress") {
        const failed = execution.state() !== "Succeeded"
        if (failed && props.treatFailureAsDeploymentFailure === true) {
          rc.provisioningState = "Failed"
          endOperation(op, "Failed", {
            code: "VMExtensionProvisioningError",
            message:
              `VM has reported a failure when processing extension 'RunCommand'. Exit code: ${execution.exitCode()}`
          })
        } else {
          rc.provisioningState = "Succeeded"
          endOperation(op, "Succeeded")
        }
      }
    }
    launch().catch((e) => {
      rc.provisioningState = "Failed"
      endOperation(op, "Failed", { code: "VMExtensionProvisioningError", message: String(e) })
    })
    json(res, existing === undefined ? 201 : 200, runCommandBody(rc, false), {
      "Azure-AsyncOperation": operationUrls(op.id)["Azure-AsyncOperation"]
    })
  }

  /** PATCH: the given properties over the current ones, then as a PUT of the result (runs again if it changed). */
  const patchRunCommand = (
    res: http.ServerResponse,
    vm: Vm,
    name: string,
    id: string,
    type: string,
    body: Record<string, unknown>
  ) => {
    const rc = runCommands.get(id.toLowerCase())
    if (rc === undefined) return armError(res, 404, "ResourceNotFound", `The Resource '${id.slice(1)}' was not found.`)
    const patch = (body.properties ?? {}) as Record<string, unknown>
    return putRunCommand(res, vm, name, id, type, {
      location: rc.location,
      tags: (body.tags as Record<string, string> | undefined) ?? rc.tags,
      properties: { ...rc.properties, ...patch }
    })
  }

  const getRunCommand = (res: http.ServerResponse, id: string, expand: boolean) => {
    const rc = runCommands.get(id.toLowerCase())
    if (rc === undefined) {
      return armError(res, 404, "ResourceNotFound", `The Resource '${id.slice(1)}' was not found.`)
    }
    json(res, 200, runCommandBody(rc, expand))
  }

  const deleteRunCommand = (res: http.ServerResponse, id: string) => {
    const rc = runCommands.get(id.toLowerCase())
    if (rc === undefined) return json(res, 204)
    const op = newOperation()
    rc.deleting = true
    rc.provisioningState = "Deleting"
    const ex = rc.execution
    void (ex === undefined ? Promise.resolve() : ex.kill("Canceled")).then(() => {
      runCommands.delete(id.toLowerCase())
      endOperation(op, "Succeeded")
    })
    accepted(res, op)
  }

  const listRunCommands = (res: http.ServerResponse, parentId: string, expand: boolean) => {
    const prefix = `${parentId.toLowerCase()}/runcommands/`
    const value = [...runCommands.entries()].filter(([k]) => k.startsWith(prefix)).map(([, rc]) =>
      runCommandBody(rc, expand)
    )
    json(res, 200, { value })
  }

  // -- action run command ------------------------------------------------------------------------------------

  const actionRunCommand = (res: http.ServerResponse, vm: Vm, body: Record<string, unknown>) => {
    if (vm.powerState !== "running") return notRunning(res, vm)
    if (vm.action !== undefined) {
      return armError(
        res,
        409,
        "Conflict",
        "Run command extension execution is in progress. Please wait for completion before invoking a run command."
      )
    }
    const commandId = body.commandId
    const windows = vm.os === "windows"
    if (commandId !== (windows ? "RunPowerShellScript" : "RunShellScript")) {
      return armError(
        res,
        400,
        "InvalidParameter",
        `The commandId ${JSON.stringify(commandId)} is not valid for a ${windows ? "Windows" : "Linux"} VM.`
      )
    }
    const script = Array.isArray(body.script) ? body.script.join("\n") : ""
    const op = newOperation()
    executions[vm.key] = (executions[vm.key] ?? 0) + 1
    const execution = Agent.run({
      os: vm.os,
      script,
      env: envFromParameters(body.parameters),
      outputCapBytes: cap,
      pwsh: options.pwsh,
      killGraceMs,
      timeoutSeconds: 90 * 60,
      spawner
    })
    all.push(execution)
    ran.push({ vm: vm.key, execution })
    vm.action = execution
    void execution.done.then(() => {
      vm.action = undefined
      const out = execution.output()
      const err = execution.error()
      op.result = {
        value: windows
          ? [
            {
              code: "ComponentStatus/StdOut/succeeded",
              level: "Info",
              displayStatus: "Provisioning succeeded",
              message: out
            },
            {
              code: "ComponentStatus/StdErr/succeeded",
              level: "Info",
              displayStatus: "Provisioning succeeded",
              message: err
            }
          ]
          : [
            {
              code: "ProvisioningState/succeeded",
              level: "Info",
              displayStatus: "Provisioning succeeded",
              message: `Enable succeeded: \n[stdout]\n${out}\n[stderr]\n${err}`
            }
          ]
      }
      op.output = op.result
      endOperation(op, "Succeeded")
    })
    accepted(res, op)
  }

  const getOperation = (res: http.ServerResponse, id: string, monitor: boolean) => {
    const op = operations.get(id)
    if (op === undefined) return armError(res, 404, "NotFound", `The operation ${id} was not found.`)
    if (monitor) {
      if (op.status === "InProgress") return accepted(res, op)
      if (op.result !== undefined) return json(res, 200, op.result)
      return json(res, op.status === "Succeeded" ? 200 : 200, op.error === undefined ? {} : { error: op.error })
    }
    json(res, 200, {
      name: op.id,
      status: op.status,
      startTime: op.startTime.toISOString(),
      ...(op.endTime === undefined ? {} : { endTime: op.endTime.toISOString() }),
      ...(op.output === undefined ? {} : { properties: { output: op.output } }),
      ...(op.error === undefined ? {} : { error: op.error })
    })
  }

  // -- dispatch ----------------------------------------------------------------------------------------------

  const matchFault = <T extends { readonly method?: string | undefined; readonly pathIncludes?: string | undefined }>(
    list: Array<{ left: number; spec: T }>,
    method: string,
    path: string
  ) => {
    const i = list.findIndex((f) =>
      f.left > 0 && (f.spec.method === undefined || f.spec.method.toUpperCase() === method) &&
      (f.spec.pathIncludes === undefined || path.toLowerCase().includes(f.spec.pathIncludes.toLowerCase()))
    )
    if (i < 0) return undefined
    const f = list[i]!
    f.left--
    if (f.left === 0) list.splice(i, 1)
    return f.spec
  }

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: string) => {
    const method = req.method ?? "GET"
    const path = url.pathname
    const query = url.searchParams
    // the emulator's own records, for a test or benchmark in another process (not ARM's)
    if (method === "GET" && path === "/_emulator/requests") return json(res, 200, recorded)
    if (method === "GET" && path === "/_emulator/history") return json(res, 200, history())
    const throttle = matchFault(throttles, method, path)
    if (throttle !== undefined) {
      const ms = throttle.retryAfterMs ?? 1000
      return armError(
        res,
        429,
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation type.",
        {
          "Retry-After": String(Math.max(1, Math.ceil(ms / 1000))),
          "retry-after-ms": String(ms),
          "x-ms-ratelimit-remaining-subscription-reads": "0"
        }
      )
    }
    const kind = method === "GET" || method === "HEAD" ? "reads" : method === "DELETE" ? "deletes" : "writes"
    const bucket = buckets[kind]
    const token = bucket.take()
    res.setHeader(`x-ms-ratelimit-remaining-subscription-${kind}`, String(token.remaining))
    if (!token.ok && limits.enforce === true) {
      const ms = bucket.nextInMs()
      return armError(
        res,
        429,
        "SubscriptionRequestsThrottled",
        `Number of '${kind}' requests for subscription '${subscription}' exceeded the limit. Please try again later.`,
        { "Retry-After": String(Math.max(1, Math.ceil(ms / 1000))), "retry-after-ms": String(ms) }
      )
    }
    if (Buffer.byteLength(body) > MAX_REQUEST_BYTES) {
      return armError(res, 413, "RequestContentTooLarge", "The request content size exceeds the maximum size of 4 MB.")
    }
    const auth = req.headers.authorization
    if (auth === undefined || !/^Bearer \S+/.test(auth)) {
      return armError(res, 401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    }
    const apiVersion = query.get("api-version")
    if (!apiVersionOk(apiVersion)) {
      return armError(
        res,
        400,
        apiVersion === null ? "MissingApiVersionParameter" : "InvalidApiVersionParameter",
        `The api-version '${apiVersion ?? ""}' is invalid. The supported versions are 2020-06-01 and later.`
      )
    }
    const expand = query.get("$expand") === "instanceView"
    const parsed = (): Record<string, unknown> | undefined => {
      try {
        const v = body === "" ? {} : JSON.parse(body)
        return v !== null && typeof v === "object" ? v : undefined
      } catch {
        return undefined
      }
    }
    const sub = (m: RegExpExecArray) => m[1]!.toLowerCase() === subscription.toLowerCase()
    let m: RegExpExecArray | null
    const subscriptionNotFound = () =>
      armError(res, 404, "SubscriptionNotFound", `The subscription '${m?.[1] ?? ""}' could not be found.`)

    if ((m = routes.documents.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      return json(res, 200, {
        value: documents.map(({ $schema, description, id, label, osType }) => ({
          $schema,
          id,
          osType,
          label,
          description
        }))
      })
    }
    if ((m = routes.document.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const doc = documents.find((d) => d.id.toLowerCase() === m![3]!.toLowerCase())
      return doc === undefined
        ? armError(res, 404, "NotFound", `The run command document ${m[3]} was not found.`)
        : json(res, 200, doc)
    }
    if ((m = routes.operation.exec(path)) !== null && method === "GET") {
      return getOperation(res, m[3]!, query.get("monitor") === "true")
    }
    const badBody = () =>
      armError(res, 400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
    const vmNotFound = (rg: string, name: string) =>
      armError(
        res,
        404,
        "ResourceNotFound",
        `The Resource 'Microsoft.Compute/virtualMachines/${name}' under resource group '${rg}' was not found.`
      )

    const instanceNotFound = (ss: string, id: string) =>
      armError(
        res,
        404,
        "ResourceNotFound",
        `The Resource 'Microsoft.Compute/virtualMachineScaleSets/${ss}/virtualMachines/${id}' was not found.`
      )
    // run commands, on VMs and on scale-set VMs alike: the action, one managed run command, the list
    const runCommandsOn = (
      vm: Vm | undefined,
      notFound: () => void,
      type: string,
      rest: { readonly action: boolean; readonly name?: string | undefined }
    ) => {
      if (vm === undefined) return notFound()
      if (rest.action) {
        if (method !== "POST") return undefined
        const b = parsed()
        return b === undefined ? badBody() : actionRunCommand(res, vm, b)
      }
      if (rest.name === undefined) return method === "GET" ? listRunCommands(res, vm.id, expand) : undefined
      const id = `${vm.id}/runCommands/${rest.name}`
      if (method === "GET") return getRunCommand(res, id, expand)
      if (method === "DELETE") return deleteRunCommand(res, id)
      if (method !== "PUT" && method !== "PATCH") return undefined
      const b = parsed()
      if (b === undefined) return badBody()
      return (method === "PUT" ? putRunCommand : patchRunCommand)(res, vm, rest.name, id, type, b)
    }
    const VM_RUN_COMMAND = "Microsoft.Compute/virtualMachines/runCommands"
    const SS_VM_RUN_COMMAND = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommands"
    const onVm = (m: RegExpExecArray, rest: { readonly action: boolean; readonly name?: string | undefined }) =>
      sub(m)
        ? runCommandsOn(findVm(m[2]!, m[3]!), () => vmNotFound(m[2]!, m[3]!), VM_RUN_COMMAND, rest)
        : subscriptionNotFound()
    const onInstance = (m: RegExpExecArray, rest: { readonly action: boolean; readonly name?: string | undefined }) =>
      sub(m)
        ? runCommandsOn(
          findInstance(m[2]!, m[3]!, m[4]!),
          () => instanceNotFound(m[3]!, m[4]!),
          SS_VM_RUN_COMMAND,
          rest
        )
        : subscriptionNotFound()
    const runCommandRoutes = [
      { route: routes.vmAction, on: (m: RegExpExecArray) => onVm(m, { action: true }) },
      { route: routes.vmRunCommand, on: (m: RegExpExecArray) => onVm(m, { action: false, name: m[4]! }) },
      { route: routes.vmRunCommands, on: (m: RegExpExecArray) => onVm(m, { action: false }) },
      { route: routes.ssVmAction, on: (m: RegExpExecArray) => onInstance(m, { action: true }) },
      { route: routes.ssVmRunCommand, on: (m: RegExpExecArray) => onInstance(m, { action: false, name: m[5]! }) },
      { route: routes.ssVmRunCommands, on: (m: RegExpExecArray) => onInstance(m, { action: false }) }
    ]
    for (const { on, route } of runCommandRoutes) {
      if ((m = route.exec(path)) !== null) {
        on(m)
        if (res.headersSent || res.writableEnded) return
        break
      }
    }

    if ((m = routes.vmInstanceView.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const vm = findVm(m[2]!, m[3]!)
      if (vm === undefined) return vmNotFound(m[2]!, m[3]!)
      return json(res, 200, { computerName: vm.name, statuses: instanceViewStatuses(vm.powerState) })
    }
    if ((m = routes.vm.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const vm = findVm(m[2]!, m[3]!)
      if (vm === undefined) return vmNotFound(m[2]!, m[3]!)
      return json(res, 200, vmBody(vm, expand))
    }
    if ((m = routes.vmsInGroup.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const rg = m[2]!.toLowerCase()
      return json(res, 200, {
        value: [...vms.values()].filter((v) => v.resourceGroup.toLowerCase() === rg).map((v) => vmBody(v, expand))
      })
    }
    if ((m = routes.vmsAll.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const statusOnly = query.get("statusOnly") === "true"
      return json(res, 200, { value: [...vms.values()].map((v) => vmBody(v, statusOnly || expand)) })
    }

    // scale sets
    if ((m = routes.ssVmInstanceView.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const vm = findInstance(m[2]!, m[3]!, m[4]!)
      if (vm === undefined) return instanceNotFound(m[3]!, m[4]!)
      return json(res, 200, { statuses: instanceViewStatuses(vm.powerState) })
    }
    if ((m = routes.ssVm.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const set = scaleSets.get(key(m[2]!, m[3]!))
      const vm = findInstance(m[2]!, m[3]!, m[4]!)
      if (set === undefined || vm === undefined) return instanceNotFound(m[3]!, m[4]!)
      return json(res, 200, ssVmBody(set, vm, expand))
    }
    if ((m = routes.ssVms.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const set = scaleSets.get(key(m[2]!, m[3]!))
      if (set === undefined) {
        return armError(
          res,
          404,
          "ResourceNotFound",
          `The Resource 'Microsoft.Compute/virtualMachineScaleSets/${m[3]}' was not found.`
        )
      }
      // flexible scale sets have no instance view of their own: their members are VMs
      const value = set.orchestrationMode === "Uniform" ? set.instances.map((vm) => ssVmBody(set, vm, expand)) : []
      return json(res, 200, { value })
    }
    if ((m = routes.ss.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const set = scaleSets.get(key(m[2]!, m[3]!))
      if (set === undefined) {
        return armError(
          res,
          404,
          "ResourceNotFound",
          `The Resource 'Microsoft.Compute/virtualMachineScaleSets/${m[3]}' was not found.`
        )
      }
      return json(res, 200, ssBody(set))
    }
    if ((m = routes.ssInGroup.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      const rg = m[2]!.toLowerCase()
      return json(res, 200, {
        value: [...scaleSets.values()].filter((s) => s.resourceGroup.toLowerCase() === rg).map(ssBody)
      })
    }
    if ((m = routes.ssAll.exec(path)) !== null && method === "GET") {
      if (!sub(m)) return subscriptionNotFound()
      return json(res, 200, { value: [...scaleSets.values()].map(ssBody) })
    }
    armError(res, 404, "NotFound", `No route for ${method} ${path}`)
  }

  const history = () =>
    ran.map(({ execution, vm }) => ({
      vm,
      startedAt: execution.startTime.getTime(),
      endedAt: execution.endTime()?.getTime()
    }))

  const server = https.createServer({ cert: certificate.cert, key: certificate.key }, (req, res) => {
    const parts: Array<Buffer> = []
    req.on("data", (b: Buffer) => parts.push(b))
    req.on("end", () => {
      const body = Buffer.concat(parts).toString("utf8")
      const url = new URL(req.url ?? "/", endpoint)
      const method = req.method ?? "GET"
      const drop = matchFault(drops, method, url.pathname)
      const status = { code: 0 }
      const writeHead = res.writeHead.bind(res)
      res.writeHead = ((code: number, ...rest: Array<any>) => {
        status.code = code
        return (writeHead as (...a: Array<any>) => http.ServerResponse)(code, ...rest)
      }) as typeof res.writeHead
      if (drop !== undefined) {
        // the request is processed, its response lost (the client sees the connection reset)
        const end = res.end.bind(res)
        res.end = ((..._args: Array<unknown>) => {
          req.socket.destroy()
          return res
        }) as typeof res.end
        void end
      }
      try {
        handle(req, res, url, body)
      } catch (e) {
        if (!res.headersSent) armError(res, 500, "InternalServerError", String(e))
      }
      recorded.push({
        method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        body: recordBodies ? body : "",
        status: drop === undefined ? status.code : 0,
        at: Date.now()
      })
    })
  })
  server.keepAliveTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  endpoint = `https://127.0.0.1:${port}`

  return {
    endpoint,
    port,
    subscription,
    resourceGroup,
    location,
    ca: certificate.cert,
    caPath: certificate.certPath,
    vmNames: () => [...vms.values()].filter((v) => v.scaleSetId === undefined).map((v) => v.name),
    scaleSets: () =>
      [...scaleSets.values()].map((s) => ({
        name: s.name,
        instanceIds: s.instances.map((i) => s.orchestrationMode === "Uniform" ? i.instanceId! : i.name)
      })),
    requests: () => [...recorded],
    clearRequests: () => {
      recorded.length = 0
    },
    executions: () => ({ ...executions }),
    throttle: (spec) => {
      throttles.push({ left: spec.count, spec })
    },
    dropResponses: (spec) => {
      drops.push({ left: spec.count, spec })
    },
    setPowerState: (name, state, opts) => {
      if (opts?.scaleSet !== undefined) {
        const set = scaleSets.get(key(resourceGroup, opts.scaleSet))
        const vm = set?.instances.find((i) => i.instanceId === name || i.name === name)
        if (vm === undefined) throw new Error(`no instance ${name} in scale set ${opts.scaleSet}`)
        vm.powerState = state
        const flexible = vms.get(key(resourceGroup, vm.name))
        if (flexible !== undefined) flexible.powerState = state
        return
      }
      const vm = findVm(resourceGroup, name)
      if (vm === undefined) throw new Error(`no VM ${name}`)
      vm.powerState = state
    },
    addVm,
    history,
    runCommands: () => {
      const out: Record<string, Array<string>> = {}
      for (const rc of runCommands.values()) {
        const parent = rc.id.slice(0, rc.id.toLowerCase().lastIndexOf("/runcommands/"))
        const owner = [...vms.values(), ...[...scaleSets.values()].flatMap((s) => s.instances)].find((v) =>
          v.id.toLowerCase() === parent.toLowerCase()
        )
        const k = owner?.key ?? parent
        ;(out[k] ??= []).push(rc.name)
      }
      return out
    },
    close: async () => {
      await Promise.all(all.map((e) => e.kill("Canceled").catch(() => undefined)))
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await spawner.close()
      await certificate.dispose()
    }
  }
}
