// local: 1,000 sequential executions of `true` through runcmd's local transport vs child_process.spawn, execa and
// execa with `shell: true`, alternating in rounds in one process.
// Goal: runcmd (LocalTransport.make + Transport.run, the per-execution path) ≤ 1.0× execa with shell: true.
// Also measured: Runner.run with one Local target (what the README's first program does, the layer reused), and
// the rendered wrapper spawned raw (diagnostic: the shell chain's cost without any runcmd code in node).
// When the goal is missed: a profile step (strace -f: processes and execs per execution; node --cpu-prof: where
// node's time goes) in child processes.
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import type * as Transport from "@runcmd/core/Transport"
import * as LocalTransport from "@runcmd/transport-local/LocalTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import { execa } from "execa"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  alternate,
  benchDir,
  loadTracker,
  ratios,
  round,
  run,
  stats,
  summarizeProfile,
  tmpDir,
  which,
  writeResult
} from "./harness.js"
import { ensureTools } from "./setup.js"
import { renderedWrapper } from "./wrapper.js"

const TOTAL = Number(process.env.BENCH_LOCAL_N ?? 1000)
const ROUNDS = 20
const PER_ROUND = Math.max(1, Math.round(TOTAL / ROUNDS))

const invocation: Transport.Invocation = {
  runId: "bench",
  attempt: 1,
  source: ScriptSource.command("true"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(2)
}

const spawnTrue = () =>
  new Promise<void>((resolve, reject) => {
    const child = cp.spawn("true")
    child.on("error", reject)
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`true exited ${code}`))))
  })

/** Spawns the wrapper with its stdin bytes; with input, also checks that it reported `exit 0` on stderr. */
const spawnWrapper = (argv: ReadonlyArray<string>, input: Buffer) => () =>
  new Promise<void>((resolve, reject) => {
    const child = cp.spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"], detached: true })
    let err = ""
    child.stdout.resume()
    child.stderr.on("data", (d: Buffer) => void (err += d.toString("latin1")))
    child.stdin.on("error", () => {})
    child.stdin.end(input)
    child.on("error", reject)
    child.on("close", (code) =>
      code === 0 && (input.length === 0 || err.includes(":exit 0\n"))
        ? resolve()
        : reject(new Error(`wrapper exited ${code}: ${err.slice(-300)}`)))
  })

/** strace -f over a child doing n executions: processes and successful execs per execution. */
const straceCounts = async (variant: string, n: number) => {
  const dir = tmpDir("strace")
  const out = path.join(dir, "trace")
  try {
    const r = await run("strace", [
      "-f",
      "-qq",
      "-e",
      "trace=execve,exit_group",
      "-o",
      out,
      process.execPath,
      path.join(benchDir, "src", "local-child.mjs"),
      variant,
      String(n)
    ], { timeoutMs: 300_000 })
    if (r.code !== 0) throw new Error(`strace child failed: ${r.stderr}`)
    const lines = fs.readFileSync(out, "utf8").split("\n").filter((l) => l.length > 0)
    const main = Number(lines[0]!.split(" ")[0])
    const pids = new Set<number>()
    const execs: Record<string, number> = {}
    let execOk = 0
    let execFailed = 0
    for (const line of lines) {
      const pid = Number(line.split(" ")[0])
      if (pid === main) continue
      if (line.includes("execve(") || line.includes("exit_group(")) pids.add(pid)
      const m = /execve\("([^"]+)".*\) = (-?\d+)/.exec(line)
      if (m !== null) {
        if (m[2] === "0") {
          execOk++
          const name = path.basename(m[1]!)
          execs[name] = (execs[name] ?? 0) + 1
        } else execFailed++
      }
    }
    return {
      executions: n,
      processesPerExecution: round(pids.size / n, 2),
      execvePerExecution: round(execOk / n, 2),
      failedExecvePerExecution: round(execFailed / n, 2),
      programsExecedPerExecution: Object.fromEntries(Object.entries(execs).map(([k, v]) => [k, round(v / n, 2)]))
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** node --cpu-prof over a child doing n executions: where the main thread's time goes, per execution. */
const cpuProfile = async (variant: string, n: number) => {
  const dir = tmpDir("cpuprof")
  try {
    const t0 = performance.now()
    const r = await run(process.execPath, [
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
      path.join(benchDir, "src", "local-child.mjs"),
      variant,
      String(n)
    ], { timeoutMs: 300_000 })
    const wall = performance.now() - t0
    if (r.code !== 0) throw new Error(`profile child failed: ${r.stderr}`)
    const file = fs.readdirSync(dir).find((f) => f.endsWith(".cpuprofile"))!
    const s = summarizeProfile(path.join(dir, file), ["survivors", "signalAll", "spawn", "execa", "runLoop", "start"])
    const per = (x: number) => round(x / n, 2)
    return {
      executions: n,
      wallMsPerExecution: per(wall),
      mainThreadMsPerExecution: per(s.totalMs - (s.selfByPackageMs["(idle)"] ?? 0)),
      inclusivePerExecutionMs: Object.fromEntries(Object.entries(s.inclusiveMs).map(([k, v]) => [k, per(v)])),
      selfByPackagePerExecutionMs: Object.fromEntries(
        Object.entries(s.selfByPackageMs).slice(0, 12).map(([k, v]) => [k, per(v)])
      ),
      topSelfFunctionsMs: Object.fromEntries(Object.entries(s.selfByFunctionMs).slice(0, 12))
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Cost of one /proc scan like the transport's `survivors()` (stat of every process, environ of each). */
const procScanCost = () => {
  const scan = () => {
    const needle = Buffer.from("RUNCMD_TOKEN=00000000000000000000000000000000")
    let found = 0
    for (const e of fs.readdirSync("/proc")) {
      if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue
      try {
        fs.readFileSync(`/proc/${e}/stat`, "latin1")
        if (fs.readFileSync(`/proc/${e}/environ`).includes(needle)) found++
      } catch {
        // gone
      }
    }
    return found
  }
  for (let i = 0; i < 20; i++) scan()
  const t0 = performance.now()
  for (let i = 0; i < 200; i++) scan()
  return {
    processesOnHost: fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).length,
    msPerScan: round((performance.now() - t0) / 200, 2)
  }
}

export const local = async (): Promise<void> => {
  const load = loadTracker()
  console.log(`local: ${ROUNDS} rounds × ${PER_ROUND} executions of \`true\` per variant (${load.end().loadAtStart})`)

  const scope = Effect.runSync(Scope.make())
  const transport = Effect.runSync(Scope.extend(LocalTransport.make(), scope))
  const runtime = ManagedRuntime.make(LocalTransport.layer())
  const target = Target.local("local")
  const plan = RunPlan.make({ targets: [target], job: ScriptSource.job(ScriptSource.command("true")) })
  const wrapper = await renderedWrapper(invocation, "local")
  // the full wrapper, which run-as (and python, long scripts) still take
  const wrapped = Effect.runSync(Scope.extend(LocalTransport.make({ direct: false }), scope))
  // the lifeline's cost: the same transport without its watchdog (no token/group/forget messages per execution)
  const unwatched = Effect.runSync(Scope.extend(LocalTransport.make({ lifeline: false }), scope))

  try {
    const result = await alternate(
      [
        { name: "spawn", perRound: PER_ROUND, op: spawnTrue },
        { name: "execa", perRound: PER_ROUND, op: async () => void (await execa("true")) },
        { name: "execa-shell", perRound: PER_ROUND, op: async () => void (await execa("true", { shell: true })) },
        {
          name: "runcmd-transport",
          perRound: PER_ROUND,
          op: async () => {
            const r = await Effect.runPromise(transport.run(target, invocation))
            if (r.exit._tag !== "Exited" || r.exit.code !== 0) throw new Error(`runcmd: ${JSON.stringify(r.exit)}`)
          }
        },
        {
          name: "runcmd-transport-no-lifeline",
          perRound: PER_ROUND,
          op: async () => {
            const r = await Effect.runPromise(unwatched.run(target, invocation))
            if (r.exit._tag !== "Exited" || r.exit.code !== 0) throw new Error(`runcmd: ${JSON.stringify(r.exit)}`)
          }
        },
        {
          name: "runcmd-runner",
          perRound: PER_ROUND,
          op: async () => {
            const report = await runtime.runPromise(Runner.run(plan))
            if (report.summary.byOutcome.Succeeded !== 1) throw new Error("runcmd runner: not succeeded")
          }
        },
        { name: "wrapper-raw-spawn", perRound: PER_ROUND, op: spawnWrapper(wrapper.argv, wrapper.input) },
        {
          name: "runcmd-transport-wrapper",
          perRound: PER_ROUND,
          op: async () => {
            const r = await Effect.runPromise(wrapped.run(target, invocation))
            if (r.exit._tag !== "Exited" || r.exit.code !== 0) {
              throw new Error(`runcmd (wrapper): ${JSON.stringify(r.exit)}`)
            }
          }
        },
        {
          name: "sh-c-true-raw-spawn",
          perRound: PER_ROUND,
          op: spawnWrapper(["/bin/sh", "-c", "true"], Buffer.alloc(0))
        }
      ],
      ROUNDS
    )

    const s = Object.fromEntries(Object.entries(result.samples).map(([k, v]) => [k, stats(v, 2)]))
    const vsShell = ratios(result, "runcmd-transport", "execa-shell")
    const runnerVsShell = ratios(result, "runcmd-runner", "execa-shell")
    const met = vsShell.ofMedians <= 1.0
    const lifeline = ratios(result, "runcmd-transport", "runcmd-transport-no-lifeline")
    console.log(`  lifeline cost: runcmd-transport / runcmd-transport-no-lifeline = ${JSON.stringify(lifeline)}`)
    console.log("\n  variant              median    mean     p95   (ms per execution)")
    for (const [k, v] of Object.entries(s)) {
      console.log(
        `  ${k.padEnd(20)} ${v.median.toFixed(2).padStart(7)} ${v.mean.toFixed(2).padStart(7)} ${
          v.p95.toFixed(2).padStart(7)
        }`
      )
    }
    console.log(
      `  runcmd-transport / execa-shell: ${vsShell.ofMedians} (medians), ${vsShell.medianOfRoundRatios} (median of round ratios)`
    )

    let profile: Record<string, unknown> | undefined
    if (!met) {
      console.log("\n  goal missed: profiling (strace -f, node --cpu-prof) in child processes")
      profile = { procScan: procScanCost() }
      if (ensureTools(["strace"]).length === 0) {
        profile.straceTransport = await straceCounts("transport", 20)
        profile.straceExecaShell = await straceCounts("execa-shell", 20)
      }
      profile.cpuTransport = await cpuProfile("transport", 300)
      profile.cpuExecaShell = await cpuProfile("execa-shell", 300)
      console.log(JSON.stringify(profile, null, 2))
    }

    writeResult({
      name: "local",
      goal:
        "runcmd (LocalTransport.make + Transport.run) ≤ 1.0× execa(\"true\", { shell: true }), median per execution",
      met,
      measured:
        "runcmd-transport: LocalTransport.make once, then Effect.runPromise(transport.run(target, invocation)) per execution; " +
        "runcmd-runner: ManagedRuntime(LocalTransport.layer()) once, then runtime.runPromise(Runner.run(plan with one Local target)); " +
        "wrapper-raw-spawn: child_process.spawn of the rendered wrapper (/bin/sh -c BOOTSTRAP) with its stdin bytes replayed, no runcmd code; " +
        "runcmd-transport-wrapper: the same transport with { direct: false } (the full wrapper, which run-as takes); " +
        "runcmd-transport-no-lifeline: the same transport with { lifeline: false } (no watchdog; the lifeline's cost is runcmd-transport over it); " +
        "sh-c-true-raw-spawn: /bin/sh -c true with the same spawn code (the floor for any shell-based wrapper)",
      executionsPerVariant: ROUNDS * PER_ROUND,
      rounds: ROUNDS,
      medianMs: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.median])),
      stats: s,
      ratios: {
        "runcmd-transport/execa-shell": vsShell,
        "runcmd-runner/execa-shell": runnerVsShell,
        "runcmd-transport/spawn": ratios(result, "runcmd-transport", "spawn"),
        "runcmd-transport/execa": ratios(result, "runcmd-transport", "execa"),
        "wrapper-raw-spawn/execa-shell": ratios(result, "wrapper-raw-spawn", "execa-shell"),
        "wrapper-raw-spawn/sh-c-true-raw-spawn": ratios(result, "wrapper-raw-spawn", "sh-c-true-raw-spawn"),
        "runcmd-transport-wrapper/execa-shell": ratios(result, "runcmd-transport-wrapper", "execa-shell"),
        "execa-shell/spawn": ratios(result, "execa-shell", "spawn"),
        "runcmd-transport/runcmd-transport-no-lifeline": ratios(
          result,
          "runcmd-transport",
          "runcmd-transport-no-lifeline"
        )
      },
      roundMediansMs: Object.fromEntries(
        Object.entries(result.roundMedians).map(([k, v]) => [k, v.map((x) => round(x, 2))])
      ),
      profile,
      machine: load.end(),
      tools: { strace: which("strace") !== undefined }
    })
  } finally {
    await runtime.dispose()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
