/**
 * The shell resource of the emulator: shells, their commands as real processes (PowerShell command lines run by
 * the real `pwsh`), output buffered for Receive long polls, stdin fed by Send, and terminate ending the whole
 * process tree.
 *
 * @internal
 */
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import type { StreamChunk } from "../wsman.js"
import { JOB_VARIABLE, killJob } from "./processes.js"

/** @internal */
export interface Command {
  readonly id: string
  readonly job: string
  readonly child: ChildProcess.ChildProcess
  readonly pending: Array<StreamChunk>
  /** Set when the process exited and its output was read (or the pipe-hold grace passed). */
  done: { readonly exitCode: number } | undefined
  ended: { stdout: boolean; stderr: boolean }
  exitCode: number | undefined
  /** Receives waiting for output or the end. */
  readonly waiters: Set<() => void>
  terminated: boolean
  /** The last Receive told the client it was Done: the command is over for the client. */
  reported: boolean
}

/** @internal */
export interface Shell {
  readonly id: string
  readonly user: string
  readonly commands: Map<string, Command>
}

const POWERSHELL = new Set(["powershell", "powershell.exe", "pwsh", "pwsh.exe"])

/** After the process exited, how long a grandchild may keep its output pipe open before the command is Done. */
const PIPE_HOLD_MS = 1000

/** @internal */
export const wake = (command: Command) => {
  for (const waiter of [...command.waiters]) waiter()
}

/**
 * Starts a command line: `powershell`/`pwsh` (with or without `.exe`) is the real `pwsh`; any other program runs
 * as given, its arguments as separate words (no `cmd.exe` here).
 *
 * @internal
 */
export const startCommand = (id: string, pwsh: string, program: string, args: ReadonlyArray<string>): Command => {
  const isPowerShell = POWERSHELL.has(Path.basename(program).toLowerCase())
  const job = `${process.pid}-${id}`
  const child = ChildProcess.spawn(isPowerShell ? pwsh : program, [...args], {
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
    env: { ...process.env, [JOB_VARIABLE]: job }
  })
  const command: Command = {
    id,
    job,
    child,
    pending: [],
    done: undefined,
    ended: { stdout: false, stderr: false },
    exitCode: undefined,
    waiters: new Set(),
    terminated: false,
    reported: false
  }
  const finish = () => {
    if (command.done !== undefined || command.exitCode === undefined) return
    command.done = { exitCode: command.exitCode }
    wake(command)
  }
  for (const name of ["stdout", "stderr"] as const) {
    const stream = child[name]!
    stream.on("data", (data: Buffer) => {
      if (command.done !== undefined) return
      command.pending.push({ name, bytes: data })
      wake(command)
    })
    stream.on("close", () => {
      command.ended[name] = true
      if (command.ended.stdout && command.ended.stderr) finish()
    })
  }
  child.stdin!.on("error", () => {})
  child.on("error", (error) => {
    command.pending.push({ name: "stderr", bytes: Buffer.from(`${program}: ${error.message}\r\n`) })
    command.exitCode = 9009 // cmd.exe's "not recognized as a command"
    command.ended = { stdout: true, stderr: true }
    finish()
  })
  child.on("exit", (code, signal) => {
    command.exitCode = code ?? (signal === null ? 1 : 128 + (signalNumbers[signal] ?? 0))
    if (command.ended.stdout && command.ended.stderr) finish()
    else setTimeout(finish, PIPE_HOLD_MS).unref()
  })
  return command
}

const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 }

/** Writes stdin bytes; `end` closes stdin. @internal */
export const send = (command: Command, bytes: Uint8Array, end: boolean): void => {
  const stdin = command.child.stdin!
  if (stdin.destroyed || stdin.writableEnded) return
  if (bytes.length > 0) stdin.write(bytes)
  if (end) stdin.end()
}

/** Ends the command's whole process tree (a job object's terminate). True when no process of it is left. @internal */
export const terminate = async (command: Command): Promise<boolean> => {
  command.terminated = true
  const gone = await killJob(command.job, command.child.pid)
  if (command.done === undefined && command.exitCode === undefined) {
    await new Promise<void>((resolve) => {
      if (command.exitCode !== undefined) resolve()
      else command.child.once("exit", () => resolve())
    })
  }
  return gone
}

/** Up to `maxBytes` of pending output, merged per stream, in order. @internal */
export const take = (command: Command, maxBytes: number): Array<StreamChunk> => {
  const out: Array<StreamChunk> = []
  let size = 0
  while (command.pending.length > 0 && size < maxBytes) {
    const next = command.pending[0]!
    const room = maxBytes - size
    const bytes = next.bytes.length <= room ? next.bytes : next.bytes.subarray(0, room)
    if (bytes.length === next.bytes.length) command.pending.shift()
    else command.pending[0] = { name: next.name, bytes: next.bytes.subarray(room) }
    const last = out.at(-1)
    if (last !== undefined && last.name === next.name) {
      out[out.length - 1] = { name: last.name, bytes: Buffer.concat([last.bytes, bytes]) }
    } else {
      out.push({ name: next.name, bytes })
    }
    size += bytes.length
  }
  return out
}

/** Waits until the command has output or is done, or `ms` passed. @internal */
export const waitForOutput = (command: Command, ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (command.pending.length > 0 || command.done !== undefined) return resolve()
    const done = () => {
      clearTimeout(timer)
      command.waiters.delete(done)
      signal.removeEventListener("abort", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    command.waiters.add(done)
    signal.addEventListener("abort", done)
  })

/**
 * Splits a Windows command line into words as the C runtime does (`CommandLineToArgvW`): white space separates,
 * double quotes group, `2n` backslashes before a quote are `n` backslashes, `2n+1` escape the quote.
 *
 * @internal
 */
export const splitCommandLine = (line: string): Array<string> => {
  const words: Array<string> = []
  let word = ""
  let inWord = false
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (c === "\\") {
      let n = 0
      while (line[i] === "\\") {
        n++
        i++
      }
      if (line[i] === "\"") {
        word += "\\".repeat(Math.floor(n / 2))
        if (n % 2 === 1) word += "\""
        else {
          quoted = !quoted
        }
      } else {
        word += "\\".repeat(n)
        i--
      }
      inWord = true
    } else if (c === "\"") {
      if (quoted && line[i + 1] === "\"") {
        word += "\""
        i++
      } else quoted = !quoted
      inWord = true
    } else if (!quoted && (c === " " || c === "\t")) {
      if (inWord) words.push(word)
      word = ""
      inWord = false
    } else {
      word += c
      inWord = true
    }
  }
  if (inWord) words.push(word)
  return words
}
