/**
 * The emulator's VM agent: runs a run command's script as a real local process (`/bin/sh` for Linux VMs, `pwsh`
 * for Windows VMs), keeps the last 4 KB of each stream (the service's cap), appends the whole output to the append
 * blobs named by `outputBlobUri`/`errorBlobUri` (before it reports the end, so a reader that saw the end has every
 * byte), and kills the whole execution on demand: TERM to the process group, KILL after the grace, and a sweep of
 * `/proc` for the agent's mark in the environment (what a `setsid` grandchild still carries).
 *
 * @internal
 */
import { AnonymousCredential, AppendBlobClient } from "@azure/storage-blob"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as Spawner from "./spawner.js"

/** The environment variable carrying an execution's mark (found in /proc/<pid>/environ by the kill sweep). */
export const MARK_VARIABLE = "RUNCMD_ARM_EMULATOR_EXECUTION"

/** @internal */
export interface RunSpec {
  readonly os: "linux" | "windows"
  readonly script: string
  readonly env: Readonly<Record<string, string>>
  /** Seconds; 0 or absent: no limit. */
  readonly timeoutSeconds?: number | undefined
  readonly outputBlobUri?: string | undefined
  readonly errorBlobUri?: string | undefined
  readonly outputCapBytes: number
  readonly pwsh?: string | undefined
  readonly killGraceMs: number
  /** The account the script runs as (`runAsUser`); absent: the emulator's own (root on a VM). */
  readonly user?: Account | undefined
  /** How the script is started. Default: on the calling thread. */
  readonly spawner?: Spawner.Spawner | undefined
}

/** A local account of the host the emulator runs on (the VMs' accounts). */
export interface Account {
  readonly name: string
  readonly uid: number
  readonly gid: number
  readonly home: string
}

/** The host's account `name` from /etc/passwd, if any. */
export const account = async (name: string): Promise<Account | undefined> => {
  const passwd = await fs.readFile("/etc/passwd", "utf8").catch(() => "")
  for (const line of passwd.split("\n")) {
    const [user, , uid, gid, , home] = line.split(":")
    if (user === name && uid !== undefined && gid !== undefined) {
      return { name, uid: Number(uid), gid: Number(gid), home: home || "/" }
    }
  }
  return undefined
}

/** An execution that never started: the agent refused it (e.g. `runAsUser` it cannot run as). */
export const refused = (message: string): Execution => {
  const now = new Date()
  return {
    state: () => "Failed",
    exitCode: () => undefined,
    output: () => "",
    error: () => "",
    startTime: now,
    endTime: () => now,
    message: () => message,
    done: Promise.resolve(),
    kill: () => Promise.resolve()
  }
}

/** @internal */
export type ExecutionState = "Pending" | "Running" | "Succeeded" | "Failed" | "TimedOut" | "Canceled"

/** @internal */
export interface Execution {
  readonly state: () => ExecutionState
  readonly exitCode: () => number | undefined
  /** The last `outputCapBytes` of stdout, as text. */
  readonly output: () => string
  readonly error: () => string
  readonly startTime: Date
  readonly endTime: () => Date | undefined
  readonly message: () => string
  /** Resolves when the execution ended and its output was written. */
  readonly done: Promise<void>
  /** Kills the execution (TERM, grace, KILL, sweep); resolves when nothing of it is left. */
  readonly kill: (state?: ExecutionState) => Promise<void>
}

const blobBlock = 4 * 1024 * 1024

/** Appends bytes to an append blob in order, one request at a time. */
const makeAppender = (uri: string | undefined) => {
  if (uri === undefined || uri === "") return undefined
  const client = new AppendBlobClient(uri, new AnonymousCredential(), {
    retryOptions: { maxTries: 3, retryDelayInMs: 10 }
  })
  const pending: Array<Buffer> = []
  let chain: Promise<void> = client.createIfNotExists().then(() => undefined)
  let failure: unknown
  const flush = (): Promise<void> => {
    if (pending.length === 0) return chain
    const all = Buffer.concat(pending.splice(0))
    for (let offset = 0; offset < all.length; offset += blobBlock) {
      const block = all.subarray(offset, Math.min(all.length, offset + blobBlock))
      chain = chain.then(() => client.appendBlock(block, block.length).then(() => undefined)).catch((e) => {
        failure ??= e
      })
    }
    return chain
  }
  return {
    push: (bytes: Buffer) => {
      pending.push(bytes)
    },
    flush,
    failure: () => failure
  }
}

const tailOf = (parts: Array<Buffer>, size: { n: number }, cap: number, bytes: Buffer) => {
  parts.push(bytes)
  size.n += bytes.length
  while (parts.length > 1 && size.n - parts[0]!.length >= cap) size.n -= parts.shift()!.length
}

const textOf = (parts: ReadonlyArray<Buffer>, cap: number) => {
  const all = Buffer.concat(parts)
  return all.subarray(Math.max(0, all.length - cap)).toString("utf8")
}

/** Every live process whose environment carries `mark` (Linux /proc). */
const marked = async (mark: string): Promise<Array<number>> => {
  const needle = Buffer.from(`${MARK_VARIABLE}=${mark}\0`)
  const entries = await fs.readdir("/proc").catch(() => [] as Array<string>)
  const found: Array<number> = []
  await Promise.all(
    entries.filter((e) => /^\d+$/.test(e)).map(async (e) => {
      const environ = await fs.readFile(`/proc/${e}/environ`).catch(() => undefined)
      if (environ === undefined || !environ.includes(needle)) return
      const stat = await fs.readFile(`/proc/${e}/stat`, "utf8").catch(() => "")
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
      if (state !== "Z" && state !== "X" && state !== "") found.push(Number(e))
    })
  )
  return found
}

const signalAll = (pids: ReadonlyArray<number>, signal: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // gone already
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Signal numbers for the exit code a shell would report (128 + n). */
const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 }

/** @internal */
export const run = (spec: RunSpec): Execution => {
  const mark = randomBytes(12).toString("hex")
  const startTime = new Date()
  let state: ExecutionState = "Pending"
  let exitCode: number | undefined
  let endTime: Date | undefined
  let message = ""
  let forcedState: ExecutionState | undefined
  const out: Array<Buffer> = []
  const err: Array<Buffer> = []
  const outSize = { n: 0 }
  const errSize = { n: 0 }
  const outBlob = makeAppender(spec.outputBlobUri)
  const errBlob = makeAppender(spec.errorBlobUri)
  let pgid: number | undefined
  let resolveDone!: () => void
  const done = new Promise<void>((resolve) => (resolveDone = resolve))
  let exited = false

  const start = async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "runcmd-arm-vm-"))
    const file = path.join(dir, spec.os === "windows" ? "script.ps1" : "script.sh")
    await fs.writeFile(file, spec.script, { mode: 0o700 })
    const user = spec.user
    if (user !== undefined) {
      await fs.chown(dir, user.uid, user.gid)
      await fs.chown(file, user.uid, user.gid)
    }
    const [command, args] = spec.os === "windows"
      ? [spec.pwsh ?? "pwsh", ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", file]]
      : ["/bin/sh", [file]]
    const child = (spec.spawner ?? Spawner.local(0)).spawn(command, args, {
      cwd: dir,
      ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
      env: {
        PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
        HOME: user?.home ?? process.env.HOME ?? dir,
        ...(user === undefined ? {} : { USER: user.name, LOGNAME: user.name }),
        LANG: "C.UTF-8",
        TMPDIR: os.tmpdir(),
        ...spec.env,
        [MARK_VARIABLE]: mark
      }
    })
    let spawnFailed = false
    let timer: NodeJS.Timeout | undefined
    const blobTimer = setInterval(() => {
      void outBlob?.flush()
      void errBlob?.flush()
    }, 100)
    const finish = async (code: number | null, signal: NodeJS.Signals | null) => {
      if (exited) return
      exited = true
      if (timer !== undefined) clearTimeout(timer)
      // the spawner reports the exit once what the script wrote just before was read (and closes the pipes, so a
      // grandchild holding them does not hold the end)
      clearInterval(blobTimer)
      await Promise.all([outBlob?.flush(), errBlob?.flush()])
      exitCode = code ?? (signal === null ? 1 : 128 + (signalNumbers[signal] ?? 0))
      const blobFailure = outBlob?.failure() ?? errBlob?.failure()
      if (blobFailure !== undefined) message = `writing the output blob failed: ${String(blobFailure)}`
      state = forcedState ?? (spawnFailed ? "Failed" : exitCode === 0 ? "Succeeded" : "Failed")
      endTime = new Date()
      // the script file and its directory (two calls; a recursive removal walks them with a stat each), or whatever
      // the script left in it too
      await fs.unlink(file).then(() => fs.rmdir(dir)).catch(() => fs.rm(dir, { recursive: true, force: true }))
        .catch(() => undefined)
      resolveDone()
    }
    child.onData((stream, bytes) => {
      if (stream === "stdout") {
        tailOf(out, outSize, spec.outputCapBytes, bytes)
        outBlob?.push(bytes)
      } else {
        tailOf(err, errSize, spec.outputCapBytes, bytes)
        errBlob?.push(bytes)
      }
    })
    child.onError((e) => {
      spawnFailed = true
      message = `the script could not be started: ${e}`
      void finish(127, null)
    })
    child.onExit((code, signal) => void finish(code, signal))
    const pid = await child.pid
    if (pid === undefined || exited) return
    pgid = pid
    state = "Running"
    if (forcedState !== undefined) void kill(forcedState)
    if (spec.timeoutSeconds !== undefined && spec.timeoutSeconds > 0) {
      timer = setTimeout(() => void kill("TimedOut"), spec.timeoutSeconds * 1000)
    }
  }

  const kill = async (as: ExecutionState = "Canceled"): Promise<void> => {
    if (endTime !== undefined) return
    forcedState = as
    if (pgid === undefined) return done
    const sweep = async () => {
      const pids = await marked(mark)
      if (pgid !== undefined) {
        try {
          process.kill(-pgid, "SIGTERM")
        } catch {
          // the group is gone
        }
      }
      return pids
    }
    signalAll(await sweep(), "SIGTERM")
    const deadline = Date.now() + spec.killGraceMs
    while (Date.now() < deadline && (await marked(mark)).length > 0) await sleep(25)
    for (let i = 0; i < 40; i++) {
      const left = await marked(mark)
      if (pgid !== undefined) {
        try {
          process.kill(-pgid, "SIGKILL")
        } catch {
          // the group is gone
        }
      }
      if (left.length === 0) break
      signalAll(left, "SIGKILL")
      await sleep(25)
    }
    await done
  }

  void start().catch((e) => {
    message = `the script could not be started: ${String(e)}`
    state = "Failed"
    exitCode = 127
    endTime = new Date()
    resolveDone()
  })

  return {
    state: () => state,
    exitCode: () => exitCode,
    output: () => textOf(out, spec.outputCapBytes),
    error: () => textOf(err, spec.outputCapBytes),
    startTime,
    endTime: () => endTime,
    message: () => message,
    done,
    kill
  }
}
