/**
 * The Azure transport against the ARM emulator (and Azurite), with the real `@azure/arm-compute` and
 * `@azure/storage-blob` clients: the cases of the issue.
 */
import { ComputeManagementClient } from "@azure/arm-compute"
import { assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as RunReport from "@runcmd/core/RunReport"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import type { Target } from "@runcmd/core/Target"
import { assertNoLeak, recordTelemetry } from "@runcmd/core/testing"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { createHash } from "node:crypto"
import * as AzureTarget from "../src/AzureTarget.js"
import * as AzureTransport from "../src/AzureTransport.js"
import * as Arm from "../src/internal/arm.js"
import * as RunCommands from "../src/RunCommands.js"
import * as Emulator from "../src/testing.js"
import { RESOURCE_GROUP, SUBSCRIPTION, transportOptions, vmTarget } from "./harness.js"

const run = (
  transport: AzureTransport.Options,
  emulator: Emulator.Emulator,
  targets: ReadonlyArray<Target>,
  job: ScriptSource.Job,
  policy: Partial<RunPlan.RunPlan["policy"]> = {},
  captureBytes = 4 * 1024 * 1024
) =>
  Runner.run(RunPlan.make({ targets, job, policy, captureBytes })).pipe(
    Effect.provide(AzureTransport.layer(transportOptions(emulator, transport)))
  )

const text = (c: Outcome.Captured) => Outcome.capturedText(c)

const withEmulator = <A, E>(
  options: Emulator.EmulatorOptions,
  f: (emulator: Emulator.Emulator) => Effect.Effect<A, E, never>
) => Effect.scoped(Effect.flatMap(Emulator.make(options), f))

describe("AzureTransport (managed run commands)", () => {
  it.live(
    "a never-finishing command is ended by runcmd's deadline, deleted, and the kill confirmed",
    () =>
      withEmulator({ vms: 1 }, (emulator) =>
        Effect.gen(function*() {
          const report = yield* run(
            {},
            emulator,
            [vmTarget(0)],
            ScriptSource.job(ScriptSource.script("echo started\nsleep 3600\n")),
            {
              timeout: Duration.seconds(2)
            }
          )
          const o = report.outcomes[0]!
          assert.strictEqual(o._tag, "TimedOut")
          assert.isTrue((o as Outcome.TimedOut).killConfirmed, "the run command is gone")
          assert.deepStrictEqual(emulator.runCommands(), {}, "nothing left on the VM")
          const methods = emulator.requests().filter((r) => r.path.includes("/runCommands/")).map((r) => r.method)
          assert.strictEqual(methods.filter((m) => m === "PUT").length, 1)
          assert.strictEqual(methods.filter((m) => m === "DELETE").length, 1)
        })),
    60_000
  )

  it.live(
    "a PUT whose response is lost is retried with the same name, and the script runs once (scripts started on the emulator's loop: agentProcesses 0)",
    () =>
      withEmulator({ vms: 1, agentProcesses: 0 }, (emulator) =>
        Effect.gen(function*() {
          emulator.dropResponses({ count: 1, method: "PUT", pathIncludes: "/runCommands/" })
          const report = yield* run({}, emulator, [vmTarget(0)], ScriptSource.job(ScriptSource.script("echo once\n")))
          const o = report.outcomes[0]!
          assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
          assert.strictEqual(text(o.stdout), "once\n")
          const puts = emulator.requests().filter((r) => r.method === "PUT")
          assert.strictEqual(puts.length, 2, "the PUT was sent twice")
          assert.strictEqual(new Set(puts.map((r) => r.path)).size, 1, "to the same run command")
          assert.strictEqual(emulator.executions()["vm-0"], 1, "the script ran once")
        })),
    60_000
  )

  it.live(
    "secrets and the runAsPassword absent from every recorded request body except protectedParameters / runAsPassword, and from the report; the script runs as runAsUser",
    () =>
      withEmulator(
        { vms: [{ name: "vm-0", users: { nobody: "Pw-Canary-0815" } }] },
        (emulator) =>
          Effect.gen(function*() {
            const secret = "Another-S3cret-4711"
            const password = "Pw-Canary-0815"
            const [exit, telemetry] = yield* recordTelemetry(run(
              { runAsUser: "nobody", runAsPassword: Redacted.make(password) },
              emulator,
              [vmTarget(0)],
              ScriptSource.job(ScriptSource.script("printf '%s' \"$TOKEN\" | wc -c\nid -un\n"), {
                secrets: { TOKEN: Redacted.make(secret) }
              })
            ))
            const report = yield* exit
            const o = report.outcomes[0]!
            assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
            assert.deepStrictEqual(text(o.stdout).trim().split(/\s+/), [String(secret.length), "nobody"])
            // runcmd's side: the report, every log line (all levels), every span
            assertNoLeak([secret, password], {
              report: RunReport.encodeJson(report),
              logs: telemetry.logs,
              spans: telemetry.spans
            })
            let puts = 0
            for (const r of emulator.requests()) {
              const body = r.body === "" ? {} : JSON.parse(r.body)
              const inProtected = JSON.stringify(body.properties?.protectedParameters ?? [])
              const runAsPassword = body.properties?.runAsPassword
              if (body.properties !== undefined) {
                delete body.properties.protectedParameters
                delete body.properties.runAsPassword
              }
              const rest = JSON.stringify(body) + r.path + JSON.stringify(r.query)
              assert.notInclude(rest, secret, `${r.method} ${r.path}`)
              assert.notInclude(rest, password, `${r.method} ${r.path}`)
              assert.notInclude(inProtected, password, "the password is not a protected parameter")
              if (r.method === "PUT") {
                puts++
                assert.include(inProtected, secret)
                assert.strictEqual(runAsPassword, password, "the password only as runAsPassword")
                assert.strictEqual(body.properties.runAsUser, "nobody")
              } else {
                assert.isUndefined(runAsPassword)
              }
            }
            assert.strictEqual(puts, 1)
          })
      ),
    60_000
  )

  it.live(
    "runAsUser the VM lacks, or a wrong runAsPassword: the run command fails with the service's message, nothing runs, the password nowhere",
    () =>
      withEmulator(
        { vms: [{ name: "vm-0", users: { nobody: "right-password" } }] },
        (emulator) =>
          Effect.gen(function*() {
            const wrong = "Wrong-Pw-4242"
            for (
              const options of [
                { runAsUser: "nobody", runAsPassword: Redacted.make(wrong) },
                { runAsUser: "no-such-user", runAsPassword: Redacted.make(wrong) }
              ]
            ) {
              const report = yield* run(options, emulator, [vmTarget(0)], ScriptSource.job(ScriptSource.script("id\n")))
              const o = report.outcomes[0]!
              assert.include(["TransportFailed", "Rejected"], o._tag, JSON.stringify(o))
              const error = (o as Outcome.TransportFailed).error
              assert.strictEqual(error.reason, "SpawnFailed")
              assert.include(
                error.message,
                "Script cannot be executed with specified runAsUser/runAsPassword parameters"
              )
              assert.include(error.message, options.runAsUser === "nobody" ? "incorrect" : "does not exist")
              assert.notInclude(RunReport.encodeJson(report), wrong)
            }
            assert.deepStrictEqual(emulator.executions(), {}, "no script ran")
            const refused = yield* Effect.either(AzureTransport.make({
              credential: Emulator.credential,
              runAsPassword: Redacted.make(wrong)
            }))
            assert.isTrue(Either.isLeft(refused) && refused.left.field === "runAsPassword")
            const action = yield* Effect.either(AzureTransport.make({
              credential: Emulator.credential,
              mode: "action",
              runAsUser: "nobody"
            }))
            assert.isTrue(Either.isLeft(action) && action.left.field === "runAsUser")
          })
      ),
    60_000
  )

  it.live(
    "files and scripts over the inline limit go through a blob (scriptUri) and arrive whole; without storage they are refused before anything is sent; ARM refuses bodies over 4 MB",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const emulator = yield* Emulator.make({ vms: 1 })
        const azurite = yield* Emulator.Azurite.make
        const containerUrl = yield* Effect.promise(() => azurite.containerSasUrl("big-scripts"))
        const storage = { storage: { containerUrl: Redacted.make(containerUrl) } }
        const big = new Uint8Array(300 * 1024).map((_, i) => (i * 7919 + (i >> 10)) & 0xff)
        const digest = createHash("sha256").update(big).digest("hex")
        const withFile = ScriptSource.job(
          ScriptSource.script(
            "wc -c < \"$RUNCMD_FILES/big.bin\" | tr -d ' '\nsha256sum < \"$RUNCMD_FILES/big.bin\" | cut -c1-64\n"
          ),
          { files: [{ name: "big.bin", content: big }] }
        )
        const viaBlob = yield* run(storage, emulator, [vmTarget(0)], withFile)
        const o = viaBlob.outcomes[0]!
        assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
        assert.deepStrictEqual(
          text(o.stdout).trim().split("\n"),
          [String(big.length), digest],
          "the file, byte for byte"
        )
        // a script over the inline limit (256 KiB), and over the 128 KiB Linux takes in one exec argument
        const longScript = ScriptSource.job(
          ScriptSource.script(`# ${"x".repeat(300 * 1024)}\necho the long script ran\n`)
        )
        const long = yield* run(storage, emulator, [vmTarget(0)], longScript)
        assert.strictEqual(long.outcomes[0]!._tag, "Succeeded", JSON.stringify(long.outcomes[0]))
        assert.strictEqual(text(long.outcomes[0]!.stdout), "the long script ran\n")
        const puts = emulator.requests().filter((r) => r.method === "PUT").map((r) => JSON.parse(r.body).properties)
        assert.strictEqual(puts.length, 2)
        for (const p of puts) {
          assert.isUndefined(p.source.script, "not inline")
          assert.match(
            p.source.scriptUri,
            /^http:\/\/127\.0\.0\.1:\d+\/.*\/runcmd-[0-9a-f]+\/script\?.*sig=/,
            "a blob URL with a SAS"
          )
        }

        emulator.clearRequests()
        const inline = yield* run({}, emulator, [vmTarget(0)], withFile)
        assert.strictEqual(inline.outcomes[0]!._tag, "Rejected", JSON.stringify(inline.outcomes[0]))
        assert.include((inline.outcomes[0] as Outcome.Rejected).error.message, "storage")
        assert.isFalse(emulator.requests().some((r) => r.method === "PUT"), "nothing was sent")

        // told to send 5 MB inline, ARM answers 413 before anything runs
        const huge = yield* run(
          { ...storage, inlineScriptBytes: 16 * 1024 * 1024 },
          emulator,
          [vmTarget(0)],
          ScriptSource.job(ScriptSource.script(`# ${"y".repeat(5 * 1024 * 1024)}\necho never\n`))
        )
        assert.notStrictEqual(huge.outcomes[0]!._tag, "Succeeded")
        assert.include(JSON.stringify(huge.outcomes[0]), "RequestContentTooLarge")
        assert.strictEqual(emulator.executions()["vm-0"], 2, "only the two scripts sent through a blob ran")
      })),
    120_000
  )

  it.live(
    "1 MB of output is recovered whole through Azurite, and flagged truncated without storage",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const emulator = yield* Emulator.make({ vms: 1 })
        const azurite = yield* Emulator.Azurite.make
        const containerUrl = yield* Effect.promise(() => azurite.containerSasUrl("big-output"))
        const lines = 16384 // 64 bytes each: 1 MiB
        const script = `i=0\nwhile [ "$i" -lt ${lines} ]; do printf '%063d\\n' "$i"; i=$((i + 1)); done\n`
        const expected = Array.from({ length: lines }, (_, i) => `${String(i).padStart(63, "0")}\n`).join("")
        const whole = yield* run(
          { storage: { containerUrl: Redacted.make(containerUrl) } },
          emulator,
          [vmTarget(0)],
          ScriptSource.job(ScriptSource.script(script))
        )
        const o = whole.outcomes[0]!
        assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o.stderr))
        assert.strictEqual(o.stdout.totalBytes, expected.length)
        assert.isTrue(text(o.stdout) === expected, "every byte, in order")
        assert.strictEqual(text(o.stderr), "")

        const capped = yield* run({}, emulator, [vmTarget(0)], ScriptSource.job(ScriptSource.script(script)))
        const c = capped.outcomes[0]!
        assert.strictEqual(c._tag, "Succeeded")
        assert.isAtMost(c.stdout.totalBytes, 4096, "the instance view keeps 4 KB")
        assert.isTrue(expected.endsWith(c.stdout.head + c.stdout.tail), "the last bytes, whole")
        assert.isTrue(c.stdout.truncated, "flagged truncated")
        assert.include(c.stdout.truncatedBy ?? "", "last 4096 bytes of stdout", "what cut it")
        assert.include(c.stdout.truncatedBy ?? "", "storage.containerUrl", "how to get all of it")
        assert.notInclude(text(c.stderr), "truncated", "no notice written into the output")
        assert.isFalse(c.stderr.truncated)
      })),
    120_000
  )

  it.live(
    "a deallocated VM is Unreachable before anything is sent",
    () =>
      withEmulator({ vms: [{ name: "vm-0", powerState: "deallocated" }] }, (emulator) =>
        Effect.gen(function*() {
          const report = yield* run({}, emulator, [vmTarget(0)], ScriptSource.job(ScriptSource.script("echo hi\n")))
          const o = report.outcomes[0]!
          assert.strictEqual(o._tag, "Unreachable")
          assert.strictEqual((o as Outcome.Unreachable).error.reason, "NotManaged")
          assert.include((o as Outcome.Unreachable).error.message, "deallocated")
          assert.isFalse(emulator.requests().some((r) => r.method === "PUT"), "no PUT")
        })),
    60_000
  )

  it.live(
    "429 storms: every command finishes, Retry-After is honoured by the whole subscription",
    () =>
      withEmulator({ vms: 4 }, (emulator) =>
        Effect.gen(function*() {
          // one VM: its requests go one at a time, so every gap after a 429 is the client's wait
          emulator.throttle({ count: 3, retryAfterMs: 300 })
          const single = yield* run({}, emulator, [vmTarget(0)], ScriptSource.job(ScriptSource.script("echo ok\n")))
          assert.strictEqual(single.outcomes[0]!._tag, "Succeeded", JSON.stringify(single.outcomes[0]))
          const sequence = [...emulator.requests()].sort((a, b) => a.at - b.at)
          const limited = sequence.filter((r) => r.status === 429)
          assert.strictEqual(limited.length, 3)
          for (const t of limited) {
            const next = sequence.find((r) => r.at > t.at)!
            assert.isAtLeast(next.at - t.at, 250, "nothing was sent before the Retry-After had passed")
          }
          // a storm over four VMs at once
          emulator.clearRequests()
          emulator.throttle({ count: 40, retryAfterMs: 150 })
          const report = yield* run(
            {},
            emulator,
            [0, 1, 2, 3].map((i) => vmTarget(i)),
            ScriptSource.job(ScriptSource.script("sleep 1\necho ok\n"))
          )
          for (const o of report.outcomes) assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
          assert.strictEqual(emulator.requests().filter((r) => r.status === 429).length, 40)
          // polls throttled while the scripts run
          emulator.throttle({ count: 30, retryAfterMs: 100, method: "GET", pathIncludes: "/runCommands/" })
          const again = yield* run(
            {},
            emulator,
            [0, 1].map((i) => vmTarget(i)),
            ScriptSource.job(ScriptSource.script("sleep 1\necho ok\n"))
          )
          for (const o of again.outcomes) assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
        })),
    120_000
  )

  it.live(
    "ARM's x-ms-ratelimit-remaining-* headers pace the subscription before a 429: an enforced small read bucket never answers one",
    () =>
      withEmulator(
        { vms: 4, rateLimits: { reads: { size: 30, refillPerSecond: 20 }, enforce: true } },
        (emulator) =>
          Effect.gen(function*() {
            // polled every 20 ms, four VMs would ask ~200 reads a second of a bucket refilled at 20
            const report = yield* run(
              {},
              emulator,
              [0, 1, 2, 3].map((i) => vmTarget(i)),
              ScriptSource.job(ScriptSource.script("sleep 2\necho ok\n"))
            )
            for (const o of report.outcomes) assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
            const requests = emulator.requests()
            assert.strictEqual(requests.filter((r) => r.status === 429).length, 0, "slowed down before ARM said 429")
            const reads = requests.filter((r) => r.method === "GET")
            const seconds = (Math.max(...reads.map((r) => r.at)) - Math.min(...reads.map((r) => r.at))) / 1000
            assert.isAtMost(reads.length, 30 + Math.ceil(seconds * 20), "no more reads than the bucket gave")
            assert.isAtLeast(reads.length, 8, "every VM was read and polled")
            assert.deepStrictEqual(
              [undefined, 100, 64, 10, 1, 0].map((r) => Arm.paceMs(r, 64)),
              [0, 0, 0, 100, 1000, 1000],
              "the pause grows as the bucket empties"
            )
          })
      ),
    60_000
  )

  it.live(
    "a 5-instance uniform scale set: run commands on each instance",
    () =>
      withEmulator({ vms: 0, scaleSets: [{ name: "web", instances: 5 }] }, (emulator) =>
        Effect.gen(function*() {
          const targets = Array.from({ length: 5 }, (_, i) =>
            AzureTarget.vmssVm(`web-${i}`, {
              subscription: SUBSCRIPTION,
              resourceGroup: RESOURCE_GROUP,
              scaleSet: "web",
              instanceId: String(i)
            }))
          const report = yield* run({}, emulator, targets, ScriptSource.job(ScriptSource.script("echo instance\n")))
          for (const o of report.outcomes) assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
          assert.deepStrictEqual(Object.keys(emulator.executions()).sort(), [
            "web/0",
            "web/1",
            "web/2",
            "web/3",
            "web/4"
          ])
        })),
    60_000
  )

  it.live(
    "RunCommands: list, show and delete a retained run command",
    () =>
      withEmulator({ vms: 1 }, (emulator) =>
        Effect.gen(function*() {
          const report = yield* run(
            { retain: true },
            emulator,
            [vmTarget(0)],
            ScriptSource.job(ScriptSource.script("echo kept\nexit 4\n"))
          )
          assert.strictEqual(report.outcomes[0]!._tag, "Failed")
          const ops = RunCommands.layer(transportOptions(emulator))
          const listed = yield* RunCommands.list(vmTarget(0)).pipe(Effect.provide(ops))
          assert.strictEqual(listed.length, 1)
          const shown = yield* RunCommands.show(vmTarget(0), listed[0]!.name).pipe(Effect.provide(ops))
          assert.strictEqual(shown.executionState, "Failed")
          assert.strictEqual(shown.exitCode, 4)
          assert.include(shown.output ?? "", "kept")
          yield* RunCommands.delete(vmTarget(0), listed[0]!.name).pipe(Effect.provide(ops))
          assert.strictEqual((yield* RunCommands.list(vmTarget(0)).pipe(Effect.provide(ops))).length, 0)
          const missing = yield* Effect.either(RunCommands.show(vmTarget(0), "nope").pipe(Effect.provide(ops)))
          assert.isTrue(Either.isLeft(missing) && missing.left.reason === "TargetNotFound")
        })),
    60_000
  )

  it.effect("a storage SAS without the permissions the output needs is refused when the layer is built", () =>
    Effect.gen(function*() {
      const built = yield* Effect.either(AzureTransport.make({
        credential: Emulator.credential,
        storage: {
          containerUrl: "https://acct.blob.core.windows.net/c?sv=2024-01-01&sr=c&sp=r&se=2099-01-01T00:00:00Z&sig=x"
        }
      }))
      assert.isTrue(Either.isLeft(built))
      if (Either.isLeft(built)) {
        assert.strictEqual(built.left.field, "storage.containerUrl")
        assert.include(built.left.description, "acw")
      }
    }))
})

describe("AzureTransport (action run commands)", () => {
  it.live(
    "two runs on one VM are serialised by the per-VM lock, and a 409 storm from another client is outlasted",
    () =>
      withEmulator({ vms: 1 }, (emulator) =>
        Effect.gen(function*() {
          const script = ScriptSource.script("date +%s%N\nsleep 1\ndate +%s%N\n")
          const twins = [vmTarget(0), { ...vmTarget(0), id: "vm-0-again" }]
          const report = yield* run({ mode: "action" }, emulator, twins, ScriptSource.job(script), { concurrency: 2 })
          for (const o of report.outcomes) assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
          const spans = report.outcomes.map((o) => text(o.stdout).trim().split("\n").map(Number))
          const [a, b] = spans as [Array<number>, Array<number>]
          assert.isTrue(a[1]! <= b[0]! || b[1]! <= a[0]!, `the two ran one after the other: ${JSON.stringify(spans)}`)
          assert.isFalse(emulator.requests().some((r) => r.status === 409), "our own runs never collide")

          // someone else's action run command holds the VM: 409s until it ends
          const client = new ComputeManagementClient(Emulator.credential, emulator.subscription, {
            ...emulator.clientOptions,
            retryOptions: { maxRetries: 0 }
          })
          const other = client.virtualMachines.runCommand(RESOURCE_GROUP, "vm-0", {
            commandId: "RunShellScript",
            script: ["sleep 2"]
          }, {
            updateIntervalInMs: 50
          })
          yield* Effect.promise(() => other.submitted())
          const busy = yield* run(
            { mode: "action" },
            emulator,
            [vmTarget(0)],
            ScriptSource.job(ScriptSource.script("echo after\n"))
          )
          assert.strictEqual(busy.outcomes[0]!._tag, "Succeeded", JSON.stringify(busy.outcomes[0]))
          assert.strictEqual(text(busy.outcomes[0]!.stdout), "after\n")
          assert.isAbove(emulator.requests().filter((r) => r.status === 409).length, 0, "409s were answered")
          yield* Effect.promise(() => other.pollUntilDone())
        })),
    60_000
  )

  it.live(
    "exit codes from the launch, [stdout]/[stderr] split, truncation flagged, and no cancel",
    () =>
      withEmulator({ vms: 1 }, (emulator) =>
        Effect.gen(function*() {
          const report = yield* run(
            { mode: "action" },
            emulator,
            [vmTarget(0)],
            ScriptSource.job(ScriptSource.script("echo out\necho err >&2\nexit 5\n"))
          )
          const o = report.outcomes[0]!
          assert.strictEqual(o._tag, "Failed")
          assert.strictEqual((o as Outcome.Failed).exitCode, 5)
          assert.strictEqual(text(o.stdout), "out\n")
          assert.strictEqual(text(o.stderr), "err\n")
          const big = yield* run(
            { mode: "action" },
            emulator,
            [vmTarget(0)],
            ScriptSource.job(ScriptSource.script("seq 1 20000\n"))
          )
          assert.strictEqual(big.outcomes[0]!._tag, "Succeeded")
          assert.isTrue(big.outcomes[0]!.stdout.truncated, "flagged truncated")
          assert.include(big.outcomes[0]!.stdout.truncatedBy ?? "", "action run commands keep only the last 4096 bytes")
          assert.strictEqual(text(big.outcomes[0]!.stderr), "", "no notice written into the output")
          const kept = big.outcomes[0]!.stdout.head + big.outcomes[0]!.stdout.tail
          assert.isTrue(kept.endsWith("19999\n20000\n"), "the last bytes")
          const timedOut = yield* run(
            { mode: "action" },
            emulator,
            [vmTarget(0)],
            ScriptSource.job(ScriptSource.script("sleep 3\n")),
            {
              timeout: Duration.seconds(1)
            }
          )
          assert.strictEqual(timedOut.outcomes[0]!._tag, "TimedOut")
          assert.isFalse((timedOut.outcomes[0] as Outcome.TimedOut).killConfirmed, "the service cannot cancel it")
        })),
    60_000
  )

  it.live(
    "a plan with secrets is refused in action mode (no secure channel)",
    () =>
      withEmulator({ vms: 1 }, (emulator) =>
        Effect.gen(function*() {
          const refused = yield* Effect.either(
            run(
              { mode: "action" },
              emulator,
              [vmTarget(0)],
              ScriptSource.job(ScriptSource.script("true\n"), {
                secrets: { TOKEN: Redacted.make("x") }
              })
            )
          )
          assert.isTrue(Either.isLeft(refused))
          assert.isFalse(emulator.requests().some((r) => r.method === "POST"))
        })),
    60_000
  )
})
