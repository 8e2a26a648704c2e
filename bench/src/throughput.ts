// throughput: 1 GiB of stdout (`head -c 1073741824 /dev/zero`) from one SSH target into a file, whole process, in
// alternating rounds, wall time and peak RSS from /usr/bin/time -v:
//   runcmd            runcmd CLI with a one-target inventory, --out-dir (core's file sink), -o json (no console copy)
//   openssh           ssh host 'head -c …' > file   (OpenSSH defaults: chacha20-poly1305)
//   openssh-aes128gcm diagnostic: the same with -c aes128-gcm@openssh.com (the cipher ssh2 negotiates)
//   ssh2-inprocess    diagnostic: raw ssh2 in this process (connect + exec + pipe into a file write stream; no node
//                     start, no RSS of its own): the ceiling for an ssh2-based transport on this machine
// Goals: runcmd's throughput ≥ 1.2× OpenSSH's (default cipher), runcmd's peak RSS ≤ 128 MB.
import * as fs from "node:fs"
import * as path from "node:path"
import { cliBin, loadTracker, median, profileNode, round, run, stats, writeResult } from "./harness.js"
import { sshInventory } from "./ssh-fanout.js"
import { ssh2Connect } from "./ssh-sequential.js"
import { sshAvailable, startServer } from "./sshd.js"

const BYTES = Number(process.env.BENCH_THROUGHPUT_BYTES ?? 1073741824)
const ROUNDS = Number(process.env.BENCH_THROUGHPUT_ROUNDS ?? 3)
const RSS_LIMIT_MB = 128
/** The runcmd command to measure (default: the repository's built CLI); e.g. a bundle built elsewhere. */
const RUNCMD_BIN = process.env.BENCH_RUNCMD_BIN ?? cliBin

export const throughput = async (): Promise<void> => {
  const load = loadTracker()
  const goal =
    `runcmd ≥ 1.2× OpenSSH's throughput (ssh host 'head -c ${BYTES}' > file) and runcmd peak RSS ≤ ${RSS_LIMIT_MB} MB`
  if (!sshAvailable(["time"])) {
    writeResult({ name: "throughput", goal, met: false, skipped: "sshd/ssh/time not installed", machine: load.end() })
    return
  }
  const server = await startServer({ addresses: 1 })
  try {
    const dir = fs.mkdtempSync(path.join(server.sshd.dir, "throughput-"))
    const host = server.sshd.addresses[0]!
    const inventory = path.join(dir, "inventory.yaml")
    fs.writeFileSync(inventory, sshInventory(server, [host]))
    const outDir = path.join(dir, "out")
    const outFile = path.join(outDir, "h01.stdout")
    const sshFile = path.join(dir, "ssh.out")

    const once = async (name: string, bytes = BYTES) => {
      const remote = `head -c ${bytes} /dev/zero`
      const timeoutMs = Math.max(60_000, (bytes / 2 ** 20) * 200)
      fs.rmSync(outDir, { recursive: true, force: true })
      fs.rmSync(sshFile, { force: true })
      let r: Awaited<ReturnType<typeof run>>
      let file: string
      if (name === "ssh2-inprocess") {
        file = sshFile
        const t0 = performance.now()
        const client = await ssh2Connect(server)
        const code = await new Promise<number | undefined>((resolve, reject) => {
          client.exec(remote, (err, stream) => {
            if (err) return reject(err)
            let exit: number | undefined
            stream.on("exit", (c: number) => (exit = c))
            const out = fs.createWriteStream(sshFile)
            stream.pipe(out)
            stream.stderr.resume()
            out.on("finish", () => resolve(exit))
            stream.end()
          })
        })
        client.end()
        r = { code: code ?? null, signal: null, ms: performance.now() - t0, stdout: "", stderr: "" }
      } else if (name === "runcmd") {
        file = outFile
        r = await run(process.execPath, [
          RUNCMD_BIN,
          "run",
          "-i",
          inventory,
          "--out-dir",
          outDir,
          "-o",
          "json",
          "--",
          "sh",
          "-c",
          remote
        ], {
          timeV: true,
          timeoutMs
        })
      } else {
        file = sshFile
        const fd = fs.openSync(sshFile, "w")
        try {
          const cipher = name === "openssh-aes128gcm" ? ["-c", "aes128-gcm@openssh.com"] : []
          r = await run("ssh", ["-F", server.sshConfig, ...cipher, host, remote], {
            timeV: true,
            stdout: fd,
            timeoutMs
          })
        } finally {
          fs.closeSync(fd)
        }
      }
      const size = fs.existsSync(file) ? fs.statSync(file).size : -1
      const ok = r.code === 0 && size === bytes
      const result = {
        ms: r.ms,
        mibPerS: (bytes / 2 ** 20) / (r.ms / 1000),
        maxRssMb: r.maxRssKb === undefined ? undefined : r.maxRssKb / 1024,
        cpuUserS: Number(r.timeV?.["User time (seconds)"] ?? NaN),
        cpuSysS: Number(r.timeV?.["System time (seconds)"] ?? NaN),
        ok,
        error: ok ? undefined : `exit ${r.code}, ${size} bytes written: ${(r.stderr + r.stdout).slice(-400)}`
      }
      fs.rmSync(outDir, { recursive: true, force: true })
      fs.rmSync(sshFile, { force: true })
      return result
    }

    // first a small transfer: whether runcmd's SSH transport works at all (skipped from the rounds if not)
    const probe = await once("runcmd", 1 << 20)
    const names = probe.ok
      ? ["runcmd", "openssh", "openssh-aes128gcm", "ssh2-inprocess"]
      : ["openssh", "openssh-aes128gcm", "ssh2-inprocess"]
    if (!probe.ok) console.log(`  runcmd cannot transfer 1 MiB yet (${probe.error}); measuring the peers only`)
    const runs: Record<string, Array<Awaited<ReturnType<typeof once>>>> = Object.fromEntries(
      ["runcmd", "openssh", "openssh-aes128gcm", "ssh2-inprocess"].map((n) => [n, []])
    )
    console.log(`throughput: ${ROUNDS} rounds of ${names.join(", ")}, ${BYTES} bytes each (${load.end().loadAtStart})`)
    for (let r = 0; r < ROUNDS; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]!)
      const line: Array<string> = []
      for (const name of order) {
        const x = await once(name)
        runs[name]!.push(x)
        line.push(
          `${name} ${x.mibPerS.toFixed(0)} MiB/s, ${x.maxRssMb?.toFixed(0) ?? "-"} MB${
            x.ok ? "" : ` FAILED (${x.error})`
          }`
        )
      }
      console.log(`  round ${r + 1}/${ROUNDS}: ${line.join("; ")}`)
    }
    const ok = (n: string) => runs[n]!.filter((x) => x.ok)
    const med = (
      n: string,
      f: (x: Awaited<ReturnType<typeof once>>) => number
    ) => (ok(n).length > 0 ? round(median(ok(n).map(f)), 1) : undefined)
    const summary = Object.fromEntries(["runcmd", "openssh", "openssh-aes128gcm", "ssh2-inprocess"].map((n) => [n, {
      okRuns: ok(n).length,
      medianMiBPerS: med(n, (x) => x.mibPerS),
      medianWallMs: med(n, (x) => x.ms),
      peakRssMb: ok(n).length > 0 ? round(Math.max(...ok(n).map((x) => x.maxRssMb ?? NaN)), 1) : undefined,
      medianCpuUserS: med(n, (x) => x.cpuUserS),
      medianCpuSysS: med(n, (x) => x.cpuSysS),
      wallMs: stats(runs[n]!.map((x) => x.ms), 0)
    }]))
    const rt = summary.runcmd!.medianMiBPerS
    const ro = summary.openssh!.medianMiBPerS
    const ratio = rt !== undefined && ro !== undefined ? round(rt / ro) : undefined
    const ratioAes = rt !== undefined && summary["openssh-aes128gcm"]!.medianMiBPerS !== undefined
      ? round(rt / summary["openssh-aes128gcm"]!.medianMiBPerS!) :
      undefined
    const rssOk = summary.runcmd!.peakRssMb !== undefined && summary.runcmd!.peakRssMb <= RSS_LIMIT_MB
    const allOk = ok("runcmd").length === ROUNDS
    const met = allOk && ratio !== undefined && ratio >= 1.2 && rssOk
    let profile: unknown
    if (!met && probe.ok) {
      // where runcmd's CPU goes while streaming: one 256 MiB transfer under node --cpu-prof
      console.log("  goal missed: profiling one 256 MiB transfer (node --cpu-prof)")
      fs.rmSync(outDir, { recursive: true, force: true })
      profile = await profileNode([
        RUNCMD_BIN,
        "run",
        "-i",
        inventory,
        "--out-dir",
        outDir,
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        `head -c ${256 * 2 ** 20} /dev/zero`
      ])
      fs.rmSync(outDir, { recursive: true, force: true })
      console.log(JSON.stringify(profile, null, 2))
    }
    writeResult({
      name: "throughput",
      goal,
      met,
      bytes: BYTES,
      rounds: ROUNDS,
      runcmdBaseline: {
        note: "the 1 MiB probe run: the CLI's RSS before any bulk data",
        maxRssMb: probe.maxRssMb === undefined ? undefined : round(probe.maxRssMb, 1),
        wallMs: round(probe.ms, 0)
      },
      summary,
      ratios: {
        "runcmd/openssh": ratio,
        "runcmd/openssh-aes128gcm": ratioAes,
        "runcmd/ssh2-inprocess": rt !== undefined && summary["ssh2-inprocess"]!.medianMiBPerS !== undefined
          ? round(rt / summary["ssh2-inprocess"]!.medianMiBPerS!) :
          undefined
      },
      ...(allOk
        ? {}
        : {
          runcmdErrors: probe.ok
            ? runs.runcmd!.filter((x) => !x.ok).map((x) => x.error)
            : [`1 MiB probe: ${probe.error}`]
        }),
      profile,
      measured:
        "whole processes under /usr/bin/time -v (wall including connection setup and node start; peak RSS = max resident set of the process); " +
        "runcmd: CLI, one ssh target, --out-dir (file sink), -o json; openssh: ssh -F (key, strict host keys) with stdout redirected to a file",
      machine: load.end()
    })
  } finally {
    await server.stop()
  }
}
