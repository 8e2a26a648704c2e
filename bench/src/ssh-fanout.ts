// ssh-fanout: `true` on 50 loopback hosts (127.0.1.1 … 127.0.1.50; one sshd per 16 addresses), whole process, in
// alternating rounds:
//   runcmd           node packages/cli/bin/runcmd.js run -i <inventory of 50 ssh targets> --concurrency 50 -- true
//   ssh2             the floor of a Node client: 50 connections and execs from one plain script, no runcmd
//                    (src/ssh-fanout-ssh2.mjs: key parsed once, host keys checked, curve25519 as ssh2 negotiates)
//   pssh             parallel-ssh -h hosts -p 50 -x "-F <ssh_config>" true   (OpenSSH defaults: KEX sntrup761x25519)
//   pssh-curve25519  the same with -o KexAlgorithms=curve25519-sha256 (the KEX ssh2 negotiates)
//   ssh2-probe       diagnostic: the floor plus runcmd's login-shell probe (one more session per host first)
// Goals: runcmd ≤ 0.8× pssh, ≤ 0.8× pssh-curve25519, ≤ 1.15× the ssh2 floor (median wall time). Each run also
// records the client's CPU (user + sys, /usr/bin/time) and the servers' (the sshd listeners' own and reaped
// children's CPU from /proc, i.e. every per-connection sshd and the sessions' shells and commands).
import * as fs from "node:fs"
import * as path from "node:path"
import { benchDir, cliBin, loadTracker, median, profileNode, round, run, stats, writeResult } from "./harness.js"
import { sshAvailable, startServer } from "./sshd.js"

const HOSTS = 50
const ROUNDS = Number(process.env.BENCH_FANOUT_ROUNDS ?? 8)
const TICK_MS = 10 // USER_HZ 100

/** CPU (ms) of the sshd listeners under the harness's tinis: their own and that of their reaped children. */
const sshdCpuMs = (tinis: ReadonlyArray<number>): number => {
  let ticks = 0
  for (const tini of tinis) {
    let children: Array<string> = []
    try {
      for (const task of fs.readdirSync(`/proc/${tini}/task`)) {
        children = children.concat(
          fs.readFileSync(`/proc/${tini}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean)
        )
      }
    } catch {
      // gone
    }
    for (const pid of [String(tini), ...children]) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
        // utime stime cutime cstime: fields 14-17, i.e. 11-14 after the state field
        ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
      } catch {
        // gone
      }
    }
  }
  return ticks * TICK_MS
}

/** An inventory of ssh targets in core's format (see packages/transport-ssh/README.md). */
export const sshInventory = (
  server: Awaited<ReturnType<typeof startServer>>,
  addresses: ReadonlyArray<string>
): string =>
  [
    "defaults:",
    "  kind: ssh",
    `  user: ${server.sshd.user}`,
    `  port: ${server.sshd.port}`,
    `  auth: { type: key, path: ${JSON.stringify(server.sshd.clientKeyPath)} }`,
    `  hostKey: { policy: strict, knownHosts: [${JSON.stringify(server.sshd.knownHostsPath)}] }`,
    "targets:",
    ...addresses.map((a, i) => `  - { id: h${String(i + 1).padStart(2, "0")}, host: ${a} }`),
    ""
  ].join("\n")

export const sshFanout = async (): Promise<void> => {
  const load = loadTracker()
  const goal = "runcmd CLI ≤ 0.8× parallel-ssh -p 50, ≤ 0.8× parallel-ssh with curve25519, ≤ 1.15× raw ssh2 " +
    "(whole process, median wall time, 50 hosts, `true`)"
  if (!sshAvailable(["parallel-ssh"])) {
    writeResult({
      name: "ssh-fanout",
      goal,
      met: false,
      skipped: "sshd/ssh/parallel-ssh not installed",
      machine: load.end()
    })
    return
  }
  const server = await startServer({ addresses: HOSTS, maxSessions: 10 })
  try {
    const dir = fs.mkdtempSync(path.join(server.sshd.dir, "fanout-"))
    const inventory = path.join(dir, "inventory.yaml")
    fs.writeFileSync(inventory, sshInventory(server, server.sshd.addresses))
    const hosts = path.join(dir, "hosts.txt")
    fs.writeFileSync(hosts, server.sshd.addresses.join("\n") + "\n")
    const report = path.join(dir, "report.json")
    const floorConfig = path.join(dir, "ssh2.json")
    fs.writeFileSync(
      floorConfig,
      JSON.stringify({
        addresses: server.sshd.addresses,
        port: server.sshd.port,
        user: server.sshd.user,
        keyPath: server.sshd.clientKeyPath,
        knownHosts: server.sshd.knownHostsPath,
        command: "true"
      })
    )
    const floorScript = path.join(benchDir, "src", "ssh-fanout-ssh2.mjs")

    const variants: Record<string, ReadonlyArray<string>> = {
      runcmd: [
        process.execPath,
        cliBin,
        "run",
        "-i",
        inventory,
        "--concurrency",
        String(HOSTS),
        "--report",
        report,
        "--",
        "true"
      ],
      ssh2: [process.execPath, floorScript, floorConfig],
      "ssh2-probe": [process.execPath, floorScript, floorConfig, "--probe"],
      pssh: ["parallel-ssh", "-h", hosts, "-p", String(HOSTS), "-t", "60", "-x", `-F ${server.sshConfig}`, "true"],
      "pssh-curve25519": [
        "parallel-ssh",
        "-h",
        hosts,
        "-p",
        String(HOSTS),
        "-t",
        "60",
        "-x",
        `-F ${server.sshConfig} -o KexAlgorithms=curve25519-sha256`,
        "true"
      ]
    }
    const check = (name: string, r: Awaited<ReturnType<typeof run>>): string | undefined => {
      if (name === "runcmd") {
        if (r.code === 0) return undefined
        let detail = r.stderr.trim().split("\n").slice(-3).join(" / ")
        try {
          const rep = JSON.parse(fs.readFileSync(report, "utf8")) as {
            summary?: { byOutcome?: Record<string, number> }
          }
          detail = `${JSON.stringify(rep.summary?.byOutcome)} ${detail}`
        } catch {
          // no report
        }
        return `exit ${r.code}: ${detail}`.slice(0, 600)
      }
      if (name.startsWith("ssh2")) {
        return r.code === 0
          ? undefined
          : `exit ${r.code}: ${r.stdout.trim()} ${r.stderr.slice(-300)}`
      }
      const ok = (r.stdout.match(/\[SUCCESS\]/g) ?? []).length
      return r.code === 0 && ok === HOSTS
        ? undefined
        : `exit ${r.code}, ${ok}/${HOSTS} SUCCESS: ${r.stderr.slice(-300)}`
    }

    // one run of each first: warm-up, and whether runcmd works at all
    const failures: Record<string, string> = {}
    for (const [name, argv] of Object.entries(variants)) {
      const r = await run(argv[0]!, argv.slice(1), { timeoutMs: 120_000 })
      const bad = check(name, r)
      if (bad !== undefined) {
        failures[name] = bad
        console.log(`  ${name} failed (warm-up): ${bad}`)
      }
    }
    const active = Object.keys(variants).filter((k) => failures[k] === undefined || k === "runcmd")
    console.log(`ssh-fanout: ${ROUNDS} rounds of ${active.join(", ")} (${load.end().loadAtStart})`)
    const samples: Record<string, Array<number>> = Object.fromEntries(active.map((k) => [k, []]))
    const clientCpu: Record<string, Array<number>> = Object.fromEntries(active.map((k) => [k, []]))
    const serverCpu: Record<string, Array<number>> = Object.fromEntries(active.map((k) => [k, []]))
    const tinis = server.sshd.pids()
    const failedRuns: Record<string, Array<string>> = Object.fromEntries(active.map((k) => [k, []]))
    for (let r = 0; r < ROUNDS; r++) {
      const order = active.map((_, i) => active[(i + r) % active.length]!)
      const line: Array<string> = []
      for (const name of order) {
        const argv = variants[name]!
        const before = sshdCpuMs(tinis)
        const res = await run(argv[0]!, argv.slice(1), { timeoutMs: 120_000, timeV: true })
        const sshdMs = sshdCpuMs(tinis) - before
        const bad = check(name, res)
        if (bad !== undefined) failedRuns[name]!.push(bad)
        samples[name]!.push(res.ms)
        const cpu = 1000 *
          (Number(res.timeV?.["User time (seconds)"] ?? NaN) + Number(res.timeV?.["System time (seconds)"] ?? NaN))
        clientCpu[name]!.push(cpu)
        serverCpu[name]!.push(sshdMs)
        line.push(
          `${name} ${(res.ms / 1000).toFixed(2)} (cpu ${(cpu / 1000).toFixed(2)} + sshd ${(sshdMs / 1000).toFixed(2)})${
            bad === undefined ? "" : " (FAILED)"
          }`
        )
      }
      console.log(`  round ${r + 1}/${ROUNDS}: ${line.join(", ")} s`)
    }
    const s = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v, 1)]))
    const runcmdOk = (failedRuns.runcmd?.length ?? 1) === 0
    const ratio = (
      a: string,
      b: string
    ) => (s[a] && s[b] ? round(median(samples[a]!) / median(samples[b]!)) : undefined)
    const vsPssh = ratio("runcmd", "pssh")
    const vsCurve = ratio("runcmd", "pssh-curve25519")
    const vsFloor = ratio("runcmd", "ssh2")
    const goals = {
      "runcmd/pssh ≤ 0.8": vsPssh !== undefined && vsPssh <= 0.8,
      "runcmd/pssh-curve25519 ≤ 0.8": vsCurve !== undefined && vsCurve <= 0.8,
      "runcmd/ssh2 ≤ 1.15": vsFloor !== undefined && vsFloor <= 1.15
    }
    const met = runcmdOk && Object.values(goals).every(Boolean)
    // per round: the ratio of the two runs of one round (same load), then the median of those
    const roundRatio = (a: string, b: string) =>
      samples[a] && samples[b] ? round(median(samples[a]!.map((x, i) => x / samples[b]![i]!))) : undefined
    const medianOf = (m: Record<string, Array<number>>) =>
      Object.fromEntries(Object.entries(m).map(([k, v]) => [k, round(median(v), 0)]))
    for (const [k, v] of Object.entries(s)) {
      console.log(
        `  ${k.padEnd(16)} median ${(v.median / 1000).toFixed(2)} s, client CPU ${
          (median(clientCpu[k]!) / 1000).toFixed(2)
        } s, sshd CPU ${(median(serverCpu[k]!) / 1000).toFixed(2)} s`
      )
    }
    let profile: unknown
    if (!met && runcmdOk) {
      // the main thread's profile of one runcmd run and of one floor run, with the servers' CPU of each
      console.log("  goal missed: profiling one runcmd fan-out and one raw ssh2 fan-out (node --cpu-prof)")
      const profiled = async (name: string) => {
        const before = sshdCpuMs(tinis)
        const p = await profileNode(variants[name]!.slice(1))
        return { ...p, sshdCpuMs: sshdCpuMs(tinis) - before }
      }
      profile = { runcmd: await profiled("runcmd"), ssh2: await profiled("ssh2") }
      console.log(JSON.stringify(profile, null, 2))
    }
    writeResult({
      name: "ssh-fanout",
      goal,
      met,
      hosts: HOSTS,
      sshdProcesses: Math.ceil(HOSTS / 16),
      ...(runcmdOk ? {} : { runcmdFailed: failedRuns.runcmd?.[0] ?? failures.runcmd }),
      goals,
      medianMs: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.median])),
      clientCpuMedianMs: medianOf(clientCpu),
      sshdCpuMedianMs: medianOf(serverCpu),
      stats: s,
      ratios: {
        "runcmd/pssh": vsPssh,
        "runcmd/pssh-curve25519": vsCurve,
        "runcmd/ssh2": vsFloor,
        "pssh-curve25519/pssh": ratio("pssh-curve25519", "pssh"),
        "ssh2/pssh-curve25519": ratio("ssh2", "pssh-curve25519"),
        "ssh2-probe/ssh2": ratio("ssh2-probe", "ssh2")
      },
      roundRatios: {
        "runcmd/pssh": roundRatio("runcmd", "pssh"),
        "runcmd/pssh-curve25519": roundRatio("runcmd", "pssh-curve25519"),
        "runcmd/ssh2": roundRatio("runcmd", "ssh2"),
        "ssh2-probe/ssh2": roundRatio("ssh2-probe", "ssh2")
      },
      samplesMs: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.map((x) => round(x, 0))])),
      failedRuns,
      profile,
      measured:
        "whole processes, wall time (under /usr/bin/time -v for the client's CPU); runcmd: the CLI with an inventory " +
        "of 50 ssh targets (key auth, strict host keys), --concurrency 50; ssh2: src/ssh-fanout-ssh2.mjs, 50 connections " +
        "and execs of `true` from one script (same key, known_hosts, user); pssh: Debian's parallel-ssh 2.3.4 -p 50 " +
        "with the same key, known_hosts and user via ssh -F; sshd CPU: the listeners' own and reaped children's CPU",
      machine: load.end()
    })
  } finally {
    await server.stop()
  }
}
