/**
 * The emulator's HTTP(S) server: authentication (Basic over HTTPS; NTLM over HTTP with every body sealed, plain
 * bodies refused as Windows does with `AllowUnencrypted=false`), the shell resource's six actions with `RelatesTo`
 * echoed, the per-user quotas, injected faults, and a record of every request (the decrypted envelope).
 *
 * @internal
 */
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import * as Https from "node:https"
import type * as Net from "node:net"
import * as Ntlm from "../ntlm/ntlm.js"
import * as Wsman from "../wsman.js"
import * as Xml from "../xml.js"
import type { Certificate } from "./certificate.js"
import * as Shells from "./shells.js"

/** @internal */
export interface RecordedRequest {
  readonly at: number
  /** The action's short name (`Create`, `Command`, `Receive`, `Send`, `Signal`, `Delete`), or `""` for none. */
  readonly action: string
  readonly user: string | undefined
  readonly shellId: string | undefined
  /** The envelope as the server read it (decrypted when it came sealed); empty for a bare authentication POST. */
  readonly envelope: string
  /** The bytes on the wire, as received (sealed for NTLM). */
  readonly raw: Buffer
  readonly encrypted: boolean
  /** The HTTP status answered. */
  readonly status: number
}

/** @internal */
export type InjectedFault = "max-shells" | "max-operations" | "unauthorized" | "shell-gone" | "access-denied"

/** @internal */
export interface ServerOptions {
  readonly https: boolean
  readonly certificate: Certificate | undefined
  readonly users: Readonly<Record<string, string>>
  readonly pwsh: string
  readonly maxShellsPerUser: number
  readonly maxConcurrentOperationsPerUser: number
  readonly port: number
}

/** @internal */
export interface Server {
  readonly port: number
  readonly requests: Array<RecordedRequest>
  readonly shells: Map<string, Shells.Shell>
  readonly inject: (action: Wsman.ActionName | "any", fault: InjectedFault, times: number) => void
  /** Delay added before every Receive answer (ms), or 0. */
  slowReceiveMs: number
  readonly deleteShells: () => Promise<number>
  readonly close: () => Promise<void>
}

interface NtlmState {
  negotiate?: Buffer | undefined
  issued?: Ntlm.ServerChallenge | undefined
  session?: Ntlm.Session | undefined
  user?: string | undefined
}

const MAX_RECEIVE_BYTES = 192 * 1024

const FAULTS: Record<
  InjectedFault,
  { readonly status: number; readonly subcode: string; readonly code: number; readonly message: string }
> = {
  "max-shells": {
    status: 500,
    subcode: "QuotaLimit",
    code: Wsman.FAULT.MaxShells,
    message:
      "The WS-Management service cannot process the request. This user is allowed a maximum number of shells, which has been exceeded. Close existing shells or raise the quota for this user."
  },
  "max-operations": {
    status: 500,
    subcode: "QuotaLimit",
    code: Wsman.FAULT.MaxOperations,
    message:
      "The WS-Management service cannot process the request. This user has exceeded the maximum number of concurrent operations. Wait for existing operations to complete or raise the quota for this user."
  },
  "shell-gone": {
    status: 500,
    subcode: "InvalidSelectors",
    code: Wsman.FAULT.ShellNotFound,
    message:
      "The request for the Windows Remote Shell failed because the shell was not found on the server. Possible causes are: the specified shell either has completed or is not valid, or the shell has been deleted."
  },
  "access-denied": {
    status: 500,
    subcode: "AccessDenied",
    code: Wsman.FAULT.AccessDenied,
    message: "Access is denied."
  },
  unauthorized: { status: 401, subcode: "", code: 0, message: "" }
}

const readBody = (req: Http.IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const parts: Array<Buffer> = []
    req.on("data", (d: Buffer) => parts.push(d))
    req.on("end", () => resolve(Buffer.concat(parts)))
    req.on("error", reject)
  })

const upperId = () => Crypto.randomUUID().toUpperCase()

/** @internal */
export const start = async (options: ServerOptions): Promise<Server> => {
  const requests: Array<RecordedRequest> = []
  const shells = new Map<string, Shells.Shell>()
  const ntlmBySocket = new WeakMap<Net.Socket, NtlmState>()
  const injected: Array<{ action: Wsman.ActionName | "any"; fault: InjectedFault; times: number }> = []
  const operations = new Map<string, number>()
  const ntHashes = Object.fromEntries(Object.entries(options.users).map(([u, p]) => [u.toLowerCase(), Ntlm.ntowfv1(p)]))
  const sockets = new Set<Net.Socket>()
  const abort = new AbortController()

  const takeInjected = (action: string): InjectedFault | undefined => {
    const i = injected.findIndex((f) =>
      (action === "auth") === (f.fault === "unauthorized") &&
      (action === "auth" || f.action === "any" || f.action === action)
    )
    if (i < 0) return undefined
    const f = injected[i]!
    if (--f.times <= 0) injected.splice(i, 1)
    return f.fault
  }

  const authenticate = (
    req: Http.IncomingMessage,
    res: Http.ServerResponse
  ): { readonly user: string; readonly session: Ntlm.Session | undefined } | "answered" => {
    const header = req.headers.authorization ?? ""
    if (options.https) {
      const m = /^Basic\s+(\S+)$/i.exec(header)
      if (m !== null) {
        const decoded = Buffer.from(m[1]!, "base64").toString("utf8")
        const colon = decoded.indexOf(":")
        const user = decoded.slice(0, colon)
        const password = options.users[user]
        if (colon > 0 && password !== undefined && password === decoded.slice(colon + 1)) {
          return { user, session: undefined }
        }
      }
      res.writeHead(401, { "WWW-Authenticate": "Basic realm=\"WSMAN\"", "Content-Length": "0" })
      res.end()
      return "answered"
    }
    const socket = req.socket
    const state = ntlmBySocket.get(socket) ?? {}
    ntlmBySocket.set(socket, state)
    const m = /^(Negotiate|NTLM)\s+(\S+)$/i.exec(header)
    if (m !== null) {
      const token = Buffer.from(m[2]!, "base64")
      const type = token.length >= 12 ? token.readUInt32LE(8) : 0
      if (type === 1) {
        state.negotiate = token
        state.issued = Ntlm.challenge(token, "EMULATOR", "WORKGROUP")
        state.session = undefined
        res.writeHead(401, {
          "WWW-Authenticate": `${m[1]} ${state.issued.message.toString("base64")}`,
          "Content-Length": "0"
        })
        res.end()
        return "answered"
      }
      if (type === 3 && state.negotiate !== undefined && state.issued !== undefined) {
        const { user } = Ntlm.readAuthenticate(token)
        const ntHash = ntHashes[user.toLowerCase()]
        const session = ntHash === undefined ? undefined : Ntlm.verify(state.negotiate, state.issued, token, ntHash)
        state.negotiate = undefined
        state.issued = undefined
        if (session !== undefined) {
          state.session = session
          state.user = user
          return { user, session }
        }
      }
    } else if (state.session !== undefined && state.user !== undefined) {
      return { user: state.user, session: state.session }
    }
    res.writeHead(401, { "WWW-Authenticate": "Negotiate", "Content-Length": "0" })
    res.end()
    return "answered"
  }

  const reply = (
    res: Http.ServerResponse,
    session: Ntlm.Session | undefined,
    status: number,
    xml: string
  ): number => {
    const body = Buffer.from(xml, "utf8")
    if (session === undefined) {
      res.writeHead(status, { "Content-Type": "application/soap+xml;charset=UTF-8", "Content-Length": body.length })
      res.end(body)
    } else {
      const sealed = Ntlm.wrap(session, body)
      res.writeHead(status, { "Content-Type": Ntlm.ENCRYPTED_CONTENT_TYPE, "Content-Length": sealed.length })
      res.end(sealed)
    }
    return status
  }

  const handle = async (req: Http.IncomingMessage, res: Http.ServerResponse): Promise<void> => {
    const raw = await readBody(req)
    const record = (entry: Omit<RecordedRequest, "at" | "raw">): void => {
      requests.push({ at: Date.now(), raw, ...entry })
    }
    if (req.method !== "POST" || !(req.url ?? "").toLowerCase().startsWith("/wsman")) {
      res.writeHead(404, { "Content-Length": "0" })
      res.end()
      return record({ action: "", user: undefined, shellId: undefined, envelope: "", encrypted: false, status: 404 })
    }
    const forced = takeInjected("auth")
    const auth = forced === "unauthorized" ? "answered" : authenticate(req, res)
    if (auth === "answered") {
      if (forced === "unauthorized") {
        res.writeHead(401, { "Content-Length": "0" })
        res.end()
      }
      return record({ action: "", user: undefined, shellId: undefined, envelope: "", encrypted: false, status: 401 })
    }
    const { session, user } = auth
    let envelope: string
    const encrypted = (req.headers["content-type"] ?? "").startsWith("multipart/encrypted")
    if (session !== undefined && raw.length > 0) {
      if (!encrypted) {
        // AllowUnencrypted=false: a plain body over HTTP is refused
        res.writeHead(401, { "Content-Length": "0" })
        res.end()
        return record({ action: "", user, shellId: undefined, envelope: raw.toString("utf8"), encrypted, status: 401 })
      }
      try {
        envelope = Ntlm.unwrap(session, raw).toString("utf8")
      } catch {
        res.writeHead(400, { "Content-Length": "0" })
        res.end()
        return record({ action: "", user, shellId: undefined, envelope: "", encrypted, status: 400 })
      }
    } else {
      envelope = raw.toString("utf8")
    }
    if (envelope.trim() === "") {
      // the authentication POST (pywinrm and our client set up the NTLM context with an empty body)
      res.writeHead(200, { "Content-Length": "0" })
      res.end()
      return record({ action: "", user, shellId: undefined, envelope, encrypted, status: 200 })
    }
    let request: Wsman.Request
    try {
      request = Wsman.readRequest(envelope)
    } catch (error) {
      const status = reply(
        res,
        session,
        400,
        Wsman.fault(undefined, "InvalidMessageInformationHeader", 2150858817, String(error))
      )
      return record({ action: "", user, shellId: undefined, envelope, encrypted, status })
    }
    const action = Wsman.actionName(request.action) ?? request.action
    const answer = (status: number, xml: string) => {
      record({ action, user, shellId: request.shellId, envelope, encrypted, status: reply(res, session, status, xml) })
    }
    const fault = (kind: InjectedFault) => {
      const f = FAULTS[kind]
      if (f.status === 401) {
        res.writeHead(401, { "Content-Length": "0" })
        res.end()
        return record({ action, user, shellId: request.shellId, envelope, encrypted, status: 401 })
      }
      answer(f.status, Wsman.fault(request.messageId, f.subcode, f.code, f.message))
    }
    const injectedFault = takeInjected(action)
    if (injectedFault !== undefined) return fault(injectedFault)
    const inFlight = operations.get(user) ?? 0
    if (inFlight >= options.maxConcurrentOperationsPerUser) return fault("max-operations")
    operations.set(user, inFlight + 1)
    try {
      await dispatch(action, request, user, answer, fault, req)
    } finally {
      operations.set(user, (operations.get(user) ?? 1) - 1)
    }
  }

  const dispatch = async (
    action: string,
    request: Wsman.Request,
    user: string,
    answer: (status: number, xml: string) => void,
    fault: (kind: InjectedFault) => void,
    req: Http.IncomingMessage
  ): Promise<void> => {
    if (action === "Create") {
      const owned = [...shells.values()].filter((s) => s.user === user).length
      if (owned >= options.maxShellsPerUser) return fault("max-shells")
      const id = upperId()
      shells.set(id, { id, user, commands: new Map() })
      return answer(200, Wsman.createShellResponse(request.messageId, endpointOf(req), id))
    }
    const shell = request.shellId === undefined ? undefined : shells.get(request.shellId)
    if (shell === undefined || shell.user !== user) return fault("shell-gone")
    switch (action) {
      case "Delete": {
        shells.delete(shell.id)
        await Promise.all([...shell.commands.values()].map(Shells.terminate))
        return answer(200, Wsman.emptyResponse("Delete", request.messageId))
      }
      case "Command": {
        const program = Xml.textOf(request.body, "Command") ?? ""
        // each Arguments element is part of a Windows command line (pywinrm sends one, joined by spaces)
        const args = Shells.splitCommandLine(Xml.findAll(request.body, "Arguments").map((a) => a.text).join(" "))
        const id = upperId()
        shell.commands.set(id, Shells.startCommand(id, options.pwsh, program, args))
        return answer(200, Wsman.commandResponse(request.messageId, id))
      }
      case "Send": {
        for (const stream of Xml.findAll(request.body, "Stream")) {
          const command = shell.commands.get(stream.attributes.CommandId ?? "")
          if (command === undefined) return fault("shell-gone")
          Shells.send(command, Buffer.from(stream.text.trim(), "base64"), stream.attributes.End === "true")
        }
        return answer(200, Wsman.emptyResponse("Send", request.messageId))
      }
      case "Signal": {
        const signal = Xml.find(request.body, "Signal")
        const command = shell.commands.get(signal?.attributes.CommandId ?? "")
        if (command !== undefined) {
          if (command.done === undefined) await Shells.terminate(command)
          // after a terminate the command is gone; its last output can still be received once if not yet Done
          if (command.reported) shell.commands.delete(command.id)
        }
        return answer(200, Wsman.emptyResponse("Signal", request.messageId))
      }
      case "Receive": {
        const desired = Xml.find(request.body, "DesiredStream")
        const command = shell.commands.get(desired?.attributes.CommandId ?? "")
        if (command === undefined) return fault("shell-gone")
        const timeoutMs = Math.min(60, request.operationTimeoutSeconds ?? 60) * 1000
        // the long poll ends early when the client goes away or the emulator stops
        const closed = new AbortController()
        const stop = () => closed.abort()
        req.socket.once("close", stop)
        abort.signal.addEventListener("abort", stop)
        await Shells.waitForOutput(command, timeoutMs, closed.signal).finally(() => {
          req.socket.off("close", stop)
          abort.signal.removeEventListener("abort", stop)
        })
        if (server.slowReceiveMs > 0) await new Promise((r) => setTimeout(r, server.slowReceiveMs))
        if (!shells.has(shell.id)) return fault("shell-gone")
        const chunks = Shells.take(command, MAX_RECEIVE_BYTES)
        const done = command.pending.length === 0 ? command.done : undefined
        if (chunks.length === 0 && done === undefined) {
          return answer(
            500,
            Wsman.fault(
              request.messageId,
              "TimedOut",
              Wsman.FAULT.OperationTimeout,
              "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."
            )
          )
        }
        if (done !== undefined) {
          command.reported = true
          if (!chunks.some((c) => c.name === "stdout")) chunks.push({ name: "stdout", bytes: new Uint8Array(0) })
          if (!chunks.some((c) => c.name === "stderr")) chunks.push({ name: "stderr", bytes: new Uint8Array(0) })
          for (const name of ["stdout", "stderr"]) {
            let last = chunks.length - 1
            while (chunks[last]!.name !== name) last--
            chunks[last] = { ...chunks[last]!, end: true }
          }
        }
        return answer(200, Wsman.receiveResponse(request.messageId, command.id, chunks, done))
      }
      default:
        return answer(
          400,
          Wsman.fault(
            request.messageId,
            "ActionNotSupported",
            2150858757,
            `The action is not supported by the service.`
          )
        )
    }
  }

  const endpointOf = (req: Http.IncomingMessage) =>
    `${options.https ? "https" : "http"}://${req.headers.host ?? "127.0.0.1"}/wsman`

  const listener = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
    handle(req, res).catch((error) => {
      if (!res.headersSent) res.writeHead(500, { "Content-Length": "0" })
      res.end()
      process.emitWarning(`WinRM emulator: ${String(error)}`)
    })
  }
  const http = options.https
    ? Https.createServer({ cert: options.certificate!.certPem, key: options.certificate!.keyPem }, listener)
    : Http.createServer(listener)
  // NTLM authenticates a connection: keep it open across requests, as Windows does
  http.keepAliveTimeout = 120_000
  http.headersTimeout = 130_000
  http.requestTimeout = 0
  http.on(options.https ? "secureConnection" : "connection", (socket: Net.Socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject)
    http.listen(options.port, "127.0.0.1", () => resolve())
  })

  const deleteShells = async () => {
    const all = [...shells.values()]
    shells.clear()
    await Promise.all(all.flatMap((s) => [...s.commands.values()].map(Shells.terminate)))
    for (const s of all) for (const c of s.commands.values()) Shells.wake(c)
    return all.length
  }

  const server: Server = {
    port: (http.address() as Net.AddressInfo).port,
    requests,
    shells,
    inject: (action, fault, times) => {
      injected.push({ action, fault, times })
    },
    slowReceiveMs: 0,
    deleteShells,
    close: async () => {
      abort.abort()
      await deleteShells()
      await new Promise<void>((resolve) => {
        http.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
    }
  }
  return server
}
