/**
 * The cloud and Windows transports through the built command, as a user would drive them against the emulators
 * (`runcmd emulate ssm|azure|winrm`, each a separate process serving on loopback): one inventory mixing the
 * emulated targets with local ones, `--select`, `--script` with arguments, `--dry-run`, and the emulators stopped
 * by a signal. Credentials are static fakes given through the environment; no profile file, no metadata service.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as RunReport from "@runcmd/core/RunReport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { pwshPath, skipWithoutPwsh } from "../../../test-support/pwsh.js"
import { assertBuilt, type Proc, runcmd, spawn, tempDir, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

/** Starts an emulator with the command and returns its announcement (the JSON line) and the process. */
const emulate = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const proc = yield* spawn(["emulate", ...args])
    yield* proc.waitFor(/^\{.*\}\s*$/m, Duration.seconds(60))
    const line = proc.stdout().split("\n").find((l) => l.startsWith("{"))!
    return { proc, announced: JSON.parse(line) as Record<string, unknown> }
  })

/** Stops an emulator as a user does (SIGINT) and checks it ended by itself, promptly. */
const stop = (proc: Proc) =>
  Effect.gen(function*() {
    yield* proc.kill("SIGINT")
    const r = yield* proc.result(Duration.seconds(30))
    assert.strictEqual(r.signal, null, `the emulator should exit by itself on SIGINT; stderr:\n${r.stderr}`)
  })

const awsEnv = (endpoint: string, dir: string) => ({
  RUNCMD_SSM_ENDPOINT: endpoint,
  AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
  AWS_SECRET_ACCESS_KEY: "fake-secret-for-tests",
  AWS_REGION: "us-east-1",
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  AWS_CONFIG_FILE: path.join(dir, "no-aws-config"),
  AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "no-aws-credentials"),
  AWS_PROFILE: undefined
})

const outcomes = (stdout: string) =>
  Effect.map(
    Effect.orDie(RunReport.decodeJson(stdout)),
    (report) => Object.fromEntries(report.outcomes.map((o) => [o.targetId, o._tag]))
  )

describe("runcmd with cloud and Windows targets, against the emulators", () => {
  it.scoped(
    "emulate ssm: one inventory of ssm and local targets, --select, a script with arguments",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const { announced, proc } = yield* emulate(["ssm", "--instances", "2"])
        const ids = announced.instanceIds as ReadonlyArray<string>
        assert.lengthOf(ids, 2)
        const inventory = writeFile(
          dir,
          "fleet.yaml",
          [
            "defaults:",
            "  region: us-east-1",
            "targets:",
            `  - { id: web-1, kind: ssm, instanceId: ${ids[0]}, labels: { role: web } }`,
            `  - { id: web-2, kind: ssm, instanceId: ${ids[1]}, labels: { role: web } }`,
            "  - { id: here, kind: local, labels: { role: web } }",
            "  - { id: db, kind: local, labels: { role: db } }",
            ""
          ].join("\n")
        )
        const script = writeFile(dir, "deploy.sh", "#!/bin/sh\necho \"deploy $1 in $(pwd)\"\n")
        const out = path.join(dir, "out")
        const env = awsEnv(announced.endpoint as string, dir)
        const plan = yield* runcmd(["run", "-i", inventory, "--select", "role=web", "--script", script, "--dry-run"], {
          env
        })
        assert.strictEqual(plan.code, 0, plan.stderr)
        assert.match(plan.stdout + plan.stderr, /web-1/)
        const r = yield* runcmd(
          [
            "run",
            "-i",
            inventory,
            "--select",
            "role=web",
            "--script",
            script,
            "--out-dir",
            out,
            "-o",
            "json",
            "--",
            "v7"
          ],
          { env, timeout: Duration.minutes(2) }
        )
        assert.strictEqual(r.code, 0, r.stderr)
        assert.deepStrictEqual(yield* outcomes(r.stdout), {
          "web-1": "Succeeded",
          "web-2": "Succeeded",
          here: "Succeeded"
        })
        for (const id of ["web-1", "web-2", "here"]) {
          assert.match(fs.readFileSync(path.join(out, `${id}.stdout`), "utf8"), /^deploy v7 in \//)
        }
        yield* stop(proc)
      }),
    { timeout: 180_000 }
  )

  it.scoped(
    "emulate azure: VMs and a scale set's instances from one inventory, with a local target",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const { announced, proc } = yield* emulate(["azure", "--vms", "2", "--scale-set", "web:2"])
        const vms = announced.vms as ReadonlyArray<string>
        const scaleSet =
          (announced.scaleSets as ReadonlyArray<{ name: string; instanceIds: ReadonlyArray<string> }>)[0]!
        const inventory = writeFile(
          dir,
          "fleet.yaml",
          [
            "defaults:",
            `  subscription: ${announced.subscription}`,
            `  resourceGroup: ${announced.resourceGroup}`,
            "targets:",
            ...vms.map((vm) => `  - { id: ${vm}, kind: azure-vm, vmName: ${vm} }`),
            ...scaleSet.instanceIds.map((i) =>
              `  - { id: ${scaleSet.name}-${i}, kind: azure-vmss-vm, scaleSet: ${scaleSet.name}, instanceId: "${i}" }`
            ),
            "  - { id: here, kind: local }",
            ""
          ].join("\n")
        )
        const out = path.join(dir, "out")
        const r = yield* runcmd(
          ["run", "-i", inventory, "--command", "echo \"hello $1\"", "--out-dir", out, "-o", "json", "--", "azure"],
          {
            env: {
              RUNCMD_AZURE_ENDPOINT: announced.endpoint as string,
              RUNCMD_AZURE_CA_FILE: announced.caCertificate as string,
              RUNCMD_AZURE_ACCESS_TOKEN: "fake-token-for-tests",
              RUNCMD_AZURE_POLL_INTERVAL: "100 millis"
            },
            timeout: Duration.minutes(2)
          }
        )
        assert.strictEqual(r.code, 0, r.stderr)
        const ids = [...vms, ...scaleSet.instanceIds.map((i) => `${scaleSet.name}-${i}`), "here"]
        assert.deepStrictEqual(yield* outcomes(r.stdout), Object.fromEntries(ids.map((id) => [id, "Succeeded"])))
        for (const id of ids) {
          assert.strictEqual(fs.readFileSync(path.join(out, `${id}.stdout`), "utf8"), "hello azure\n")
        }

        // the run commands' lifecycle: kept by RUNCMD_AZURE_RETAIN, listed, shown, deleted
        const env = {
          RUNCMD_AZURE_ENDPOINT: announced.endpoint as string,
          RUNCMD_AZURE_CA_FILE: announced.caCertificate as string,
          RUNCMD_AZURE_ACCESS_TOKEN: "fake-token-for-tests",
          RUNCMD_AZURE_POLL_INTERVAL: "100 millis"
        }
        const one = ["-i", inventory, "-s", `id=${vms[0]}`]
        const kept = yield* runcmd(["run", ...one, "--", "sh", "-c", "exit 3"], {
          env: { ...env, RUNCMD_AZURE_RETAIN: "true" },
          timeout: Duration.minutes(2)
        })
        assert.strictEqual(kept.code, 1, kept.stderr)
        const listed = yield* runcmd(["azure", "run-commands", "list", ...one, "-o", "json"], { env })
        assert.strictEqual(listed.code, 0, listed.stderr)
        const commands = JSON.parse(listed.stdout) as Array<{ target: string; name: string; exitCode?: number }>
        assert.lengthOf(commands, 1, listed.stdout)
        assert.strictEqual(commands[0]!.target, vms[0])
        assert.strictEqual(commands[0]!.exitCode, 3)
        const name = commands[0]!.name
        const shown = yield* runcmd(["azure", "run-commands", "show", name, ...one], { env })
        assert.strictEqual(shown.code, 0, shown.stderr)
        assert.include(shown.stdout, name)
        const deleted = yield* runcmd(["azure", "run-commands", "delete", name, ...one], { env })
        assert.strictEqual(deleted.code, 0, deleted.stderr)
        const after = yield* runcmd(["azure", "run-commands", "list", ...one, "-o", "json"], { env })
        assert.deepStrictEqual(JSON.parse(after.stdout), [])
        const missing = yield* runcmd(["azure", "run-commands", "list", "-s", "id=x"], { env })
        assert.strictEqual(missing.code, 2)
        assert.match(missing.stderr, /--inventory is missing/)
        yield* stop(proc)
      }),
    { timeout: 180_000 }
  )

  it.scoped.skipIf(skipWithoutPwsh("cli cloud.test winrm"))(
    "emulate winrm: a PowerShell job on a winrm target (NTLM over http) and on a local one",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const { announced, proc } = yield* emulate(["winrm"])
        const url = new URL(announced.endpoint as string)
        const inventory = writeFile(
          dir,
          "hosts.yaml",
          [
            "targets:",
            "  - id: win-1",
            "    kind: winrm",
            `    host: ${url.hostname}`,
            `    port: ${url.port}`,
            "    scheme: http",
            `    auth: { type: ntlm, user: ${announced.user}, password: "${announced.password}" }`,
            "    shell: pwsh",
            "  - { id: here, kind: local }",
            ""
          ].join("\n")
        )
        const out = path.join(dir, "out")
        const r = yield* runcmd(
          [
            "run",
            "-i",
            inventory,
            "--interpreter",
            "powershell",
            "--command",
            "Write-Output ('hello ' + $args[0])",
            "--out-dir",
            out,
            "-o",
            "json",
            "--",
            "windows"
          ],
          // the local target's pwsh, wherever it is installed
          { env: { RUNCMD_LOCAL_POWERSHELL: pwshPath() }, timeout: Duration.minutes(2) }
        )
        assert.strictEqual(r.code, 0, r.stderr)
        assert.deepStrictEqual(yield* outcomes(r.stdout), { "win-1": "Succeeded", here: "Succeeded" })
        for (const id of ["win-1", "here"]) {
          assert.strictEqual(fs.readFileSync(path.join(out, `${id}.stdout`), "utf8").trim(), "hello windows")
        }
        assert.notInclude(r.stdout + r.stderr, announced.password as string)
        yield* stop(proc)
      }),
    { timeout: 180_000 }
  )

  it.effect("emulate refuses an unknown flag before starting anything", () =>
    Effect.gen(function*() {
      const r = yield* runcmd(["emulate", "ssm", "--instancez", "2"])
      assert.strictEqual(r.code, 2)
      assert.match(r.stderr, /unknown flag --instancez/)
      assert.match(r.stderr, /Did you mean --instances\?/)
      assert.strictEqual(r.stdout, "")
    }))
})
