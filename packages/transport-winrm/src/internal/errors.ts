/** @internal */
import { type ErrorPhase, forTransport, type TransportError } from "@runcmd/core/TransportError"
import type * as Wsman from "./wsman.js"
import { FAULT } from "./wsman.js"

/** @internal */
export const TRANSPORT = "winrm"

/** @internal */
export const make = forTransport(TRANSPORT)

const CERTIFICATE_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_RUNCMD_CERTIFICATE_PIN"
])

/** A network-level failure of one request, classified. @internal */
export const fromNetwork = (error: unknown, endpoint: string, phase: ErrorPhase): TransportError => {
  const e = error as { readonly code?: string; readonly message?: string }
  const code = e.code ?? ""
  const message = e.message ?? String(error)
  if (CERTIFICATE_CODES.has(code)) {
    return make("HostKeyRejected", "delivery", `the TLS certificate of ${endpoint} was refused: ${message}`, {
      detail: { code, endpoint }
    })
  }
  if (code === "ECONNREFUSED") {
    return make("ConnectRefused", "delivery", `connection refused by ${endpoint}`, { detail: { endpoint } })
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return make("DnsFailed", "delivery", `cannot resolve the host of ${endpoint}`, { detail: { endpoint } })
  }
  if (code === "ETIMEDOUT" || code === "ERR_RUNCMD_CONNECT_TIMEOUT") {
    return make("ConnectTimeout", "delivery", `no connection to ${endpoint} in time`, { detail: { endpoint } })
  }
  if (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS")) {
    return make("HandshakeFailed", "delivery", `TLS handshake with ${endpoint} failed: ${message}`, {
      detail: { code, endpoint }
    })
  }
  return make("ConnectionLost", phase, `the connection to ${endpoint} broke: ${message}`, {
    detail: { code, endpoint }
  })
}

/** Whether a fault is a quota fault (retried). @internal */
export const isQuota = (fault: Wsman.Fault): boolean =>
  fault.code === FAULT.MaxShells || fault.code === FAULT.MaxOperations || fault.code === FAULT.Quota ||
  fault.subcode === "QuotaLimit"

/** Whether a fault says the shell (or command) is gone. @internal */
export const isShellGone = (fault: Wsman.Fault): boolean =>
  fault.code === FAULT.ShellNotFound || fault.subcode === "InvalidSelectors"

/** Whether a fault is the end of a Receive long poll with nothing to tell (not an error). @internal */
export const isTimedOut = (fault: Wsman.Fault): boolean =>
  fault.code === FAULT.OperationTimeout || fault.subcode === "TimedOut"

/** A fault as a `TransportError` (its message and code, never the XML). @internal */
export const fromFault = (fault: Wsman.Fault, action: string, phase: ErrorPhase): TransportError => {
  const detail = { action, ...(fault.code === undefined ? {} : { code: fault.code }), subcode: fault.subcode }
  if (isQuota(fault)) {
    return make("Throttled", "delivery", `${action}: the WinRM service refused for a quota: ${fault.message}`, {
      detail
    })
  }
  if (isShellGone(fault)) {
    return make(
      "ConnectionLost",
      phase,
      `${action}: the remote shell is gone (deleted, timed out or the service restarted): ${fault.message}`,
      { detail }
    )
  }
  if (fault.code === FAULT.AccessDenied || fault.subcode === "AccessDenied") {
    return make("Unauthorized", "delivery", `${action}: access denied by the WinRM service: ${fault.message}`, {
      detail
    })
  }
  return make("ProtocolError", phase, `${action}: WS-Management fault: ${fault.message}`, { detail })
}
