/**
 * The SSM emulator's HTTP front: AWS JSON 1.1 on 127.0.0.1 (`POST /`, `X-Amz-Target: AmazonSSM.<Operation>`),
 * request recording and fault injection, in front of the service.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { type InstanceSpec, makeService, type PingStatus, type S3Output, ServiceError } from "./service.js"

/** @internal */
export interface RecordedRequest {
  readonly operation: string
  /** The raw request body, as received. */
  readonly body: string
  readonly status: number
  /** The response body sent (parsed), for shape checks. */
  readonly response: unknown
  /** Epoch ms when it was received. */
  readonly at: number
  /** A fault injected instead of the service's answer, if any. */
  readonly fault?: string | undefined
}

/** @internal */
export interface FaultRule {
  readonly rate: number
  readonly operations?: ReadonlyArray<string> | undefined
}

/** @internal */
export interface EmulatorOptions {
  readonly port?: number | undefined
  readonly region?: string | undefined
  readonly instances?: number | ReadonlyArray<InstanceSpec> | undefined
  readonly s3?: S3Output | undefined
  readonly deliveryDelayMs?: number | undefined
  readonly cancelKillAfterMs?: number | undefined
  readonly workDir?: string | undefined
  readonly pwsh?: string | undefined
  /** Seed of the fault injection's random numbers (reproducible runs). */
  readonly seed?: number | undefined
}

/** A small seeded PRNG (mulberry32): reproducible fault injection. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const findPwsh = (): string | undefined => {
  const candidates = [
    process.env.RUNCMD_PWSH,
    ...(process.env.PATH ?? "").split(path.delimiter).filter((d) => d !== "").map((d) => path.join(d, "pwsh")),
    path.join(os.homedir(), ".dotnet", "tools", "pwsh")
  ]
  for (const c of candidates) {
    if (c === undefined || c === "") continue
    try {
      fs.accessSync(c, fs.constants.X_OK)
      return c
    } catch {
      // not this one
    }
  }
  return undefined
}

/** @internal */
export const start = async (options: EmulatorOptions = {}) => {
  const region = options.region ?? "us-east-1"
  const ownDir = options.workDir === undefined
  const workDir = options.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-ssm-emulator-"))
  let endpoint = ""
  const service = makeService({
    region,
    workDir,
    endpoint: () => endpoint,
    s3: options.s3,
    deliveryDelayMs: options.deliveryDelayMs ?? 20,
    cancelKillAfterMs: options.cancelKillAfterMs ?? 10_000,
    pwsh: options.pwsh ?? findPwsh()
  })
  const specs = typeof options.instances === "number"
    ? Array.from({ length: options.instances }, (): InstanceSpec => ({}))
    : options.instances ?? [{}]
  for (const spec of specs) service.addInstance(spec)

  const recorded: Array<RecordedRequest> = []
  const random = prng(options.seed ?? 42)
  let throttle: FaultRule | undefined
  let serverErrors: FaultRule | undefined
  const applies = (rule: FaultRule | undefined, operation: string) =>
    rule !== undefined && (rule.operations === undefined || rule.operations.includes(operation)) &&
    random() < rule.rate

  const sockets = new Set<import("node:net").Socket>()
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (d: Buffer) => chunks.push(d))
    req.on("end", () => {
      const at = Date.now()
      const body = Buffer.concat(chunks).toString("utf8")
      const target = String(req.headers["x-amz-target"] ?? "")
      const operation = target.startsWith("AmazonSSM.") ? target.slice("AmazonSSM.".length) : target
      const send = (status: number, response: unknown, fault?: string) => {
        recorded.push({ operation, body, status, response, at, ...(fault === undefined ? {} : { fault }) })
        const text = JSON.stringify(response)
        res.writeHead(status, {
          "content-type": "application/x-amz-json-1.1",
          "content-length": Buffer.byteLength(text),
          "x-amzn-requestid": crypto.randomUUID()
        })
        res.end(text)
      }
      const error = (e: ServiceError, fault?: string) => send(e.status, { __type: e.code, message: e.message }, fault)
      if (req.method !== "POST") return error(new ServiceError("UnknownOperationException", "POST / only", 404))
      if (!String(req.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256 Credential=")) {
        return error(new ServiceError("MissingAuthenticationTokenException", "Missing Authentication Token"))
      }
      const handler = service.handlers[operation]
      if (!target.startsWith("AmazonSSM.") || handler === undefined) {
        return error(new ServiceError("UnknownOperationException", `Unknown operation ${target}`))
      }
      if (applies(throttle, operation)) {
        return error(new ServiceError("ThrottlingException", "Rate exceeded"), "throttle")
      }
      if (applies(serverErrors, operation)) {
        return error(new ServiceError("InternalServerError", "An internal error occurred", 500), "5xx")
      }
      let parsed: Record<string, unknown>
      try {
        parsed = body === "" ? {} : JSON.parse(body)
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object")
      } catch {
        return error(new ServiceError("SerializationException", "the body is not a JSON object"))
      }
      try {
        send(200, handler(parsed))
      } catch (e) {
        if (e instanceof ServiceError) return error(e)
        error(new ServiceError("InternalServerError", String(e), 500))
      }
    })
  })
  // as AWS endpoints do: idle connections stay open long, so a client never reuses one the server is closing
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  server.on("connection", (s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  endpoint = `http://127.0.0.1:${port}`

  const close = async () => {
    await service.close()
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      for (const s of sockets) s.destroy()
    })
    if (ownDir) fs.rmSync(workDir, { recursive: true, force: true })
  }

  return {
    endpoint,
    port,
    region,
    workDir,
    service,
    recorded,
    setThrottle: (rule: FaultRule | undefined) => {
      throttle = rule
    },
    setServerErrors: (rule: FaultRule | undefined) => {
      serverErrors = rule
    },
    setPingStatus: (id: string, status: PingStatus) => service.setPingStatus(id, status),
    close
  }
}

/** @internal */
export type Started = Awaited<ReturnType<typeof start>>
