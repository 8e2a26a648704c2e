// ssh-fanout: `true` on 50 loopback hosts (127.0.1.1 … 127.0.1.50; one sshd per 16 addresses), whole process, in
// alternating rounds:
//   runcmd           node packages/cli/bin/runcmd.js run -i <inventory of 50 ssh targets> --concurrency 50 -- true
//   pssh             parallel-ssh -h hosts -p 50 -x "-F <ssh_config>" true   (OpenSSH defaults: KEX sntrup761x25519)
//   pssh-curve25519  diagnostic: the same with -o KexAlgorithms=curve25519-sha256 (the KEX ssh2 negotiates)
// Goal: runcmd ≤ 0.8× pssh (median wall time).
import * as fs from "node:fs"
import * as path from "node:path"
import { cliBin, loadTracker, median, profileNode, round, run, stats, writeResult } from "./harness.js"
import { sshAvailable, startServer } from "./sshd.js"

const HOSTS = 50
const ROUNDS = Number(process.env.BENCH_FANOUT_ROUNDS ?? 8)

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
  const goal = "runcmd CLI ≤ 0.8× parallel-ssh -p 50 (whole process, median wall time, 50 hosts, `true`)"
  if (!sshAvailable(["parallel-ssh"])) {
    writeResult({ name: "ssh-fanout", goal, met: false, skipped: "sshd/ssh/parallel-ssh not installed", machine: load.end() })
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

    const variants: Record<string, ReadonlyArray<string>> = {
      runcmd: [process.execPath, cliBin, "run", "-i", inventory, "--concurrency", String(HOSTS), "--report", report, "--", "true"],
      pssh: ["parallel-ssh", "-h", hosts, "-p", String(HOSTS), "-t", "60", "-x", `-F ${server.sshConfig}`, "true"],
      "pssh-curve25519": ["parallel-ssh", "-h", hosts, "-p", String(HOSTS), "-t", "60", "-x", `-F ${server.sshConfig} -o KexAlgorithms=curve25519-sha256`, "true"]
    }
    const check = (name: string, r: Awaited<ReturnType<typeof run>>): string | undefined => {
      if (name === "runcmd") {
        if (r.code === 0) return undefined
        let detail = r.stderr.trim().split("\n").slice(-3).join(" / ")
        try {
          const rep = JSON.parse(fs.readFileSync(report, "utf8")) as { summary?: { byOutcome?: Record<string, number> } }
          detail = `${JSON.stringify(rep.summary?.byOutcome)} ${detail}`
        } catch {
          // no report
        }
        return `exit ${r.code}: ${detail}`.slice(0, 600)
      }
      const ok = (r.stdout.match(/\[SUCCESS\]/g) ?? []).length
      return r.code === 0 && ok === HOSTS ? undefined : `exit ${r.code}, ${ok}/${HOSTS} SUCCESS: ${r.stderr.slice(-300)}`
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
    const failedRuns: Record<string, Array<string>> = Object.fromEntries(active.map((k) => [k, []]))
    for (let r = 0; r < ROUNDS; r++) {
      const order = active.map((_, i) => active[(i + r) % active.length]!)
      const line: Array<string> = []
      for (const name of order) {
        const argv = variants[name]!
        const res = await run(argv[0]!, argv.slice(1), { timeoutMs: 120_000 })
        const bad = check(name, res)
        if (bad !== undefined) failedRuns[name]!.push(bad)
        samples[name]!.push(res.ms)
        line.push(`${name} ${(res.ms / 1000).toFixed(2)}${bad === undefined ? "" : " (FAILED)"}`)
      }
      console.log(`  round ${r + 1}/${ROUNDS}: ${line.join(", ")} s`)
    }
    const s = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v, 1)]))
    const runcmdOk = (failedRuns.runcmd?.length ?? 1) === 0
    const ratio = (a: string, b: string) => (s[a] && s[b] ? round(median(samples[a]!) / median(samples[b]!)) : undefined)
    const vsPssh = ratio("runcmd", "pssh")
    const met = runcmdOk && vsPssh !== undefined && vsPssh <= 0.8
    for (const [k, v] of Object.entries(s)) console.log(`  ${k.padEnd(16)} median ${(v.median / 1000).toFixed(2)} s`)
    let profile: unknown
    if (!met && runcmdOk) {
      console.log("  goal missed: profiling one runcmd fan-out (node --cpu-prof)")
      profile = await profileNode(variants.runcmd!.slice(1))
      console.log(JSON.stringify(profile, null, 2))
    }
    writeResult({
      name: "ssh-fanout",
      goal,
      met,
      hosts: HOSTS,
      sshdProcesses: Math.ceil(HOSTS / 16),
      ...(runcmdOk ? {} : { runcmdFailed: failedRuns.runcmd?.[0] ?? failures.runcmd }),
      medianMs: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.median])),
      stats: s,
      ratios: {
        "runcmd/pssh": vsPssh,
        "runcmd/pssh-curve25519": ratio("runcmd", "pssh-curve25519"),
        "pssh-curve25519/pssh": ratio("pssh-curve25519", "pssh")
      },
      failedRuns,
      profile,
      measured: "whole processes, wall time; runcmd: the CLI with an inventory of 50 ssh targets (key auth, strict host keys), " +
        "--concurrency 50; pssh: Debian's parallel-ssh 2.3.4 -p 50 with the same key, known_hosts and user via ssh -F",
      machine: load.end()
    })
  } finally {
    await server.stop()
  }
}
