// cloud-calls-azure: 1,000 Azure VMs through the ARM emulator (https on loopback, in this process; each VM's script
// a local process), the runcmd Azure transport in managed mode, side by side in one run:
//   calls     `true` on every VM: ARM requests by kind, per target (from the emulator's record of every request)
//   wall      `sleep 1` on every VM: the run's wall time against the longest single execution (as the emulator's
//             agent measured it, spawn to exit) plus the poll interval
// Goals (issue 13): exactly 1 PUT and 1 DELETE per target plus polls; ≤ 1 poll per target per poll interval in
// steady state; nothing polled after it finished; wall ≤ 1.5× the longest execution + the poll interval.
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as AzureTarget from "@runcmd/transport-azure/AzureTarget"
import * as AzureTransport from "@runcmd/transport-azure/AzureTransport"
import * as Emulator from "@runcmd/transport-azure/testing"
import * as Effect from "effect/Effect"
import { loadTracker, round, writeResult } from "./harness.js"

const TARGETS = Number(process.env.BENCH_AZURE_TARGETS ?? 1000)
const POLL_MS = 1000

const runOnce = async (emulator: Emulator.Emulator, script: string) => {
  const targets = Array.from({ length: TARGETS }, (_, i) =>
    AzureTarget.vm(`vm-${i}`, {
      subscription: emulator.subscription,
      resourceGroup: emulator.resourceGroup,
      vmName: `vm-${i}`,
      location: emulator.location
    }))
  const layer = AzureTransport.layer({
    credential: Emulator.credential,
    endpoint: emulator.endpoint,
    ca: emulator.ca,
    pollInterval: `${POLL_MS} millis`,
    pollMax: `${POLL_MS} millis`,
    preflight: false,
    maxInFlightPerSubscription: 64
  })
  const from = Date.now()
  const started = performance.now()
  const report = await Effect.runPromise(
    Runner.run(RunPlan.make({
      targets,
      job: ScriptSource.job(ScriptSource.script(script)),
      policy: { concurrency: TARGETS }
    })).pipe(Effect.provide(layer))
  )
  const wallMs = performance.now() - started
  const to = Date.now()
  return { report, wallMs, from, to }
}

/** Requests of one run, by kind and by run command. */
const analyse = (emulator: Emulator.Emulator, from: number, to: number) => {
  const requests = emulator.requests().filter((r) => r.at >= from && r.at <= to)
  const perName = new Map<string, { put: number; del: number; polls: Array<number>; deletedAt: number }>()
  const byKind: Record<string, number> = {}
  for (const r of requests) {
    const m = /\/runCommands\/([^/]+)$/i.exec(r.path)
    const kind = m !== null
      ? `${r.method} runCommands/{name}`
      : r.path.includes("/operations/")
      ? "GET operations (DELETE LRO)"
      : `${r.method} other`
    byKind[kind] = (byKind[kind] ?? 0) + 1
    if (m === null) continue
    const e = perName.get(m[1]!) ?? { put: 0, del: 0, polls: [], deletedAt: Infinity }
    if (r.method === "PUT") e.put++
    if (r.method === "DELETE") {
      e.del++
      e.deletedAt = Math.min(e.deletedAt, r.at)
    }
    if (r.method === "GET") e.polls.push(r.at)
    perName.set(m[1]!, e)
  }
  const all = [...perName.values()]
  const pollsAfterDelete = all.reduce((n, e) => n + e.polls.filter((t) => t > e.deletedAt).length, 0)
  // steady state: the closest two polls of one run command (a poll interval apart at least, minus scheduling jitter)
  let minGapMs = Infinity
  for (const e of all) {
    for (let i = 1; i < e.polls.length; i++) minGapMs = Math.min(minGapMs, e.polls[i]! - e.polls[i - 1]!)
  }
  const polls = all.map((e) => e.polls.length)
  return {
    byKind,
    runCommands: all.length,
    putsPerTarget: { min: Math.min(...all.map((e) => e.put)), max: Math.max(...all.map((e) => e.put)) },
    deletesPerTarget: { min: Math.min(...all.map((e) => e.del)), max: Math.max(...all.map((e) => e.del)) },
    pollsPerTarget: {
      min: Math.min(...polls),
      max: Math.max(...polls),
      mean: round(polls.reduce((a, b) => a + b, 0) / polls.length, 2)
    },
    minGapBetweenPollsMs: minGapMs === Infinity ? null : minGapMs,
    pollsAfterDelete
  }
}

export const cloudCallsAzure = async (): Promise<void> => {
  const load = loadTracker()
  const emulator = await Emulator.start({ vms: TARGETS, recordBodies: false })
  try {
    const calls = await runOnce(emulator, "true")
    const callsStats = analyse(emulator, calls.from, calls.to)
    const wall = await runOnce(emulator, "sleep 1")
    const wallStats = analyse(emulator, wall.from, wall.to)
    const history = emulator.history().filter((h) => h.startedAt >= wall.from && h.endedAt !== undefined)
    const longest = Math.max(...history.map((h) => h.endedAt! - h.startedAt))
    const wallGoalMs = 1.5 * longest + POLL_MS
    const byOutcome = (r: typeof calls) => r.report.summary.byOutcome
    const exact = (s: typeof callsStats) =>
      s.runCommands === TARGETS && s.putsPerTarget.min === 1 && s.putsPerTarget.max === 1 &&
      s.deletesPerTarget.min === 1 && s.deletesPerTarget.max === 1 && s.pollsAfterDelete === 0 &&
      (s.minGapBetweenPollsMs === null || s.minGapBetweenPollsMs >= POLL_MS * 0.9)
    const met = exact(callsStats) && exact(wallStats) && wall.wallMs <= wallGoalMs &&
      byOutcome(calls).Succeeded === TARGETS && byOutcome(wall).Succeeded === TARGETS
    writeResult({
      name: "cloud-calls-azure",
      goal: "1,000 targets: exactly 1 PUT and 1 DELETE per target plus polls; ≤ 1 poll per target per poll interval; " +
        "nothing polled after it finished; wall time of 1 s commands ≤ 1.5× the longest execution + the poll interval",
      met,
      targets: TARGETS,
      pollIntervalMs: POLL_MS,
      calls: { ...callsStats, outcomes: byOutcome(calls), wallMs: round(calls.wallMs, 0) },
      wall: {
        ...wallStats,
        outcomes: byOutcome(wall),
        wallMs: round(wall.wallMs, 0),
        longestExecutionMs: longest,
        goalMs: round(wallGoalMs, 0),
        ratioToLongest: round(wall.wallMs / Math.max(1, longest), 2)
      },
      machine: load.end()
    })
  } finally {
    await emulator.close()
  }
}
