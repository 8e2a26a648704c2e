/**
 * The `winrm` target kind: a Windows host reached over WS-Management (WinRM), how to log in (Basic over HTTPS, or
 * NTLMv2 with message encryption over HTTP), how its TLS certificate is verified (a required policy for HTTPS, as
 * host keys are for SSH) and which PowerShell runs the job (`powershell` for Windows PowerShell 5.1, or `pwsh`).
 *
 * @since 0.1.0
 */
import * as Target from "@runcmd/core/Target"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

/**
 * A TCP port.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Port = Schema.Int.pipe(
  Schema.between(1, 65535, { message: () => "a port must be a whole number between 1 and 65535" })
)

/**
 * HTTP Basic (local accounts; Windows accepts it only over HTTPS unless `AllowUnencrypted` is set).
 *
 * @since 0.1.0
 * @category schemas
 */
export const BasicAuth = Schema.Struct({
  type: Schema.Literal("basic"),
  user: Schema.String.pipe(Schema.minLength(1, { message: () => "auth.user must not be empty" })),
  password: Schema.Redacted(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type BasicAuth = typeof BasicAuth.Type

/**
 * NTLMv2 (local or domain accounts: `user` as `DOMAIN\user`, `user@domain` or `user` with `domain`). Over HTTP
 * every message is sealed with the NTLM session key (WinRM message encryption, the Windows default).
 *
 * @since 0.1.0
 * @category schemas
 */
export const NtlmAuth = Schema.Struct({
  type: Schema.Literal("ntlm"),
  user: Schema.String.pipe(Schema.minLength(1, { message: () => "auth.user must not be empty" })),
  domain: Schema.optional(Schema.String),
  password: Schema.Redacted(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type NtlmAuth = typeof NtlmAuth.Type

/**
 * Kerberos and CredSSP are accepted in inventories so that the error is precise, and refused when a job starts.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UnsupportedAuth = Schema.Struct({
  type: Schema.Literal("kerberos", "credssp")
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const Auth = Schema.Union(BasicAuth, NtlmAuth, UnsupportedAuth)

/**
 * @since 0.1.0
 * @category models
 */
export type Auth = typeof Auth.Type

/**
 * The certificate must chain to a CA in `ca` (PEM files; default: Node's bundled CAs) and name the host.
 *
 * @since 0.1.0
 * @category schemas
 */
export const StrictCertificate = Schema.Struct({
  policy: Schema.Literal("strict"),
  ca: Schema.optional(Schema.Array(Schema.String.pipe(Schema.minLength(1))))
})

/**
 * The certificate must be one of these, by SHA-256 fingerprint of its DER form (hex, colons allowed, as
 * `openssl x509 -noout -fingerprint -sha256` prints it); chain and name are not checked.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PinnedCertificate = Schema.Struct({
  policy: Schema.Literal("pinned"),
  sha256: Schema.NonEmptyArray(
    Schema.String.pipe(
      Schema.pattern(/^(?:[0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/, {
        message: () =>
          "a pinned certificate fingerprint must be 64 hex digits, colons allowed (openssl x509 -noout -fingerprint -sha256)"
      })
    )
  )
})

/**
 * Any certificate is accepted. For throw-away test machines only.
 *
 * @since 0.1.0
 * @category schemas
 */
export const InsecureCertificate = Schema.Struct({
  policy: Schema.Literal("insecure")
})

/**
 * How the server's TLS certificate is verified. Required with `scheme: https`: a target must say.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CertificatePolicy = Schema.Union(StrictCertificate, PinnedCertificate, InsecureCertificate)

/**
 * @since 0.1.0
 * @category models
 */
export type CertificatePolicy = typeof CertificatePolicy.Type

/**
 * Which PowerShell runs the job: `powershell` (Windows PowerShell 5.1, `powershell.exe`) or `pwsh` (7.x).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Shell = Schema.Literal("powershell", "pwsh")

/**
 * @since 0.1.0
 * @category models
 */
export type Shell = typeof Shell.Type

const fields = Schema.Struct({
  ...Target.make("winrm", {
    host: Schema.String.pipe(Schema.minLength(1, { message: () => "host must not be empty" })),
    port: Schema.optional(Port),
    scheme: Schema.optionalWith(Schema.Literal("https", "http"), { default: () => "https" as const }),
    auth: Auth,
    certificate: Schema.optional(CertificatePolicy),
    shell: Schema.optionalWith(Shell, { default: () => "powershell" as const }),
    /** The URL path of the WS-Management listener (default `/wsman`). */
    path: Schema.optionalWith(Schema.String.pipe(Schema.startsWith("/")), { default: () => "/wsman" }),
    /** Shells opened at once on this host by this client (keep it within MaxShellsPerUser; default 5). */
    maxShells: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000)))
  }).fields,
  os: Schema.optionalWith(Target.Os, { default: () => "windows" as const })
})

/** What is wrong with a decoded target as a whole (fields that only make sense together), if anything. */
const problem = (t: typeof fields.Type): string | undefined => {
  if (t.scheme === "https" && t.certificate === undefined) {
    return "certificate: an https target needs a certificate policy: { policy: strict, ca: [file.pem] }, " +
      "{ policy: pinned, sha256: [...] } or { policy: insecure }"
  }
  if (t.scheme === "http" && t.auth.type === "basic") {
    return "auth: Basic authentication over http would send the password in clear; use scheme: https, or " +
      "auth type ntlm (every message encrypted)"
  }
  return undefined
}

/**
 * The `winrm` target kind. `port` defaults to 5986 for HTTPS and 5985 for HTTP; `os` defaults to `windows`. An
 * `https` target must name its certificate policy; Basic is refused over `http`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const WinRmTarget = Schema.transformOrFail(fields, Schema.typeSchema(fields), {
  strict: true,
  // a transformation, not a filter: its type side stays a struct, which `Target.union` reads the kind from
  decode: (t, _, ast) => {
    const message = problem(t)
    return message === undefined ? ParseResult.succeed(t) : ParseResult.fail(new ParseResult.Type(ast, t, message))
  },
  encode: ParseResult.succeed
})

/**
 * @since 0.1.0
 * @category models
 */
export type WinRmTarget = typeof WinRmTarget.Type

/**
 * The encoded (JSON/YAML) form of a WinRM target.
 *
 * @since 0.1.0
 * @category models
 */
export type WinRmTargetEncoded = typeof WinRmTarget.Encoded

/**
 * @since 0.1.0
 * @category refinements
 */
export const isWinRmTarget = (u: unknown): u is WinRmTarget => Schema.is(WinRmTarget)(u)

/**
 * The port a target connects to.
 *
 * @since 0.1.0
 * @category utils
 */
export const portOf = (target: Pick<WinRmTarget, "port" | "scheme">): number =>
  target.port ?? (target.scheme === "https" ? 5986 : 5985)

/**
 * The listener's URL.
 *
 * @since 0.1.0
 * @category utils
 */
export const endpoint = (target: Pick<WinRmTarget, "host" | "port" | "scheme" | "path">): string => {
  const host = target.host.includes(":") ? `[${target.host}]` : target.host
  return `${target.scheme}://${host}:${portOf(target)}${target.path}`
}

/**
 * @since 0.1.0
 * @category models
 */
export type MakeInput =
  & Pick<WinRmTarget, "host" | "auth">
  & Partial<Omit<WinRmTarget, "kind" | "host" | "auth">>

/**
 * Builds a target, filling defaults (`id` is `host:port` unless given). Checked as a decoded target would be.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (input: MakeInput): WinRmTarget => {
  const scheme = input.scheme ?? "https"
  const target: WinRmTarget = {
    ...input,
    kind: "winrm",
    id: input.id ?? `${input.host}:${portOf({ port: input.port, scheme })}`,
    labels: input.labels ?? {},
    os: input.os ?? "windows",
    scheme,
    shell: input.shell ?? "powershell",
    path: input.path ?? "/wsman"
  }
  const message = problem(target)
  if (message !== undefined) throw new Error(`winrm target ${target.id}: ${message}`)
  return target
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const basic = (user: string, password: Redacted.Redacted<string> | string): BasicAuth => ({
  type: "basic",
  user,
  password: typeof password === "string" ? Redacted.make(password) : password
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const ntlm = (
  user: string,
  password: Redacted.Redacted<string> | string,
  domain?: string
): NtlmAuth => ({
  type: "ntlm",
  user,
  password: typeof password === "string" ? Redacted.make(password) : password,
  ...(domain === undefined ? {} : { domain })
})
