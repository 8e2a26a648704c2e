/**
 * NTLMv2 (MS-NLMP): the three messages, the NTLMv2 response and key derivation, and session security (SEAL/UNSEAL
 * with extended session security, 128-bit keys, key exchange) as WinRM message encryption needs it. Both sides
 * are here: the client of the transport and the server of the emulator. Checked against MS-NLMP 4.2.4 in
 * `test/ntlm.test.ts`.
 *
 * @internal
 */
import * as Crypto from "node:crypto"
import { md4 } from "./md4.js"
import { type Rc4, rc4, rc4k } from "./rc4.js"

/** @internal */
export const FLAGS = {
  UNICODE: 0x00000001,
  REQUEST_TARGET: 0x00000004,
  SIGN: 0x00000010,
  SEAL: 0x00000020,
  NTLM: 0x00000200,
  ALWAYS_SIGN: 0x00008000,
  TARGET_TYPE_SERVER: 0x00020000,
  EXTENDED_SESSIONSECURITY: 0x00080000,
  TARGET_INFO: 0x00800000,
  VERSION: 0x02000000,
  _128: 0x20000000,
  KEY_EXCH: 0x40000000,
  _56: 0x80000000
} as const

/** What the client asks for: NTLMv2 with 128-bit sealing and key exchange (what WinRM message encryption needs). */
const CLIENT_FLAGS = (FLAGS.UNICODE | FLAGS.REQUEST_TARGET | FLAGS.SIGN | FLAGS.SEAL | FLAGS.NTLM | FLAGS.ALWAYS_SIGN |
  FLAGS.EXTENDED_SESSIONSECURITY | FLAGS.TARGET_INFO | FLAGS.VERSION | FLAGS._128 | FLAGS.KEY_EXCH | FLAGS._56) >>> 0

const SIGNATURE = Buffer.from("NTLMSSP\0", "latin1")
/** Windows 10 build 19041, NTLM revision 15: only informative. */
const VERSION = Buffer.from([10, 0, 0x61, 0x4a, 0, 0, 0, 15])

const AV = { EOL: 0, NbComputerName: 1, NbDomainName: 2, DnsComputerName: 3, DnsDomainName: 4, Flags: 6, Timestamp: 7 }

const utf16 = (s: string): Buffer => Buffer.from(s, "utf16le")

/** @internal */
export const hmacMd5 = (key: Uint8Array, ...data: ReadonlyArray<Uint8Array>): Buffer => {
  const h = Crypto.createHmac("md5", key)
  for (const d of data) h.update(d)
  return h.digest()
}

const md5 = (...data: ReadonlyArray<Uint8Array>): Buffer => {
  const h = Crypto.createHash("md5")
  for (const d of data) h.update(d)
  return h.digest()
}

/** NTOWFv1: MD4 of the UTF-16LE password (the "NT hash"). @internal */
export const ntowfv1 = (password: string): Uint8Array => md4(utf16(password))

/** NTOWFv2 (MS-NLMP 3.3.2). @internal */
export const ntowfv2 = (ntHash: Uint8Array, user: string, domain: string): Buffer =>
  hmacMd5(ntHash, utf16(user.toUpperCase() + domain))

/** @internal */
export interface AvPair {
  readonly id: number
  readonly value: Buffer
}

/** @internal */
export const readAvPairs = (bytes: Buffer): Array<AvPair> => {
  const pairs: Array<AvPair> = []
  for (let at = 0; at + 4 <= bytes.length;) {
    const id = bytes.readUInt16LE(at)
    const length = bytes.readUInt16LE(at + 2)
    if (id === AV.EOL) break
    pairs.push({ id, value: bytes.subarray(at + 4, at + 4 + length) })
    at += 4 + length
  }
  return pairs
}

/** @internal */
export const writeAvPairs = (pairs: ReadonlyArray<AvPair>): Buffer =>
  Buffer.concat([
    ...pairs.map((p) => {
      const head = Buffer.alloc(4)
      head.writeUInt16LE(p.id, 0)
      head.writeUInt16LE(p.value.length, 2)
      return Buffer.concat([head, p.value])
    }),
    Buffer.alloc(4)
  ])

/** The `temp` blob of the NTLMv2 response (MS-NLMP 3.3.2). @internal */
export const ntlmv2Temp = (time: Uint8Array, clientChallenge: Uint8Array, targetInfo: Uint8Array): Buffer =>
  Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    time,
    clientChallenge,
    Buffer.alloc(4),
    targetInfo,
    Buffer.alloc(4)
  ])

/** @internal */
export interface V2Response {
  readonly ntChallengeResponse: Buffer
  readonly lmChallengeResponse: Buffer
  readonly ntProofStr: Buffer
  readonly sessionBaseKey: Buffer
}

/** NTLMv2 responses and the session base key (MS-NLMP 3.3.2). @internal */
export const ntlmv2Response = (
  responseKey: Uint8Array,
  serverChallenge: Uint8Array,
  clientChallenge: Uint8Array,
  temp: Buffer
): V2Response => {
  const ntProofStr = hmacMd5(responseKey, serverChallenge, temp)
  return {
    ntProofStr,
    ntChallengeResponse: Buffer.concat([ntProofStr, temp]),
    lmChallengeResponse: Buffer.concat([hmacMd5(responseKey, serverChallenge, clientChallenge), clientChallenge]),
    sessionBaseKey: hmacMd5(responseKey, ntProofStr)
  }
}

const field = (buffer: Buffer, at: number): Buffer => {
  const length = buffer.readUInt16LE(at)
  const offset = buffer.readUInt32LE(at + 4)
  if (offset + length > buffer.length) throw new Error("NTLM message field out of bounds")
  return buffer.subarray(offset, offset + length)
}

const messageType = (buffer: Buffer): number => {
  if (buffer.length < 12 || !buffer.subarray(0, 8).equals(SIGNATURE)) throw new Error("not an NTLM message")
  return buffer.readUInt32LE(8)
}

/** Lays out a message: fixed header, then the payload fields, their (length, offset) written in place. */
const layout = (head: Buffer, fields: ReadonlyArray<{ readonly at: number; readonly value: Buffer }>): Buffer => {
  let offset = head.length
  for (const f of fields) {
    head.writeUInt16LE(f.value.length, f.at)
    head.writeUInt16LE(f.value.length, f.at + 2)
    head.writeUInt32LE(offset, f.at + 4)
    offset += f.value.length
  }
  return Buffer.concat([head, ...fields.map((f) => f.value)])
}

// -- client ------------------------------------------------------------------------------------------------------

/** NEGOTIATE_MESSAGE (MS-NLMP 2.2.1.1). @internal */
export const negotiate = (): Buffer => {
  const head = Buffer.alloc(40)
  SIGNATURE.copy(head, 0)
  head.writeUInt32LE(1, 8)
  head.writeUInt32LE(CLIENT_FLAGS, 12)
  VERSION.copy(head, 32)
  return layout(head, [{ at: 16, value: Buffer.alloc(0) }, { at: 24, value: Buffer.alloc(0) }])
}

/** @internal */
export interface Credentials {
  readonly user: string
  readonly domain: string
  /** The NT hash (MD4 of the UTF-16LE password). */
  readonly ntHash: Uint8Array
}

/** @internal */
export interface ClientResult {
  readonly authenticate: Buffer
  readonly session: Session
}

/**
 * AUTHENTICATE_MESSAGE for a CHALLENGE_MESSAGE, with a MIC when the server sent a timestamp (MS-NLMP 3.1.5.1.2).
 * `random` supplies the client challenge and the exported session key (fixed in tests).
 *
 * @internal
 */
export const authenticate = (
  negotiateMessage: Buffer,
  challengeMessage: Buffer,
  credentials: Credentials,
  random: (n: number) => Buffer = (n) => Crypto.randomBytes(n)
): ClientResult => {
  if (messageType(challengeMessage) !== 2) throw new Error("expected an NTLM CHALLENGE_MESSAGE")
  const flags = challengeMessage.readUInt32LE(20) & CLIENT_FLAGS
  if ((flags & FLAGS.SEAL) === 0 || (flags & FLAGS.KEY_EXCH) === 0 || (flags & FLAGS.EXTENDED_SESSIONSECURITY) === 0) {
    throw new Error("the server does not offer NTLM sealing with key exchange (needed for WinRM message encryption)")
  }
  const serverChallenge = challengeMessage.subarray(24, 32)
  const pairs = readAvPairs(field(challengeMessage, 40))
  const timestamp = pairs.find((p) => p.id === AV.Timestamp)?.value
  const withMic = timestamp !== undefined
  const ours = pairs.filter((p) => p.id !== AV.Flags)
  const oldFlags = pairs.find((p) => p.id === AV.Flags)?.value.readUInt32LE(0) ?? 0
  if (withMic) {
    const value = Buffer.alloc(4)
    value.writeUInt32LE((oldFlags | 0x2) >>> 0, 0)
    ours.push({ id: AV.Flags, value })
  }
  const time = timestamp ?? fileTime(Date.now())
  const clientChallenge = random(8)
  const responseKey = ntowfv2(credentials.ntHash, credentials.user, credentials.domain)
  const temp = ntlmv2Temp(time, clientChallenge, writeAvPairs(ours))
  const v2 = ntlmv2Response(responseKey, serverChallenge, clientChallenge, temp)
  const exportedSessionKey = random(16)
  const encryptedSessionKey = rc4k(v2.sessionBaseKey, exportedSessionKey)
  const head = Buffer.alloc(88)
  SIGNATURE.copy(head, 0)
  head.writeUInt32LE(3, 8)
  head.writeUInt32LE(flags >>> 0, 60)
  VERSION.copy(head, 64)
  const message = layout(head, [
    { at: 28, value: utf16(credentials.domain) },
    { at: 36, value: utf16(credentials.user) },
    { at: 44, value: Buffer.alloc(0) },
    { at: 12, value: withMic ? Buffer.alloc(24) : v2.lmChallengeResponse },
    { at: 20, value: v2.ntChallengeResponse },
    { at: 52, value: Buffer.from(encryptedSessionKey) }
  ])
  if (withMic) hmacMd5(exportedSessionKey, negotiateMessage, challengeMessage, message).copy(message, 72)
  return { authenticate: message, session: makeSession(exportedSessionKey, "client") }
}

/** Milliseconds since 1970 as a Windows FILETIME (100 ns since 1601), little endian. @internal */
export const fileTime = (ms: number): Buffer => {
  const out = Buffer.alloc(8)
  out.writeBigUInt64LE((BigInt(ms) + 11644473600000n) * 10000n, 0)
  return out
}

// -- server ------------------------------------------------------------------------------------------------------

/** @internal */
export interface ServerChallenge {
  readonly message: Buffer
  readonly serverChallenge: Buffer
}

/** CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) with a timestamp, so the client must send a MIC. @internal */
export const challenge = (negotiateMessage: Buffer, computer: string, domain: string): ServerChallenge => {
  if (messageType(negotiateMessage) !== 1) throw new Error("expected an NTLM NEGOTIATE_MESSAGE")
  const asked = negotiateMessage.readUInt32LE(12)
  const flags = (asked & CLIENT_FLAGS) | FLAGS.TARGET_INFO | FLAGS.TARGET_TYPE_SERVER
  const serverChallenge = Crypto.randomBytes(8)
  const targetInfo = writeAvPairs([
    { id: AV.NbDomainName, value: utf16(domain) },
    { id: AV.NbComputerName, value: utf16(computer) },
    { id: AV.DnsDomainName, value: utf16(domain.toLowerCase()) },
    { id: AV.DnsComputerName, value: utf16(computer.toLowerCase()) },
    { id: AV.Timestamp, value: fileTime(Date.now()) }
  ])
  const head = Buffer.alloc(56)
  SIGNATURE.copy(head, 0)
  head.writeUInt32LE(2, 8)
  head.writeUInt32LE(flags >>> 0, 20)
  serverChallenge.copy(head, 24)
  VERSION.copy(head, 48)
  return {
    message: layout(head, [{ at: 12, value: utf16(domain) }, { at: 40, value: targetInfo }]),
    serverChallenge
  }
}

/** What the server reads from an AUTHENTICATE_MESSAGE before it knows the password. @internal */
export interface AuthenticateFields {
  readonly user: string
  readonly domain: string
}

/** @internal */
export const readAuthenticate = (message: Buffer): AuthenticateFields => {
  if (messageType(message) !== 3) throw new Error("expected an NTLM AUTHENTICATE_MESSAGE")
  // a client that did not negotiate Unicode sends OEM strings (ntlm-auth does)
  const encoding = (message.readUInt32LE(60) & FLAGS.UNICODE) !== 0 ? "utf16le" : "latin1"
  return { user: field(message, 36).toString(encoding), domain: field(message, 28).toString(encoding) }
}

/**
 * Verifies an AUTHENTICATE_MESSAGE against the user's NT hash (NTProofStr and MIC): the server's session, or
 * `undefined` when the credentials are wrong.
 *
 * @internal
 */
export const verify = (
  negotiateMessage: Buffer,
  issued: ServerChallenge,
  message: Buffer,
  ntHash: Uint8Array
): Session | undefined => {
  const { domain, user } = readAuthenticate(message)
  const nt = field(message, 20)
  if (nt.length < 16 + 28) return undefined
  const responseKey = ntowfv2(ntHash, user, domain)
  const proof = nt.subarray(0, 16)
  const expected = hmacMd5(responseKey, issued.serverChallenge, nt.subarray(16))
  if (!Crypto.timingSafeEqual(proof, expected)) return undefined
  const sessionBaseKey = hmacMd5(responseKey, proof)
  const flags = message.readUInt32LE(60)
  const exportedSessionKey = (flags & FLAGS.KEY_EXCH) !== 0
    ? rc4k(sessionBaseKey, field(message, 52))
    : sessionBaseKey
  const avFlags = readAvPairs(nt.subarray(16 + 28)).find((p) => p.id === AV.Flags)?.value.readUInt32LE(0) ?? 0
  if ((avFlags & 0x2) !== 0) {
    const zeroed = Buffer.from(message)
    zeroed.fill(0, 72, 88)
    const mic = hmacMd5(exportedSessionKey, negotiateMessage, issued.message, zeroed)
    if (!Crypto.timingSafeEqual(mic, message.subarray(72, 88))) return undefined
  }
  return makeSession(exportedSessionKey, "server")
}

// -- session security --------------------------------------------------------------------------------------------

const MAGIC = {
  clientSign: "session key to client-to-server signing key magic constant\0",
  serverSign: "session key to server-to-client signing key magic constant\0",
  clientSeal: "session key to client-to-server sealing key magic constant\0",
  serverSeal: "session key to server-to-client sealing key magic constant\0"
}

/** @internal */
export const signKey = (key: Uint8Array, direction: "client" | "server"): Buffer =>
  md5(key, Buffer.from(direction === "client" ? MAGIC.clientSign : MAGIC.serverSign, "latin1"))

/** @internal */
export const sealKey = (key: Uint8Array, direction: "client" | "server"): Buffer =>
  md5(key, Buffer.from(direction === "client" ? MAGIC.clientSeal : MAGIC.serverSeal, "latin1"))

/** One direction of a session: its keys, RC4 handle and sequence number. */
interface Direction {
  readonly signKey: Buffer
  readonly handle: Rc4
  seq: number
}

const direction = (key: Uint8Array, who: "client" | "server"): Direction => ({
  signKey: signKey(key, who),
  handle: rc4(sealKey(key, who)),
  seq: 0
})

/** An established NTLM security context: seals outgoing messages, unseals and verifies incoming ones. @internal */
export interface Session {
  /** The sealed message and its 16-byte signature. */
  readonly seal: (message: Uint8Array) => { readonly sealed: Buffer; readonly signature: Buffer }
  /** The message, or throws when the signature does not verify. */
  readonly unseal: (sealed: Uint8Array, signature: Uint8Array) => Buffer
}

const sealWith = (d: Direction, message: Uint8Array) => {
  const sealed = Buffer.from(d.handle.update(message))
  const seq = Buffer.alloc(4)
  seq.writeUInt32LE(d.seq++, 0)
  const checksum = d.handle.update(hmacMd5(d.signKey, seq, message).subarray(0, 8))
  return { sealed, signature: Buffer.concat([Buffer.from([1, 0, 0, 0]), checksum, seq]) }
}

/** @internal */
export const makeSession = (exportedSessionKey: Uint8Array, role: "client" | "server"): Session => {
  const outgoing = direction(exportedSessionKey, role)
  const incoming = direction(exportedSessionKey, role === "client" ? "server" : "client")
  return {
    seal: (message) => sealWith(outgoing, message),
    unseal: (sealed, signature) => {
      const message = Buffer.from(incoming.handle.update(sealed))
      const seq = Buffer.alloc(4)
      seq.writeUInt32LE(incoming.seq++, 0)
      const checksum = incoming.handle.update(hmacMd5(incoming.signKey, seq, message).subarray(0, 8))
      const expected = Buffer.concat([Buffer.from([1, 0, 0, 0]), checksum, seq])
      if (signature.length !== 16 || !Crypto.timingSafeEqual(expected, signature)) {
        throw new Error("NTLM message signature does not verify")
      }
      return message
    }
  }
}

// -- WinRM message encryption (MS-WSMV 2.2.9.1.1) ----------------------------------------------------------------

/** @internal */
export const ENCRYPTED_CONTENT_TYPE =
  "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\""

const BOUNDARY = "--Encrypted Boundary"

/** Seals a SOAP body into the multipart/encrypted form. @internal */
export const wrap = (session: Session, body: Uint8Array): Buffer => {
  const { sealed, signature } = session.seal(body)
  const length = Buffer.alloc(4)
  length.writeUInt32LE(signature.length, 0)
  return Buffer.concat([
    Buffer.from(
      `${BOUNDARY}\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n` +
        `\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=${body.length}\r\n` +
        `${BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n`,
      "latin1"
    ),
    length,
    signature,
    sealed,
    Buffer.from(`${BOUNDARY}--\r\n`, "latin1")
  ])
}

/** Unseals a multipart/encrypted body; throws when it is not one, its length differs or it does not verify. @internal */
export const unwrap = (session: Session, payload: Buffer): Buffer => {
  const marker = Buffer.from("\tContent-Type: application/octet-stream\r\n", "latin1")
  const head = payload.toString("latin1", 0, Math.min(payload.length, 512))
  const m = /Length=(\d+)/.exec(head)
  const at = payload.indexOf(marker)
  if (m === null || at < 0) throw new Error("not a WinRM encrypted message")
  const start = at + marker.length
  const signatureLength = payload.readUInt32LE(start)
  const end = payload.lastIndexOf(Buffer.from(`${BOUNDARY}--`, "latin1"))
  const signature = payload.subarray(start + 4, start + 4 + signatureLength)
  const sealed = payload.subarray(start + 4 + signatureLength, end < 0 ? payload.length : end)
  const message = session.unseal(sealed, signature)
  if (message.length !== Number(m[1])) throw new Error("encrypted message length does not match")
  return message
}
