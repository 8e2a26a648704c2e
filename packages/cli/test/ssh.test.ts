import { afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import * as RunReport from "@runcmd/core/RunReport"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
// the SSH transport's own harness: a real OpenSSH server on loopback with generated keys
import * as Sshd from "../../transport-ssh/test/harness/Sshd.js"
import { assertBuilt, processesMatching, runcmd, spawn, tempDir, unique, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

const inventoryFor = (sshd: Sshd.Sshd) =>
  [
    "defaults:",
    "  kind: ssh",
    `  port: ${sshd.port}`,
    `  user: ${sshd.user}`,
    `  auth: { type: key, path: ${JSON.stringify(sshd.clientKeyPath)} }`,
    `  hostKey: { policy: strict, knownHosts: [${JSON.stringify(sshd.knownHostsPath)}] }`,
    "  labels: { via: ssh }",
    "targets:",
    `  - { id: host-1, host: ${sshd.addresses[0]} }`,
    `  - { id: host-2, host: ${sshd.addresses[0]} }`,
    "  - { id: here, kind: local, labels: { via: local } }",
    ""
  ].join("\n")

describe.skipIf(!Sshd.enabled())("runcmd run over SSH (a real sshd on loopback)", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  // one server for the suite (the SSH transport's test layer), stopped after its last test
  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped("one run mixes SSH and local targets; --select by label", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const dir = yield* tempDir
        const inv = writeFile(dir, "inv.yaml", inventoryFor(sshd))

        const check = yield* runcmd(["inventory", "check", inv])
        assert.strictEqual(check.code, 0, check.stderr)
        assert.match(
          check.stdout,
          new RegExp(`^host-1\\s+ssh\\s+${sshd.user}@${sshd.addresses[0]}:${sshd.port}\\s`, "m")
        )
        assert.match(check.stdout, /^here\s+local\s+-\s/m)
        assert.notInclude(check.stdout, "PRIVATE KEY")

        const r = yield* runcmd(["run", "-i", inv, "--output", "json", "--command", "echo \"sum $((40 + 2))\""], {
          timeout: "40 seconds"
        })
        assert.strictEqual(r.code, 0, r.stderr)
        const report = yield* Effect.orDie(RunReport.decodeJson(r.stdout))
        assert.deepStrictEqual(report.outcomes.map((o) => [o.targetId, o.kind, o._tag]), [
          ["host-1", "ssh", "Succeeded"],
          ["host-2", "ssh", "Succeeded"],
          ["here", "local", "Succeeded"]
        ])
        for (const o of report.outcomes) assert.strictEqual(o.stdout.head + o.stdout.tail, "sum 42\n")

        const selected = yield* runcmd(["run", "-i", inv, "--select", "via=ssh", "--", "uname", "-s"], {
          timeout: "40 seconds"
        })
        assert.strictEqual(selected.code, 0, selected.stderr)
        assert.match(selected.stdout, /^\[host-1\] Linux$/m)
        assert.notMatch(selected.stdout, /\[here\]/)
      }), { timeout: 90_000 })

    it.scoped("--ssh-config adds the hosts of an OpenSSH config as targets", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const dir = yield* tempDir
        const config = writeFile(
          dir,
          "ssh_config",
          [
            "Host box-*",
            `  HostName ${sshd.addresses[0]}`,
            `  Port ${sshd.port}`,
            `  User ${sshd.user}`,
            `  IdentityFile ${sshd.clientKeyPath}`,
            "  StrictHostKeyChecking yes",
            `  UserKnownHostsFile ${sshd.knownHostsPath}`,
            "Host box-a",
            "Host box-b",
            ""
          ].join("\n")
        )
        const r = yield* runcmd([
          "run",
          "--ssh-config",
          config,
          "--output",
          "json",
          "--select",
          "id=box-*",
          "--",
          "echo",
          "via config"
        ], {
          timeout: "40 seconds"
        })
        assert.strictEqual(r.code, 0, r.stderr)
        const report = yield* Effect.orDie(RunReport.decodeJson(r.stdout))
        assert.deepStrictEqual(report.outcomes.map((o) => [o.targetId, o.kind, o._tag]), [
          ["box-a", "ssh", "Succeeded"],
          ["box-b", "ssh", "Succeeded"]
        ])
        assert.strictEqual(report.outcomes[0]!.stdout.head, "via config\n")
        const missing = yield* runcmd(["run", "--ssh-config", path.join(dir, "nope"), "--", "true"])
        assert.strictEqual(missing.code, 2)
        assert.match(missing.stderr, /--ssh-config .*nope/)
      }), { timeout: 90_000 })

    it.scoped("Ctrl-C kills the remote processes too (exit 130, report written)", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const dir = yield* tempDir
        const inv = writeFile(dir, "inv.yaml", inventoryFor(sshd))
        const reportFile = path.join(dir, "report.json")
        const sleep = `sleep 33.${unique()}`
        const proc = yield* spawn(["run", "-i", inv, "--report", reportFile, "--command", `echo started; ${sleep}`])
        for (const id of ["host-1", "host-2", "here"]) {
          yield* proc.waitFor(new RegExp(`\\[${id}\\] started`), "30 seconds")
        }
        for (let i = 0; i < 40 && processesMatching(sleep, true).length < 3; i++) {
          yield* Effect.sleep("50 millis")
        }
        assert.strictEqual(processesMatching(sleep, true).length, 3)
        yield* proc.kill("SIGINT")
        const r = yield* proc.result("30 seconds")
        assert.strictEqual(r.code, 130, r.stderr)
        const report = yield* Effect.orDie(RunReport.decodeJson(fs.readFileSync(reportFile, "utf8")))
        assert.isTrue(report.interrupted)
        for (const o of report.outcomes) {
          assert.strictEqual(o._tag, "Cancelled", o.targetId)
          if (o._tag === "Cancelled") assert.isTrue(o.confirmed, `${o.targetId}: kill confirmed`)
        }
        for (let i = 0; i < 30 && processesMatching(sleep).length > 0; i++) yield* Effect.sleep("100 millis")
        assert.deepStrictEqual(processesMatching(sleep), [])
      }), { timeout: 90_000 })
  })
})
