/**
 * A real OpenSSH server on loopback for tests and benchmarks: generated host and client ed25519 keys and config
 * in a temp dir, a free port, one sshd per 16 addresses (OpenSSH's MAX_LISTEN_SOCKS), run under `tini -s` (a
 * subreaper, so orphaned remote processes stay findable), a dedicated test user (created and removed when root),
 * a leak check for remote processes, and full teardown.
 *
 * Usage in tests: one scoped layer per `describe`, shared by its tests with `it.layer`, and a leftover check after
 * each test:
 *   describe.skipIf(!Sshd.enabled())("…", () => {
 *     afterEach(() => Sshd.assertNoLeftovers())
 *     it.layer(Sshd.layer({ addresses: 50 }), Sshd.layerOptions)((it) => {
 *       it.scoped("…", () => Effect.gen(function*() {
 *         const sshd = yield* Sshd.Server
 *         const target = sshd.target({ address: sshd.addresses[3] })
 *       }))
 *     })
 *   })
 * Several servers in one suite: a tag each (`Sshd.layer(options, Tag)`), merged. Benchmarks use the Promise API
 * (`Sshd.start(options)` … `sshd.stop()`); `Sshd.scoped(options)` starts one in an Effect scope.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as cp from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as SshTarget from "../../src/SshTarget.js"

/** The sshd binary (override with RUNCMD_TEST_SSHD). */
export const SSHD = process.env.RUNCMD_TEST_SSHD ?? "/usr/sbin/sshd"
export const SSH_KEYGEN = "/usr/bin/ssh-keygen"
export const TINI = "/usr/bin/tini"
/** OpenSSH's compiled-in limit of listen sockets per daemon. */
export const MAX_LISTEN_SOCKS = 16

export const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0
export const isCI = (): boolean => process.env.CI === "true" || process.env.CI === "1"

/** Whether a real sshd can be started here, and if not, what to install. */
export const availability = (): { readonly ok: true } | { readonly ok: false; readonly hint: string } => {
  const missing = [SSHD, SSH_KEYGEN].filter((f) => !fs.existsSync(f))
  if (missing.length === 0) return { ok: true }
  return {
    ok: false,
    hint: `SSH tests skipped: ${missing.join(", ")} not found; install with ` +
      "`apt-get install -y openssh-server openssh-client sudo tini`"
  }
}

/**
 * For `describe.skipIf(!Sshd.enabled())`: true when sshd is available; otherwise prints one line and returns false,
 * except under CI, where a missing sshd throws (the tests must run there).
 */
export const enabled = (): boolean => {
  const a = availability()
  if (a.ok) return true
  if (isCI()) throw new Error(`CI=true but sshd is unavailable: ${a.hint}`)
  if (!warned) {
    warned = true
    console.log(a.hint)
  }
  return false
}
let warned = false

const run = (file: string, args: ReadonlyArray<string>, input?: string): Promise<{ code: number; out: string }> =>
  new Promise((resolve, reject) => {
    const child = cp.spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] })
    child.stdin.on("error", () => {})
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    child.on("error", reject)
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, out })
    })
    child.stdin.end(input ?? "")
  })

const must = async (file: string, args: ReadonlyArray<string>, input?: string): Promise<string> => {
  const r = await run(file, args, input)
  if (r.code !== 0) throw new Error(`${file} ${args.join(" ")} exited ${r.code}: ${r.out.trim()}`)
  return r.out
}

/** Retries commands that take /etc/passwd locks (useradd, userdel) when another test file holds them. */
const withPasswdRetry = async (file: string, args: ReadonlyArray<string>, input?: string): Promise<string> => {
  for (let i = 0;; i++) {
    const r = await run(file, args, input)
    if (r.code === 0) return r.out
    if (i >= 20 || !/lock|try again/i.test(r.out)) {
      throw new Error(`${file} ${args.join(" ")} exited ${r.code}: ${r.out.trim()}`)
    }
    await sleep(100 + Math.random() * 200)
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A port free on 127.0.0.1 right now (the caller retries on a bind clash). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

let userCounter = 0

export interface TestUser {
  readonly name: string
  readonly uid: number
  readonly home: string
  readonly password?: string | undefined
  readonly remove: () => Promise<void>
}

export interface UserOptions {
  /** A login password (also used by sudo); without one the account gets `*` (key login only). */
  readonly password?: string | undefined
  /** A sudoers rule: `password` (ALL, password asked every time), `nopasswd`, or none. */
  readonly sudo?: "password" | "nopasswd" | "none" | undefined
  /**
   * sudo runs the user's commands without a pseudo-terminal (`Defaults:<user> !use_pty`, as many distributions do;
   * Debian sets `use_pty`, whose pty hangs the command up when sudo goes).
   */
  readonly sudoWithoutPty?: boolean | undefined
  readonly shell?: string | undefined
}

const users = new Set<TestUser>()

/** Creates a dedicated local user (root only): key login works (`usermod -p '*'`), optional sudo rule. */
export const createUser = async (options: UserOptions = {}): Promise<TestUser> => {
  if (!isRoot()) throw new Error("creating test users needs root")
  const name = `rct${process.pid.toString(36)}${(userCounter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`
    .slice(0, 30)
  const marker = path.join(os.tmpdir(), `${STATE_PREFIX}u-${name}`)
  fs.mkdirSync(marker, { recursive: true })
  writeOwner(marker, { users: [name] })
  await withPasswdRetry("useradd", ["-m", "-s", options.shell ?? "/bin/bash", name])
  const sudoers = `/etc/sudoers.d/runcmd-test-${name}`
  const remove = async () => {
    users.delete(user)
    fs.rmSync(marker, { recursive: true, force: true })
    fs.rmSync(sudoers, { force: true })
    // the wrapper's per-user capability cache (ScriptRender: `.runcmd-caps-v1-<user>` in the temp dir)
    fs.rmSync(path.join(os.tmpdir(), `.runcmd-caps-v1-${name}`), { force: true })
    await killUserProcesses(uidOf(name))
    await withPasswdRetry("userdel", ["-f", "-r", name]).catch(async (e) => {
      // a process may have been starting as the user; try once more after killing again
      await killUserProcesses(uidOf(name))
      await withPasswdRetry("userdel", ["-f", "-r", name]).catch(() => {
        throw e
      })
    })
  }
  if (options.password !== undefined) {
    await withPasswdRetry("chpasswd", [], `${name}:${options.password}\n`)
  } else {
    await withPasswdRetry("usermod", ["-p", "*", name])
  }
  if (options.sudo === "password" || options.sudo === "nopasswd") {
    const rule = options.sudo === "password"
      ? `${name} ALL=(ALL:ALL) ALL\nDefaults:${name} !lecture, timestamp_timeout=0, passwd_tries=1\n`
      : `${name} ALL=(ALL:ALL) NOPASSWD: ALL\n`
    const pty = options.sudoWithoutPty === true ? `Defaults:${name} !use_pty\n` : ""
    const tmp = `${sudoers}.tmp`
    fs.writeFileSync(tmp, rule + pty, { mode: 0o440 })
    await must("visudo", ["-cf", tmp])
    fs.renameSync(tmp, sudoers)
  }
  const uid = uidOf(name)
  const home = path.join("/home", name)
  const user: TestUser = { name, uid, home, password: options.password, remove }
  users.add(user)
  return user
}

const uidOf = (name: string): number => {
  for (const line of fs.readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":")
    if (f[0] === name) return Number(f[2])
  }
  return -1
}

// ---------------------------------------------------------------------------------------------------------------
// processes

export interface Proc {
  readonly pid: number
  readonly ppid: number
  readonly uid: number
  readonly comm: string
  readonly cmd: string
}

/** A snapshot of every process (from /proc). */
export const processes = (): Array<Proc> => {
  const out: Array<Proc> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const close = stat.lastIndexOf(")")
      const comm = stat.slice(stat.indexOf("(") + 1, close)
      const rest = stat.slice(close + 2).split(" ")
      if (rest[0] === "Z") continue
      const ppid = Number(rest[1])
      const status = fs.readFileSync(`/proc/${entry}/status`, "utf8")
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1)
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").trim()
      out.push({ pid: Number(entry), ppid, uid, comm, cmd })
    } catch {
      // exited while we looked
    }
  }
  return out
}

/** Every descendant of `roots` (not the roots themselves). */
export const descendants = (roots: ReadonlyArray<number>, all = processes()): Array<Proc> => {
  const children = new Map<number, Array<Proc>>()
  for (const p of all) {
    const list = children.get(p.ppid) ?? []
    list.push(p)
    children.set(p.ppid, list)
  }
  const out: Array<Proc> = []
  const stack = [...roots]
  while (stack.length > 0) {
    const pid = stack.pop()!
    for (const c of children.get(pid) ?? []) {
      out.push(c)
      stack.push(c.pid)
    }
  }
  return out
}

/** Processes whose environment contains `needle` (e.g. a runcmd execution token). */
export const processesWithEnv = (needle: string): Array<Proc> =>
  processes().filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p.pid}/environ`, "latin1").includes(needle)
    } catch {
      return false
    }
  })

const killAll = (pids: Iterable<number>, signal: NodeJS.Signals = "SIGKILL") => {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // gone
    }
  }
}

const killUserProcesses = async (uid: number) => {
  if (uid < 0) return
  for (let i = 0; i < 20; i++) {
    const ps = processes().filter((p) => p.uid === uid)
    if (ps.length === 0) return
    killAll(ps.map((p) => p.pid))
    await sleep(50)
  }
}

const isSshdProcess = (p: Proc) => p.comm === "sshd" || p.comm === "tini"

/** The name of the transport's lifeline loop on the host (core's `Lifeline.NAME`, its `$0`). */
export const LIFELINE = "runcmd-lifeline"

/**
 * A connection's lifeline while its connection lives (its parent is the connection's sshd), and what it runs
 * (its startup's `head`, a sweep's `grep`/`sleep`): not a leftover. A lifeline whose sshd is gone is one.
 */
const connectionLifelines = (all: ReadonlyArray<Proc>): Set<number> => {
  const byPid = new Map(all.map((p) => [p.pid, p]))
  const lifelines = all.filter((p) => p.cmd.endsWith(` ${LIFELINE}`) && byPid.get(p.ppid)?.comm === "sshd")
  return new Set([...lifelines, ...descendants(lifelines.map((p) => p.pid), [...all])].map((p) => p.pid))
}

// ---------------------------------------------------------------------------------------------------------------
// sshd

export interface SshdOptions {
  /** Addresses to listen on: a count (127.0.0.1 for 1, else 127.0.1.1..127.0.1.N) or explicit ones. */
  readonly addresses?: number | ReadonlyArray<string> | undefined
  /** sshd MaxSessions (OpenSSH default 10). */
  readonly maxSessions?: number | undefined
  /** MaxSessions for some listen addresses (`Match LocalAddress`): servers of several limits from one daemon. */
  readonly maxSessionsByAddress?: Readonly<Record<string, number>> | undefined
  /** sshd MaxStartups (default here 1000). */
  readonly maxStartups?: string | undefined
  /** The login user: `"create"` (default when root) a dedicated user, or an existing name (default when not root). */
  readonly user?: "create" | string | undefined
  /** Options for the created user. */
  readonly userOptions?: UserOptions | undefined
  readonly passwordAuthentication?: boolean | undefined
  /** Run under `tini -s` (default: when installed). */
  readonly tini?: boolean | undefined
  /** Extra sshd_config lines. */
  readonly extraConfig?: string | undefined
  /** A fixed port (default: a free one). */
  readonly port?: number | undefined
  /** Reuse a state dir (keys, config) from an earlier harness: a restart with the same identity. */
  readonly dir?: string | undefined
  /** Bounded wait for the "Server listening" lines. */
  readonly startTimeoutMs?: number | undefined
}

export interface Sshd {
  readonly dir: string
  readonly port: number
  readonly addresses: ReadonlyArray<string>
  readonly user: string
  readonly testUser: TestUser | undefined
  readonly clientKeyPath: string
  readonly clientKey: string
  readonly hostKeyPath: string
  /** The host public key blob and its OpenSSH SHA-256 fingerprint. */
  readonly hostKey: Buffer
  readonly hostFingerprint: string
  /** A known_hosts file naming every address of this server. */
  readonly knownHostsPath: string
  /** PIDs of the top processes (tini, or sshd). */
  readonly pids: () => ReadonlyArray<number>
  readonly log: () => string
  /** An SSH target for one address (default the first) with key auth and strict host keys. */
  readonly target: (options?: {
    readonly address?: string | undefined
    readonly user?: string | undefined
    readonly id?: string | undefined
    readonly auth?: SshTarget.Auth | undefined
    readonly hostKey?: SshTarget.HostKeyPolicy | undefined
    readonly overrides?: Partial<SshTarget.SshTarget> | undefined
  }) => SshTarget.SshTarget
  /** Remote processes (not sshd itself) still alive: descendants of the daemons and processes of test users. */
  readonly leftovers: () => Array<Proc>
  /** Waits up to `waitMs` for leftovers to go, then kills them and throws listing them. */
  readonly assertNoLeftovers: (
    options?: { readonly waitMs?: number; readonly extraUids?: ReadonlyArray<number> }
  ) => Promise<void>
  /** Kills the remote processes left behind on purpose by a test. */
  readonly killLeftovers: () => Promise<void>
  /** Simulates a crash: SIGKILL the listeners and every per-connection sshd (remote commands are left). */
  readonly crash: () => Promise<void>
  /** Starts the daemons again on the same port with the same keys (after `crash`). */
  readonly restart: () => Promise<void>
  /** Stops everything: daemons, connections, leftovers; removes the user and the temp dir. Idempotent. */
  readonly stop: () => Promise<void>
}

interface Daemon {
  readonly child: cp.ChildProcess
  readonly addresses: ReadonlyArray<string>
  exited: boolean
  readonly exit: Promise<void>
}

const live = new Set<Daemon>()
/** State dirs (keys, config) of servers not stopped yet: removed by the last-resort cleanup too. */
const liveDirs = new Set<string>()
let exitHook = false

const cleanupNow = () => {
  for (const d of live) {
    const pids = [d.child.pid!, ...descendants([d.child.pid!]).map((p) => p.pid)]
    killAll(pids)
  }
  for (const u of users) {
    try {
      fs.rmSync(`/etc/sudoers.d/runcmd-test-${u.name}`, { force: true })
      killAll(processes().filter((p) => p.uid === u.uid).map((p) => p.pid))
      cp.execFileSync("userdel", ["-f", "-r", u.name], { stdio: "ignore", timeout: 5000 })
      fs.rmSync(path.join(os.tmpdir(), `${STATE_PREFIX}u-${u.name}`), { recursive: true, force: true })
    } catch {
      // best effort
    }
  }
  // the private keys in them included
  for (const dir of liveDirs) fs.rmSync(dir, { recursive: true, force: true })
}

/** Last-resort cleanup when the test process exits or is terminated without running its teardown. */
const installExitHook = () => {
  if (exitHook) return
  exitHook = true
  process.once("exit", cleanupNow)
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.once(signal, () => {
      cleanupNow()
      process.exit(128 + (signal === "SIGTERM" ? 15 : signal === "SIGINT" ? 2 : 1))
    })
  }
}

const STATE_PREFIX = "runcmd-sshd-"

/** Records who owns a state dir, so that a later harness can reap it if its owner died without cleaning up. */
const writeOwner = (dir: string, extra: { users?: ReadonlyArray<string> }) => {
  fs.writeFileSync(path.join(dir, "owner.json"), JSON.stringify({ pid: process.pid, ...extra }))
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Removes what harnesses of dead test processes left: their daemons (by config path), users and state dirs. */
export const reapStale = (): void => {
  let entries: Array<string>
  try {
    entries = fs.readdirSync(os.tmpdir()).filter((e) => e.startsWith(STATE_PREFIX))
  } catch {
    return
  }
  for (const e of entries) {
    const dir = path.join(os.tmpdir(), e)
    let owner: { pid?: number; users?: Array<string> }
    try {
      owner = JSON.parse(fs.readFileSync(path.join(dir, "owner.json"), "utf8"))
    } catch {
      continue
    }
    if (owner.pid === undefined || alive(owner.pid)) continue
    const all = processes()
    const daemons = all.filter((p) => p.cmd.includes(dir))
    killAll([...daemons, ...descendants(daemons.map((p) => p.pid), all)].map((p) => p.pid))
    for (const name of owner.users ?? []) {
      const uid = uidOf(name)
      if (uid < 0) continue
      killAll(all.filter((p) => p.uid === uid).map((p) => p.pid))
      fs.rmSync(`/etc/sudoers.d/runcmd-test-${name}`, { force: true })
      try {
        cp.execFileSync("userdel", ["-f", "-r", name], { stdio: "ignore", timeout: 5000 })
      } catch {
        // best effort
      }
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const addressList = (a: SshdOptions["addresses"]): ReadonlyArray<string> => {
  if (a === undefined || a === 1) return ["127.0.0.1"]
  if (typeof a === "number") {
    if (a > 254 * 4) throw new Error("too many addresses")
    return Array.from({ length: a }, (_, i) => `127.0.${1 + Math.floor(i / 254)}.${1 + (i % 254)}`)
  }
  return a
}

const keygen = async (file: string) => {
  if (!fs.existsSync(file)) await must(SSH_KEYGEN, ["-q", "-t", "ed25519", "-N", "", "-C", "runcmd-test", "-f", file])
}

const publicBlob = (pubFile: string): Buffer =>
  Buffer.from(fs.readFileSync(pubFile, "utf8").trim().split(/\s+/)[1]!, "base64")

const fingerprintOf = (blob: Buffer): string =>
  `SHA256:${crypto.createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`

const chunkAddresses = (addresses: ReadonlyArray<string>): Array<ReadonlyArray<string>> => {
  const out: Array<ReadonlyArray<string>> = []
  for (let i = 0; i < addresses.length; i += MAX_LISTEN_SOCKS) out.push(addresses.slice(i, i + MAX_LISTEN_SOCKS))
  return out
}

/** Starts sshd(s). Everything it creates is removed by `stop()` (and, as a last resort, at process exit). */
export const start = async (options: SshdOptions = {}): Promise<Sshd> => {
  const a = availability()
  if (!a.ok) throw new Error(a.hint)
  installExitHook()
  reapStale()
  const root = isRoot()
  const addresses = addressList(options.addresses)
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), STATE_PREFIX))
  const ownsDir = options.dir === undefined
  if (ownsDir) liveDirs.add(dir)
  fs.chmodSync(dir, 0o755)
  writeOwner(dir, {})
  const hostKeyPath = path.join(dir, "host_ed25519")
  const clientKeyPath = path.join(dir, "client_ed25519")
  await Promise.all([keygen(hostKeyPath), keygen(clientKeyPath)])
  const authorizedKeys = path.join(dir, "authorized_keys")
  if (!fs.existsSync(authorizedKeys)) fs.copyFileSync(`${clientKeyPath}.pub`, authorizedKeys)
  fs.chmodSync(authorizedKeys, 0o644)
  const hostKey = publicBlob(`${hostKeyPath}.pub`)
  const hostFingerprint = fingerprintOf(hostKey)

  let testUser: TestUser | undefined
  let user: string
  const wantsCreate = options.user === "create" || (options.user === undefined && root)
  if (wantsCreate) {
    testUser = await createUser(options.userOptions)
    user = testUser.name
    writeOwner(dir, { users: [user] })
  } else {
    user = options.user ?? os.userInfo().username
  }
  if (root) fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 })
  const useTini = options.tini ?? fs.existsSync(TINI)

  let port = options.port ?? (await freePort())
  const daemons: Array<Daemon> = []
  const logs: Array<string> = []
  const appendLog = (s: string) => {
    logs.push(s)
    if (logs.length > 2000) logs.splice(0, logs.length - 2000)
  }

  const configFor = (group: ReadonlyArray<string>, index: number) =>
    [
      `Port ${port}`,
      ...group.map((addr) => `ListenAddress ${addr}`),
      `HostKey ${hostKeyPath}`,
      `PidFile ${path.join(dir, `sshd-${index}.pid`)}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      "UsePAM no",
      "StrictModes no",
      `PasswordAuthentication ${options.passwordAuthentication === true ? "yes" : "no"}`,
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      `MaxStartups ${options.maxStartups ?? "1000"}`,
      `MaxSessions ${options.maxSessions ?? 10}`,
      "Subsystem sftp internal-sftp",
      "LogLevel VERBOSE",
      "PrintMotd no",
      options.extraConfig ?? "",
      // Match blocks last: they run to the end of the file
      ...Object.entries(options.maxSessionsByAddress ?? {}).flatMap((
        [addr, n]
      ) => [`Match LocalAddress ${addr}`, `  MaxSessions ${n}`]),
      ""
    ].join("\n")

  const startGroup = (group: ReadonlyArray<string>, index: number): Promise<Daemon> => {
    const config = path.join(dir, `sshd_config-${index}`)
    fs.writeFileSync(config, configFor(group, index))
    const args = ["-D", "-e", "-f", config]
    const child = useTini ?
      cp.spawn(TINI, ["-s", "--", SSHD, ...args], { stdio: ["ignore", "pipe", "pipe"] })
      : cp.spawn(SSHD, args, { stdio: ["ignore", "pipe", "pipe"] })
    let resolveExit!: () => void
    const daemon: Daemon = {
      child,
      addresses: group,
      exited: false,
      exit: new Promise<void>((r) => (resolveExit = r))
    }
    live.add(daemon)
    child.on("exit", () => {
      daemon.exited = true
      live.delete(daemon)
      resolveExit()
    })
    return new Promise<Daemon>((resolve, reject) => {
      const pending = new Set(group)
      let buffer = ""
      const timer = setTimeout(
        () => fail(new Error(`sshd did not report listening within the timeout:\n${buffer}`)),
        options.startTimeoutMs ?? 15_000
      )
      const fail = (e: Error) => {
        clearTimeout(timer)
        killAll([child.pid!, ...descendants([child.pid!]).map((p) => p.pid)])
        reject(e)
      }
      const onData = (d: Buffer) => {
        const text = d.toString()
        appendLog(text)
        buffer += text
        for (;;) {
          const nl = buffer.indexOf("\n")
          if (nl === -1) break
          const line = buffer.slice(0, nl).replace(/\r$/, "")
          buffer = buffer.slice(nl + 1)
          const m = /^Server listening on (\S+) port (\d+)\.$/.exec(line)
          if (m !== null) {
            pending.delete(m[1]!)
            if (pending.size === 0) {
              clearTimeout(timer)
              resolve(daemon)
            }
          } else if (
            /Address already in use|Cannot bind any address|Too many listen sockets|fatal|Missing privilege/i.test(line)
          ) {
            fail(Object.assign(new Error(`sshd failed to start: ${line}`), { bind: /in use|Cannot bind/.test(line) }))
          }
        }
      }
      child.stderr!.on("data", onData)
      child.stdout!.on("data", (d: Buffer) => appendLog(d.toString()))
      child.on("exit", (code) => {
        if (pending.size > 0) fail(new Error(`sshd exited (${code}) before listening:\n${logs.join("").slice(-2000)}`))
      })
    })
  }

  const startAll = async () => {
    for (let attempt = 0;; attempt++) {
      const started: Array<Daemon> = []
      try {
        for (const [i, group] of chunkAddresses(addresses).entries()) started.push(await startGroup(group, i))
        daemons.splice(0, daemons.length, ...started)
        return
      } catch (e) {
        for (const d of started) killTree(d)
        await Promise.all(started.map((d) => d.exit))
        if (
          (e as { bind?: boolean }).bind === true && options.port === undefined && attempt < 5 && daemons.length === 0
        ) {
          port = await freePort()
          continue
        }
        throw e
      }
    }
  }

  const killTree = (d: Daemon) => {
    if (d.exited) return
    const pid = d.child.pid!
    killAll([...descendants([pid]).map((p) => p.pid), pid])
  }

  try {
    await startAll()
  } catch (e) {
    if (testUser !== undefined) await testUser.remove().catch(() => {})
    if (ownsDir) fs.rmSync(dir, { recursive: true, force: true })
    liveDirs.delete(dir)
    throw e
  }

  const knownHostsPath = path.join(dir, "known_hosts")
  const names = addresses.map((addr) => (port === 22 ? addr : `[${addr}]:${port}`)).join(",")
  fs.writeFileSync(knownHostsPath, `${names} ssh-ed25519 ${hostKey.toString("base64")}\n`)
  const clientKey = fs.readFileSync(clientKeyPath, "utf8")

  const uids = () => {
    const set = new Set<number>()
    if (testUser !== undefined) set.add(testUser.uid)
    for (const u of users) set.add(u.uid)
    return set
  }

  const leftovers = (extraUids: ReadonlyArray<number> = []): Array<Proc> => {
    const all = processes()
    const roots = daemons.filter((d) => !d.exited).map((d) => d.child.pid!)
    const found = new Map<number, Proc>()
    const lifelines = connectionLifelines(all)
    const counted = (p: Proc) => !isSshdProcess(p) && !lifelines.has(p.pid)
    for (const p of descendants(roots, all)) if (counted(p)) found.set(p.pid, p)
    const owned = new Set([...uids(), ...extraUids])
    for (const p of all) if (owned.has(p.uid) && counted(p)) found.set(p.pid, p)
    return [...found.values()]
  }

  const killLeftovers = async () => {
    for (let i = 0; i < 40; i++) {
      const left = leftovers()
      if (left.length === 0) return
      killAll(left.map((p) => p.pid))
      await sleep(50)
    }
  }

  let stopped = false
  const sshd: Sshd = {
    dir,
    get port() {
      return port
    },
    addresses,
    user,
    testUser,
    clientKeyPath,
    clientKey,
    hostKeyPath,
    hostKey,
    hostFingerprint,
    knownHostsPath,
    pids: () => daemons.filter((d) => !d.exited).map((d) => d.child.pid!),
    log: () => logs.join(""),
    target: (o = {}) =>
      SshTarget.make({
        host: o.address ?? addresses[0]!,
        port,
        user: o.user ?? user,
        auth: o.auth ?? SshTarget.key(Redacted.make(clientKey)),
        hostKey: o.hostKey ?? { policy: "strict", knownHosts: [knownHostsPath] },
        keepalive: { interval: Duration.seconds(5), countMax: 3 },
        ...(o.id === undefined ? {} : { id: o.id }),
        ...(o.overrides ?? {})
      }),
    leftovers: () => leftovers(),
    assertNoLeftovers: async (o = {}) => {
      const deadline = Date.now() + (o.waitMs ?? 3000)
      let left = leftovers(o.extraUids)
      while (left.length > 0 && Date.now() < deadline) {
        await sleep(50)
        left = leftovers(o.extraUids)
      }
      if (left.length > 0) {
        await killLeftovers()
        throw new Error(
          `remote processes left behind:\n${
            left.map((p) => `  pid ${p.pid} uid ${p.uid} ${p.comm}: ${p.cmd}`).join("\n")
          }`
        )
      }
    },
    killLeftovers,
    crash: async () => {
      // stop the listeners first (SIGSTOP: no new per-connection sshd can be forked while we look), then kill every
      // sshd below them; connections still in the listen backlog are reset when the listening sockets close
      const all0 = processes()
      const roots = daemons.filter((d) => !d.exited).map((d) => d.child.pid!)
      const listeners = [...roots, ...descendants(roots, all0).map((p) => p.pid)].filter((pid) => {
        const p = all0.find((q) => q.pid === pid)
        return p !== undefined && p.comm === "sshd" && p.cmd.includes(" -D -e -f ")
      })
      killAll(listeners, "SIGSTOP")
      await sleep(20)
      const all = processes()
      killAll(descendants(roots, all).filter((p) => p.comm === "sshd").map((p) => p.pid))
      killAll(listeners)
      await Promise.all(daemons.map((d) => d.exit))
    },
    restart: async () => {
      for (const d of daemons) killTree(d)
      await Promise.all(daemons.map((d) => d.exit))
      await startAll()
    },
    stop: async () => {
      if (stopped) return
      stopped = true
      running.delete(sshd)
      const lingering = leftovers()
      for (const d of daemons) killTree(d)
      killAll(lingering.map((p) => p.pid))
      await Promise.race([Promise.all(daemons.map((d) => d.exit)), sleep(5000)])
      await killLeftovers()
      if (testUser !== undefined) await testUser.remove()
      if (ownsDir) fs.rmSync(dir, { recursive: true, force: true })
      liveDirs.delete(dir)
    }
  }
  running.add(sshd)
  return sshd
}

/** Servers started in this process and not stopped yet. */
const running = new Set<Sshd>()

/**
 * For `afterEach`: every running server of this process (those of the suite's layers, and any a test started) has
 * no remote process left; waits up to `waitMs` (default 3 s) for them to go, then kills them and throws.
 */
export const assertNoLeftovers = async (options?: { readonly waitMs?: number }): Promise<void> => {
  for (const sshd of [...running]) await sshd.assertNoLeftovers(options)
}

/** The harness could not start sshd. */
export class SshdError extends Data.TaggedError("SshdError")<{ readonly message: string; readonly cause: unknown }> {}

/** `start` in an Effect scope: stopped when the scope closes. */
export const scoped = (options: SshdOptions = {}): Effect.Effect<Sshd, SshdError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => start(options),
      catch: (e) => new SshdError({ message: String((e as Error)?.message ?? e), cause: e })
    }),
    (sshd) => Effect.promise(() => sshd.stop()).pipe(Effect.timeout("30 seconds"), Effect.ignore)
  )

/** The server a test layer started (see `layer`). */
export class Server extends Context.Tag("@runcmd/transport-ssh/test/Sshd/Server")<Server, Sshd>() {}

/**
 * A scoped test layer for `it.layer`: starts sshd with `options` (its addresses, host and client keys, known_hosts,
 * login user) before the suite's first test, provides it under `tag` (`Server` by default: ports, keys, paths and
 * the `target` builder), and stops it with everything it started when the suite ends.
 */
export const layer = <I = Server>(
  options: SshdOptions = {},
  tag: Context.Tag<I, Sshd> = Server as unknown as Context.Tag<I, Sshd>
): Layer.Layer<I, SshdError> => Layer.scoped(tag, scoped(options))

/**
 * A dedicated local user (root only) for the suite, removed (with its processes) when the suite ends; under `tag`.
 */
export const userLayer = <I>(tag: Context.Tag<I, TestUser>, options: UserOptions = {}): Layer.Layer<I, SshdError> =>
  Layer.scoped(
    tag,
    Effect.acquireRelease(
      Effect.tryPromise({
        try: () => createUser(options),
        catch: (e) => new SshdError({ message: String((e as Error)?.message ?? e), cause: e })
      }),
      (user) => Effect.promise(() => user.remove()).pipe(Effect.timeout("30 seconds"), Effect.ignore)
    )
  )

/**
 * `it.layer` options for these layers: real processes need the live clock (no TestClock), and time to start sshd
 * (user, keys, daemons) and to stop it.
 */
export const layerOptions = { excludeTestServices: true, timeout: Duration.minutes(1) } as const
