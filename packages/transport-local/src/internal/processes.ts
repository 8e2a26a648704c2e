/**
 * Process groups and token carriers on Linux, through /proc: who is still alive, and signalling them.
 *
 * @internal
 */
import * as fs from "node:fs"

/** @internal */
export interface ProcInfo {
  readonly pid: number
  readonly state: string
  readonly pgrp: number
}

const readStat = (pid: number): ProcInfo | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { pid, state: fields[0]!, pgrp: Number(fields[2]) }
  } catch {
    return undefined
  }
}

const pids = (): Array<number> => {
  try {
    return fs.readdirSync("/proc").filter((e) => e.charCodeAt(0) >= 48 && e.charCodeAt(0) <= 57).map(Number)
  } catch {
    return []
  }
}

const hasProc = (() => {
  let cached: boolean | undefined
  return () => (cached ??= fs.existsSync("/proc/self/stat"))
})()

const carries = (pid: number, needle: Buffer): boolean => {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`).includes(needle)
  } catch {
    return false
  }
}

const isDead = (state: string) => state === "Z" || state === "X" || state === "x"

/** @internal */
export interface Selector {
  /** Process groups (any live member counts). */
  readonly groups: ReadonlyArray<number>
  /** `NAME=value` found in /proc/<pid>/environ. */
  readonly token?: { readonly variable: string; readonly value: string } | undefined
}

/** Every process's stat and environment, read once and shared by the kills polling at the same time. */
interface Snapshot {
  readonly at: number
  readonly procs: ReadonlyArray<{ readonly info: ProcInfo; readonly environ: Buffer | undefined }>
}

let snapshot: Snapshot | undefined

const readSnapshot = (): Snapshot => {
  const procs: Array<{ readonly info: ProcInfo; readonly environ: Buffer | undefined }> = []
  for (const pid of pids()) {
    if (pid === process.pid) continue
    const info = readStat(pid)
    if (info === undefined || isDead(info.state)) continue
    let environ: Buffer | undefined
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`)
    } catch {
      environ = undefined
    }
    procs.push({ info, environ })
  }
  return { at: Date.now(), procs }
}

/**
 * Live (non-zombie) processes in the groups or carrying the token. Without /proc (not Linux): asks the kernel
 * about the groups only. With `maxAgeMs`, a scan of the process table at most that old may answer (kills waiting
 * for their processes to go poll together: a hundred of them read /proc once per poll, not a hundred times).
 *
 * @internal
 */
export const survivors = (selector: Selector, maxAgeMs?: number): Array<ProcInfo> => {
  const groups = new Set(selector.groups.filter((g) => g > 1))
  if (!hasProc()) {
    const out: Array<ProcInfo> = []
    for (const g of groups) {
      try {
        process.kill(-g, 0)
        out.push({ pid: g, state: "?", pgrp: g })
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EPERM") out.push({ pid: g, state: "?", pgrp: g })
      }
    }
    return out
  }
  const needle = selector.token === undefined
    ? undefined
    : Buffer.from(`${selector.token.variable}=${selector.token.value}`)
  const out: Array<ProcInfo> = []
  if (maxAgeMs !== undefined) {
    if (snapshot === undefined || Date.now() - snapshot.at > maxAgeMs) snapshot = readSnapshot()
    for (const { environ, info } of snapshot.procs) {
      if (groups.has(info.pgrp) || (needle !== undefined && environ !== undefined && environ.includes(needle))) {
        out.push(info)
      }
    }
    return out
  }
  for (const pid of pids()) {
    if (pid === process.pid) continue
    const info = readStat(pid)
    if (info === undefined || isDead(info.state)) continue
    if (groups.has(info.pgrp) || (needle !== undefined && carries(pid, needle))) out.push(info)
  }
  return out
}

const lastPid = (): number | undefined => {
  try {
    return Number(fs.readFileSync("/proc/sys/kernel/ns_last_pid", "latin1"))
  } catch {
    return undefined
  }
}

/**
 * Whether anything of an execution that exited normally is left, cheaply: the groups are asked with
 * `kill(-pgid, 0)` (no /proc scan), and the token is looked for only in processes started after `firstPid` (the
 * execution's own process: token carriers are its descendants, and Linux hands out pids in increasing order, so
 * they are above it unless the pid counter wrapped, in which case every process is read).
 *
 * @internal
 */
export const anyLeft = (selector: Selector, firstPid: number, ranMs: number): boolean => {
  for (const g of selector.groups) {
    if (g <= 1) continue
    try {
      process.kill(-g, 0)
      return true
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EPERM") return true
    }
  }
  if (selector.token === undefined || !hasProc()) return false
  // wrapping the pid counter (4M on 64-bit Linux) within a second is beyond any fork rate: no need to ask
  const last = ranMs < 1000 ? firstPid : lastPid()
  const wrapped = last === undefined || !Number.isSafeInteger(last) || last < firstPid
  const needle = Buffer.from(`${selector.token.variable}=${selector.token.value}`)
  for (const pid of pids()) {
    if (!wrapped && pid <= firstPid) continue
    if (pid === process.pid || !carries(pid, needle)) continue
    const info = readStat(pid)
    if (info !== undefined && !isDead(info.state)) return true
  }
  return false
}

const ownGroup = (() => {
  let cached: number | undefined
  return () => (cached ??= readStat(process.pid)?.pgrp ?? -1)
})()

const kill = (target: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(target, signal)
  } catch {
    // gone, or not ours to signal (EPERM): the survivor count tells
  }
}

/**
 * Signals the groups, every token carrier and the groups the carriers are in (never group 0/1 or our own).
 *
 * @internal
 */
export const signalAll = (selector: Selector, signal: NodeJS.Signals): void => {
  const own = ownGroup()
  const groups = new Set(selector.groups.filter((g) => g > 1 && g !== own))
  for (const g of groups) kill(-g, signal)
  if (selector.token === undefined || !hasProc()) return
  for (const info of survivors({ groups: [], token: selector.token })) {
    kill(info.pid, signal)
    if (info.pgrp > 1 && info.pgrp !== own && !groups.has(info.pgrp)) {
      groups.add(info.pgrp)
      kill(-info.pgrp, signal)
    }
  }
}
