/**
 * How the emulator's agent starts scripts. `child_process.spawn` blocks the calling thread for the fork (tens of
 * milliseconds each on a loaded machine): one emulator plays many VMs, so its HTTP loop would start their scripts one
 * after the other. The threaded spawner forks from worker threads instead (a small pool, round robin), which keeps
 * the loop answering and uses every core; the output comes back as messages, in order.
 *
 * @internal
 */
import { spawn, type SpawnOptions } from "node:child_process"
import { Worker } from "node:worker_threads"

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

/** Spawns on the calling thread. */
export const local: Spawner = {
  spawn: (command, args, options) => {
    const { child, handlers } = makeChild()
    const p = spawn(command, [...args], { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] })
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
}

/** The worker: spawns what it is sent and posts back the pid, the output, the exit or the error (CommonJS, eval). */
const WORKER = `
const { parentPort } = require("node:worker_threads")
const { spawn } = require("node:child_process")
parentPort.on("message", (m) => {
  const post = (message) => parentPort.postMessage({ id: m.id, ...message })
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
})
`

type WorkerMessage =
  | { readonly id: number; readonly type: "spawned"; readonly pid: number }
  | { readonly id: number; readonly type: "data"; readonly stream: "stdout" | "stderr"; readonly bytes: Uint8Array }
  | { readonly id: number; readonly type: "exit"; readonly code: number | null; readonly signal: NodeJS.Signals | null }
  | { readonly id: number; readonly type: "error"; readonly message: string }

/** Spawns from `threads` worker threads, round robin. */
export const threaded = (threads: number): Spawner => {
  const live = new Map<number, Handlers>()
  let nextId = 0
  const workers = Array.from({ length: Math.max(1, threads) }, () => {
    const worker = new Worker(WORKER, { eval: true })
    worker.unref()
    worker.on("message", (m: WorkerMessage) => {
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
    // a worker that died takes its scripts' reports with it: they end as not started
    worker.on("error", (e) => {
      for (const [id, h] of live) {
        live.delete(id)
        h.resolvePid(undefined)
        for (const f of h.error) f(`the agent's spawner thread failed: ${String(e)}`)
      }
    })
    return worker
  })
  return {
    spawn: (command, args, options) => {
      const { child, handlers } = makeChild()
      const id = nextId++
      live.set(id, handlers)
      workers[id % workers.length]!.postMessage({ id, command, args: [...args], options })
      return child
    },
    close: async () => {
      await Promise.all(workers.map((w) => w.terminate()))
    }
  }
}
