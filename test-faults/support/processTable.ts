/**
 * The process table, read from /proc: the live processes that carry a marker in their argv or environment
 * (every descendant of an execution inherits its environment, and a `setsid` escape keeps it), waiting for them to
 * go, and killing those a failed case left behind.
 */
import * as fs from "node:fs"

export interface Marked {
  readonly pid: number
  readonly comm: string
  readonly cmd: string
}

const read = (file: string, encoding: BufferEncoding): string | undefined => {
  try {
    return fs.readFileSync(file, encoding)
  } catch {
    return undefined
  }
}

/** Live (not zombie) processes whose argv or environment contains `needle`, this test process excluded. */
export const marked = (needle: string): Array<Marked> => {
  const out: Array<Marked> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    const cmdline = read(`/proc/${entry}/cmdline`, "latin1")
    const environ = read(`/proc/${entry}/environ`, "latin1")
    if (cmdline === undefined || (!cmdline.includes(needle) && environ?.includes(needle) !== true)) continue
    const stat = read(`/proc/${entry}/stat`, "latin1")
    if (stat === undefined) continue
    const close = stat.lastIndexOf(")")
    const state = stat.slice(close + 2, close + 3)
    if (state === "Z" || state === "X") continue
    out.push({ pid: Number(entry), comm: stat.slice(stat.indexOf("(") + 1, close), cmd: cmdline.split("\0").join(" ") })
  }
  return out
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls until no process carries `needle` or `waitMs` passed; returns what is left. */
export const waitNone = async (needle: string, waitMs: number): Promise<Array<Marked>> => {
  const deadline = Date.now() + waitMs
  let left = marked(needle)
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100)
    left = marked(needle)
  }
  return left
}

/** KILLs every process carrying `needle` (cleanup after a failed case), for up to `waitMs`. */
export const killMarked = async (needle: string, waitMs = 5000): Promise<void> => {
  const deadline = Date.now() + waitMs
  for (;;) {
    const left = marked(needle)
    if (left.length === 0 || Date.now() > deadline) return
    for (const p of left) {
      try {
        process.kill(p.pid, "SIGKILL")
      } catch {
        // gone
      }
    }
    await sleep(50)
  }
}

/** One line per process, for assertion messages. */
export const describe = (ps: ReadonlyArray<Marked>): string =>
  ps.map((p) => `  pid ${p.pid} (${p.comm}): ${p.cmd}`).join("\n")
