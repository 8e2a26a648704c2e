// ssh-sequential: 500 executions of `true` on one host (a real sshd on 127.0.0.1, a dedicated user with a clean
// shell), alternating in rounds in one process:
//   runcmd        SshTransport.make once (warm pool), then Effect.runPromise(transport.run(target, invocation))
//   ssh2          raw ssh2 exec("true") on one connection with setNoDelay(true)
//   controlmaster `ssh -o ControlMaster=auto -o ControlPath=… -o ControlPersist=60 host true` (one ssh process per call)
//   new-conn      `ssh host true`, a new OpenSSH connection per call (50 executions; default KEX)
//   ssh2-wrapper  diagnostic: runcmd's rendered wrapper run over raw ssh2 (the remote shell chain's cost, no runcmd
//                 code on the node side); ssh2-wrapper-trimmed: the prototype trimmed wrapper (wrapper.ts);
//                 ssh2-sh-c-true: exec("/bin/sh -c true")
// Goals: runcmd ≤ 1.25× ssh2 and ≤ 0.5× ControlMaster (medians per execution).
import * as ScriptSource from "@runcmd/core/ScriptSource"
import type * as Transport from "@runcmd/core/Transport"
import * as SshTransport from "@runcmd/transport-ssh/SshTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import { Client } from "ssh2"
import {
  alternate,
  benchDir,
  loadTracker,
  mustRun,
  profileNode,
  ratios,
  round,
  run,
  stats,
  type Variant,
  writeResult
} from "./harness.js"
import { type Server, sshAvailable, startServer } from "./sshd.js"
import { renderedWrapper, trimmedWrapper } from "./wrapper.js"

const TOTAL = Number(process.env.BENCH_SSH_N ?? 500)
const NEW_CONN_TOTAL = Number(process.env.BENCH_SSH_NEWCONN_N ?? 50)
const ROUNDS = Number(process.env.BENCH_SSH_ROUNDS ?? 10)
/** `BENCH_SSH_VARIANTS=runcmd,runcmd-no-lifeline`: measure only these (e.g. the lifeline's cost, many rounds). */
const ONLY = process.env.BENCH_SSH_VARIANTS?.split(",").map((v) => v.trim()).filter((v) => v !== "")

const invocation: Transport.Invocation = {
  runId: "bench",
  attempt: 1,
  source: ScriptSource.command("true"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(2)
}

/** One raw ssh2 connection (Nagle off, host key pinned to the server's). */
export const ssh2Connect = (server: Server, host = server.sshd.addresses[0]!): Promise<Client> =>
  new Promise((resolve, reject) => {
    const client = new Client()
    client.on("error", reject)
    client.on("ready", () => resolve(client))
    client.connect({
      host,
      port: server.sshd.port,
      username: server.sshd.user,
      privateKey: server.sshd.clientKey,
      hostVerifier: (key: Buffer) => key.equals(server.sshd.hostKey),
      readyTimeout: 20_000
    })
    ;(client as unknown as { setNoDelay: (b: boolean) => void }).setNoDelay(true)
  })

/** exec on a raw ssh2 connection: stdin written then ended, both streams drained, exit status checked. */
export const ssh2Exec = (client: Client, command: string, stdin?: Buffer): Promise<void> =>
  new Promise((resolve, reject) => {
    client.exec(command, (openError, stream) => {
      if (openError) return reject(openError)
      let code: number | undefined
      let err = ""
      stream.on("exit", (c: number) => (code = c))
      stream.on("close", () =>
        code === 0 && (stdin === undefined || err.includes(":exit 0\n"))
          ? resolve()
          : reject(new Error(`${command.slice(0, 40)}: exit ${code} ${err.slice(-200)}`)))
      stream.resume()
      stream.stderr.on("data", (d: Buffer) => void (err += d.toString("latin1")))
      if (stdin !== undefined) stream.end(stdin)
      else stream.end()
    })
  })

/** Checks once that runcmd's SSH transport runs `true`; the error text when it cannot. */
const probeRuncmd = async (transport: Transport.Transport, target: Parameters<Transport.Transport["run"]>[0]) => {
  try {
    const r = await Effect.runPromise(transport.run(target, invocation))
    if (r.exit._tag !== "Exited" || r.exit.code !== 0) return `unexpected exit ${JSON.stringify(r.exit)}`
    return undefined
  } catch (e) {
    return String((e as Error)?.message ?? e).split("\n")[0]
  }
}

export const sshSequential = async (): Promise<void> => {
  const load = loadTracker()
  if (!sshAvailable()) {
    writeResult({
      name: "ssh-sequential",
      goal: "runcmd ≤ 1.25× ssh2 and ≤ 0.5× ControlMaster",
      met: false,
      skipped: "sshd/ssh not installed",
      machine: load.end()
    })
    return
  }
  const server = await startServer({ addresses: 1, maxSessions: 10 })
  const scope = Effect.runSync(Scope.make())
  const cmDir = fs.mkdtempSync(path.join(server.sshd.dir, "cm-"))
  const controlPath = path.join(cmDir, "cm-%C")
  const host = server.sshd.addresses[0]!
  const cm = [
    "-F",
    server.sshConfig,
    "-o",
    "ControlMaster=auto",
    "-o",
    `ControlPath=${controlPath}`,
    "-o",
    "ControlPersist=60"
  ]
  let client: Client | undefined
  try {
    const transport = Effect.runSync(Scope.extend(SshTransport.make(), scope))
    // the lifeline's cost: the same transport without the connection's lifeline channel
    const unwatched = Effect.runSync(Scope.extend(SshTransport.make({ lifeline: false }), scope))
    const target = server.sshd.target()
    const runcmdError = await probeRuncmd(transport, target)
    client = await ssh2Connect(server)
    const wrapper = await renderedWrapper(invocation, "ssh")
    const trimmed = trimmedWrapper(wrapper.input)
    const perRound = Math.max(1, Math.round(TOTAL / ROUNDS))
    const variants: Array<Variant> = [
      { name: "ssh2", perRound, op: () => ssh2Exec(client!, "true") },
      { name: "controlmaster", perRound, op: async () => void (await mustRun("ssh", [...cm, host, "true"])) },
      {
        name: "new-conn",
        perRound: Math.max(1, Math.round(NEW_CONN_TOTAL / ROUNDS)),
        warmup: 1,
        op: async () =>
          void (await mustRun("ssh", [
            "-F",
            server.sshConfig,
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            host,
            "true"
          ]))
      },
      { name: "ssh2-wrapper", perRound, op: () => ssh2Exec(client!, wrapper.commandLine, wrapper.input) },
      ...(trimmed === undefined
        ? []
        : [{ name: "ssh2-wrapper-trimmed", perRound, op: () => ssh2Exec(client!, wrapper.commandLine, trimmed) }]),
      { name: "ssh2-sh-c-true", perRound, op: () => ssh2Exec(client!, "/bin/sh -c true") }
    ]
    if (runcmdError === undefined) {
      variants.unshift({
        name: "runcmd",
        perRound,
        op: async () => {
          const r = await Effect.runPromise(transport.run(target, invocation))
          if (r.exit._tag !== "Exited" || r.exit.code !== 0) throw new Error(`runcmd: ${JSON.stringify(r.exit)}`)
        }
      }, {
        name: "runcmd-no-lifeline",
        perRound,
        op: async () => {
          const r = await Effect.runPromise(unwatched.run(target, invocation))
          if (r.exit._tag !== "Exited" || r.exit.code !== 0) throw new Error(`runcmd: ${JSON.stringify(r.exit)}`)
        }
      })
    } else {
      console.log(`  runcmd's SSH transport cannot run \`true\` yet: ${runcmdError}; measuring the peers only`)
    }
    if (ONLY !== undefined) {
      for (let i = variants.length - 1; i >= 0; i--) if (!ONLY.includes(variants[i]!.name)) variants.splice(i, 1)
    }
    console.log(
      `ssh-sequential: ${ROUNDS} rounds; per round ${
        variants.map((v) => `${v.name} ${v.perRound}`).join(", ")
      } (${load.end().loadAtStart})`
    )
    const result = await alternate(variants, ROUNDS, { log: true })
    const s = Object.fromEntries(Object.entries(result.samples).map(([k, v]) => [k, stats(v, 2)]))
    for (const [k, v] of Object.entries(s)) {
      console.log(`  ${k.padEnd(14)} median ${v.median} ms, mean ${v.mean}, p95 ${v.p95} (n=${v.n})`)
    }
    if (ONLY !== undefined) {
      // a partial run (the lifeline's cost): its own result file, the full one is kept
      const lifeline = result.samples["runcmd"] !== undefined && result.samples["runcmd-no-lifeline"] !== undefined
        ? ratios(result, "runcmd", "runcmd-no-lifeline")
        : undefined
      writeResult({
        name: "ssh-sequential-lifeline",
        goal: "runcmd ≤ 1.05× runcmd-no-lifeline (medians per execution of `true`)",
        met: lifeline !== undefined && lifeline.ofMedians <= 1.05,
        measured: `only ${ONLY.join(", ")}: ${ROUNDS} rounds × ${perRound}, alternating`,
        medianMs: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.median])),
        stats: s,
        ratios: lifeline === undefined ? {} : { "runcmd/runcmd-no-lifeline": lifeline },
        roundMediansMs: Object.fromEntries(
          Object.entries(result.roundMedians).map(([k, v]) => [k, v.map((x) => round(x, 2))])
        ),
        machine: load.end()
      })
      return
    }
    const vsSsh2 = runcmdError === undefined ? ratios(result, "runcmd", "ssh2") : undefined
    const vsCm = runcmdError === undefined ? ratios(result, "runcmd", "controlmaster") : undefined
    if (runcmdError === undefined) {
      console.log(
        `  lifeline cost: runcmd / runcmd-no-lifeline = ${
          JSON.stringify(ratios(result, "runcmd", "runcmd-no-lifeline"))
        }`
      )
    }
    const met = vsSsh2 !== undefined && vsCm !== undefined && vsSsh2.ofMedians <= 1.25 && vsCm.ofMedians <= 0.5
    let profile: unknown
    if (!met && runcmdError === undefined) {
      // node's side: 200 executions in a child under --cpu-prof (the remote side is ssh2-wrapper vs ssh2 above)
      console.log("  goal missed: profiling 200 runcmd executions in a child (node --cpu-prof)")
      const n = 200
      // the child reads its target from the environment it inherits
      process.env.BENCH_SSH_TARGET = JSON.stringify({
        host,
        port: server.sshd.port,
        user: server.sshd.user,
        keyPath: server.sshd.clientKeyPath,
        knownHosts: server.sshd.knownHostsPath
      })
      const p = await profileNode([path.join(benchDir, "src", "ssh-child.mjs"), String(n)], {
        functions: ["runLoop", "drive", "start", "openExec", "withChannel"]
      })
      const per = (x: unknown) => (typeof x === "number" ? round(x / n, 2) : x)
      profile = "error" in p ? p : {
        executions: n,
        wallMsPerExecution: per(p.wallMs),
        selfByPackagePerExecutionMs: Object.fromEntries(Object.entries(p.selfByPackageMs).map(([k, v]) => [k, per(v)])),
        inclusivePerExecutionMs: Object.fromEntries(Object.entries(p.inclusiveMs ?? {}).map(([k, v]) => [k, per(v)])),
        topSelfFunctionsMs: p.topSelfFunctionsMs
      }
      console.log(JSON.stringify(profile, null, 2))
    }
    writeResult({
      name: "ssh-sequential",
      goal: "runcmd ≤ 1.25× raw ssh2 (setNoDelay) and ≤ 0.5× OpenSSH ControlMaster, median per execution of `true`",
      met,
      ...(runcmdError === undefined ? {} : { runcmdUnusable: runcmdError }),
      measured:
        "runcmd: SshTransport.make once (pool warm after a first execution), Effect.runPromise(transport.run) per execution; " +
        "runcmd-no-lifeline: the same with { lifeline: false } (no lifeline channel; the lifeline's cost is runcmd over it); " +
        "ssh2: one Client, setNoDelay(true), exec per execution; controlmaster: one ssh process per execution over a persistent master; " +
        "new-conn: ssh with ControlMaster=no (OpenSSH defaults, KEX sntrup761x25519); ssh2-wrapper: runcmd's wrapper (bootstrap + stdin) over raw ssh2; " +
        "ssh2-wrapper-trimmed: the prototype trimmed wrapper (bench/src/wrapper.ts) over raw ssh2; ssh2-sh-c-true: exec('/bin/sh -c true') over raw ssh2",
      server: {
        sshd: "OpenSSH (harness: packages/transport-ssh/test/harness/Sshd.ts)",
        host,
        user: "dedicated test user, clean ~/.bashrc"
      },
      medianMs: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.median])),
      stats: s,
      ratios: {
        ...(vsSsh2 === undefined
          ? {}
          : {
            "runcmd/ssh2": vsSsh2,
            "runcmd/controlmaster": vsCm,
            "runcmd/ssh2-wrapper": ratios(result, "runcmd", "ssh2-wrapper"),
            "runcmd/runcmd-no-lifeline": ratios(result, "runcmd", "runcmd-no-lifeline")
          }),
        "ssh2-wrapper/ssh2": ratios(result, "ssh2-wrapper", "ssh2"),
        ...(trimmed === undefined
          ? {}
          : { "ssh2-wrapper-trimmed/ssh2": ratios(result, "ssh2-wrapper-trimmed", "ssh2") }),
        "ssh2-sh-c-true/ssh2": ratios(result, "ssh2-sh-c-true", "ssh2"),
        "controlmaster/ssh2": ratios(result, "controlmaster", "ssh2"),
        "new-conn/ssh2": ratios(result, "new-conn", "ssh2")
      },
      roundMediansMs: Object.fromEntries(
        Object.entries(result.roundMedians).map(([k, v]) => [k, v.map((x) => round(x, 2))])
      ),
      profile,
      machine: load.end()
    })
  } finally {
    client?.end()
    // the ControlPersist master: ask it to exit, then make sure
    const check = await run("ssh", [...cm, "-O", "check", host]).catch(() => undefined)
    const pid = /pid=(\d+)/.exec(check?.stderr ?? "")?.[1]
    await run("ssh", [...cm, "-O", "exit", host]).catch(() => undefined)
    if (pid !== undefined) {
      try {
        process.kill(Number(pid), "SIGKILL")
      } catch {
        // gone
      }
    }
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await server.stop()
  }
}
