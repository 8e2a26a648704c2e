/**
 * A self-signed TLS certificate for the emulator (EC P-256, CA:TRUE, subjectAltName 127.0.0.1, ::1 and localhost),
 * built with a few lines of DER so that no `openssl` binary or npm package is needed. Being its own CA, the
 * certificate is also the CA file a `strict` target names.
 *
 * @internal
 */
import * as Crypto from "node:crypto"

const length = (n: number): Buffer => {
  if (n < 0x80) return Buffer.from([n])
  const bytes: Array<number> = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

const tlv = (tag: number, ...content: ReadonlyArray<Buffer>): Buffer => {
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), length(body.length), body])
}

const seq = (...content: ReadonlyArray<Buffer>) => tlv(0x30, ...content)

const oid = (dotted: string): Buffer => {
  const [a, b, ...rest] = dotted.split(".").map(Number)
  const bytes: Array<number> = [a! * 40 + b!]
  for (const n of rest) {
    const chunk: Array<number> = []
    for (let v = n;; v = Math.floor(v / 128)) {
      chunk.unshift((v & 0x7f) | (chunk.length === 0 ? 0 : 0x80))
      if (v < 128) break
    }
    for (const b of chunk) bytes.push(b)
  }
  return tlv(0x06, Buffer.from(bytes))
}

const integer = (bytes: Buffer): Buffer =>
  tlv(0x02, bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes)

const utcTime = (date: Date): Buffer =>
  tlv(0x17, Buffer.from(date.toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z", "latin1"))

const name = (cn: string): Buffer => seq(tlv(0x31, seq(oid("2.5.4.3"), tlv(0x0c, Buffer.from(cn, "utf8")))))

const extension = (id: string, critical: boolean, value: Buffer): Buffer =>
  seq(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value))

/** @internal */
export interface Certificate {
  readonly certPem: string
  readonly keyPem: string
  /** SHA-256 of the DER form, as `AB:CD:...` (what `openssl x509 -fingerprint -sha256` prints). */
  readonly sha256: string
}

/** @internal */
export const generate = (commonName = "runcmd WinRM emulator"): Certificate => {
  const { privateKey, publicKey } = Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
  const algorithm = seq(oid("1.2.840.10045.4.3.2"))
  const now = Date.now()
  const tbs = seq(
    tlv(0xa0, integer(Buffer.from([2]))),
    integer(Crypto.randomBytes(16)),
    algorithm,
    name(commonName),
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + 5 * 365 * 24 * 3600_000))),
    name(commonName),
    publicKey.export({ type: "spki", format: "der" }),
    tlv(
      0xa3,
      seq(
        extension("2.5.29.19", true, seq(tlv(0x01, Buffer.from([0xff])))),
        extension(
          "2.5.29.17",
          false,
          seq(
            tlv(0x87, Buffer.from([127, 0, 0, 1])),
            tlv(0x87, Buffer.concat([Buffer.alloc(15), Buffer.from([1])])),
            tlv(0x82, Buffer.from("localhost", "latin1"))
          )
        )
      )
    )
  )
  const signature = Crypto.sign("sha256", tbs, privateKey)
  const der = seq(tbs, algorithm, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])))
  const certPem = `-----BEGIN CERTIFICATE-----\n${
    der.toString("base64").match(/.{1,64}/g)!.join("\n")
  }\n-----END CERTIFICATE-----\n`
  return {
    certPem,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    sha256: new Crypto.X509Certificate(certPem).fingerprint256
  }
}
