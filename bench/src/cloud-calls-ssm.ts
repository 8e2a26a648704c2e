// cloud-calls-ssm: 1,000 SSM targets through the emulator (a separate process: its 1,000 instances are local
// processes), the runcmd SSM transport in this process, side by side in one run:
//   calls     `true` on every target: API requests by operation (counted client-side, throttled attempts included)
//   wall      `sleep 1` on every target: the run's wall time against the longest single execution (from the
//             service's own start/finish times) plus the polling interval
//   secrets   `true` with a secret through Parameter Store on the first 100 targets (each instance's fetch starts a
//             Node process as its `aws`): a SecureString per execution, PutParameter and DeleteParameter per target
//   deadline  `sleep 60` under a 15 s timeout: the cancels of one command coalesced into one CancelCommand
// Goals (issue 12): ≤ 20 SendCommands; ≤ 1 status request per 50 targets per poll; one output read per finished
// target; nothing polled after it finished; wall ≤ 1.5× the longest execution + the poll interval.
import { ListCommandInvocationsCommand, type ListCommandInvocationsCommandOutput, SSMClient } from "@aws-sdk/client-ssm"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as SsmTarget from "@runcmd/transport-ssm/SsmTarget"
import * as SsmTransport from "@runcmd/transport-ssm/SsmTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as cp from "node:child_process"
import * as path from "node:path"
import { loadTracker, repoRoot, round, writeResult } from "./harness.js"

const TARGETS = Number(process.env.BENCH_SSM_TARGETS ?? 1000)
const SECRET_TARGETS = Math.min(TARGETS, 100)
const POLL_MAX_MS = 1000
const credentials = { accessKeyId: "AKIDBENCH", secretAccessKey: "bench-secret" }

interface Emulated {
  readonly endpoint: string
  readonly region: string
  readonly instanceIds: ReadonlyArray<string>
  readonly stop: () => Promise<void>
}

const startEmulator = (instances: number): Promise<Emulated> =>
  new Promise((resolve, reject) => {
    const entry = path.join(repoRoot, "packages", "transport-ssm", "src", "testing.ts")
    const child = cp.spawn(process.execPath, [
      "--import",
      "tsx",
      "-e",
      `import(${JSON.stringify(entry)}).then((m) => m.main(process.argv.slice(1)))`,
      "--",
      "--instances",
      String(instances)
    ], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, AWS_EC2_METADATA_DISABLED: "true" } })
    let out = ""
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString()
      const nl = out.indexOf("\n")
      if (nl < 0) return
      const info = JSON.parse(out.slice(0, nl)) as Omit<Emulated, "stop">
      resolve({
        ...info,
        stop: () =>
          new Promise<void>((done) => {
            child.once("exit", () => done())
            child.kill("SIGTERM")
          })
      })
    })
    child.once("exit", (code) => reject(new Error(`the emulator exited (${code}) before it was ready: ${out}`)))
  })

const runOnce = async (
  emulator: Emulated,
  script: string,
  options: { readonly secret?: boolean; readonly timeout?: Duration.Duration; readonly targets?: number } = {}
) => {
  const calls: Record<string, number> = {}
  const targets = emulator.instanceIds.slice(0, options.targets ?? emulator.instanceIds.length).map((instanceId, i) =>
    SsmTarget.make({ id: `t${i}`, instanceId, region: emulator.region })
  )
  const layer = SsmTransport.layer({
    endpoint: emulator.endpoint,
    credentials,
    pollInterval: { min: "250 millis", max: `${POLL_MAX_MS} millis` },
    rateLimit: { perSecond: 2000, burst: 2000 },
    ...(options.secret === true ? { secrets: { parameterStore: {} } } : {}),
    onCall: (operation) => {
      calls[operation] = (calls[operation] ?? 0) + 1
    }
  })
  const started = performance.now()
  const report = await Effect.runPromise(
    Runner.run(RunPlan.make({
      targets,
      job: ScriptSource.job(
        ScriptSource.script(script),
        options.secret === true ? { secrets: { TOKEN: Redacted.make("bench-secret-value") } } : {}
      ),
      policy: { concurrency: TARGETS, ...(options.timeout === undefined ? {} : { timeout: options.timeout }) }
    })).pipe(Effect.provide(layer))
  )
  const wallMs = performance.now() - started
  return { report, calls, wallMs }
}

/** The longest execution as the service measured it (plugin start to finish), over every command sent. */
const longestExecutionMs = async (emulator: Emulated, commandIds: ReadonlyArray<string>): Promise<number> => {
  const ssm = new SSMClient({ endpoint: emulator.endpoint, region: emulator.region, credentials })
  let longest = 0
  for (const id of commandIds) {
    let token: string | undefined
    do {
      const page: ListCommandInvocationsCommandOutput = await ssm.send(
        new ListCommandInvocationsCommand({
          CommandId: id,
          Details: true,
          ...(token === undefined ? {} : { NextToken: token })
        })
      )
      for (const inv of page.CommandInvocations ?? []) {
        for (const p of inv.CommandPlugins ?? []) {
          if (p.ResponseStartDateTime !== undefined && p.ResponseFinishDateTime !== undefined) {
            longest = Math.max(longest, p.ResponseFinishDateTime.getTime() - p.ResponseStartDateTime.getTime())
          }
        }
      }
      token = page.NextToken
    } while (token !== undefined)
  }
  ssm.destroy()
  return longest
}

const commandIdsOf = async (emulator: Emulated): Promise<ReadonlyArray<string>> => {
  const { ListCommandsCommand } = await import("@aws-sdk/client-ssm")
  const ssm = new SSMClient({ endpoint: emulator.endpoint, region: emulator.region, credentials })
  const ids: Array<string> = []
  let token: string | undefined
  do {
    const page = await ssm.send(new ListCommandsCommand(token === undefined ? {} : { NextToken: token }))
    for (const c of page.Commands ?? []) if (c.CommandId !== undefined) ids.push(c.CommandId)
    token = page.NextToken
  } while (token !== undefined)
  ssm.destroy()
  return ids
}

export const cloudCallsSsm = async (): Promise<void> => {
  const load = loadTracker()
  process.env.AWS_EC2_METADATA_DISABLED = "true"
  const emulator = await startEmulator(TARGETS)
  try {
    const calls = await runOnce(emulator, "true")
    const firstCommands = await commandIdsOf(emulator)
    const wall = await runOnce(emulator, "sleep 1")
    const allCommands = await commandIdsOf(emulator)
    const sleepCommands = allCommands.filter((id) => !firstCommands.includes(id))
    const longest = await longestExecutionMs(emulator, sleepCommands)
    const secrets = await runOnce(emulator, `test -n "$TOKEN"`, { secret: true, targets: SECRET_TARGETS })
    const deadline = await runOnce(emulator, "sleep 60", { timeout: Duration.seconds(15) })
    const byOutcome = (r: typeof calls) => r.report.summary.byOutcome
    const batches = calls.calls.SendCommand ?? 0
    const statusPerBatch = round((calls.calls.ListCommandInvocations ?? 0) / Math.max(1, batches), 1)
    const wallGoalMs = 1.5 * longest + POLL_MAX_MS
    const met = batches <= 20 &&
      (calls.calls.GetCommandInvocation ?? 0) === TARGETS &&
      (wall.calls.GetCommandInvocation ?? 0) === TARGETS &&
      wall.wallMs <= wallGoalMs &&
      byOutcome(calls).Succeeded === TARGETS && byOutcome(wall).Succeeded === TARGETS &&
      byOutcome(secrets).Succeeded === SECRET_TARGETS &&
      (deadline.calls.CancelCommand ?? 0) <= (deadline.calls.SendCommand ?? 0)
    writeResult({
      name: "cloud-calls-ssm",
      goal: "≤ 20 SendCommand for 1,000 targets; 1 ListCommandInvocations per batch of ≤ 50 per poll; one output " +
        "read per finished target; wall time of 1 s commands ≤ 1.5× the longest execution + the poll interval",
      met,
      targets: TARGETS,
      calls: {
        requestsByOperation: calls.calls,
        outcomes: byOutcome(calls),
        sendCommands: batches,
        statusPollsPerBatch: statusPerBatch,
        outputReadsPerTarget: round((calls.calls.GetCommandInvocation ?? 0) / TARGETS, 3),
        wallMs: round(calls.wallMs, 0)
      },
      wall: {
        requestsByOperation: wall.calls,
        outcomes: byOutcome(wall),
        wallMs: round(wall.wallMs, 0),
        longestExecutionMs: longest,
        pollIntervalMaxMs: POLL_MAX_MS,
        goalMs: round(wallGoalMs, 0),
        ratioToLongest: round(wall.wallMs / Math.max(1, longest), 2)
      },
      secrets: {
        targets: SECRET_TARGETS,
        requestsByOperation: secrets.calls,
        outcomes: byOutcome(secrets),
        wallMs: round(secrets.wallMs, 0),
        parameterCallsPerTarget: round(
          ((secrets.calls.PutParameter ?? 0) + (secrets.calls.DeleteParameter ?? 0)) / SECRET_TARGETS,
          3
        )
      },
      deadline: {
        requestsByOperation: deadline.calls,
        outcomes: byOutcome(deadline),
        wallMs: round(deadline.wallMs, 0),
        cancelCommandsPerBatch: round(
          (deadline.calls.CancelCommand ?? 0) / Math.max(1, deadline.calls.SendCommand ?? 0),
          2
        )
      },
      machine: load.end()
    })
  } finally {
    await emulator.stop()
  }
}
