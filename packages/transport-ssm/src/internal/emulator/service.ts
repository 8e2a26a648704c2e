/**
 * The SSM emulator's service: managed instances that execute commands as local processes, the Run Command status
 * machine, Parameter Store, and the operations' request handling (AWS JSON 1.1 bodies in, response bodies out).
 *
 * @internal
 */
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import * as cp from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** An error the service answers with: HTTP 400 and `{"__type", "message"}`. @internal */
export class ServiceError extends Error {
  constructor(readonly code: string, message: string, readonly status = 400) {
    super(message)
  }
}

/** @internal */
export const INLINE_OUTPUT_CAP = 24_000
/** @internal */
export const LIST_OUTPUT_CAP = 2_500

/** @internal */
export type PingStatus = "Online" | "ConnectionLost" | "Inactive"

/** @internal */
export interface InstanceSpec {
  readonly id?: string | undefined
  readonly platform?: "Linux" | "Windows" | undefined
  readonly tags?: { readonly [key: string]: string } | undefined
  readonly pingStatus?: PingStatus | undefined
  readonly name?: string | undefined
}

/** @internal */
export interface S3Output {
  readonly endpoint: string
  readonly region?: string | undefined
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string } | undefined
}

/** @internal */
export interface ServiceOptions {
  readonly region: string
  readonly workDir: string
  readonly endpoint: () => string
  readonly s3?: S3Output | undefined
  /** Between SendCommand and the instance picking the command up. */
  readonly deliveryDelayMs: number
  /** How long after a TERM (CancelCommand) before the agent KILLs the process group. */
  readonly cancelKillAfterMs: number
  readonly pwsh?: string | undefined
}

/** @internal */
export interface Instance {
  readonly id: string
  readonly platform: "Linux" | "Windows"
  readonly tags: Record<string, string>
  readonly name: string
  readonly dir: string
  pingStatus: PingStatus
  lastPing: number
  /** The agent loses its connection as soon as it starts its next command (the disconnect-mid-run fault). */
  disconnectOnStart: boolean
}

type Status = "Pending" | "InProgress" | "Delayed" | "Success" | "Failed" | "Cancelled" | "TimedOut" | "Cancelling"

/** @internal */
export interface Invocation {
  readonly commandId: string
  readonly instanceId: string
  readonly requestedAt: number
  /** Visible to Get/ListCommandInvocations from this time on (the InvocationDoesNotExist window). */
  visibleAt: number
  status: Status
  statusDetails: string
  responseCode: number
  startedAt: number | undefined
  endedAt: number | undefined
  stdout: Array<Buffer>
  stderr: Array<Buffer>
  stdoutText: string
  stderrText: string
  child: cp.ChildProcess | undefined
  cancelRequested: boolean
  stdoutUrl: string
  stderrUrl: string
  timers: Array<NodeJS.Timeout>
  /** How many times the instance started the command (a marker of double execution). */
  executions: number
  /** The agent's report of the end, held while it is disconnected (delivered when it reconnects). */
  report: { readonly status: Status; readonly details: string; readonly code: number } | undefined
  /** The output the service last heard of, while the agent is disconnected. */
  heard: { readonly stdout: string; readonly stderr: string } | undefined
  /** A cancel the disconnected agent has not received yet. */
  cancelPending: boolean
}

/** @internal */
export interface Command {
  readonly commandId: string
  readonly documentName: string
  readonly comment: string
  readonly parameters: Record<string, Array<string>>
  readonly instanceIds: Array<string>
  readonly requestedAt: number
  readonly timeoutSeconds: number
  readonly outputS3BucketName: string
  readonly outputS3KeyPrefix: string
  readonly outputS3Region: string
  readonly maxConcurrency: string
  readonly maxErrors: string
  status: Status
}

/** @internal */
export interface Parameter {
  readonly name: string
  readonly type: string
  readonly value: string
  readonly version: number
  readonly modifiedAt: number
}

const TERMINAL = new Set<Status>(["Success", "Failed", "Cancelled", "TimedOut"])

const nowSeconds = () => Date.now() / 1000

const hex = (n: number) => crypto.randomBytes(Math.ceil(n / 2)).toString("hex").slice(0, n)

/** @internal */
export const newInstanceId = (): string => `i-${hex(17)}`

/** The first `cap` characters (UTF-16 units, kept whole at surrogate pairs). */
const capChars = (text: string, cap: number): string => {
  if (text.length <= cap) return text
  let end = cap
  const code = text.charCodeAt(end - 1)
  if (code >= 0xd800 && code <= 0xdbff) end--
  return text.slice(0, end)
}

const platformName = (i: { readonly platform: "Linux" | "Windows" }) =>
  i.platform === "Windows" ? "Microsoft Windows Server 2022 Datacenter" : "Amazon Linux"

const platformVersion = (i: { readonly platform: "Linux" | "Windows" }) =>
  i.platform === "Windows" ? "10.0.20348" : "2023"

const isoOrEmpty = (ms: number | undefined) => (ms === undefined ? "" : new Date(ms).toISOString())

const pluginName = (documentName: string) =>
  documentName === "AWS-RunPowerShellScript" ? "aws:runPowerShellScript" : "aws:runShellScript"

const pluginDir = (documentName: string) =>
  documentName === "AWS-RunPowerShellScript" ? "awsrunPowerShellScript" : "awsrunShellScript"

/** @internal */
export const outputKey = (prefix: string, commandId: string, instanceId: string, documentName: string) => {
  const dir = pluginDir(documentName)
  const base = `${commandId}/${instanceId}/${dir}/0.${dir}`
  return prefix === "" ? base : `${prefix.replace(/\/+$/, "")}/${base}`
}

const str = (body: Record<string, unknown>, key: string, required = false): string | undefined => {
  const v = body[key]
  if (v === undefined || v === null) {
    if (required) throw new ServiceError("ValidationException", `1 validation error detected: ${key} is required`)
    return undefined
  }
  if (typeof v !== "string") throw new ServiceError("SerializationException", `${key} must be a string`)
  return v
}

const encodeToken = (offset: number) => Buffer.from(String(offset)).toString("base64")
const decodeToken = (token: string | undefined): number => {
  if (token === undefined) return 0
  const n = Number(Buffer.from(token, "base64").toString("utf8"))
  if (!Number.isSafeInteger(n) || n < 0) throw new ServiceError("InvalidNextToken", "The specified token isn't valid.")
  return n
}

const page = <A>(items: ReadonlyArray<A>, body: Record<string, unknown>, max: number, min = 1) => {
  const raw = body.MaxResults
  const limit = typeof raw === "number" ? raw : max
  if (!Number.isInteger(limit) || limit < min || limit > max) {
    throw new ServiceError(
      "ValidationException",
      `1 validation error detected: Value '${String(raw)}' at 'maxResults' failed to satisfy constraint: ` +
        `Member must have value between ${min} and ${max}`
    )
  }
  const from = decodeToken(str(body, "NextToken"))
  const slice = items.slice(from, from + limit)
  return { slice, next: from + limit < items.length ? encodeToken(from + limit) : undefined }
}

/** The `aws` command the instances find first on their PATH: `aws ssm get-parameter` against the emulator. */
const awsShim = (node: string, script: string) =>
  `#!/bin/sh\nexec ${JSON.stringify(node)} ${JSON.stringify(script)} "$@"\n`

const awsShimScript = `
const args = process.argv.slice(2)
const flag = (name) => { const i = args.indexOf(name); return i < 0 ? undefined : args[i + 1] }
if (args[0] !== "ssm" || args[1] !== "get-parameter") {
  process.stderr.write("aws (runcmd SSM emulator): only 'ssm get-parameter' is emulated\\n"); process.exit(2)
}
const endpoint = process.env.RUNCMD_SSM_EMULATOR_ENDPOINT
const body = JSON.stringify({ Name: flag("--name"), WithDecryption: args.includes("--with-decryption") })
fetch(endpoint, { method: "POST", body, headers: {
  "content-type": "application/x-amz-json-1.1", "x-amz-target": "AmazonSSM.GetParameter",
  authorization: "AWS4-HMAC-SHA256 Credential=INSTANCE/emulator/ssm/aws4_request, Signature=0" } })
  .then(async (r) => {
    const json = await r.json()
    if (r.status !== 200) { process.stderr.write("An error occurred (" + json.__type + "): " + json.message + "\\n"); process.exit(254) }
    if (flag("--query") === "Parameter.Value" && flag("--output") === "text") process.stdout.write(json.Parameter.Value + "\\n")
    else process.stdout.write(JSON.stringify(json, null, 4) + "\\n")
  })
  .catch((e) => { process.stderr.write(String(e) + "\\n"); process.exit(255) })
`

/** @internal */
export const makeService = (options: ServiceOptions) => {
  const instances = new Map<string, Instance>()
  const commands = new Map<string, Command>()
  const invocations = new Map<string, Invocation>()
  const byCommand = new Map<string, Array<Invocation>>()
  const parameters = new Map<string, Parameter>()
  const deletedParameters: Array<string> = []
  let visibilityWindowMs = 0
  let closed = false
  const s3 = options.s3 === undefined ? undefined : new S3Client({
    endpoint: options.s3.endpoint,
    region: options.s3.region ?? options.region,
    forcePathStyle: true,
    credentials: options.s3.credentials ?? { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED"
  })

  const binDir = path.join(options.workDir, "bin")
  fs.mkdirSync(binDir, { recursive: true })
  fs.writeFileSync(path.join(binDir, "aws-shim.cjs"), awsShimScript)
  fs.writeFileSync(path.join(binDir, "aws"), awsShim(process.execPath, path.join(binDir, "aws-shim.cjs")), {
    mode: 0o755
  })

  const addInstance = (spec: InstanceSpec = {}): Instance => {
    const id = spec.id ?? newInstanceId()
    if (instances.has(id)) throw new Error(`an instance ${id} exists already`)
    const dir = path.join(options.workDir, "instances", id)
    fs.mkdirSync(dir, { recursive: true })
    const instance: Instance = {
      id,
      platform: spec.platform ?? "Linux",
      tags: { ...spec.tags },
      name: spec.name ?? `ip-127-0-0-1-${id}`,
      dir,
      pingStatus: spec.pingStatus ?? "Online",
      lastPing: nowSeconds(),
      disconnectOnStart: false
    }
    instances.set(id, instance)
    return instance
  }

  const key = (commandId: string, instanceId: string) => `${commandId}/${instanceId}`

  const isTerminal = (inv: Invocation) => TERMINAL.has(inv.status)

  const updateCommandStatus = (command: Command) => {
    const list = byCommand.get(command.commandId) ?? []
    if (list.every(isTerminal)) {
      command.status = list.some((i) => i.status === "Failed")
        ? "Failed"
        : list.some((i) => i.status === "TimedOut")
        ? "TimedOut"
        : list.every((i) => i.status === "Cancelled")
        ? "Cancelled"
        : "Success"
    } else if (list.some((i) => i.status === "Cancelling")) command.status = "Cancelling"
    else if (list.some((i) => i.status === "InProgress" || isTerminal(i))) command.status = "InProgress"
    else command.status = "Pending"
  }

  /**
   * An invocation ends. What the agent reports (`fromAgent`) reaches the service only while the agent is connected:
   * a disconnected agent's report waits for it to reconnect (the service keeps saying InProgress).
   */
  const finish = (inv: Invocation, status: Status, details: string, code: number, fromAgent = false) => {
    if (isTerminal(inv)) return
    if (fromAgent && instances.get(inv.instanceId)?.pingStatus !== "Online") {
      inv.report = { status, details, code }
      return
    }
    for (const t of inv.timers) clearTimeout(t)
    inv.timers = []
    inv.status = status
    inv.statusDetails = details
    inv.responseCode = code
    inv.endedAt ??= Date.now()
    const command = commands.get(inv.commandId)
    if (command !== undefined) updateCommandStatus(command)
  }

  const uploadOutput = async (command: Command, inv: Invocation) => {
    if (command.outputS3BucketName === "") return
    const prefix = outputKey(command.outputS3KeyPrefix, command.commandId, inv.instanceId, command.documentName)
    const urlOf = (k: string) =>
      `${
        (options.s3?.endpoint ?? `https://s3.${command.outputS3Region}.amazonaws.com`).replace(/\/$/, "")
      }/${command.outputS3BucketName}/${k}`
    if (s3 === undefined) return
    for (const [stream, chunks] of [["stdout", inv.stdout], ["stderr", inv.stderr]] as const) {
      const body = Buffer.concat(chunks)
      if (body.length === 0) continue
      const k = `${prefix}/${stream}`
      await s3.send(new PutObjectCommand({ Bucket: command.outputS3BucketName, Key: k, Body: body }))
      if (stream === "stdout") inv.stdoutUrl = urlOf(k)
      else inv.stderrUrl = urlOf(k)
    }
  }

  const execute = (command: Command, inv: Invocation, instance: Instance) => {
    inv.status = "InProgress"
    inv.statusDetails = "InProgress"
    inv.startedAt = Date.now()
    inv.executions++
    updateCommandStatus(command)
    const scriptDir = path.join(instance.dir, ".ssm", command.commandId)
    fs.mkdirSync(scriptDir, { recursive: true })
    const text = (command.parameters.commands ?? []).join("\n") + "\n"
    const windows = command.documentName === "AWS-RunPowerShellScript"
    const scriptPath = path.join(scriptDir, windows ? "_script.ps1" : "_script.sh")
    fs.writeFileSync(scriptPath, text, { mode: 0o700 })
    const wd = command.parameters.workingDirectory?.[0]
    const cwd = wd !== undefined && wd !== "" ? wd : instance.dir
    const file = windows ? (options.pwsh ?? "pwsh") : "/bin/sh"
    const args = windows
      ? ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", scriptPath]
      : [scriptPath]
    const env: Record<string, string | undefined> = {
      ...process.env,
      PATH: `${binDir}${path.delimiter}${process.env.PATH ?? ""}`,
      // what the SSM agent sets for the processes it runs (agent/executers prepareEnvironment)
      AWS_SSM_INSTANCE_ID: instance.id,
      AWS_SSM_REGION_NAME: options.region,
      AWS_SSM_PLATFORM_NAME: platformName(instance),
      AWS_SSM_PLATFORM_VERSION: platformVersion(instance),
      RUNCMD_SSM_EMULATOR_ENDPOINT: options.endpoint()
    }
    let child: cp.ChildProcess
    try {
      child = cp.spawn(file, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    } catch (e) {
      inv.stderr.push(Buffer.from(`failed to run commands: ${String(e)}\n`))
      finish(inv, "Failed", "Failed", 1, true)
      return
    }
    inv.child = child
    if (instance.disconnectOnStart) {
      instance.disconnectOnStart = false
      setPingStatus(instance.id, "ConnectionLost")
    }
    child.stdout!.on("data", (d: Buffer) => inv.stdout.push(d))
    child.stderr!.on("data", (d: Buffer) => inv.stderr.push(d))
    child.on("error", (e) => {
      inv.stderr.push(Buffer.from(`failed to run commands: ${e.message}\n`))
    })
    const seconds = Number(command.parameters.executionTimeout?.[0] ?? "3600")
    let timedOut = false
    inv.timers.push(setTimeout(() => {
      timedOut = true
      killGroup(child, "SIGKILL")
    }, seconds * 1000))
    // the agent ends the command when the process exits; a background process left holding the output pipes gets
    // a second to write, then its output is no longer collected
    const ended = new Promise<void>((resolve) => child.once("close", () => resolve()))
    // a quiet second after the exit ends the collection (reset by every chunk: a busy machine reads late)
    const quiet = () =>
      new Promise<void>((resolve) => {
        let fresh = false
        // timers run before pending pipe reads in an event loop turn: decide only after that turn's reads
        const check = () => {
          if (fresh) {
            fresh = false
            setTimeout(() => setImmediate(check), 1000)
          } else resolve()
        }
        setTimeout(() => setImmediate(check), 1000)
        const saw = () => {
          fresh = true
        }
        child.stdout!.on("data", saw)
        child.stderr!.on("data", saw)
      })
    child.on("exit", (code, signal) => {
      void Promise.race([ended, quiet()]).then(() => {
        child.stdout!.destroy()
        child.stderr!.destroy()
        onEnd(code, signal)
      })
    })
    const onEnd = (code: number | null, signal: NodeJS.Signals | null) => {
      inv.child = undefined
      inv.stdoutText = Buffer.concat(inv.stdout).toString("utf8")
      inv.stderrText = Buffer.concat(inv.stderr).toString("utf8")
      const responseCode = code ?? -1
      void uploadOutput(command, inv).catch((e) => {
        inv.stderr.push(Buffer.from(`\nfailed to upload output to S3: ${String(e)}\n`))
        inv.stderrText = Buffer.concat(inv.stderr).toString("utf8")
      }).finally(() => {
        if (inv.cancelRequested) finish(inv, "Cancelled", "Cancelled", responseCode, true)
        else if (timedOut) finish(inv, "TimedOut", "ExecutionTimedOut", responseCode, true)
        else if (signal === null && code === 0) finish(inv, "Success", "Success", 0, true)
        else finish(inv, "Failed", "Failed", responseCode, true)
      })
    }
  }

  const killGroup = (child: cp.ChildProcess, signal: NodeJS.Signals) => {
    if (child.pid === undefined) return
    try {
      process.kill(-child.pid, signal)
    } catch {
      // gone already
    }
  }

  /** When a command expires: its delivery timeout plus its execution timeout after it was sent. */
  const expiresAfterMs = (command: Command) =>
    command.requestedAt + (command.timeoutSeconds + Number(command.parameters.executionTimeout?.[0] ?? "3600")) * 1000

  /** Delivers the command when the instance is online; offline: Delayed until online or the delivery timeout. */
  const tryDeliver = (command: Command, inv: Invocation) => {
    if (closed || inv.status !== "Pending" && inv.status !== "Delayed") return
    const instance = instances.get(inv.instanceId)!
    if (instance.pingStatus === "Online") return execute(command, inv, instance)
    inv.status = "Delayed"
    inv.statusDetails = "Delayed"
    updateCommandStatus(command)
    inv.timers.push(setTimeout(() => tryDeliver(command, inv), 100))
  }

  const sendCommand = (body: Record<string, unknown>) => {
    const documentName = str(body, "DocumentName", true)!
    if (documentName !== "AWS-RunShellScript" && documentName !== "AWS-RunPowerShellScript") {
      throw new ServiceError("InvalidDocument", `Document ${documentName} does not exist in your account`)
    }
    if (body.Targets !== undefined) {
      throw new ServiceError("InvalidParameters", "the emulator supports InstanceIds, not Targets")
    }
    const ids = body.InstanceIds
    if (!Array.isArray(ids) || ids.length === 0 || ids.some((i) => typeof i !== "string")) {
      throw new ServiceError("InvalidParameters", "InstanceIds must be a non-empty list of instance ids")
    }
    if (ids.length > 50) {
      throw new ServiceError(
        "ValidationException",
        `1 validation error detected: Value '[${ids.join(", ")}]' at 'instanceIds' failed to satisfy constraint: ` +
          "Member must have length less than or equal to 50"
      )
    }
    if (new Set(ids).size !== ids.length) throw new ServiceError("DuplicateInstanceId", "duplicate instance ids")
    for (const id of ids as Array<string>) {
      const instance = instances.get(id)
      if (instance === undefined) {
        throw new ServiceError("InvalidInstanceId", "Instances not in a valid state for account")
      }
      if ((instance.platform === "Windows") !== (documentName === "AWS-RunPowerShellScript")) {
        throw new ServiceError(
          "UnsupportedPlatformType",
          `The document ${documentName} does not support the platform of ${id} (${instance.platform})`
        )
      }
    }
    const params = (body.Parameters ?? {}) as Record<string, unknown>
    const parameters: Record<string, Array<string>> = {}
    for (const [k, v] of Object.entries(params)) {
      if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
        throw new ServiceError("InvalidParameters", `parameter ${k} must be a list of strings`)
      }
      if (!["commands", "workingDirectory", "executionTimeout"].includes(k)) {
        throw new ServiceError("InvalidParameters", `Parameter "${k}" is not defined for document ${documentName}`)
      }
      parameters[k] = v as Array<string>
    }
    if (parameters.commands === undefined || parameters.commands.length === 0) {
      throw new ServiceError("InvalidParameters", "Parameter \"commands\" is required")
    }
    const executionTimeout = parameters.executionTimeout?.[0]
    if (executionTimeout !== undefined) {
      const n = Number(executionTimeout)
      if (!Number.isInteger(n) || n < 1 || n > 172_800) {
        throw new ServiceError("InvalidParameters", "executionTimeout must be a whole number of seconds, 1 to 172800")
      }
    }
    const timeoutSeconds = body.TimeoutSeconds === undefined ? 3600 : body.TimeoutSeconds
    if (
      typeof timeoutSeconds !== "number" || !Number.isInteger(timeoutSeconds) || timeoutSeconds < 30 ||
      timeoutSeconds > 2_592_000
    ) {
      throw new ServiceError(
        "ValidationException",
        "1 validation error detected: Value at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000"
      )
    }
    const bucket = str(body, "OutputS3BucketName") ?? ""
    const command: Command = {
      commandId: crypto.randomUUID(),
      documentName,
      comment: str(body, "Comment") ?? "",
      parameters,
      instanceIds: [...(ids as Array<string>)],
      requestedAt: Date.now(),
      timeoutSeconds,
      outputS3BucketName: bucket,
      outputS3KeyPrefix: str(body, "OutputS3KeyPrefix") ?? "",
      outputS3Region: str(body, "OutputS3Region") ?? options.region,
      maxConcurrency: str(body, "MaxConcurrency") ?? "50",
      maxErrors: str(body, "MaxErrors") ?? "0",
      status: "Pending"
    }
    commands.set(command.commandId, command)
    const list: Array<Invocation> = []
    for (const id of command.instanceIds) {
      const inv: Invocation = {
        commandId: command.commandId,
        instanceId: id,
        requestedAt: command.requestedAt,
        visibleAt: command.requestedAt + visibilityWindowMs,
        status: "Pending",
        statusDetails: "Pending",
        responseCode: -1,
        startedAt: undefined,
        endedAt: undefined,
        stdout: [],
        stderr: [],
        stdoutText: "",
        stderrText: "",
        child: undefined,
        cancelRequested: false,
        stdoutUrl: "",
        stderrUrl: "",
        timers: [],
        executions: 0,
        report: undefined,
        heard: undefined,
        cancelPending: false
      }
      invocations.set(key(command.commandId, id), inv)
      list.push(inv)
      inv.timers.push(setTimeout(() => tryDeliver(command, inv), options.deliveryDelayMs))
      // the delivery timeout: a command not picked up in time never runs
      const deliveryTimer = setTimeout(() => {
        if (inv.status === "Pending" || inv.status === "Delayed") finish(inv, "TimedOut", "DeliveryTimedOut", -1)
      }, timeoutSeconds * 1000)
      inv.timers.push(deliveryTimer)
      // the command expires (ExpiresAfter: TimeoutSeconds + executionTimeout after it was sent): an invocation the
      // service has heard no end of (its agent disconnected mid-run) ends DeliveryTimedOut
      inv.timers.push(setTimeout(() => {
        if (!isTerminal(inv)) finish(inv, "TimedOut", "DeliveryTimedOut", -1)
      }, expiresAfterMs(command) - command.requestedAt))
    }
    byCommand.set(command.commandId, list)
    return { Command: commandShape(command) }
  }

  // the bucket fields only when output goes to S3 (a bucket name has 3 to 63 characters)
  const s3Fields = (command: Command) =>
    command.outputS3BucketName === "" ? {} : {
      OutputS3Region: command.outputS3Region,
      OutputS3BucketName: command.outputS3BucketName,
      OutputS3KeyPrefix: command.outputS3KeyPrefix
    }

  const commandShape = (command: Command) => {
    const list = byCommand.get(command.commandId) ?? []
    return {
      CommandId: command.commandId,
      DocumentName: command.documentName,
      DocumentVersion: "$DEFAULT",
      Comment: command.comment,
      ExpiresAfter: expiresAfterMs(command) / 1000,
      Parameters: command.parameters,
      InstanceIds: command.instanceIds,
      Targets: [],
      RequestedDateTime: command.requestedAt / 1000,
      Status: command.status,
      StatusDetails: command.status,
      ...s3Fields(command),
      MaxConcurrency: command.maxConcurrency,
      MaxErrors: command.maxErrors,
      TargetCount: list.length,
      CompletedCount: list.filter(isTerminal).length,
      ErrorCount: list.filter((i) => i.status === "Failed").length,
      DeliveryTimedOutCount: list.filter((i) => i.statusDetails === "DeliveryTimedOut").length,
      ServiceRole: "",
      NotificationConfig: { NotificationArn: "", NotificationEvents: [], NotificationType: "Command" },
      CloudWatchOutputConfig: { CloudWatchOutputEnabled: false },
      TimeoutSeconds: command.timeoutSeconds
    }
  }

  const lookup = (body: Record<string, unknown>) => {
    const commandId = str(body, "CommandId", true)!
    const instanceId = str(body, "InstanceId", true)!
    if (!/^[0-9a-f-]{36}$/.test(commandId)) throw new ServiceError("InvalidCommandId", "Invalid command id.")
    const inv = invocations.get(key(commandId, instanceId))
    if (inv === undefined || Date.now() < inv.visibleAt) {
      throw new ServiceError("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist)")
    }
    return { inv, command: commands.get(commandId)! }
  }

  const elapsed = (inv: Invocation) =>
    inv.startedAt === undefined ? "" : `PT${(((inv.endedAt ?? Date.now()) - inv.startedAt) / 1000).toFixed(3)}S`

  const getCommandInvocation = (body: Record<string, unknown>) => {
    const { command, inv } = lookup(body)
    const plugin = str(body, "PluginName")
    if (plugin !== undefined && plugin !== pluginName(command.documentName)) {
      throw new ServiceError("InvalidPluginName", "The plugin name isn't valid.")
    }
    const live = inv.status === "InProgress" || inv.status === "Cancelling"
    const out = live ? inv.heard?.stdout ?? Buffer.concat(inv.stdout).toString("utf8") : inv.stdoutText
    const err = live ? inv.heard?.stderr ?? Buffer.concat(inv.stderr).toString("utf8") : inv.stderrText
    return {
      CommandId: command.commandId,
      InstanceId: inv.instanceId,
      Comment: command.comment,
      DocumentName: command.documentName,
      DocumentVersion: "$DEFAULT",
      PluginName: pluginName(command.documentName),
      ResponseCode: inv.responseCode,
      ExecutionStartDateTime: isoOrEmpty(inv.startedAt),
      ExecutionElapsedTime: elapsed(inv),
      ExecutionEndDateTime: isoOrEmpty(inv.endedAt),
      Status: inv.status,
      StatusDetails: inv.statusDetails,
      StandardOutputContent: capChars(out, INLINE_OUTPUT_CAP),
      StandardOutputUrl: inv.stdoutUrl,
      StandardErrorContent: capChars(err, INLINE_OUTPUT_CAP),
      StandardErrorUrl: inv.stderrUrl,
      CloudWatchOutputConfig: { CloudWatchOutputEnabled: false }
    }
  }

  const listOutput = (inv: Invocation) => {
    const text = inv.stdoutText + (inv.stderrText === "" ? "" : `\n----------ERROR-------\n${inv.stderrText}`)
    return text.length > LIST_OUTPUT_CAP ? capChars(text, LIST_OUTPUT_CAP) + "\n---Output truncated---" : text
  }

  const invocationShape = (inv: Invocation, details: boolean) => {
    const command = commands.get(inv.commandId)!
    const instance = instances.get(inv.instanceId)!
    return {
      CommandId: inv.commandId,
      InstanceId: inv.instanceId,
      InstanceName: instance.name,
      Comment: command.comment,
      DocumentName: command.documentName,
      DocumentVersion: "$DEFAULT",
      RequestedDateTime: inv.requestedAt / 1000,
      Status: inv.status,
      StatusDetails: inv.statusDetails,
      TraceOutput: "",
      StandardOutputUrl: inv.stdoutUrl,
      StandardErrorUrl: inv.stderrUrl,
      CommandPlugins: details
        ? [{
          Name: pluginName(command.documentName),
          Status: inv.status === "Delayed" ? "Pending" : inv.status,
          StatusDetails: inv.statusDetails,
          ResponseCode: inv.responseCode,
          ...(inv.startedAt === undefined ? {} : { ResponseStartDateTime: inv.startedAt / 1000 }),
          ...(inv.endedAt === undefined ? {} : { ResponseFinishDateTime: inv.endedAt / 1000 }),
          Output: isTerminal(inv) ? listOutput(inv) : "",
          StandardOutputUrl: inv.stdoutUrl,
          StandardErrorUrl: inv.stderrUrl,
          ...s3Fields(command)
        }]
        : [],
      ServiceRole: "",
      NotificationConfig: { NotificationArn: "", NotificationEvents: [], NotificationType: "Command" },
      CloudWatchOutputConfig: { CloudWatchOutputEnabled: false }
    }
  }

  const listCommandInvocations = (body: Record<string, unknown>) => {
    const commandId = str(body, "CommandId")
    const instanceId = str(body, "InstanceId")
    if (commandId !== undefined && !commands.has(commandId)) {
      throw new ServiceError("InvalidCommandId", "Invalid command id.")
    }
    const now = Date.now()
    const all = (commandId === undefined ? [...invocations.values()] : byCommand.get(commandId) ?? [])
      .filter((i) => now >= i.visibleAt && (instanceId === undefined || i.instanceId === instanceId))
    const { next, slice } = page(all, body, 50)
    return {
      CommandInvocations: slice.map((i) => invocationShape(i, body.Details === true)),
      ...(next === undefined ? {} : { NextToken: next })
    }
  }

  const listCommands = (body: Record<string, unknown>) => {
    const commandId = str(body, "CommandId")
    const instanceId = str(body, "InstanceId")
    if (commandId !== undefined && !commands.has(commandId)) {
      throw new ServiceError("InvalidCommandId", "Invalid command id.")
    }
    const all = [...commands.values()].filter((c) =>
      (commandId === undefined || c.commandId === commandId) &&
      (instanceId === undefined || c.instanceIds.includes(instanceId))
    )
    const { next, slice } = page(all, body, 50)
    return { Commands: slice.map(commandShape), ...(next === undefined ? {} : { NextToken: next }) }
  }

  const cancelCommand = (body: Record<string, unknown>) => {
    const commandId = str(body, "CommandId", true)!
    const command = commands.get(commandId)
    if (command === undefined) throw new ServiceError("InvalidCommandId", "Invalid command id.")
    const ids = (body.InstanceIds as Array<string> | undefined) ?? command.instanceIds
    for (const id of ids) {
      const inv = invocations.get(key(commandId, id))
      if (inv === undefined) throw new ServiceError("InvalidInstanceId", `Instance ${id} is not part of the command`)
      if (isTerminal(inv) || inv.cancelRequested || inv.cancelPending) continue
      inv.cancelRequested = true
      if (inv.status === "Pending" || inv.status === "Delayed") {
        finish(inv, "Cancelled", "Cancelled", -1)
        continue
      }
      inv.status = "Cancelling"
      inv.statusDetails = "Cancelling"
      updateCommandStatus(command)
      if (instances.get(id)?.pingStatus !== "Online") {
        // a disconnected agent gets the cancel when it reconnects
        inv.cancelRequested = false
        inv.cancelPending = true
        continue
      }
      deliverCancel(inv)
    }
    return {}
  }

  /** The agent stops the command: TERM to its process group, KILL after the grace. */
  const deliverCancel = (inv: Invocation) => {
    inv.cancelRequested = true
    const child = inv.child
    if (child !== undefined) {
      killGroup(child, "SIGTERM")
      inv.timers.push(setTimeout(() => killGroup(child, "SIGKILL"), options.cancelKillAfterMs))
    }
  }

  const describeInstanceInformation = (body: Record<string, unknown>) => {
    const filters = (body.Filters ?? []) as Array<{ Key: string; Values: Array<string> }>
    const legacy = (body.InstanceInformationFilterList ?? []) as Array<{ key: string; valueSet: Array<string> }>
    if (filters.length > 0 && legacy.length > 0) {
      throw new ServiceError("InvalidFilterKey", "Filters and InstanceInformationFilterList cannot be used together")
    }
    const all = [
      ...filters.map((f) => ({ key: f.Key, values: f.Values })),
      ...legacy.map((f) => ({ key: f.key, values: f.valueSet }))
    ]
    let list = [...instances.values()]
    for (const f of all) {
      if (!Array.isArray(f.values) || f.values.length === 0) {
        throw new ServiceError("InvalidInstanceInformationFilterValue", `filter ${f.key} needs values`)
      }
      const values = new Set(f.values)
      if (f.key === "InstanceIds") list = list.filter((i) => values.has(i.id))
      else if (f.key === "PingStatus") list = list.filter((i) => values.has(i.pingStatus))
      else if (f.key === "PlatformTypes") list = list.filter((i) => values.has(i.platform))
      else if (f.key === "tag-key") list = list.filter((i) => Object.keys(i.tags).some((k) => values.has(k)))
      else if (f.key.startsWith("tag:")) {
        const tag = f.key.slice(4)
        list = list.filter((i) => i.tags[tag] !== undefined && values.has(i.tags[tag]))
      } else if (f.key === "ResourceType") list = list.filter(() => values.has("EC2Instance"))
      else throw new ServiceError("InvalidFilterKey", `The filter key ${f.key} is not valid`)
    }
    const { next, slice } = page(list, body, 50, 5)
    return {
      InstanceInformationList: slice.map((i) => ({
        InstanceId: i.id,
        PingStatus: i.pingStatus,
        LastPingDateTime: i.lastPing,
        AgentVersion: "3.3.1142.0",
        IsLatestVersion: true,
        PlatformType: i.platform,
        PlatformName: platformName(i),
        PlatformVersion: platformVersion(i),
        ResourceType: "EC2Instance",
        IPAddress: "127.0.0.1",
        ComputerName: i.name,
        SourceId: i.id,
        SourceType: "AWS::EC2::Instance"
      })),
      ...(next === undefined ? {} : { NextToken: next })
    }
  }

  const putParameter = (body: Record<string, unknown>) => {
    const name = str(body, "Name", true)!
    const value = str(body, "Value", true)!
    const type = str(body, "Type") ?? "String"
    if (!["String", "StringList", "SecureString"].includes(type)) {
      throw new ServiceError("UnsupportedParameterType", `type ${type} is not supported`)
    }
    const existing = parameters.get(name)
    if (existing !== undefined && body.Overwrite !== true) {
      throw new ServiceError(
        "ParameterAlreadyExists",
        "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."
      )
    }
    const version = (existing?.version ?? 0) + 1
    parameters.set(name, { name, type, value, version, modifiedAt: Date.now() })
    return { Version: version, Tier: "Standard" }
  }

  const getParameter = (body: Record<string, unknown>) => {
    const name = str(body, "Name", true)!
    const p = parameters.get(name)
    if (p === undefined) throw new ServiceError("ParameterNotFound", `Parameter ${name} not found.`)
    const decrypt = body.WithDecryption === true || p.type !== "SecureString"
    return {
      Parameter: {
        Name: p.name,
        Type: p.type,
        Value: decrypt ? p.value : Buffer.from(`kms:${hex(32)}`).toString("base64"),
        Version: p.version,
        LastModifiedDate: p.modifiedAt / 1000,
        ARN: `arn:aws:ssm:${options.region}:123456789012:parameter${p.name.startsWith("/") ? "" : "/"}${p.name}`,
        DataType: "text"
      }
    }
  }

  const deleteParameter = (body: Record<string, unknown>) => {
    const name = str(body, "Name", true)!
    if (!parameters.delete(name)) throw new ServiceError("ParameterNotFound", `Parameter ${name} not found.`)
    deletedParameters.push(name)
    return {}
  }

  const handlers: Record<string, (body: Record<string, unknown>) => unknown> = {
    SendCommand: sendCommand,
    GetCommandInvocation: getCommandInvocation,
    ListCommandInvocations: listCommandInvocations,
    ListCommands: listCommands,
    CancelCommand: cancelCommand,
    DescribeInstanceInformation: describeInstanceInformation,
    PutParameter: putParameter,
    GetParameter: getParameter,
    DeleteParameter: deleteParameter
  }

  /**
   * The agent's connection: disconnected, the service hears nothing more from it (its commands stay InProgress,
   * their output as last heard); reconnected, it reports what ended meanwhile and gets the cancels sent meanwhile.
   */
  function setPingStatus(id: string, status: PingStatus) {
    const instance = instances.get(id)
    if (instance === undefined) throw new Error(`no instance ${id}`)
    const was = instance.pingStatus
    instance.pingStatus = status
    const running = [...invocations.values()].filter((i) => i.instanceId === id && !isTerminal(i))
    if (was === "Online" && status !== "Online") {
      for (const inv of running) {
        if (inv.status !== "InProgress" && inv.status !== "Cancelling") continue
        inv.heard = {
          stdout: Buffer.concat(inv.stdout).toString("utf8"),
          stderr: Buffer.concat(inv.stderr).toString("utf8")
        }
      }
    }
    if (status === "Online") {
      instance.lastPing = nowSeconds()
      for (const inv of running) {
        inv.heard = undefined
        if (inv.cancelPending) {
          inv.cancelPending = false
          if (inv.report === undefined) deliverCancel(inv)
        }
        const report = inv.report
        if (report !== undefined) {
          inv.report = undefined
          finish(inv, report.status, report.details, report.code)
        }
      }
    }
  }

  const close = async () => {
    closed = true
    for (const inv of invocations.values()) {
      for (const t of inv.timers) clearTimeout(t)
      if (inv.child !== undefined) killGroup(inv.child, "SIGKILL")
    }
    const alive = [...invocations.values()].map((i) => i.child).filter((c) => c !== undefined)
    await Promise.all(alive.map((c) =>
      new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve()
        const t = setTimeout(resolve, 5000)
        c.once("close", () => {
          clearTimeout(t)
          resolve()
        })
      })
    ))
    s3?.destroy()
  }

  return {
    handlers,
    addInstance,
    instances,
    commands,
    invocations,
    parameters,
    deletedParameters,
    setPingStatus,
    disconnectOnStart: (id: string) => {
      const instance = instances.get(id)
      if (instance === undefined) throw new Error(`no instance ${id}`)
      instance.disconnectOnStart = true
    },
    setVisibilityWindow: (ms: number) => {
      visibilityWindowMs = ms
    },
    close
  }
}

/** @internal */
export type Service = ReturnType<typeof makeService>

/** @internal */
export const defaultWorkDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-ssm-emulator-"))
