/**
 * The cases, through the real `@aws-sdk/client-ssm` and `@aws-sdk/client-s3` talking to the emulator and
 * s3rver on loopback: batches, throttling and the InvocationDoesNotExist window without double execution, full
 * output through S3 and truncation without it, delivery timeouts, cancel, exit codes and signals, secrets.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SsmTransport from "../src/SsmTransport.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"

const run = (
  emulator: Emulator.Emulator,
  plan: Parameters<typeof RunPlan.make>[0],
  options: SsmTransport.Options = {},
  s3?: Harness.S3
) => Runner.run(RunPlan.make(plan)).pipe(Effect.provide(SsmTransport.layer(Harness.options(emulator, s3, options))))

const tags = (report: { readonly outcomes: ReadonlyArray<Outcome.Outcome> }) => report.outcomes.map((o) => o._tag)

describe("SSM fleet", () => {
  it.scopedLive(
    "120 targets go in three SendCommand batches, one pre-flight and one output read each",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: 120 })
        const report = yield* run(emulator, {
          targets: emulator.targets(),
          job: ScriptSource.job(ScriptSource.script(`echo "on $AWS_SSM_INSTANCE_ID"`)),
          policy: { concurrency: 120 }
        })
        const failed = report.outcomes.filter((o) => o._tag !== "Succeeded")
        assert.deepStrictEqual(failed, [], JSON.stringify(failed[0]))
        report.outcomes.forEach((o, i) => assert.strictEqual(o.stdout.head, `on ${emulator.instanceIds[i]}\n`))
        const counts = emulator.countByOperation()
        assert.strictEqual(counts.SendCommand, 3)
        assert.strictEqual(counts.DescribeInstanceInformation, 3)
        // one output read answered per finished target (a read retried after a transient error is not a second read)
        const reads = emulator.requests().filter((r) => r.operation === "GetCommandInvocation" && r.status === 200)
        assert.strictEqual(new Set(reads.map((r) => JSON.parse(r.body).InstanceId)).size, 120)
        assert.isAtMost(reads.length, 121, "no target's output read more than once, but for a rare retry")
        const sends = emulator.requests().filter((r) => r.operation === "SendCommand")
        assert.deepStrictEqual(sends.map((r) => JSON.parse(r.body).InstanceIds.length).sort(), [20, 50, 50])
        assert.isTrue(emulator.invocations().every((i) => i.executions === 1))
      }),
    { timeout: 120_000 }
  )

  it.scopedLive(
    "30% throttling and an InvocationDoesNotExist window: every target ends right, none runs twice",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: 60, seed: 7 })
        const markers = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-ssm-markers-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(markers, { recursive: true, force: true })))
        emulator.faults.throttle(0.3)
        // longer than the emulator takes to start 60 processes on a busy machine
        emulator.faults.invocationDoesNotExist("10 seconds")
        const report = yield* run(emulator, {
          targets: emulator.targets(),
          job: ScriptSource.job(
            ScriptSource.script(
              `echo run >> "$1/$AWS_SSM_INSTANCE_ID"; sleep 0.3; case $AWS_SSM_INSTANCE_ID in *[02468]) exit 0;; *) exit 4;; esac`
            ),
            { args: [markers] }
          ),
          policy: { concurrency: 60 }
        })
        const throttled = emulator.requests().filter((r) => r.fault === "throttle")
        assert.isAbove(throttled.length, 10, "throttling happened")
        const unlisted = emulator.requests().filter((r) =>
          r.operation === "ListCommandInvocations" && r.status === 200 &&
          (r.response as { CommandInvocations: Array<unknown> }).CommandInvocations.length === 0
        )
        assert.isAbove(unlisted.length, 0, "polls saw the invocations missing (the window) and kept waiting")
        for (const [i, o] of report.outcomes.entries()) {
          const id = emulator.instanceIds[i]!
          const even = /[02468]$/.test(id)
          assert.strictEqual(o._tag, even ? "Succeeded" : "Failed", `${id}: ${JSON.stringify(o)}`)
          if (o._tag === "Failed") assert.strictEqual(o.exitCode, 4)
          assert.strictEqual(fs.readFileSync(path.join(markers, id), "utf8"), "run\n", `${id} ran exactly once`)
        }
        assert.strictEqual(fs.readdirSync(markers).length, 60)
        assert.isTrue(emulator.invocations().every((i) => i.executions === 1))
      }),
    { timeout: 180_000 }
  )

  it.scopedLive(
    "100,000 characters of output come whole from S3; without a bucket they are capped and flagged",
    () =>
      Effect.gen(function*() {
        const s3 = yield* Harness.s3()
        const emulator = yield* Emulator.make({ instances: 1, s3: { endpoint: s3.endpoint } })
        const script = `i=0; while [ $i -lt 1000 ]; do printf '%099d\\n' $i; i=$((i + 1)); done`
        const whole = yield* run(
          emulator,
          {
            targets: emulator.targets(),
            job: ScriptSource.job(ScriptSource.script(script)),
            captureBytes: 200_000
          },
          {},
          s3
        )
        const o = whole.outcomes[0]!
        assert.strictEqual(o._tag, "Succeeded")
        assert.strictEqual(o.stdout.totalBytes, 100_000)
        assert.strictEqual(Outcome.capturedText(o.stdout).split("\n")[999], "0".repeat(96) + "999")
        assert.isFalse(o.stdout.truncated)

        const capped = yield* run(emulator, {
          targets: emulator.targets(),
          job: ScriptSource.job(ScriptSource.script(script)),
          captureBytes: 200_000
        })
        const c = capped.outcomes[0]!
        assert.strictEqual(c._tag, "Succeeded")
        assert.strictEqual(c.stdout.totalBytes, 24_000, "the service's cap")
        // core's truncation flag says what cut it and how to get all of it; stderr stays the script's own
        assert.isTrue(c.stdout.truncated)
        assert.include(c.stdout.truncatedBy ?? "", "24,000 characters")
        assert.include(c.stdout.truncatedBy ?? "", "outputBucket")
        assert.include(Outcome.capturedText(c.stdout), "[truncated: ssm: inline output is capped")
        assert.isFalse(c.stderr.truncated)
        assert.strictEqual(c.stderr.totalBytes, 0)
      }),
    { timeout: 120_000 }
  )

  it.scopedLive(
    "an offline instance: refused before sending (pre-flight), or DeliveryTimedOut after TimeoutSeconds",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: 3 })
        const [online, offline, lost] = emulator.targets()
        emulator.faults.offline(offline!.instanceId)
        const checked = yield* run(emulator, {
          targets: [online!, offline!],
          job: ScriptSource.job(ScriptSource.script("echo hi")),
          policy: { concurrency: 10 }
        })
        assert.deepStrictEqual(tags(checked), ["Succeeded", "Unreachable"])
        const refused = checked.outcomes[1] as Outcome.Unreachable
        assert.strictEqual(refused.error.reason, "NotManaged")
        assert.include(refused.error.message, "ConnectionLost")
        const sent = emulator.requests().filter((r) => r.operation === "SendCommand").map((r) => JSON.parse(r.body))
        assert.deepStrictEqual(
          sent.map((b) => b.InstanceIds),
          [[online!.instanceId]],
          "nothing sent to the offline one"
        )

        // without the pre-flight: Delayed, then the service's delivery timeout (30 s, its minimum); beside it an
        // instance whose agent goes away mid-run: InProgress until the command expires (30 s + executionTimeout),
        // then DeliveryTimedOut, which is no delivery failure but an end nobody saw
        emulator.faults.disconnectMidRun(lost!.instanceId)
        const timedOut = yield* run(emulator, {
          targets: [offline!, lost!],
          job: ScriptSource.job(ScriptSource.script("echo never")),
          policy: { concurrency: 10 }
        }, { preflight: false, deliveryTimeout: "30 seconds", executionTimeout: "1 second" })
        const gone = timedOut.outcomes[1] as Outcome.TransportFailed
        assert.strictEqual(gone._tag, "TransportFailed", JSON.stringify(gone))
        assert.strictEqual(gone.error.reason, "ConnectionLost")
        assert.strictEqual(gone.error.phase, "execution")
        assert.include(gone.error.message, "unknown")
        assert.strictEqual(emulator.invocations().find((i) => i.instanceId === lost!.instanceId)?.executions, 1)
        emulator.faults.online(lost!.instanceId)
        const u = timedOut.outcomes[0] as Outcome.Unreachable
        assert.strictEqual(u._tag, "Unreachable")
        assert.strictEqual(u.error.reason, "ConnectTimeout")
        assert.strictEqual(u.error.phase, "delivery")
        assert.strictEqual(u.error.detail?.statusDetails, "DeliveryTimedOut")
        assert.isTrue(
          emulator.requests().some((r) =>
            r.operation === "ListCommandInvocations" && r.body !== "" && JSON.stringify(r.response).includes("Delayed")
          ),
          "the invocation was Delayed first"
        )

        // runcmd's own timeout before delivery: TimedOut{phase: delivery}, the command cancelled and confirmed
        const early = yield* run(emulator, {
          targets: [offline!],
          job: ScriptSource.job(ScriptSource.script("echo never")),
          policy: { timeout: Duration.seconds(2) }
        }, { preflight: false })
        const t = early.outcomes[0] as Outcome.TimedOut
        assert.strictEqual(t._tag, "TimedOut")
        assert.strictEqual(t.phase, "delivery")
        assert.isTrue(t.killConfirmed)
        assert.isTrue(emulator.invocations().some((i) => i.status === "Cancelled" && i.executions === 0))
      }),
    { timeout: 180_000 }
  )

  it.scopedLive(
    "an instance going offline mid-run: TimedOut at its deadline, unconfirmed, run once; cancelled when it is back",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: 2 })
        const markers = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-ssm-markers-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(markers, { recursive: true, force: true })))
        const [steady, lost] = emulator.targets()
        emulator.faults.disconnectMidRun(lost!.instanceId)
        // the transport lives in this test's scope, so that its polls after the run would show
        const transport = yield* Layer.build(
          SsmTransport.layer(Harness.options(emulator, undefined, { cancelConfirmTimeout: "2 seconds" }))
        )
        const report = yield* Runner.run(RunPlan.make({
          targets: [steady!, lost!],
          job: ScriptSource.job(
            ScriptSource.script(
              `echo run >> "$1/$AWS_SSM_INSTANCE_ID"; echo started; if [ "$AWS_SSM_INSTANCE_ID" = "$2" ]; then sleep 60; fi`
            ),
            { args: [markers, lost!.instanceId] }
          ),
          policy: { concurrency: 10, timeout: Duration.seconds(6) }
        })).pipe(Effect.provide(transport))
        assert.strictEqual(report.outcomes[0]!._tag, "Succeeded", JSON.stringify(report.outcomes[0]))
        // the service said InProgress until the deadline: one truthful outcome then, the kill not confirmed
        const t = report.outcomes[1] as Outcome.TimedOut
        assert.strictEqual(t._tag, "TimedOut", JSON.stringify(t))
        assert.strictEqual(t.phase, "execution")
        assert.isFalse(t.killConfirmed)
        assert.isBelow(t.durationMs, 6_000 + 2_000 + 10_000, "ended at its deadline plus the confirmation wait")
        const invocation = () => emulator.invocations().find((i) => i.instanceId === lost!.instanceId)!
        assert.strictEqual(invocation().status, "Cancelling", "the cancel waits for the agent")
        // nobody waits for that invocation any more: its batch is no longer polled (3 poll intervals and more)
        const lists = () => emulator.countByOperation().ListCommandInvocations ?? 0
        yield* Effect.sleep("1 second") // a poll in flight when the execution ended is answered meanwhile
        const before = lists()
        yield* Effect.sleep("1500 millis")
        assert.strictEqual(lists(), before, "no poll after the executions ended")
        assert.strictEqual(emulator.instances().find((i) => i.id === lost!.instanceId)?.pingStatus, "ConnectionLost")
        // back online: the agent reports, the command is over; nothing ran twice
        emulator.faults.online(lost!.instanceId)
        for (let i = 0; i < 400 && invocation().status !== "Cancelled"; i++) yield* Effect.sleep("50 millis")
        assert.strictEqual(invocation().status, "Cancelled", "the cancel sent meanwhile reached the agent")
        for (const id of emulator.instanceIds) {
          assert.strictEqual(fs.readFileSync(path.join(markers, id), "utf8"), "run\n", `${id} ran exactly once`)
        }
        assert.isTrue(emulator.invocations().every((i) => i.executions === 1))
      }),
    { timeout: 120_000 }
  )

  it.scopedLive(
    "cancel: one CancelCommand for the batch, Cancelled confirmed by the poll, each secrets parameter deleted",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: 3 })
        // the transport lives in this test's scope: the run goes on in the background
        const transport = yield* Layer.build(
          SsmTransport.layer(Harness.options(emulator, undefined, { secrets: { parameterStore: {} } }))
        )
        const handle = yield* Runner.start(RunPlan.make({
          targets: emulator.targets(),
          job: ScriptSource.job(ScriptSource.script(`test -n "$TOKEN" && echo ready; sleep 60; echo never`), {
            secrets: { TOKEN: Redacted.make("cancel-canary") }
          }),
          policy: { concurrency: 10 }
        })).pipe(Effect.provide(transport))
        // all running with their secret fetched (the emulator says InProgress, the script said ready), then cancel
        while (
          emulator.invocations().filter((i) => i.status === "InProgress").length < 3 ||
          emulator.requests().filter((r) => r.operation === "GetParameter").length < 3
        ) {
          yield* Effect.sleep("50 millis")
        }
        const report = yield* handle.cancel
        assert.isTrue(report.interrupted)
        for (const o of report.outcomes) {
          assert.strictEqual(o._tag, "Cancelled", JSON.stringify(o))
          if (o._tag === "Cancelled") assert.isTrue(o.confirmed, "confirmed by the service's Cancelled status")
        }
        // the three cancels of one command in one request, naming the three instances
        const cancels = emulator.requests().filter((r) => r.operation === "CancelCommand")
        assert.strictEqual(cancels.length, 1)
        assert.sameMembers(JSON.parse(cancels[0]!.body).InstanceIds, [...emulator.instanceIds])
        assert.deepStrictEqual(emulator.invocations().map((i) => i.status), ["Cancelled", "Cancelled", "Cancelled"])
        // a parameter per execution, each deleted although the executions were killed
        const { deleted, stored } = emulator.parameters()
        assert.deepStrictEqual(stored, [])
        assert.sameMembers(deleted.map((n) => n.split("/").at(-1)), [...emulator.instanceIds])
      }),
    { timeout: 120_000 }
  )

  it.scopedLive("exit codes and signal deaths", () =>
    Effect.gen(function*() {
      const emulator = yield* Emulator.make({ instances: 4 })
      const targets = emulator.targets()
      const scripts = ["exit 0", "exit 7", "kill -9 $$", "kill -TERM $$"]
      const outcomes = yield* Effect.forEach(targets, (target, i) =>
        Effect.map(
          run(emulator, { targets: [target], job: ScriptSource.job(ScriptSource.script(scripts[i]!)) }),
          (r) => r.outcomes[0]!
        ), { concurrency: 4 })
      assert.deepStrictEqual(tags({ outcomes }), ["Succeeded", "Failed", "Signaled", "Signaled"])
      assert.strictEqual((outcomes[1] as Outcome.Failed).exitCode, 7)
      assert.strictEqual((outcomes[2] as Outcome.Signaled).signal, "SIGKILL")
      assert.strictEqual((outcomes[3] as Outcome.Signaled).signal, "SIGTERM")
    }), { timeout: 120_000 })

  it.scopedLive(
    "secrets: Rejected by default; with Parameter Store in no recorded body but PutParameter's, deleted after",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: 3 })
        const secret = "s3cr3t-V@lue with spaces\nand a newline"
        const job = ScriptSource.job(ScriptSource.script(`printf '%s' "$API_TOKEN" | sha256sum`), {
          secrets: { API_TOKEN: Redacted.make(secret) }
        })
        const rejected = yield* run(emulator, { targets: emulator.targets(), job, policy: { concurrency: 10 } })
        assert.deepStrictEqual(tags(rejected), ["Rejected", "Rejected", "Rejected"])
        const why = (rejected.outcomes[0] as Outcome.Rejected).error
        assert.strictEqual(why.reason, "Unsupported")
        assert.include(why.message, "Parameter Store")
        assert.strictEqual(emulator.requests().length, 0, "nothing was sent")

        const report = yield* run(emulator, { targets: emulator.targets(), job, policy: { concurrency: 10 } }, {
          secrets: { parameterStore: { prefix: "/test/runcmd" } }
        })
        const expected = (yield* Effect.promise(() => import("node:crypto"))).createHash("sha256").update(secret)
          .digest("hex")
        for (const o of report.outcomes) {
          assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
          assert.strictEqual(o.stdout.head, `${expected}  -\n`)
        }
        const encoded = Buffer.from(secret).toString("base64")
        const bodies = emulator.requests()
        const puts = bodies.filter((r) => r.operation === "PutParameter")
        assert.strictEqual(puts.length, 3, "one parameter per execution")
        for (const put of puts) assert.include(put.body, encoded)
        for (const r of bodies) {
          if (r.operation === "PutParameter") continue
          assert.notInclude(r.body, secret, `${r.operation} body`)
          assert.notInclude(r.body, encoded, `${r.operation} body`)
          assert.notInclude(r.body, "s3cr3t", `${r.operation} body`)
        }
        const names = puts.map((p) => JSON.parse(p.body).Name as string)
        for (const p of puts) assert.strictEqual(JSON.parse(p.body).Type, "SecureString")
        // one name per execution, under the prefix, ending with the instance that fetches it
        assert.sameMembers(names.map((n) => n.split("/").at(-1)), [...emulator.instanceIds])
        for (const n of names) assert.match(n, /^\/test\/runcmd\//)
        // each instance read its own parameter only
        const reads = bodies.filter((r) => r.operation === "GetParameter").map((r) => JSON.parse(r.body).Name)
        assert.sameMembers(reads, names)
        assert.deepStrictEqual(emulator.parameters().stored, [], "no parameter left")
        assert.sameMembers([...emulator.parameters().deleted], names)
        assert.notInclude(JSON.stringify(report), secret)

        // an instance that cannot read its parameter: the launch stops before the script, said as such; the
        // parameter is deleted all the same
        const denied = yield* run(emulator, { targets: emulator.targets().slice(0, 1), job }, {
          secrets: { parameterStore: { prefix: "/test/denied", fetchCommand: () => "exit 3" } }
        })
        // Unauthorized: core says Rejected (the script never started)
        const d = denied.outcomes[0] as Outcome.Rejected
        assert.strictEqual(d._tag, "Rejected", JSON.stringify(d))
        assert.strictEqual(d.error.reason, "Unauthorized")
        assert.include(d.error.message, "secrets")
        assert.deepStrictEqual(emulator.parameters().stored, [])
        assert.isTrue(emulator.parameters().deleted.some((n) => n.startsWith("/test/denied/")))
      }),
    { timeout: 120_000 }
  )
})
