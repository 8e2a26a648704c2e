/**
 * The emulator's stand-in for a Windows job object: every process a command starts carries a marker in its
 * environment, so that a terminate ends the whole tree (processes in sessions of their own included) as
 * `TerminateJobObject` would, and the emulator can tell that none is left.
 *
 * @internal
 */
import * as Fs from "node:fs"

/** @internal */
export const JOB_VARIABLE = "RUNCMD_WINRM_EMULATOR_JOB"

/** The pids of the processes whose environment carries `JOB_VARIABLE=<job>`. @internal */
export const jobProcesses = (job: string): Array<number> => {
  const needle = Buffer.from(`${JOB_VARIABLE}=${job}\0`)
  const pids: Array<number> = []
  let entries: Array<string>
  try {
    entries = Fs.readdirSync("/proc")
  } catch {
    return pids
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (Fs.readFileSync(`/proc/${entry}/environ`).includes(needle)) pids.push(Number(entry))
    } catch {
      // gone, or not ours to read
    }
  }
  return pids
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * KILLs the process group of `pid` and every process of the job until none is left (bounded): true when none is
 * left.
 *
 * @internal
 */
export const killJob = async (job: string, pid: number | undefined): Promise<boolean> => {
  if (pid !== undefined) {
    try {
      process.kill(-pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  for (let round = 0; round < 100; round++) {
    const left = jobProcesses(job).filter((p) => p !== process.pid)
    if (left.length === 0) return true
    for (const p of left) {
      try {
        process.kill(p, "SIGKILL")
      } catch {
        // already gone
      }
    }
    await delay(20)
  }
  return jobProcesses(job).length === 0
}
