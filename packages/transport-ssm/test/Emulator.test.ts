/**
 * The SSM emulator through the real SDK: every response it sent in a scenario that walks the operations, their
 * states, paging and errors validates against the service model's shapes; the process entry prints its endpoint;
 * Windows instances run PowerShell with the real pwsh.
 */
import {
  CancelCommandCommand,
  DeleteParameterCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  GetParameterCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  PutParameterCommand,
  SendCommandCommand,
  SSMClient
} from "@aws-sdk/client-ssm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as cp from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { pwshPath } from "../../../test-support/pwsh.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"
import { checkRequest, checkResponse } from "./support/model.js"

const client = (emulator: Emulator.Emulator) =>
  Effect.acquireRelease(
    Effect.sync(() => new SSMClient({ ...emulator.clientConfig(), maxAttempts: 1 })),
    (c) => Effect.sync(() => c.destroy())
  )

const attempt = <A>(f: () => Promise<A>) =>
  Effect.promise(() =>
    f().then((value) => ({ ok: true as const, value }), (error: Error) => ({ ok: false as const, error }))
  )

const waitFor = (emulator: Emulator.Emulator, commandId: string, done: (status: string) => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 600; i++) {
      const mine = emulator.invocations().filter((inv) => inv.commandId === commandId)
      if (mine.length > 0 && mine.every((inv) => done(inv.status))) return
      yield* Effect.sleep("50 millis")
    }
    throw new Error(`command ${commandId} did not reach the state`)
  })

const terminal = (s: string) => ["Success", "Failed", "Cancelled", "TimedOut"].includes(s)

describe("SSM emulator", () => {
  it.scopedLive(
    "every response of a scenario walking the operations validates against the model",
    () =>
      Effect.gen(function*() {
        const s3 = yield* Harness.s3()
        const emulator = yield* Emulator.make({
          instances: [{ tags: { role: "web" } }, { tags: { role: "web" } }, { tags: { role: "db" } }, {
            pingStatus: "ConnectionLost"
          }, ...Array.from({ length: 6 }, () => ({}))],
          s3: { endpoint: s3.endpoint }
        })
        const ssm = yield* client(emulator)
        const [web1, web2, db, lost] = emulator.instanceIds
        // a command with output to S3 on two instances, one failing
        const sent = yield* Effect.promise(() =>
          ssm.send(
            new SendCommandCommand({
              DocumentName: "AWS-RunShellScript",
              InstanceIds: [web1!, web2!],
              TimeoutSeconds: 60,
              Comment: "model walk",
              Parameters: {
                commands: [
                  `echo "out $AWS_SSM_INSTANCE_ID"; echo err >&2; sleep 0.5`,
                  `[ "$AWS_SSM_INSTANCE_ID" = ${web1} ]`
                ]
              },
              OutputS3BucketName: Harness.BUCKET,
              OutputS3KeyPrefix: "walk"
            })
          )
        )
        const commandId = sent.Command!.CommandId!
        assert.strictEqual(sent.Command!.Status, "Pending")
        yield* attempt(() => ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: web1! })))
        yield* waitFor(emulator, commandId, (s) => s === "InProgress" || terminal(s))
        yield* Effect.promise(() =>
          ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }))
        )
        yield* waitFor(emulator, commandId, terminal)
        const done = yield* Effect.promise(() =>
          ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: web2! }))
        )
        assert.strictEqual(done.Status, "Failed")
        assert.strictEqual(done.ResponseCode, 1)
        assert.strictEqual(done.StandardOutputContent, `out ${web2}\n`)
        assert.include(done.StandardOutputUrl, `/${Harness.BUCKET}/walk/${commandId}/${web2}/awsrunShellScript/`)
        const ok = yield* Effect.promise(() =>
          ssm.send(
            new GetCommandInvocationCommand({
              CommandId: commandId,
              InstanceId: web1!,
              PluginName: "aws:runShellScript"
            })
          )
        )
        assert.strictEqual(ok.Status, "Success")
        // paging: one invocation per page
        let token: string | undefined
        let pages = 0
        do {
          const page = yield* Effect.promise(() =>
            ssm.send(
              new ListCommandInvocationsCommand({
                CommandId: commandId,
                Details: true,
                MaxResults: 1,
                ...(token === undefined ? {} : { NextToken: token })
              })
            )
          )
          assert.strictEqual(page.CommandInvocations!.length, 1)
          assert.include(page.CommandInvocations![0]!.CommandPlugins![0]!.Output, "out ")
          token = page.NextToken
          pages++
        } while (token !== undefined)
        assert.strictEqual(pages, 2)
        yield* Effect.promise(() => ssm.send(new ListCommandsCommand({ CommandId: commandId })))
        yield* Effect.promise(() => ssm.send(new ListCommandsCommand({ InstanceId: web1!, MaxResults: 5 })))

        // a cancelled command, and a delayed one on the offline instance
        const long = yield* Effect.promise(() =>
          ssm.send(
            new SendCommandCommand({
              DocumentName: "AWS-RunShellScript",
              InstanceIds: [db!],
              Parameters: { commands: ["sleep 30"] }
            })
          )
        )
        const longId = long.Command!.CommandId!
        yield* waitFor(emulator, longId, (s) => s === "InProgress")
        yield* Effect.promise(() => ssm.send(new CancelCommandCommand({ CommandId: longId, InstanceIds: [db!] })))
        yield* Effect.promise(() => ssm.send(new GetCommandInvocationCommand({ CommandId: longId, InstanceId: db! })))
        yield* waitFor(emulator, longId, terminal)
        const cancelled = yield* Effect.promise(() =>
          ssm.send(new GetCommandInvocationCommand({ CommandId: longId, InstanceId: db! }))
        )
        assert.strictEqual(cancelled.Status, "Cancelled")
        const delayed = yield* Effect.promise(() =>
          ssm.send(
            new SendCommandCommand({
              DocumentName: "AWS-RunShellScript",
              InstanceIds: [lost!],
              Parameters: { commands: ["true"] }
            })
          )
        )
        yield* waitFor(emulator, delayed.Command!.CommandId!, (s) => s === "Delayed")
        const d = yield* Effect.promise(() =>
          ssm.send(new ListCommandInvocationsCommand({ CommandId: delayed.Command!.CommandId!, Details: true }))
        )
        assert.strictEqual(d.CommandInvocations![0]!.Status, "Delayed")
        yield* Effect.promise(() => ssm.send(new CancelCommandCommand({ CommandId: delayed.Command!.CommandId! })))

        // discovery
        const web = yield* Effect.promise(() =>
          ssm.send(new DescribeInstanceInformationCommand({ Filters: [{ Key: "tag:role", Values: ["web"] }] }))
        )
        assert.deepStrictEqual(web.InstanceInformationList!.map((i) => i.InstanceId).sort(), [web1!, web2!].sort())
        const paged = yield* Effect.promise(() => ssm.send(new DescribeInstanceInformationCommand({ MaxResults: 5 })))
        assert.strictEqual(paged.InstanceInformationList!.length, 5)
        yield* Effect.promise(() =>
          ssm.send(new DescribeInstanceInformationCommand({ MaxResults: 5, NextToken: paged.NextToken! }))
        )
        yield* Effect.promise(() =>
          ssm.send(
            new DescribeInstanceInformationCommand({
              InstanceInformationFilterList: [{ key: "PingStatus", valueSet: ["ConnectionLost"] }]
            })
          )
        )

        // Parameter Store
        yield* Effect.promise(() =>
          ssm.send(new PutParameterCommand({ Name: "/walk/p", Value: "v", Type: "SecureString" }))
        )
        const p = yield* Effect.promise(() =>
          ssm.send(new GetParameterCommand({ Name: "/walk/p", WithDecryption: true }))
        )
        assert.strictEqual(p.Parameter!.Value, "v")
        yield* Effect.promise(() => ssm.send(new DeleteParameterCommand({ Name: "/walk/p" })))

        // errors
        const errors = [
          yield* attempt(() => ssm.send(new GetParameterCommand({ Name: "/walk/p" }))),
          yield* attempt(() => ssm.send(new PutParameterCommand({ Name: "/walk/q", Value: "1" }))),
          yield* attempt(() => ssm.send(new PutParameterCommand({ Name: "/walk/q", Value: "2" }))),
          yield* attempt(() =>
            ssm.send(
              new SendCommandCommand({
                DocumentName: "AWS-RunShellScript",
                InstanceIds: ["i-00000000000000000"],
                Parameters: { commands: ["true"] }
              })
            )
          ),
          yield* attempt(() =>
            ssm.send(
              new SendCommandCommand({
                DocumentName: "No-Such-Doc",
                InstanceIds: [web1!],
                Parameters: { commands: ["true"] }
              })
            )
          ),
          yield* attempt(() =>
            ssm.send(
              new SendCommandCommand({
                DocumentName: "AWS-RunShellScript",
                InstanceIds: emulator.instanceIds.concat(
                  Array.from({ length: 41 }, (_, i) => `i-${String(i).padStart(17, "0")}`)
                ),
                Parameters: { commands: ["true"] }
              })
            )
          ),
          yield* attempt(() => ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: db! }))),
          yield* attempt(() => ssm.send(new ListCommandsCommand({ CommandId: "00000000-0000-0000-0000-000000000000" })))
        ]
        assert.deepStrictEqual(errors.map((e) => (e.ok ? "ok" : e.error.name)), [
          "ParameterNotFound",
          "ok",
          "ParameterAlreadyExists",
          "InvalidInstanceId",
          "InvalidDocument",
          "ValidationException",
          "InvocationDoesNotExist",
          "InvalidCommandId"
        ])
        emulator.faults.throttle(1, ["ListCommands"])
        const throttled = yield* attempt(() => ssm.send(new ListCommandsCommand({})))
        assert.isFalse(throttled.ok)
        if (!throttled.ok) assert.strictEqual(throttled.error.name, "ThrottlingException")
        emulator.faults.clear()

        // the walk: every response and every request the SDK sent
        const served = emulator.requests()
        const operations = new Set(served.map((r) => r.operation))
        assert.deepStrictEqual([...operations].sort(), [
          "CancelCommand",
          "DeleteParameter",
          "DescribeInstanceInformation",
          "GetCommandInvocation",
          "GetParameter",
          "ListCommandInvocations",
          "ListCommands",
          "PutParameter",
          "SendCommand"
        ])
        const problems = served.flatMap((r) => [
          ...checkResponse(r.operation, r.status, r.response),
          // the requests the service refused as invalid are invalid on purpose
          ...((r.response as { __type?: string }).__type === "ValidationException"
            ? []
            : checkRequest(r.operation, JSON.parse(r.body)))
        ])
        assert.deepStrictEqual(problems, [], problems.join("\n"))
        const statuses = new Set(
          served.flatMap((r) => {
            const body = r.response as {
              Status?: string
              Command?: { Status: string }
              CommandInvocations?: Array<{ Status: string }>
            }
            return [body.Status, body.Command?.Status, ...(body.CommandInvocations ?? []).map((i) => i.Status)]
              .filter((s) => s !== undefined)
          })
        )
        for (const s of ["Pending", "InProgress", "Delayed", "Success", "Failed", "Cancelled"]) {
          assert.isTrue(statuses.has(s), `a response with status ${s} was checked`)
        }
      }),
    { timeout: 120_000 }
  )

  it.scopedLive.skipIf(pwshPath() === undefined && process.env.CI !== "true")(
    "a Windows instance runs AWS-RunPowerShellScript with the real pwsh",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: [{ platform: "Windows" }] })
        const ssm = yield* client(emulator)
        const id = emulator.instanceIds[0]!
        const wrong = yield* attempt(() =>
          ssm.send(
            new SendCommandCommand({
              DocumentName: "AWS-RunShellScript",
              InstanceIds: [id],
              Parameters: { commands: ["true"] }
            })
          )
        )
        assert.isFalse(wrong.ok)
        if (!wrong.ok) assert.strictEqual(wrong.error.name, "UnsupportedPlatformType")
        const sent = yield* Effect.promise(() =>
          ssm.send(
            new SendCommandCommand({
              DocumentName: "AWS-RunPowerShellScript",
              InstanceIds: [id],
              Parameters: {
                commands: [
                  "Write-Output \"ps $($PSVersionTable.PSVersion.Major) on $env:AWS_SSM_INSTANCE_ID\"",
                  "exit 5"
                ]
              }
            })
          )
        )
        yield* waitFor(emulator, sent.Command!.CommandId!, terminal)
        const inv = yield* Effect.promise(() =>
          ssm.send(new GetCommandInvocationCommand({ CommandId: sent.Command!.CommandId!, InstanceId: id }))
        )
        assert.strictEqual(inv.PluginName, "aws:runPowerShellScript")
        assert.strictEqual(inv.StandardOutputContent, `ps 7 on ${id}\n`)
        assert.strictEqual(inv.ResponseCode, 5)
        assert.strictEqual(inv.Status, "Failed")
      }),
    { timeout: 120_000 }
  )

  it.live(
    "runs as a process: one JSON line with the endpoint and instance ids, then serves until SIGTERM",
    () =>
      Effect.gen(function*() {
        const here = path.dirname(fileURLToPath(import.meta.url))
        const child = cp.spawn(process.execPath, [
          "--import",
          "tsx",
          "-e",
          `import("${path.join(here, "../src/testing.ts")}").then((m) => m.main(process.argv.slice(1)))`,
          "--",
          "--instances",
          "2",
          "--region",
          "eu-west-1"
        ], { stdio: ["ignore", "pipe", "inherit"], cwd: path.join(here, "..") })
        const line = yield* Effect.promise(() =>
          new Promise<string>((resolve, reject) => {
            let out = ""
            child.stdout.on("data", (d: Buffer) => {
              out += d.toString()
              if (out.includes("\n")) resolve(out.split("\n")[0]!)
            })
            child.on("exit", (code) => reject(new Error(`exited ${code}: ${out}`)))
          })
        ).pipe(Effect.timeout("60 seconds"), Effect.ensuring(Effect.sync(() => undefined)))
        const info = JSON.parse(line) as { endpoint: string; region: string; instanceIds: Array<string> }
        assert.match(info.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/)
        assert.strictEqual(info.region, "eu-west-1")
        assert.strictEqual(info.instanceIds.length, 2)
        const ssm = new SSMClient({
          endpoint: info.endpoint,
          region: info.region,
          credentials: Harness.credentials,
          maxAttempts: 1
        })
        const listed = yield* Effect.promise(() => ssm.send(new DescribeInstanceInformationCommand({})))
        ssm.destroy()
        assert.deepStrictEqual(listed.InstanceInformationList!.map((i) => i.InstanceId), info.instanceIds)
        const code = yield* Effect.promise(() =>
          new Promise<number | null>((resolve) => {
            child.once("exit", (c) => resolve(c))
            child.kill("SIGTERM")
          })
        ).pipe(Effect.timeout("30 seconds"))
        assert.strictEqual(code, 0)
      }),
    { timeout: 120_000 }
  )
})
