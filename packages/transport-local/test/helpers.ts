import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as cp from "node:child_process"
import * as fs from "node:fs"

export const target = Target.local("local-test", { role: "test" })

export const invocation = (
  source: Transport.Invocation["source"],
  over: Partial<Transport.Invocation> = {}
): Transport.Invocation => ({
  runId: "test",
  attempt: 1,
  source,
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  ...over
})

export const sh = (text: string, over: Partial<Transport.Invocation> = {}) =>
  invocation(ScriptSource.script(text, "sh"), over)

export const local = Effect.flatMap(
  Transport.Registry,
  (registry) =>
    Effect.sync(() => Option.getOrThrowWith(registry.get("local"), () => new Error("no local transport registered")))
)

const statOf = (pid: string) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")
}

/** Live processes whose environment carries `RUNCMD_TOKEN=<token>`, or, without a token, any RUNCMD_TOKEN. */
export const carriers = (marker: string): Array<number> => {
  const needle = Buffer.from(marker)
  const out: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (!fs.readFileSync(`/proc/${entry}/environ`).includes(needle)) continue
      if (statOf(entry)[0] !== "Z") out.push(Number(entry))
    } catch {
      // gone
    }
  }
  return out
}

export const groupMembers = (pgid: number): Array<number> => {
  const out: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const f = statOf(entry)
      if (Number(f[2]) === pgid && f[0] !== "Z") out.push(Number(entry))
    } catch {
      // gone
    }
  }
  return out
}

export const killMarked = (marker: string) => {
  for (const pid of carriers(marker)) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
}

/** Polls `check` until it holds or `ms` passed. */
export const eventually = (check: () => boolean, ms: number) =>
  Effect.gen(function*() {
    const until = Date.now() + ms
    while (!check() && Date.now() < until) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
    return check()
  })

export const hasCommand = (name: string): boolean => cp.spawnSync("sh", ["-c", `command -v ${name}`]).status === 0

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0

/** Creates a throwaway user (useradd) and returns a function removing it. */
export const createUser = (name: string, password?: string): () => void => {
  cp.spawnSync("userdel", ["-r", name], { stdio: "ignore" })
  const r = cp.spawnSync("useradd", ["-m", "-s", "/bin/sh", name], { encoding: "utf8" })
  if (r.status !== 0) throw new Error(`useradd ${name}: ${r.stderr}`)
  if (password !== undefined) {
    const p = cp.spawnSync("chpasswd", [], { input: `${name}:${password}\n`, encoding: "utf8" })
    if (p.status !== 0) throw new Error(`chpasswd: ${p.stderr}`)
  }
  const uid = Number(cp.spawnSync("id", ["-u", name], { encoding: "utf8" }).stdout.trim())
  return () => {
    // processes this test started as the user (by pid, from /proc)
    for (const entry of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      try {
        if (fs.statSync(`/proc/${entry}`).uid === uid) process.kill(Number(entry), "SIGKILL")
      } catch {
        // gone
      }
    }
    cp.spawnSync("userdel", ["-r", "-f", name], { stdio: "ignore" })
  }
}
