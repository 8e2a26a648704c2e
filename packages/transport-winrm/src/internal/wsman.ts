/**
 * The WS-Management shell resource (MS-WSMV 3.1.4.x, the `cmd` shell that pywinrm and Ansible drive): the
 * envelopes a client sends and a server answers, built as text, and what is read from them.
 *
 * @internal
 */
import * as Xml from "./xml.js"

/** @internal */
export const NS = {
  s: "http://www.w3.org/2003/05/soap-envelope",
  a: "http://schemas.xmlsoap.org/ws/2004/08/addressing",
  w: "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
  p: "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
  rsp: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
  x: "http://schemas.xmlsoap.org/ws/2004/09/transfer",
  f: "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
} as const

/** @internal */
export const RESOURCE_CMD = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"

/** @internal */
export const ACTION = {
  Create: "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
  Delete: "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
  Command: `${NS.rsp}/Command`,
  Receive: `${NS.rsp}/Receive`,
  Send: `${NS.rsp}/Send`,
  Signal: `${NS.rsp}/Signal`
} as const

/** @internal */
export type ActionName = keyof typeof ACTION

/** @internal */
export const actionName = (uri: string): ActionName | undefined =>
  (Object.keys(ACTION) as Array<ActionName>).find((name) => ACTION[name] === uri)

/** @internal */
export const COMMAND_STATE = {
  Done: `${NS.rsp}/CommandState/Done`,
  Running: `${NS.rsp}/CommandState/Running`,
  Pending: `${NS.rsp}/CommandState/Pending`
} as const

/** @internal */
export const SIGNAL = {
  terminate: `${NS.rsp}/signal/terminate`,
  ctrl_c: `${NS.rsp}/signal/ctrl_c`
} as const

/** WSManFault codes (MS-WSMV 2.2.4.x and the Windows error table) this package emits or interprets. @internal */
export const FAULT = {
  /** ERROR_WSMAN_OPERATION_TIMEDOUT: a Receive long poll ended with no output (not an error). */
  OperationTimeout: 2150858793,
  /** ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ (MaxShellsPerUser). */
  MaxShells: 2150859174,
  /** ERROR_WSMAN_QUOTA_MAX_OPERATIONS_USER_PPQ (MaxConcurrentOperationsPerUser). */
  MaxOperations: 2150859173,
  /** ERROR_WSMAN_QUOTA_MAX_SHELLUSERS / generic quota. */
  Quota: 2150859175,
  /** ERROR_WSMAN_INVALID_SELECTORS: the shell was not found (deleted, timed out, service restarted). */
  ShellNotFound: 2150858843,
  /** ERROR_WSMAN_ACCESS_DENIED-like: the request was refused. */
  AccessDenied: 5
} as const

const NAMESPACES = `xmlns:s="${NS.s}" xmlns:a="${NS.a}" xmlns:w="${NS.w}" xmlns:p="${NS.p}" xmlns:rsp="${NS.rsp}"`

/** @internal */
export interface RequestHeader {
  readonly to: string
  readonly action: ActionName
  readonly messageId: string
  readonly shellId?: string | undefined
  /** Seconds; the Receive long poll's bound. */
  readonly operationTimeoutSeconds?: number | undefined
  readonly options?: Readonly<Record<string, string>> | undefined
}

const header = (h: RequestHeader): string => {
  const options = h.options === undefined
    ? ""
    : `<w:OptionSet>${
      Object.entries(h.options).map(([k, v]) => `<w:Option Name="${Xml.escape(k)}">${Xml.escape(v)}</w:Option>`)
        .join("")
    }</w:OptionSet>`
  return `<s:Header>` +
    `<a:To>${Xml.escape(h.to)}</a:To>` +
    `<a:ReplyTo><a:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>` +
    `<w:MaxEnvelopeSize s:mustUnderstand="true">512000</w:MaxEnvelopeSize>` +
    `<a:MessageID>${h.messageId}</a:MessageID>` +
    `<w:Locale xml:lang="en-US" s:mustUnderstand="false"/>` +
    `<p:DataLocale xml:lang="en-US" s:mustUnderstand="false"/>` +
    `<w:OperationTimeout>PT${h.operationTimeoutSeconds ?? 60}S</w:OperationTimeout>` +
    `<w:ResourceURI s:mustUnderstand="true">${RESOURCE_CMD}</w:ResourceURI>` +
    `<a:Action s:mustUnderstand="true">${ACTION[h.action]}</a:Action>` +
    (h.shellId === undefined
      ? ""
      : `<w:SelectorSet><w:Selector Name="ShellId">${Xml.escape(h.shellId)}</w:Selector></w:SelectorSet>`) +
    options +
    `</s:Header>`
}

const envelope = (head: string, body: string): string =>
  `<?xml version="1.0" encoding="utf-8"?><s:Envelope ${NAMESPACES}>${head}<s:Body>${body}</s:Body></s:Envelope>`

// -- client requests ---------------------------------------------------------------------------------------------

/** @internal */
export const createShell = (h: Omit<RequestHeader, "action" | "shellId">): string =>
  envelope(
    header({ ...h, action: "Create", options: { WINRS_NOPROFILE: "TRUE", WINRS_CODEPAGE: "65001" } }),
    `<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>`
  )

/** @internal */
export const command = (
  h: Omit<RequestHeader, "action" | "options">,
  program: string,
  /** The rest of the Windows command line (one string, quoted as the C runtime splits it). */
  args: string
): string =>
  envelope(
    header({ ...h, action: "Command", options: { WINRS_CONSOLEMODE_STDIN: "TRUE", WINRS_SKIP_CMD_SHELL: "TRUE" } }),
    `<rsp:CommandLine><rsp:Command>${Xml.escape(program)}</rsp:Command><rsp:Arguments>${
      Xml.escape(args)
    }</rsp:Arguments></rsp:CommandLine>`
  )

/** @internal */
export const receive = (h: Omit<RequestHeader, "action">, commandId: string): string =>
  envelope(
    header({ ...h, action: "Receive" }),
    `<rsp:Receive><rsp:DesiredStream CommandId="${
      Xml.escape(commandId)
    }">stdout stderr</rsp:DesiredStream></rsp:Receive>`
  )

/** @internal */
export const send = (h: Omit<RequestHeader, "action">, commandId: string, bytes: Uint8Array, end: boolean): string =>
  envelope(
    header({ ...h, action: "Send" }),
    `<rsp:Send><rsp:Stream Name="stdin" CommandId="${Xml.escape(commandId)}"${end ? ` End="true"` : ""}>${
      Buffer.from(bytes).toString("base64")
    }</rsp:Stream></rsp:Send>`
  )

/** @internal */
export const signal = (h: Omit<RequestHeader, "action">, commandId: string, code: keyof typeof SIGNAL): string =>
  envelope(
    header({ ...h, action: "Signal" }),
    `<rsp:Signal CommandId="${Xml.escape(commandId)}"><rsp:Code>${SIGNAL[code]}</rsp:Code></rsp:Signal>`
  )

/** @internal */
export const deleteShell = (h: Omit<RequestHeader, "action">): string =>
  envelope(header({ ...h, action: "Delete" }), "")

// -- server responses --------------------------------------------------------------------------------------------

const responseHeader = (action: string, relatesTo: string): string =>
  `<s:Header><a:Action>${action}</a:Action><a:MessageID>uuid:${crypto.randomUUID().toUpperCase()}</a:MessageID>` +
  `<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>` +
  `<a:RelatesTo>${Xml.escape(relatesTo)}</a:RelatesTo></s:Header>`

/** @internal */
export const createShellResponse = (relatesTo: string, address: string, shellId: string): string =>
  envelope(
    responseHeader(`${ACTION.Create}Response`, relatesTo),
    `<x:ResourceCreated xmlns:x="${NS.x}"><a:Address>${Xml.escape(address)}</a:Address><a:ReferenceParameters>` +
      `<w:ResourceURI>${RESOURCE_CMD}</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">${shellId}</w:Selector>` +
      `</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>` +
      `<rsp:Shell><rsp:ShellId>${shellId}</rsp:ShellId><rsp:ResourceUri>${RESOURCE_CMD}</rsp:ResourceUri>` +
      `<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>`
  )

/** @internal */
export const commandResponse = (relatesTo: string, commandId: string): string =>
  envelope(
    responseHeader(`${ACTION.Command}Response`, relatesTo),
    `<rsp:CommandResponse><rsp:CommandId>${commandId}</rsp:CommandId></rsp:CommandResponse>`
  )

/** @internal */
export interface StreamChunk {
  readonly name: "stdout" | "stderr"
  readonly bytes: Uint8Array
  readonly end?: boolean | undefined
}

/** @internal */
export const receiveResponse = (
  relatesTo: string,
  commandId: string,
  chunks: ReadonlyArray<StreamChunk>,
  done: { readonly exitCode: number } | undefined
): string =>
  envelope(
    responseHeader(`${ACTION.Receive}Response`, relatesTo),
    `<rsp:ReceiveResponse>${
      chunks.map((c) =>
        `<rsp:Stream Name="${c.name}" CommandId="${commandId}"${c.end === true ? ` End="true"` : ""}>${
          Buffer.from(c.bytes).toString("base64")
        }</rsp:Stream>`
      ).join("")
    }${
      done === undefined
        ? `<rsp:CommandState CommandId="${commandId}" State="${COMMAND_STATE.Running}"/>`
        : `<rsp:CommandState CommandId="${commandId}" State="${COMMAND_STATE.Done}"><rsp:ExitCode>${done.exitCode}</rsp:ExitCode></rsp:CommandState>`
    }</rsp:ReceiveResponse>`
  )

/** @internal */
export const emptyResponse = (action: ActionName, relatesTo: string): string =>
  envelope(
    responseHeader(`${ACTION[action]}Response`, relatesTo),
    action === "Send" ? `<rsp:SendResponse/>` : action === "Signal" ? `<rsp:SignalResponse/>` : ""
  )

/** @internal */
export const fault = (
  relatesTo: string | undefined,
  subcode: string,
  code: number,
  message: string
): string =>
  envelope(
    `<s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>` +
      (relatesTo === undefined ? "" : `<a:RelatesTo>${Xml.escape(relatesTo)}</a:RelatesTo>`) + `</s:Header>`,
    `<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:${subcode}</s:Value></s:Subcode></s:Code>` +
      `<s:Reason><s:Text xml:lang="en-US">${Xml.escape(message)}</s:Text></s:Reason>` +
      `<s:Detail><f:WSManFault xmlns:f="${NS.f}" Code="${code}" Machine="127.0.0.1"><f:Message>${
        Xml.escape(message)
      }</f:Message></f:WSManFault></s:Detail></s:Fault>`
  )

// -- reading -----------------------------------------------------------------------------------------------------

/** A request as a server reads it. @internal */
export interface Request {
  readonly action: string
  readonly messageId: string
  readonly shellId: string | undefined
  readonly operationTimeoutSeconds: number | undefined
  readonly body: Xml.Element
}

const duration = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined
  const m = /^PT(\d+(?:\.\d+)?)S$/.exec(text)
  return m === null ? undefined : Number(m[1])
}

/** @internal */
export const readRequest = (xml: string): Request => {
  const root = Xml.parse(xml)
  const head = Xml.find(root, "Header")
  const body = Xml.find(root, "Body")
  if (head === undefined || body === undefined) throw new Error("not a SOAP envelope")
  const selector = Xml.findAll(head, "Selector").find((s) => s.attributes.Name === "ShellId")
  return {
    action: Xml.textOf(head, "Action") ?? "",
    messageId: Xml.textOf(head, "MessageID") ?? "",
    shellId: selector?.text.trim(),
    operationTimeoutSeconds: duration(Xml.textOf(head, "OperationTimeout")),
    body
  }
}

/** A fault as a client reads it: never the raw XML. @internal */
export interface Fault {
  readonly subcode: string | undefined
  readonly code: number | undefined
  readonly message: string
}

/** @internal */
export const readFault = (root: Xml.Element): Fault | undefined => {
  const f = Xml.find(root, "Fault")
  if (f === undefined) return undefined
  const subcodeElement = Xml.find(f, "Subcode")
  const subcode = subcodeElement === undefined ? undefined : Xml.textOf(subcodeElement, "Value")
  const wsman = Xml.find(f, "WSManFault")
  const code = wsman?.attributes.Code === undefined ? undefined : Number(wsman.attributes.Code)
  const message = (wsman === undefined ? undefined : Xml.textOf(wsman, "Message")) ?? Xml.textOf(f, "Text") ??
    "a WS-Management fault without a message"
  return {
    subcode: subcode?.replace(/^[^:]*:/, ""),
    code: Number.isFinite(code) ? code : undefined,
    message: message.replace(/\s+/g, " ").slice(0, 500)
  }
}

/** @internal */
export interface ReceiveResult {
  readonly chunks: ReadonlyArray<StreamChunk>
  readonly done: { readonly exitCode: number } | undefined
}

/** @internal */
export const readReceive = (root: Xml.Element): ReceiveResult => {
  const chunks: Array<StreamChunk> = []
  for (const s of Xml.findAll(root, "Stream")) {
    const name = s.attributes.Name
    if (name !== "stdout" && name !== "stderr") continue
    const text = s.text.trim()
    chunks.push({
      name,
      bytes: text === "" ? new Uint8Array(0) : new Uint8Array(Buffer.from(text, "base64")),
      end: s.attributes.End === "true"
    })
  }
  const state = Xml.find(root, "CommandState")
  const done = state !== undefined && state.attributes.State === COMMAND_STATE.Done
    ? { exitCode: Number(Xml.textOf(state, "ExitCode") ?? "0") }
    : undefined
  return { chunks, done }
}

/** @internal */
export const readShellId = (root: Xml.Element): string | undefined =>
  Xml.textOf(root, "ShellId") ??
    Xml.findAll(root, "Selector").find((s) => s.attributes.Name === "ShellId")?.text.trim()

/** @internal */
export const relatesTo = (root: Xml.Element): string | undefined => Xml.textOf(root, "RelatesTo")
