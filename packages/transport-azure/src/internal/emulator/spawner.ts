/**
 * How the emulator's agent starts scripts. `child_process.spawn` blocks the calling thread until the child has
 * exec'd (tens of milliseconds each on a loaded machine), and a fork from the emulator's process copies its page
 * tables and write-protects all its memory (its HTTP loop and garbage collector then fault on every page they write):
 * one emulator plays many VMs, so it starts their scripts from small helper processes instead (round robin), which
 * keeps the loop answering; the output comes back as messages, in order.
 *
 * The scripts may run at a lower CPU priority than the emulator (`nice`, the emulator's `agentNice`): on Azure a
 * VM's script takes no CPU from ARM, but here every VM shares the host with the emulator's HTTP loop.
 *
 * @internal
 */
import { type ChildProcess, spawn, type SpawnOptions } from "node:child_process"
import * as os from "node:os"

/** A started script, as the agent sees it. */
export interface Child {
  /** The process id (the group's: it is spawned detached), or undefined when it could not start. */
  readonly pid: Promise<number | undefined>
  /** Output, in order per stream; after `onExit`, nothing more. */
  readonly onData: (f: (stream: "stdout" | "stderr", bytes: Buffer) => void) => void
  /** The script exited and its pipes were closed (50 ms later: what it wrote just before is read, a grandchild
   * holding the pipes does not hold the end). */
  readonly onExit: (f: (code: number | null, signal: NodeJS.Signals | null) => void) => void
  /** It could not be started. */
  readonly onError: (f: (message: string) => void) => void
}

/** @internal */
export interface Spawner {
  readonly spawn: (
    command: string,
    args: ReadonlyArray<string>,
    options: Pick<SpawnOptions, "cwd" | "env" | "uid" | "gid">
  ) => Child
  readonly close: () => Promise<void>
}

const PIPES_GRACE_MS = 50

interface Handlers {
  data: Array<(stream: "stdout" | "stderr", bytes: Buffer) => void>
  exit: Array<(code: number | null, signal: NodeJS.Signals | null) => void>
  error: Array<(message: string) => void>
  resolvePid: (pid: number | undefined) => void
}

const makeChild = (): { readonly child: Child; readonly handlers: Handlers } => {
  let resolvePid!: (pid: number | undefined) => void
  const pid = new Promise<number | undefined>((resolve) => (resolvePid = resolve))
  const handlers: Handlers = { data: [], exit: [], error: [], resolvePid }
  return {
    handlers,
    child: {
      pid,
      onData: (f) => void handlers.data.push(f),
      onExit: (f) => void handlers.exit.push(f),
      onError: (f) => void handlers.error.push(f)
    }
  }
}

/** Lowers the CPU priority of `pid` (0: the calling thread, on Linux) by `nice`; where that is refused, nothing. */
const lower = (pid: number, nice: number) => {
  if (nice <= 0) return
  try {
    os.setPriority(pid, Math.min(19, os.getPriority(pid) + nice))
  } catch {
    // not permitted here: the scripts run at the emulator's priority
  }
}

/** Spawns on the calling thread; each script `nice` levels below the emulator (set once it started). */
export const local = (nice: number): Spawner => ({
  spawn: (command, args, options) => {
    const { child, handlers } = makeChild()
    const p = spawn(command, [...args], { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    if (p.pid !== undefined) lower(p.pid, nice)
    handlers.resolvePid(p.pid)
    p.on("error", (e) => {
      handlers.resolvePid(undefined)
      for (const f of handlers.error) f(e.message)
    })
    p.stdout.on("data", (b: Buffer) => {
      for (const f of handlers.data) f("stdout", b)
    })
    p.stderr.on("data", (b: Buffer) => {
      for (const f of handlers.data) f("stderr", b)
    })
    p.on("exit", (code, signal) =>
      setTimeout(() => {
        p.stdout.destroy()
        p.stderr.destroy()
        for (const f of handlers.exit) f(code, signal)
      }, PIPES_GRACE_MS))
    return child
  },
  close: () => Promise.resolve()
})

/**
 * A helper process: spawns what it is sent and sends back the pid, the output, the exit or the error (CommonJS,
 * eval). It lowers its own priority first, which the scripts it forks inherit, and leaves when the emulator does.
 */
const HELPER = `
const { spawn } = require("node:child_process")
const os = require("node:os")
const nice = Number(process.argv[1])
if (nice > 0) {
  try { os.setPriority(Math.min(19, os.getPriority() + nice)) } catch {}
}
process.on("disconnect", () => process.exit(0))
// one spawn per turn of the loop: a burst of requests does not hold back the exits of the scripts already running
const queue = []
const next = () => {
  const m = queue.shift()
  if (m !== undefined) start(m)
  if (queue.length > 0) setImmediate(next)
}
process.on("message", (m) => {
  if (queue.push(m) === 1) setImmediate(next)
})
const start = (m) => {
  const post = (message) => process.connected && process.send({ id: m.id, ...message })
  let p
  try {
    p = spawn(m.command, m.args, { ...m.options, detached: true, stdio: ["ignore", "pipe", "pipe"] })
  } catch (e) {
    post({ type: "error", message: String((e && e.message) || e) })
    return
  }
  p.on("error", (e) => post({ type: "error", message: e.message }))
  if (p.pid !== undefined) post({ type: "spawned", pid: p.pid })
  p.stdout.on("data", (b) => post({ type: "data", stream: "stdout", bytes: b }))
  p.stderr.on("data", (b) => post({ type: "data", stream: "stderr", bytes: b }))
  p.on("exit", (code, signal) =>
    setTimeout(() => {
      p.stdout.destroy()
      p.stderr.destroy()
      post({ type: "exit", code, signal })
    }, ${PIPES_GRACE_MS}))
}
`

type HelperMessage =
  | { readonly id: number; readonly type: "spawned"; readonly pid: number }
  | { readonly id: number; readonly type: "data"; readonly stream: "stdout" | "stderr"; readonly bytes: Uint8Array }
  | { readonly id: number; readonly type: "exit"; readonly code: number | null; readonly signal: NodeJS.Signals | null }
  | { readonly id: number; readonly type: "error"; readonly message: string }

/**
 * Spawns from `helpers` small helper processes, round robin; the scripts `nice` levels below the emulator. A fork
 * copies the forking process's page tables and write-protects its memory: from the emulator's own threads it would
 * stall its HTTP loop (and its garbage collector) at every script; from a helper of a few tens of megabytes it is cheap
 * and nobody else waits.
 */
export const processes = (helpers: number, nice: number): Spawner => {
  const live = new Map<number, Handlers & { readonly helper: number }>()
  let nextId = 0
  const env = { ...process.env }
  // the helper is plain CommonJS: no loader of the emulator's process (tsx, vitest) in it
  delete env.NODE_OPTIONS
  const fail = (helper: number, why: string) => {
    for (const [id, h] of live) {
      if (h.helper !== helper) continue
      live.delete(id)
      h.resolvePid(undefined)
      for (const f of h.error) f(why)
    }
  }
  // started with the first script each gets: an emulator that runs nothing costs no process
  const children: Array<ChildProcess | undefined> = Array.from({ length: Math.max(1, helpers) }, () => undefined)
  const startHelper = (index: number): ChildProcess => {
    const child = spawn(process.execPath, ["-e", HELPER, String(nice)], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      serialization: "advanced",
      env
    })
    child.unref()
    child.channel?.unref()
    child.on("message", (m: HelperMessage) => {
      const h = live.get(m.id)
      if (h === undefined) return
      switch (m.type) {
        case "spawned":
          return h.resolvePid(m.pid)
        case "data": {
          const bytes = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength)
          for (const f of h.data) f(m.stream, bytes)
          return
        }
        case "exit":
          live.delete(m.id)
          for (const f of h.exit) f(m.code, m.signal)
          return
        case "error":
          live.delete(m.id)
          h.resolvePid(undefined)
          for (const f of h.error) f(m.message)
      }
    })
    // a helper that died takes its scripts' reports with it: they end as not started
    child.on("error", (e) => fail(index, `the agent's spawner process failed: ${e.message}`))
    child.on("exit", (code, signal) => fail(index, `the agent's spawner process exited (${signal ?? code})`))
    return child
  }
  return {
    spawn: (command, args, options) => {
      const { child, handlers } = makeChild()
      const id = nextId++
      const index = id % children.length
      live.set(id, { ...handlers, helper: index })
      ;(children[index] ??= startHelper(index)).send({ id, command, args: [...args], options })
      return child
    },
    close: async () => {
      await Promise.all(
        children.map((c) =>
          c === undefined || c.exitCode !== null || c.signalCode !== null ? undefined : new Promise<void>((resolve) => {
            c.once("exit", () => resolve())
            c.kill("SIGTERM")
          })
        )
      )
    }
  }
}
