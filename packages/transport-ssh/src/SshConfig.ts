/**
 * OpenSSH `ssh_config` import (via the `ssh-config` package): `Host` patterns, `HostName`, `User`, `Port`,
 * `IdentityFile`, `IdentityAgent`, `ProxyJump`, `StrictHostKeyChecking`, `UserKnownHostsFile`,
 * `GlobalKnownHostsFile`, `ConnectTimeout`, `ServerAliveInterval`/`ServerAliveCountMax` → `SshTarget` values:
 * a source of core's `Targets` service ({@link layer}), an importer for inventories' `imports: [{ sshConfig: FILE }]`
 * ({@link layerImporter}, or {@link importer} given to `Inventory.load`), and the CLI (`--ssh-config FILE`).
 * `Match exec` is never evaluated; `Include` is not followed.
 *
 * @since 0.1.0
 */
import { InvalidPlan } from "@runcmd/core/InvalidPlan"
import * as Inventory from "@runcmd/core/Inventory"
import * as Targets from "@runcmd/core/Targets"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import SSHConfigParser from "ssh-config"
import * as KnownHosts from "./KnownHosts.js"
import * as SshTarget from "./SshTarget.js"

/**
 * A parsed `ssh_config`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SshConfig {
  readonly file?: string | undefined
  /** The concrete host aliases (Host patterns without wildcards or negation), in file order. */
  readonly aliases: ReadonlyArray<string>
  /** @internal */
  readonly parsed: SSHConfigParser
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ImportOptions {
  /** Overrides the host-key policy derived from `StrictHostKeyChecking` / `UserKnownHostsFile`. */
  readonly hostKey?: SshTarget.HostKeyPolicy | undefined
  /** The user when the config names none (default: the local user, as OpenSSH does). */
  readonly defaultUser?: string | undefined
  /** Labels given to every imported target (each also gets `ssh-config-host: <alias>`). */
  readonly labels?: Readonly<Record<string, string>> | undefined
  /** The home directory for `~` and `%d` (default: the current user's). */
  readonly home?: string | undefined
  /** Only these aliases (glob patterns allowed) when listing targets. */
  readonly hosts?: ReadonlyArray<string> | undefined
}

/**
 * @since 0.1.0
 * @category parsing
 */
export const parse = (text: string, file?: string): SshConfig => {
  const parsed = SSHConfigParser.parse(text)
  const aliases: Array<string> = []
  for (const line of parsed) {
    if (line.type !== SSHConfigParser.DIRECTIVE || !("param" in line) || line.param.toLowerCase() !== "host") continue
    const value = line.value
    const patterns = typeof value === "string" ? value.split(/\s+/) : value.map((v) => v.val)
    for (const p of patterns) {
      if (p === "" || /[*?!]/.test(p) || aliases.includes(p)) continue
      aliases.push(p)
    }
  }
  return { file, aliases, parsed }
}

const invalid = (config: SshConfig, where: string, description: string) =>
  new InvalidPlan({
    reason: "InvalidInventory",
    path: `${config.file ?? "ssh_config"}: ${where}`,
    description
  })

const first = (v: string | Array<string> | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)
const all = (v: string | Array<string> | undefined): Array<string> =>
  v === undefined ? [] : (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(/\s+/)).filter((s) => s !== "")

const compute = (config: SshConfig, host: string, user?: string): Record<string, string | Array<string>> =>
  config.parsed.compute(user === undefined ? { Host: host } : { Host: host, User: user }, {
    ignoreCase: true,
    matchExec: false
  })

interface Expand {
  readonly alias: string
  readonly host: string
  readonly port: number
  readonly user: string
  readonly home: string
}

/** OpenSSH tokens in paths: `~`, `%d` home, `%h` host, `%p` port, `%r` user, `%n` alias, `%u` local user, `%%`. */
const expandPath = (p: string, x: Expand): string => {
  const withHome = p === "~" ? x.home : p.startsWith("~/") ? path.join(x.home, p.slice(2)) : p
  return withHome.replace(/%([%dhprnu])/g, (_, t: string) => {
    switch (t) {
      case "%":
        return "%"
      case "d":
        return x.home
      case "h":
        return x.host
      case "p":
        return String(x.port)
      case "r":
        return x.user
      case "n":
        return x.alias
      default:
        return os.userInfo().username
    }
  })
}

const DEFAULT_IDENTITIES = ["id_ed25519", "id_ecdsa", "id_rsa"]

interface Jump {
  readonly user?: string | undefined
  readonly host: string
  readonly port?: number | undefined
}

const parseJump = (spec: string): Jump | undefined => {
  const s = spec.replace(/^ssh:\/\//, "")
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(s)
  if (m === null) return undefined
  const host = m[2]!.replace(/^\[(.*)\]$/, "$1")
  return { user: m[1], host, port: m[3] === undefined ? undefined : Number(m[3]) }
}

/**
 * The target (or jump host) an alias names, with its own jump chain resolved recursively.
 */
const resolveHop = (
  config: SshConfig,
  alias: string,
  options: ImportOptions,
  overrides: { readonly user?: string | undefined; readonly port?: number | undefined },
  seen: ReadonlyArray<string>
): Either.Either<{ readonly hop: SshTarget.Hop; readonly via: ReadonlyArray<SshTarget.Hop> }, InvalidPlan> => {
  if (seen.includes(alias)) {
    return Either.left(invalid(config, `Host ${alias}`, `ProxyJump loop: ${[...seen, alias].join(" -> ")}`))
  }
  const c = compute(config, alias, overrides.user)
  const home = options.home ?? os.homedir()
  const hostName = first(c.hostname) ?? alias
  const host = hostName.replace(/%h/g, alias)
  const portText = overrides.port === undefined ? first(c.port) : String(overrides.port)
  const port = portText === undefined ? 22 : Number(portText)
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return Either.left(invalid(config, `Host ${alias}`, `Port must be 1..65535, got ${portText}`))
  }
  const user = overrides.user ?? first(c.user) ?? options.defaultUser ?? os.userInfo().username
  const x: Expand = { alias, host, port, user, home }

  // authentication: an IdentityFile, else the agent, else OpenSSH's default key files
  const identityFiles = all(c.identityfile).filter((f) => f.toLowerCase() !== "none").map((f) => expandPath(f, x))
  const agentSocket = first(c.identityagent)
  let auth: SshTarget.Auth
  if (identityFiles.length > 0) {
    auth = SshTarget.keyFile(identityFiles.find((f) => fs.existsSync(f)) ?? identityFiles[0]!)
  } else if (agentSocket !== undefined && agentSocket.toLowerCase() !== "none") {
    auth = SshTarget.agent(agentSocket === "SSH_AUTH_SOCK" ? undefined : expandPath(agentSocket.replace(/^\$/, ""), x))
  } else if (first(c.identitiesonly)?.toLowerCase() !== "yes" && process.env.SSH_AUTH_SOCK !== undefined) {
    auth = SshTarget.agent()
  } else {
    const found = DEFAULT_IDENTITIES.map((n) => path.join(home, ".ssh", n)).find((f) => fs.existsSync(f))
    auth = SshTarget.keyFile(found ?? path.join(home, ".ssh", DEFAULT_IDENTITIES[0]!))
  }

  // host keys
  let hostKey: SshTarget.HostKeyPolicy
  if (options.hostKey !== undefined) {
    hostKey = options.hostKey
  } else {
    const userFiles = all(c.userknownhostsfile).map((f) => expandPath(f, x))
    const globalFiles = all(c.globalknownhostsfile).map((f) => expandPath(f, x))
    const files = [
      ...(userFiles.length > 0 ? userFiles : [path.join(home, ".ssh", "known_hosts")]),
      ...(globalFiles.length > 0 ? globalFiles : ["/etc/ssh/ssh_known_hosts"])
    ].filter((f) => f !== "/dev/null")
    const strict = (first(c.stricthostkeychecking) ?? "ask").toLowerCase()
    hostKey = strict === "no" || strict === "off"
      ? { policy: "insecure" }
      : strict === "accept-new"
      ? { policy: "accept-new", store: userFiles[0] ?? path.join(home, ".ssh", "known_hosts") }
      : { policy: "strict", knownHosts: files }
  }

  const connectTimeout = first(c.connecttimeout)
  const aliveInterval = first(c.serveraliveinterval)
  const aliveCount = first(c.serveralivecountmax)
  const hop: SshTarget.Hop = {
    host,
    port,
    user,
    auth,
    hostKey,
    ...(connectTimeout === undefined || !(Number(connectTimeout) > 0)
      ? {}
      : { connectTimeout: Duration.seconds(Number(connectTimeout)) }),
    ...(aliveInterval === undefined
      ? {}
      : Number(aliveInterval) === 0
      ? { keepalive: false as const }
      : {
        keepalive: {
          interval: Duration.seconds(Number(aliveInterval)),
          countMax: aliveCount === undefined ? 3 : Math.max(1, Number(aliveCount))
        }
      })
  }

  // jump hosts: each resolved through the config too (its own HostName, User, IdentityFile, ProxyJump...)
  const proxyJump = first(c.proxyjump)
  const via: Array<SshTarget.Hop> = []
  if (proxyJump !== undefined && proxyJump.toLowerCase() !== "none") {
    for (const spec of proxyJump.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      const jump = parseJump(spec)
      if (jump === undefined) {
        return Either.left(invalid(config, `Host ${alias}`, `cannot parse ProxyJump entry ${JSON.stringify(spec)}`))
      }
      const resolved = resolveHop(config, jump.host, options, { user: jump.user, port: jump.port }, [...seen, alias])
      if (Either.isLeft(resolved)) return resolved
      for (const hop of resolved.right.via) via.push(hop)
      via.push(resolved.right.hop)
    }
  }
  if (first(c.proxycommand) !== undefined && first(c.proxycommand)!.toLowerCase() !== "none") {
    return Either.left(invalid(config, `Host ${alias}`, "ProxyCommand is not supported; use ProxyJump"))
  }
  return Either.right({ hop, via })
}

/**
 * The target for one alias (or any host name: patterns such as `Host *.prod` apply to it).
 *
 * @since 0.1.0
 * @category import
 */
export const resolve = (
  config: SshConfig,
  alias: string,
  options: ImportOptions = {}
): Either.Either<SshTarget.SshTarget, InvalidPlan> =>
  Either.map(resolveHop(config, alias, options, {}, []), ({ hop, via }) =>
    SshTarget.make({
      ...hop,
      id: alias,
      labels: { ...options.labels, "ssh-config-host": alias },
      via
    }))

/**
 * Every concrete alias of the config (optionally filtered by `options.hosts` globs) as a target.
 *
 * @since 0.1.0
 * @category import
 */
export const targets = (
  config: SshConfig,
  options: ImportOptions = {}
): Either.Either<ReadonlyArray<SshTarget.SshTarget>, InvalidPlan> => {
  const wanted = options.hosts
  const aliases = wanted === undefined
    ? config.aliases
    : config.aliases.filter((a) => wanted.some((p) => KnownHosts.globMatch(p, a)))
  const out: Array<SshTarget.SshTarget> = []
  for (const alias of aliases) {
    const r = resolve(config, alias, options)
    if (Either.isLeft(r)) return Either.left(r.left)
    out.push(r.right)
  }
  return Either.right(out)
}

/** Reads and parses a config file (default `~/.ssh/config`). */
const readConfig = (file: string | undefined, options: ImportOptions): Effect.Effect<SshConfig, InvalidPlan> => {
  const p = KnownHosts.expandHome(file ?? path.join(options.home ?? os.homedir(), ".ssh", "config"))
  return Effect.tryPromise({
    try: () => fs.promises.readFile(p, "utf8"),
    catch: (e) =>
      new InvalidPlan({
        reason: "FileUnreadable",
        path: p,
        description: `cannot read the ssh_config file: ${(e as Error).message}`,
        cause: e
      })
  }).pipe(Effect.map((text) => parse(text, p)))
}

/**
 * Reads a config file (default `~/.ssh/config`) and imports its hosts.
 *
 * @since 0.1.0
 * @category import
 */
export const fromFile = (
  file?: string,
  options: ImportOptions = {}
): Effect.Effect<ReadonlyArray<SshTarget.SshTarget>, InvalidPlan> =>
  Effect.gen(function*() {
    return yield* targets(yield* readConfig(file, options), options)
  }).pipe(Effect.withSpan("SshConfig.fromFile"))

/**
 * Reads a config file and resolves one alias.
 *
 * @since 0.1.0
 * @category import
 */
export const resolveFromFile = (
  alias: string,
  file?: string,
  options: ImportOptions = {}
): Effect.Effect<SshTarget.SshTarget, InvalidPlan> =>
  Effect.gen(function*() {
    return yield* resolve(yield* readConfig(file, options), alias, options)
  }).pipe(Effect.withSpan("SshConfig.resolveFromFile", { attributes: { alias } }))

const ImportEntryOptions = Schema.Struct({
  hosts: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String))),
  user: Schema.optional(Schema.String),
  hostKey: Schema.optional(SshTarget.HostKeyPolicy)
})

/**
 * The inventory importer for `imports:` entries such as
 *
 * ```yaml
 * imports:
 *   - sshConfig: ./ssh_config      # relative to the inventory file; `~` is the home directory
 *     hosts: ["web-*"]             # optional: aliases (globs) to import; default every concrete `Host`
 *     user: deploy                 # optional: the user when the config names none
 *     hostKey: { policy: strict }  # optional: instead of what StrictHostKeyChecking/UserKnownHostsFile say
 *     group: web                   # (core) the group the targets join
 *     labels: { tier: front }      # (core) labels for every imported target
 * ```
 *
 * Give it to `Inventory.load(file, kinds, { importers: [SshConfig.importer] })`.
 *
 * @since 0.1.0
 * @category import
 */
export const importer: Inventory.Importer = {
  key: "sshConfig",
  import: ({ dir, options, value }) =>
    Effect.gen(function*() {
      if (typeof value !== "string" || value.length === 0) {
        return yield* Effect.fail(
          `expected the path of an OpenSSH config file, got ${JSON.stringify(value) ?? "nothing"}`
        )
      }
      const decoded = Schema.decodeUnknownEither(ImportEntryOptions, { onExcessProperty: "error" })(options)
      if (Either.isLeft(decoded)) {
        const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
        const where = issue === undefined || issue.path.length === 0 ? "" : `${issue.path.join(".")}: `
        return yield* Effect.fail(
          `${where}${
            issue?._tag === "Unexpected"
              ? "unknown option (known: hosts, user, hostKey, group, labels)"
              : issue?.message ?? "invalid options"
          }`
        )
      }
      const { hostKey, hosts, user } = decoded.right
      const file = path.resolve(dir, KnownHosts.expandHome(value))
      return yield* fromFile(file, {
        ...(hostKey === undefined ? {} : { hostKey }),
        ...(user === undefined ? {} : { defaultUser: user }),
        ...(hosts === undefined ? {} : { hosts: typeof hosts === "string" ? [hosts] : hosts })
      }).pipe(Effect.mapError((e) => (e.path === undefined ? e.description : `${e.path}: ${e.description}`)))
    })
}

/**
 * The `imports: [{ sshConfig: FILE }]` entries of inventories, as a layer: an inventory read through
 * `Targets.layerInventory` (or `Inventory.load`) where this layer is in scope can import the hosts of an
 * OpenSSH config file.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerImporter: Layer.Layer<Inventory.Importers> = Inventory.layerImporter(importer)

/**
 * The hosts of an OpenSSH config file (default `~/.ssh/config`) as a source of core's `Targets`: read once per
 * layer (`options.cache` to read it again), every imported target labelled `ssh-config-host: <alias>` and with
 * `options.labels`, narrowed to `options.hosts` (globs). Merged with the other sources in scope; a host whose id
 * another source gives too is a `TargetsError` `DuplicateTargetId`.
 *
 * @example
 * ```ts
 * const targets = Layer.mergeAll(
 *   SshConfig.layer("~/.ssh/config", { hosts: ["web-*"], labels: { role: "web" } }),
 *   Targets.layerInventory("inventory.yaml", kinds)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  file?: string,
  options: ImportOptions & { readonly cache?: Targets.Source["cache"] } = {}
): Layer.Layer<Targets.Targets> =>
  Targets.layerSource({
    name: `ssh_config ${file ?? "~/.ssh/config"}`,
    discover: fromFile(file, options),
    cache: options.cache
  })
