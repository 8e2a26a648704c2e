/**
 * OpenSSH `known_hosts`: parsing (plain and hashed `|1|` host names, `[host]:port`, wildcard patterns and
 * negations, `@revoked`, `@cert-authority`), lookup, SHA-256 fingerprints as OpenSSH prints them, and appending.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/**
 * @since 0.1.0
 * @category models
 */
export type Marker = "revoked" | "cert-authority" | undefined

/**
 * One host name pattern of an entry: plain (`web1`, `*.example.com`, `!bad`, `[h]:2222`) or hashed (`|1|salt|hash`).
 *
 * @since 0.1.0
 * @category models
 */
export type HostPattern =
  | { readonly _tag: "Plain"; readonly pattern: string; readonly negated: boolean }
  | { readonly _tag: "Hashed"; readonly salt: Buffer; readonly hash: Buffer }

/**
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly marker: Marker
  readonly hosts: ReadonlyArray<HostPattern>
  readonly keyType: string
  /** The public key blob (the base64 field decoded). */
  readonly key: Buffer
  readonly comment: string
  /** 1-based line number, and the file when read from one. */
  readonly line: number
  readonly file?: string | undefined
}

/**
 * A line that could not be parsed (it is ignored, as OpenSSH does, but reported).
 *
 * @since 0.1.0
 * @category models
 */
export interface Invalid {
  readonly line: number
  readonly file?: string | undefined
  readonly text: string
  readonly problem: string
}

/**
 * @since 0.1.0
 * @category models
 */
export interface KnownHosts {
  readonly entries: ReadonlyArray<Entry>
  readonly invalid: ReadonlyArray<Invalid>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const empty: KnownHosts = { entries: [], invalid: [] }

/**
 * Parses the text of a `known_hosts` file.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (text: string, file?: string): KnownHosts => {
  const entries: Array<Entry> = []
  const invalid: Array<Invalid> = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!
    const trimmed = raw.trim()
    if (trimmed === "" || trimmed.startsWith("#")) continue
    const fields = trimmed.split(/[ \t]+/)
    let marker: Marker = undefined
    if (fields[0]!.startsWith("@")) {
      const m = fields.shift()!
      if (m === "@revoked") marker = "revoked"
      else if (m === "@cert-authority") marker = "cert-authority"
      else {
        invalid.push({ line: i + 1, file, text: raw, problem: `unknown marker ${m}` })
        continue
      }
    }
    if (fields.length < 3) {
      invalid.push({ line: i + 1, file, text: raw, problem: "expected: [marker] hosts key-type base64-key [comment]" })
      continue
    }
    const [hostField, keyType, keyText, ...rest] = fields as [string, string, string, ...Array<string>]
    const hosts = parseHosts(hostField)
    if (hosts === undefined) {
      invalid.push({ line: i + 1, file, text: raw, problem: "malformed hashed host name" })
      continue
    }
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(keyText)) {
      invalid.push({ line: i + 1, file, text: raw, problem: "the key is not base64" })
      continue
    }
    const key = Buffer.from(keyText, "base64")
    const embedded = blobType(key)
    if (embedded !== undefined && embedded !== keyType) {
      invalid.push({
        line: i + 1,
        file,
        text: raw,
        problem: `key type ${keyType} does not match the key (${embedded})`
      })
      continue
    }
    entries.push({ marker, hosts, keyType, key, comment: rest.join(" "), line: i + 1, file })
  }
  return { entries, invalid }
}

const parseHosts = (field: string): ReadonlyArray<HostPattern> | undefined => {
  if (field.startsWith("|1|")) {
    const parts = field.split("|")
    if (parts.length !== 4 || parts[2] === "" || parts[3] === "") return undefined
    return [{ _tag: "Hashed", salt: Buffer.from(parts[2]!, "base64"), hash: Buffer.from(parts[3]!, "base64") }]
  }
  return field.split(",").filter((p) => p !== "").map((p) =>
    p.startsWith("!")
      ? { _tag: "Plain" as const, pattern: p.slice(1).toLowerCase(), negated: true }
      : { _tag: "Plain" as const, pattern: p.toLowerCase(), negated: false }
  )
}

/**
 * The key type named inside a public key blob (its first SSH string), if readable.
 *
 * @since 0.1.0
 * @category utils
 */
export const blobType = (blob: Uint8Array): string | undefined => {
  if (blob.length < 4) return undefined
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.length)
  const len = buf.readUInt32BE(0)
  if (len === 0 || len > 64 || 4 + len > buf.length) return undefined
  return buf.subarray(4, 4 + len).toString("latin1")
}

/**
 * The OpenSSH SHA-256 fingerprint of a public key blob: `SHA256:` + unpadded base64.
 *
 * @since 0.1.0
 * @category utils
 */
export const fingerprint = (blob: Uint8Array): string =>
  `SHA256:${crypto.createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`

/**
 * The name a host is looked up under: `host` for port 22, `[host]:port` otherwise.
 *
 * @since 0.1.0
 * @category utils
 */
export const hostName = (host: string, port = 22): string =>
  port === 22 ? host.toLowerCase() : `[${host.toLowerCase()}]:${port}`

/**
 * OpenSSH glob matching (`*`, `?`), case-insensitive.
 *
 * @since 0.1.0
 * @category utils
 */
export const globMatch = (pattern: string, name: string): boolean => {
  const re = new RegExp(
    "^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$",
    "i"
  )
  return re.test(name)
}

const hashedMatches = (p: { salt: Buffer; hash: Buffer }, name: string): boolean => {
  const h = crypto.createHmac("sha1", p.salt).update(name).digest()
  return h.length === p.hash.length && crypto.timingSafeEqual(h, p.hash)
}

/**
 * Whether an entry's host field names `host` on `port`. A negated pattern that matches excludes the entry.
 *
 * @since 0.1.0
 * @category utils
 */
export const matchesHost = (entry: Entry, host: string, port = 22): boolean => {
  const name = hostName(host, port)
  let matched = false
  for (const p of entry.hosts) {
    if (p._tag === "Hashed") {
      if (hashedMatches(p, name)) matched = true
      continue
    }
    if (globMatch(p.pattern, name)) {
      if (p.negated) return false
      matched = true
    }
  }
  return matched
}

/**
 * The verdict on a presented host key.
 *
 * @since 0.1.0
 * @category models
 */
export type Verdict =
  | { readonly _tag: "Known"; readonly entry: Entry }
  | { readonly _tag: "Unknown" }
  /** The host is known, with other keys: possibly a man in the middle (or a reinstalled host). */
  | { readonly _tag: "Mismatch"; readonly expected: ReadonlyArray<string>; readonly entries: ReadonlyArray<Entry> }
  | { readonly _tag: "Revoked"; readonly entry: Entry }
  /** Only `@cert-authority` lines name the host: host certificates are not supported. */
  | { readonly _tag: "CertAuthorityUnsupported"; readonly entries: ReadonlyArray<Entry> }

/**
 * Checks the key a host presented against the entries, as OpenSSH does: a revoked key is refused wherever it is
 * listed; a matching plain entry accepts; other entries for the host make it a mismatch.
 *
 * @since 0.1.0
 * @category lookup
 */
export const verify = (knownHosts: KnownHosts, host: string, port: number, key: Uint8Array): Verdict => {
  const presented = Buffer.from(key.buffer, key.byteOffset, key.length)
  for (const e of knownHosts.entries) {
    if (e.marker === "revoked" && e.key.equals(presented)) return { _tag: "Revoked", entry: e }
  }
  const forHost = knownHosts.entries.filter((e) => e.marker !== "revoked" && matchesHost(e, host, port))
  const plain = forHost.filter((e) => e.marker === undefined)
  const known = plain.find((e) => e.key.equals(presented))
  if (known !== undefined) return { _tag: "Known", entry: known }
  if (plain.length > 0) {
    return { _tag: "Mismatch", expected: plain.map((e) => `${e.keyType} ${fingerprint(e.key)}`), entries: plain }
  }
  const authorities = forHost.filter((e) => e.marker === "cert-authority")
  if (authorities.length > 0) return { _tag: "CertAuthorityUnsupported", entries: authorities }
  return { _tag: "Unknown" }
}

/**
 * A `known_hosts` line for a host key (plain host name; `hashed: true` writes an `|1|salt|hash` name).
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatLine = (
  host: string,
  port: number,
  key: Uint8Array,
  options: { readonly hashed?: boolean } = {}
): string => {
  const name = hostName(host, port)
  const type = blobType(key) ?? "ssh-unknown"
  const blob = Buffer.from(key.buffer, key.byteOffset, key.length).toString("base64")
  if (options.hashed === true) {
    const salt = crypto.randomBytes(20)
    const hash = crypto.createHmac("sha1", salt).update(name).digest()
    return `|1|${salt.toString("base64")}|${hash.toString("base64")} ${type} ${blob}`
  }
  return `${name} ${type} ${blob}`
}

/**
 * Expands a leading `~` to the home directory.
 *
 * @since 0.1.0
 * @category utils
 */
export const expandHome = (p: string): string =>
  p === "~" ? os.homedir() : p.startsWith("~/") ? path.join(os.homedir(), p.slice(2)) : p

/**
 * The files OpenSSH reads by default.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultFiles = (): ReadonlyArray<string> => [
  path.join(os.homedir(), ".ssh", "known_hosts"),
  "/etc/ssh/ssh_known_hosts"
]

/**
 * A `known_hosts` file that exists but cannot be read.
 *
 * @since 0.1.0
 * @category errors
 */
export class KnownHostsError
  extends Schema.TaggedError<KnownHostsError>("@runcmd/transport-ssh/KnownHosts/KnownHostsError")(
    "KnownHostsError",
    {
      file: Schema.String,
      description: Schema.String,
      cause: Schema.optional(Schema.Defect)
    }
  )
{
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `cannot read ${this.file}: ${this.description}`
  }
}

/**
 * Reads and merges `known_hosts` files; a missing file counts as empty, an unreadable one fails.
 *
 * @since 0.1.0
 * @category io
 */
export const readFiles = (files: ReadonlyArray<string>): Effect.Effect<KnownHosts, KnownHostsError> =>
  Effect.forEach(files, (f) => {
    const file = expandHome(f)
    return Effect.tryPromise({
      try: () =>
        fs.promises.readFile(file, "utf8").then(
          (text) => parse(text, file),
          (e: NodeJS.ErrnoException) => {
            if (e.code === "ENOENT") return empty
            throw e
          }
        ),
      catch: (e) => new KnownHostsError({ file, description: (e as Error).message ?? String(e), cause: e })
    })
  }).pipe(
    Effect.map((all) => ({ entries: all.flatMap((k) => k.entries), invalid: all.flatMap((k) => k.invalid) })),
    Effect.withSpan("KnownHosts.readFiles", { attributes: { files: files.join(",") } })
  )

/** Serialises appends to the same file within this process. */
const locks = new Map<string, Promise<unknown>>()

/**
 * Runs `f` holding this process's lock on `file` (used to append to a trust-on-first-use store).
 *
 * @since 0.1.0
 * @category io
 */
export const withFileLock = <A>(file: string, f: () => Promise<A>): Promise<A> => {
  const previous = locks.get(file) ?? Promise.resolve()
  const next = previous.then(f, f)
  const tail = next.then(() => undefined, () => undefined)
  locks.set(file, tail)
  void tail.then(() => {
    if (locks.get(file) === tail) locks.delete(file)
  })
  return next
}

/**
 * Trust on first use: verifies `key` against `store`, recording it when the host is unknown (under a per-file
 * lock, re-reading the file first, so concurrent first connections agree on one key).
 *
 * @since 0.1.0
 * @category io
 */
export const acceptNew = (store: string, host: string, port: number, key: Uint8Array): Promise<Verdict> => {
  const file = expandHome(store)
  return withFileLock(file, async () => {
    let text = ""
    try {
      text = await fs.promises.readFile(file, "utf8")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e
    }
    const verdict = verify(parse(text, file), host, port, key)
    if (verdict._tag !== "Unknown") return verdict
    await fs.promises.mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
    const prefix = text === "" || text.endsWith("\n") ? "" : "\n"
    await fs.promises.appendFile(file, `${prefix}${formatLine(host, port, key)}\n`, { mode: 0o600 })
    const entry = parse(formatLine(host, port, key), file).entries[0]!
    return { _tag: "Known", entry } as const
  })
}
