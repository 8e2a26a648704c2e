/**
 * The WinRM emulator: a WS-Management server on 127.0.0.1 implementing the Windows shell resource (Create,
 * Command, Receive, Send, Signal, Delete) that runs `powershell`/`pwsh` command lines with the real `pwsh`, for
 * tests in any language. HTTPS with a generated certificate and Basic, or HTTP with NTLMv2 and message encryption
 * (plain bodies refused, as Windows does by default). Quotas, 401s, a shell deleted mid-run and slow receives on
 * demand; every request is recorded (the envelope as decrypted by the server).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Certificate from "./internal/emulator/certificate.js"
import { jobProcesses } from "./internal/emulator/processes.js"
import * as Server from "./internal/emulator/server.js"
import type * as Wsman from "./internal/wsman.js"
import * as WinRmTarget from "./WinRmTarget.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface EmulatorOptions {
  /** HTTPS with a generated certificate and Basic (default), or HTTP with NTLM and message encryption. */
  readonly https?: boolean | undefined
  /** Default 0: a free port. */
  readonly port?: number | undefined
  /** Accounts (user → password). Default: one user `runcmd` with a random password. */
  readonly users?: Readonly<Record<string, string>> | undefined
  /** The PowerShell that runs `powershell`/`pwsh` command lines. Default: `RUNCMD_PWSH`, `pwsh` on PATH, ~/.dotnet/tools/pwsh. */
  readonly pwsh?: string | undefined
  /** Shells a user may have open at once (Windows' MaxShellsPerUser; default 30). */
  readonly maxShellsPerUser?: number | undefined
  /** Requests a user may have in flight at once (Windows' MaxConcurrentOperationsPerUser; default 1500). */
  readonly maxConcurrentOperationsPerUser?: number | undefined
}

/**
 * A request as the emulator received it.
 *
 * @since 0.1.0
 * @category models
 */
export type RecordedRequest = Server.RecordedRequest

/**
 * A fault the emulator can be told to answer: `max-shells` and `max-operations` (quota faults),
 * `unauthorized` (HTTP 401), `shell-gone` (the shell is not found), `access-denied`.
 *
 * @since 0.1.0
 * @category models
 */
export type InjectedFault = Server.InjectedFault

/**
 * @since 0.1.0
 * @category models
 */
export interface Emulator {
  /** `https://127.0.0.1:<port>/wsman` or `http://...`. */
  readonly endpoint: string
  readonly port: number
  readonly auth: "basic" | "ntlm"
  /** The first user and its password. */
  readonly user: string
  readonly password: Redacted.Redacted<string>
  /** HTTPS: the PEM file of the certificate (its own CA: name it in a `strict` policy), and its SHA-256. */
  readonly caFile: string | undefined
  readonly certificateSha256: string | undefined
  /** Every request received so far, in order. */
  readonly requests: () => ReadonlyArray<RecordedRequest>
  /** A target of this emulator (Basic over HTTPS with `strict` against `caFile`, or NTLM over HTTP). */
  readonly target: (options?: Partial<WinRmTarget.MakeInput>) => WinRmTarget.WinRmTarget
  /** Answers the next `times` requests of `action` (or of any action) with `fault`. */
  readonly inject: (action: Wsman.ActionName | "any", fault: InjectedFault, times?: number) => void
  /** Delays every Receive answer by `ms` (0: none). */
  readonly slowReceives: (ms: number) => void
  /** Deletes every shell now (their processes are ended): what a service restart or an admin does mid-run. */
  readonly deleteShells: () => Promise<number>
  /** Open shells and running commands. */
  readonly stats: () => { readonly shells: number; readonly commands: number }
  /** Processes started by the emulator's commands that are still alive (by the job marker in their environment). */
  readonly liveProcesses: () => number
  readonly close: () => Promise<void>
}

const findPwsh = (): string => {
  const candidates = [
    process.env.RUNCMD_PWSH,
    ...(process.env.PATH ?? "").split(Path.delimiter).filter((d) => d !== "").map((d) => Path.join(d, "pwsh")),
    Path.join(Os.homedir(), ".dotnet", "tools", "pwsh")
  ]
  for (const candidate of candidates) {
    if (candidate === undefined || candidate === "") continue
    try {
      Fs.accessSync(candidate, Fs.constants.X_OK)
      return candidate
    } catch {
      // next
    }
  }
  return "pwsh"
}

/**
 * Starts an emulator (a Promise, for tests in any framework); `close` stops it and every process it started.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = async (options: EmulatorOptions = {}): Promise<Emulator> => {
  const https = options.https ?? true
  const users = options.users ??
    { runcmd: Buffer.from(crypto.getRandomValues(new Uint8Array(12))).toString("base64url") }
  const [user, password] = Object.entries(users)[0] ?? ["runcmd", ""]
  const certificate = https ? Certificate.generate() : undefined
  const dir = https ? Fs.mkdtempSync(Path.join(Os.tmpdir(), "runcmd-winrm-emulator-")) : undefined
  const caFile = dir === undefined ? undefined : Path.join(dir, "ca.pem")
  if (caFile !== undefined) Fs.writeFileSync(caFile, certificate!.certPem, { mode: 0o600 })
  const server = await Server.start({
    https,
    certificate,
    users,
    pwsh: options.pwsh ?? findPwsh(),
    maxShellsPerUser: options.maxShellsPerUser ?? 30,
    maxConcurrentOperationsPerUser: options.maxConcurrentOperationsPerUser ?? 1500,
    port: options.port ?? 0
  })
  const started = process.pid
  return {
    endpoint: `${https ? "https" : "http"}://127.0.0.1:${server.port}/wsman`,
    port: server.port,
    auth: https ? "basic" : "ntlm",
    user,
    password: Redacted.make(password),
    caFile,
    certificateSha256: certificate?.sha256,
    requests: () => server.requests,
    target: (input = {}) =>
      WinRmTarget.make({
        host: "127.0.0.1",
        port: server.port,
        scheme: https ? "https" : "http",
        auth: https ? WinRmTarget.basic(user, password) : WinRmTarget.ntlm(user, password),
        ...(https ? { certificate: { policy: "strict", ca: [caFile!] } } : {}),
        shell: "pwsh",
        ...input
      }),
    inject: (action, fault, times = 1) => server.inject(action, fault, times),
    slowReceives: (ms) => {
      server.slowReceiveMs = ms
    },
    deleteShells: server.deleteShells,
    stats: () => ({
      shells: server.shells.size,
      commands: [...server.shells.values()].reduce(
        (n, s) => n + [...s.commands.values()].filter((c) => c.done === undefined).length,
        0
      )
    }),
    liveProcesses: () => jobProcesses(`${started}-`).length,
    close: async () => {
      await server.close()
      if (dir !== undefined) Fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

/**
 * The emulator in a scope: started when acquired, stopped (with every process it started) when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: EmulatorOptions = {}): Effect.Effect<Emulator, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.promise(() => start(options)), (emulator) => Effect.promise(() => emulator.close()))

const usage = "usage: runcmd emulate winrm [--port N] [--https] [--user U --password-env VAR]"

/**
 * `runcmd emulate winrm [--port N] [--https] [--user U --password-env VAR]`: starts an emulator, prints one JSON
 * line on stdout (`endpoint`, `auth`, `user`, `caFile`, `certificateSha256`; the password only when it was
 * generated, as `password`) and serves until SIGINT or SIGTERM. Returns the exit code.
 *
 * @since 0.1.0
 * @category entry points
 */
export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  let port = 0
  let https = false
  let user: string | undefined
  let passwordEnv: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const value = () => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${arg} needs a value`)
      return v
    }
    try {
      if (arg === "--port") {
        port = Number(value())
        if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error("--port must be 0..65535")
      } else if (arg === "--https") https = true
      else if (arg === "--user") user = value()
      else if (arg === "--password-env") passwordEnv = value()
      else throw new Error(`unknown option ${arg}`)
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\n${usage}\n`)
      return 2
    }
  }
  if ((user === undefined) !== (passwordEnv === undefined)) {
    process.stderr.write(`--user and --password-env go together\n${usage}\n`)
    return 2
  }
  const password = passwordEnv === undefined ? undefined : process.env[passwordEnv]
  if (passwordEnv !== undefined && (password === undefined || password === "")) {
    process.stderr.write(`the variable ${passwordEnv} named by --password-env is not set\n`)
    return 2
  }
  const emulator = await start({
    https,
    port,
    ...(user !== undefined && password !== undefined ? { users: { [user]: password } } : {})
  })
  process.stdout.write(
    JSON.stringify({
      endpoint: emulator.endpoint,
      auth: emulator.auth,
      user: emulator.user,
      caFile: emulator.caFile ?? null,
      certificateSha256: emulator.certificateSha256 ?? null,
      ...(password === undefined ? { password: Redacted.value(emulator.password) } : {})
    }) + "\n"
  )
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve)
    process.once("SIGTERM", resolve)
  })
  await emulator.close()
  return 0
}
