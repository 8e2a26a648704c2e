/**
 * The `ssh` target kind: where an SSH host is, how to log in, how its host key is verified (a required policy),
 * through which jump hosts, with which timeouts, keepalive and algorithms.
 *
 * @since 0.1.0
 */
import { DurationText } from "@runcmd/core/ExecutionPolicy"
import * as Target from "@runcmd/core/Target"
import * as Duration from "effect/Duration"
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
 * A private key, given inline (`key`, PEM or OpenSSH format, kept `Redacted`) or as a file `path` (read at connect
 * time), with an optional passphrase.
 *
 * @since 0.1.0
 * @category schemas
 */
export const KeyAuth = Schema.Struct({
  type: Schema.Literal("key"),
  key: Schema.optional(Schema.Redacted(Schema.String)),
  path: Schema.optional(Schema.String.pipe(Schema.minLength(1))),
  passphrase: Schema.optional(Schema.Redacted(Schema.String))
}).pipe(
  Schema.filter((auth) =>
    (auth.key === undefined) === (auth.path === undefined)
      ? "key authentication needs exactly one of `key` (the private key text) or `path` (a private key file)"
      : undefined
  )
)

/**
 * @since 0.1.0
 * @category models
 */
export type KeyAuth = typeof KeyAuth.Type

/**
 * An SSH agent, by its socket (default: `SSH_AUTH_SOCK` when connecting).
 *
 * @since 0.1.0
 * @category schemas
 */
export const AgentAuth = Schema.Struct({
  type: Schema.Literal("agent"),
  socket: Schema.optional(Schema.String.pipe(Schema.minLength(1)))
})

/**
 * @since 0.1.0
 * @category models
 */
export type AgentAuth = typeof AgentAuth.Type

/**
 * A password (kept `Redacted`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const PasswordAuth = Schema.Struct({
  type: Schema.Literal("password"),
  password: Schema.Redacted(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type PasswordAuth = typeof PasswordAuth.Type

/**
 * @since 0.1.0
 * @category schemas
 */
export const Auth = Schema.Union(KeyAuth, AgentAuth, PasswordAuth)

/**
 * @since 0.1.0
 * @category models
 */
export type Auth = typeof Auth.Type

/**
 * Host keys must be known: from OpenSSH `known_hosts` files (default `~/.ssh/known_hosts` and
 * `/etc/ssh/ssh_known_hosts`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const StrictHostKey = Schema.Struct({
  policy: Schema.Literal("strict"),
  knownHosts: Schema.optional(Schema.Array(Schema.String.pipe(Schema.minLength(1))))
})

/**
 * Trust on first use: an unknown host's key is recorded in `store` (a `known_hosts` file); a known host must
 * present the recorded key.
 *
 * @since 0.1.0
 * @category schemas
 */
export const AcceptNewHostKey = Schema.Struct({
  policy: Schema.Literal("accept-new"),
  store: Schema.String.pipe(Schema.minLength(1))
})

/**
 * The host must present one of these keys, by OpenSSH SHA-256 fingerprint (`SHA256:` + unpadded base64, as
 * `ssh-keygen -lf` prints it).
 *
 * @since 0.1.0
 * @category schemas
 */
export const PinnedHostKey = Schema.Struct({
  policy: Schema.Literal("pinned"),
  fingerprints: Schema.NonEmptyArray(
    Schema.String.pipe(
      Schema.pattern(/^SHA256:[A-Za-z0-9+/]{43}=?$/, {
        message: () => "a pinned fingerprint must look like SHA256:<43 base64 characters> (ssh-keygen -lf)"
      })
    )
  )
})

/**
 * Any host key is accepted (a warning is logged on every connection). For throw-away test machines only.
 *
 * @since 0.1.0
 * @category schemas
 */
export const InsecureHostKey = Schema.Struct({
  policy: Schema.Literal("insecure")
})

/**
 * How the host's identity is verified. There is no default: a target must say.
 *
 * @since 0.1.0
 * @category schemas
 */
export const HostKeyPolicy = Schema.Union(StrictHostKey, AcceptNewHostKey, PinnedHostKey, InsecureHostKey)

/**
 * @since 0.1.0
 * @category models
 */
export type HostKeyPolicy = typeof HostKeyPolicy.Type

const AlgorithmList = Schema.Union(
  Schema.Array(Schema.String),
  Schema.Struct({
    append: Schema.optional(Schema.Array(Schema.String)),
    prepend: Schema.optional(Schema.Array(Schema.String)),
    remove: Schema.optional(Schema.Array(Schema.String))
  })
)

/**
 * Algorithm overrides, as ssh2 takes them: a full list, or `append`/`prepend`/`remove` edits of the default one
 * (e.g. `{ kex: { append: ["diffie-hellman-group14-sha1"] } }` for a legacy device).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Algorithms = Schema.Struct({
  kex: Schema.optional(AlgorithmList),
  serverHostKey: Schema.optional(AlgorithmList),
  cipher: Schema.optional(AlgorithmList),
  hmac: Schema.optional(AlgorithmList),
  compress: Schema.optional(AlgorithmList)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Algorithms = typeof Algorithms.Type

/**
 * Keepalive: a request every `interval`, the connection is declared lost after `countMax` unanswered ones.
 * `false` turns it off. Default: 15 s × 3.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Keepalive = Schema.Union(
  Schema.Literal(false),
  Schema.Struct({
    interval: DurationText,
    countMax: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 1000)), { default: () => 3 })
  })
)

/**
 * @since 0.1.0
 * @category models
 */
export type Keepalive = typeof Keepalive.Type

const connectionFields = {
  host: Schema.String.pipe(Schema.minLength(1, { message: () => "host must not be empty" })),
  port: Schema.optionalWith(Port, { default: () => 22 }),
  user: Schema.String.pipe(Schema.minLength(1, { message: () => "user must not be empty" })),
  auth: Auth,
  hostKey: HostKeyPolicy,
  /** TCP connect timeout (default 10 s). */
  connectTimeout: Schema.optional(DurationText),
  /** Handshake + authentication timeout once connected (default 20 s). */
  readyTimeout: Schema.optional(DurationText),
  keepalive: Schema.optional(Keepalive),
  algorithms: Schema.optional(Algorithms)
}

/**
 * A jump host (`ProxyJump`): its own address, user, authentication and host-key policy.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Hop = Schema.Struct(connectionFields)

/**
 * @since 0.1.0
 * @category models
 */
export type Hop = typeof Hop.Type

/**
 * The `ssh` target kind. `via` lists jump hosts in the order they are crossed (the first is dialled directly).
 *
 * @since 0.1.0
 * @category schemas
 */
export const SshTarget = Target.make("ssh", {
  ...connectionFields,
  via: Schema.optionalWith(Schema.Array(Hop), { default: () => [] }),
  /**
   * The login shell of `user`, when declared: `posix` (sh, bash, …), `pwsh` (PowerShell 7, e.g. Windows OpenSSH's
   * `DefaultShell`, or a Linux user's), `powershell` (Windows PowerShell 5.1). Undeclared, it is asked once per
   * user, host and port. Each job gets the launch its login shell runs: PowerShell scripts the PowerShell twin,
   * the rest the POSIX wrapper (through `/bin/sh` explicitly under a Linux `pwsh`; refused on Windows).
   */
  shell: Schema.optional(Schema.Literal("posix", "pwsh", "powershell")),
  /** Channels opened at once per connection to this host (default: the transport's, 8). */
  maxChannels: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000)))
})

/**
 * @since 0.1.0
 * @category models
 */
export type SshTarget = typeof SshTarget.Type

/**
 * The encoded (JSON/YAML) form of an SSH target.
 *
 * @since 0.1.0
 * @category models
 */
export type SshTargetEncoded = typeof SshTarget.Encoded

/**
 * @since 0.1.0
 * @category refinements
 */
export const isSshTarget = (u: unknown): u is SshTarget => Schema.is(SshTarget)(u)

/**
 * @since 0.1.0
 * @category models
 */
export type MakeInput =
  & Pick<SshTarget, "host" | "user" | "auth" | "hostKey">
  & Partial<Omit<SshTarget, "kind" | "host" | "user" | "auth" | "hostKey">>

/**
 * Builds a target from decoded values, filling defaults (`id` is `user@host:port` unless given).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (input: MakeInput): SshTarget => {
  const port = input.port ?? 22
  return {
    ...input,
    kind: "ssh",
    id: input.id ?? `${input.user}@${input.host}${port === 22 ? "" : `:${port}`}`,
    labels: input.labels ?? {},
    os: input.os ?? "linux",
    host: input.host,
    port,
    via: input.via ?? []
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const keyFile = (path: string, passphrase?: Redacted.Redacted<string> | string): KeyAuth => ({
  type: "key",
  path,
  ...(passphrase === undefined
    ? {}
    : { passphrase: typeof passphrase === "string" ? Redacted.make(passphrase) : passphrase })
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const key = (
  privateKey: Redacted.Redacted<string> | string,
  passphrase?: Redacted.Redacted<string> | string
): KeyAuth => ({
  type: "key",
  key: typeof privateKey === "string" ? Redacted.make(privateKey) : privateKey,
  ...(passphrase === undefined
    ? {}
    : { passphrase: typeof passphrase === "string" ? Redacted.make(passphrase) : passphrase })
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const agent = (
  socket?: string
): AgentAuth => (socket === undefined ? { type: "agent" } : { type: "agent", socket })

/**
 * @since 0.1.0
 * @category constructors
 */
export const password = (value: Redacted.Redacted<string> | string): PasswordAuth => ({
  type: "password",
  password: typeof value === "string" ? Redacted.make(value) : value
})

/**
 * Default TCP connect timeout.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultConnectTimeout: Duration.Duration = Duration.seconds(10)

/**
 * Default handshake + authentication timeout.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultReadyTimeout: Duration.Duration = Duration.seconds(20)

/**
 * Default keepalive: 15 s × 3.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultKeepalive = { interval: Duration.seconds(15), countMax: 3 } as const

/**
 * The jump hosts and the target itself, in dialling order.
 *
 * @since 0.1.0
 * @category utils
 */
export const chain = (target: SshTarget): ReadonlyArray<Hop> => [...target.via, target]

/**
 * `host` for port 22, `[host]:port` otherwise (the form `known_hosts` uses).
 *
 * @since 0.1.0
 * @category utils
 */
export const hostPort = (host: string, port: number): string => (port === 22 ? host : `[${host}]:${port}`)
