import { SSMClient } from "@aws-sdk/client-ssm"
import { assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import { pwshPath } from "../../../test-support/pwsh.js"
import * as SsmTransport from "../src/SsmTransport.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"

describe("SsmTransport", () => {
  it.scopedLive("runs a script on emulated instances: output, exit codes", () =>
    Effect.gen(function*() {
      const emulator = yield* Emulator.make({ instances: 3 })
      const targets = emulator.targets()
      const report = yield* Runner.run(RunPlan.make({
        targets,
        job: ScriptSource.job(ScriptSource.script(`echo "hello $1 from $AWS_SSM_INSTANCE_ID"; echo err >&2; exit 3`), {
          args: ["world"]
        }),
        policy: { concurrency: 50 }
      })).pipe(Effect.provide(SsmTransport.layer(Harness.options(emulator))))
      assert.strictEqual(report.outcomes.length, 3)
      for (const [i, o] of report.outcomes.entries()) {
        assert.strictEqual(o._tag, "Failed", JSON.stringify(o))
        if (o._tag === "Failed") assert.strictEqual(o.exitCode, 3)
        assert.strictEqual(o.stdout.head, `hello world from ${emulator.instanceIds[i]}\n`)
        assert.strictEqual(o.stderr.head, "err\n")
      }
      assert.strictEqual(emulator.countByOperation().SendCommand, 1)
    }), { timeout: 60_000 })

  it.scopedLive(
    "files beyond the inline limit go through S3 (pre-signed GET) and are deleted after",
    () =>
      Effect.gen(function*() {
        const s3 = yield* Harness.s3()
        const emulator = yield* Emulator.make({ instances: 2, s3: { endpoint: s3.endpoint } })
        const big = crypto.randomBytes(200_000)
        const small = new TextEncoder().encode("small file\n")
        const digest = crypto.createHash("sha256").update(big).digest("hex")
        const job = ScriptSource.job(
          ScriptSource.script(`sha256sum "$RUNCMD_FILES/data/big.bin" | cut -c1-64; cat "$RUNCMD_FILES/small.txt"`),
          {
            files: [{ name: "data/big.bin", content: big }, { name: "small.txt", content: small }]
          }
        )
        const refused = yield* Runner.run(
          RunPlan.make({ targets: emulator.targets(), job, policy: { concurrency: 10 } })
        ).pipe(
          Effect.provide(SsmTransport.layer(Harness.options(emulator)))
        )
        const why = refused.outcomes[0] as Outcome.Rejected
        assert.strictEqual(why._tag, "Rejected")
        assert.include(why.error.message, "filesBucket")
        const report = yield* Runner.run(
          RunPlan.make({ targets: emulator.targets(), job, policy: { concurrency: 10 } })
        ).pipe(
          Effect.provide(SsmTransport.layer(Harness.options(emulator, s3, { filesBucket: Harness.BUCKET })))
        )
        for (const o of report.outcomes) {
          assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
          assert.strictEqual(o.stdout.head, `${digest}\nsmall file\n`)
        }
        const send = emulator.requests().find((r) => r.operation === "SendCommand")!
        assert.isBelow(send.body.length, 64 * 1024, "the big file is not in the command")
        assert.include(send.body, "X-Amz-Signature", "fetched by a pre-signed URL")
        const { ListObjectsV2Command, S3Client } = yield* Effect.promise(() => import("@aws-sdk/client-s3"))
        const client = new S3Client({
          endpoint: s3.endpoint,
          region: "us-east-1",
          forcePathStyle: true,
          credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" }
        })
        const listed = yield* Effect.promise(() =>
          client.send(new ListObjectsV2Command({ Bucket: Harness.BUCKET, Prefix: "runcmd/files/" }))
        )
        client.destroy()
        assert.strictEqual(listed.KeyCount ?? 0, 0, "the uploaded files were deleted")
      }),
    { timeout: 120_000 }
  )

  it.scopedLive("a Native document with its parameters, through a caller-owned client", () =>
    Effect.gen(function*() {
      const emulator = yield* Emulator.make({ instances: 1 })
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => new SSMClient({ ...emulator.clientConfig(), maxAttempts: 1 })),
        (c) => Effect.sync(() => c.destroy())
      )
      const report = yield* Runner.run(RunPlan.make({
        targets: emulator.targets(),
        job: ScriptSource.job(
          new ScriptSource.Native({
            transport: "ssm",
            document: { name: "AWS-RunShellScript", parameters: { commands: ["echo native", "exit 2"] } }
          })
        )
      })).pipe(Effect.provide(SsmTransport.layerFromClient(client, Harness.options(emulator))))
      const o = report.outcomes[0] as Outcome.Failed
      assert.strictEqual(o._tag, "Failed", JSON.stringify(o))
      assert.strictEqual(o.exitCode, 2)
      assert.strictEqual(o.stdout.head, "native\n")
    }), { timeout: 60_000 })

  it.scopedLive.skipIf(pwshPath() === undefined && process.env.CI !== "true")(
    "Windows instances: secrets from Parameter Store, files inline and through S3, stdin byte for byte; run-as Rejected",
    () =>
      Effect.gen(function*() {
        const s3 = yield* Harness.s3()
        const emulator = yield* Emulator.make({
          instances: [{ platform: "Windows" }, { platform: "Windows" }],
          s3: { endpoint: s3.endpoint }
        })
        const secret = "w1n-s3cret with 'quotes' and ünïcode"
        const sha = (b: Uint8Array | string) => crypto.createHash("sha256").update(b).digest("hex")
        const big = crypto.randomBytes(100_000)
        const stdin = new Uint8Array(5000).map((_, i) => (i * 7) % 256)
        const script = `function Sha([byte[]]$b) {
  [BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash($b)).Replace('-', '').ToLower()
}
Write-Output ("$env:GREETING " + (Sha ([Text.Encoding]::UTF8.GetBytes($env:TOKEN))))
Write-Output (Sha ([IO.File]::ReadAllBytes((Join-Path $env:RUNCMD_FILES 'data/big.bin'))))
Write-Output ([IO.File]::ReadAllText((Join-Path $env:RUNCMD_FILES 'small.txt')))
$in = [Console]::OpenStandardInput(); $ms = New-Object IO.MemoryStream; $in.CopyTo($ms)
Write-Output (Sha $ms.ToArray())
exit 3`
        const job = ScriptSource.job(ScriptSource.script(script, "powershell"), {
          env: { GREETING: "hi" },
          secrets: { TOKEN: Redacted.make(secret) },
          stdin,
          files: [{ name: "data/big.bin", content: big }, { name: "small.txt", content: "small ✓" }]
        })
        const report = yield* Runner.run(
          RunPlan.make({ targets: emulator.targets(), job, policy: { concurrency: 10 } })
        ).pipe(Effect.provide(SsmTransport.layer(Harness.options(emulator, s3, {
          secrets: { parameterStore: {} },
          filesBucket: Harness.BUCKET
        }))))
        for (const o of report.outcomes) {
          assert.strictEqual(o._tag, "Failed", JSON.stringify(o))
          if (o._tag === "Failed") assert.strictEqual(o.exitCode, 3, JSON.stringify(o))
          assert.strictEqual(o.stdout.head, `hi ${sha(secret)}\n${sha(big)}\nsmall ✓\n${sha(stdin)}\n`)
          assert.strictEqual(o.stderr.head, "")
        }
        const send = emulator.requests().find((r) => r.operation === "SendCommand")!
        assert.strictEqual(JSON.parse(send.body).DocumentName, "AWS-RunPowerShellScript")
        assert.include(send.body, "X-Amz-Signature", "the big file is fetched by a pre-signed URL")
        assert.isBelow(send.body.length, 64 * 1024, "the big file is not in the command")
        for (const r of emulator.requests()) {
          if (r.operation !== "PutParameter") assert.notInclude(r.body, "s3cret", r.operation)
        }
        assert.strictEqual(emulator.countByOperation().PutParameter, 2)
        assert.deepStrictEqual(emulator.parameters().stored, [])

        // a missing working directory is the launch's failure, not the program's exit code
        emulator.clearRequests()
        const cwd = yield* Runner.run(RunPlan.make({
          targets: emulator.targets().slice(0, 1),
          job: ScriptSource.job(ScriptSource.script("Write-Output never", "powershell"), { stdin: "x" }),
          policy: { cwd: "/nonexistent/runcmd-cwd" }
        })).pipe(Effect.provide(SsmTransport.layer(Harness.options(emulator))))
        const missing = cwd.outcomes[0]!
        assert.strictEqual(missing._tag, "TransportFailed", JSON.stringify(missing))
        assert.notInclude(missing.stdout.head, "never")
        if (missing._tag === "TransportFailed") assert.include(missing.error.message, "fail cwd")

        // run-as: a Windows account needs its password to start a process; refused before anything is sent
        emulator.clearRequests()
        const refused = yield* Runner.run(RunPlan.make({
          targets: emulator.targets(),
          job: ScriptSource.job(ScriptSource.script("Write-Output x", "powershell")),
          policy: { runAs: { user: "svc", method: "sudo" } }
        })).pipe(Effect.provide(SsmTransport.layer(Harness.options(emulator))))
        for (const o of refused.outcomes) {
          assert.strictEqual(o._tag, "Rejected", JSON.stringify(o))
          if (o._tag === "Rejected") assert.include(o.error.message, "run-as")
        }
        assert.strictEqual(emulator.requests().length, 0, "nothing was sent")
      }),
    { timeout: 120_000 }
  )

  it.effect("bad options are refused before anything runs, naming the option", () =>
    Effect.gen(function*() {
      const error = yield* Layer.build(SsmTransport.layer({ deliveryTimeout: "5 seconds" })).pipe(
        Effect.scoped,
        Effect.flip
      )
      assert.strictEqual(error._tag, "SsmOptionsError")
      if (error._tag === "SsmOptionsError") {
        assert.strictEqual(error.field, "deliveryTimeout")
        assert.include(error.message, "30 seconds")
      }
      const batch = yield* Layer.build(SsmTransport.layer({ batchSize: 51 })).pipe(Effect.scoped, Effect.flip)
      assert.include(batch.message, "1 to 50")
    }))
})
