/**
 * Inventories: `kind: ssm` targets and `imports: [{ ssm: { region, tags } }]` (DescribeInstanceInformation through
 * the emulator), and one run mixing `ssm`, `ssh` (a real sshd on loopback) and `local` targets from one inventory.
 */
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Inventory from "@runcmd/core/Inventory"
import * as Runner from "@runcmd/core/Runner"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as Targets from "@runcmd/core/Targets"
import * as LocalTransport from "@runcmd/transport-local/LocalTransport"
import * as SshTarget from "@runcmd/transport-ssh/SshTarget"
import * as SshTransport from "@runcmd/transport-ssh/SshTransport"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Sshd from "../../transport-ssh/test/harness/Sshd.js"
import * as SsmTarget from "../src/SsmTarget.js"
import * as SsmTransport from "../src/SsmTransport.js"
import * as Emulator from "../src/testing.js"
import * as Harness from "./support/harness.js"

const tempFile = (name: string, text: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-ssm-inv-"))
      const file = path.join(dir, name)
      fs.writeFileSync(file, text)
      return file
    }),
    (file) => Effect.sync(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
  )

describe("SSM inventories", () => {
  it.scopedLive(
    "kind: ssm targets, and imports by tags through DescribeInstanceInformation",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({
          instances: [
            { tags: { role: "web", env: "prod" } },
            { tags: { role: "web", env: "prod" }, platform: "Windows" },
            { tags: { role: "web", env: "dev" } },
            { tags: { role: "web", env: "prod" }, pingStatus: "ConnectionLost" },
            { tags: { role: "db", env: "prod" } }
          ]
        })
        const ids = emulator.instanceIds
        const file = yield* tempFile(
          "fleet.yaml",
          [
            "targets:",
            `  - { id: static-db, kind: ssm, instanceId: ${ids[4]}, region: us-east-1, labels: { role: db } }`,
            "imports:",
            "  - ssm: { region: us-east-1, tags: { role: web, env: prod } }",
            "    labels: { tier: front }",
            ""
          ].join("\n")
        )
        const importer = SsmTransport.makeImporter({ endpoint: emulator.endpoint, credentials: Harness.credentials })
        const inventory = yield* Inventory.load(file, SsmTransport.kinds, { importers: [importer] })
        const byId = Object.fromEntries(inventory.targets.map((t) => [t.id, t]))
        assert.deepStrictEqual(Object.keys(byId).sort(), ["static-db", ids[0]!, ids[1]!].sort(), "online prod web only")
        assert.strictEqual((byId[ids[1]!] as SsmTarget.SsmTarget).os, "windows")
        assert.deepStrictEqual(byId[ids[0]!]!.labels, { role: "web", env: "prod", tier: "front" })
        assert.strictEqual((byId["static-db"] as SsmTarget.SsmTarget).instanceId, ids[4])

        // a bad entry is refused with the fix
        const bad = yield* tempFile("bad.yaml", "imports:\n  - ssm: { region: nowhere }\n")
        const error = yield* Effect.flip(Inventory.load(bad, SsmTransport.kinds, { importers: [importer] }))
        assert.include(error.message, "ssm.region must be an AWS region name")

        // a bad instance id in a target is refused by its schema
        const badId = yield* tempFile(
          "badid.yaml",
          "targets:\n  - { id: x, kind: ssm, instanceId: host-1, region: us-east-1 }\n"
        )
        const idError = yield* Effect.flip(Inventory.load(badId, SsmTransport.kinds))
        assert.include(idError.message, "i- (EC2) or mi- (hybrid)")
      }).pipe(Effect.provide(NodeContext.layer)),
    { timeout: 60_000 }
  )

  it.scopedLive.skipIf(!Sshd.enabled())(
    "one run mixes ssm, ssh and local targets from one inventory",
    () =>
      Effect.gen(function*() {
        const emulator = yield* Emulator.make({ instances: [{ tags: { role: "app" } }, { tags: { role: "app" } }] })
        const sshd = yield* Sshd.scoped({ addresses: 1 })
        const ssh = sshd.target({ id: "ssh-1" })
        const file = yield* tempFile(
          "mixed.yaml",
          [
            "targets:",
            `  - { id: local-1, kind: local, labels: { role: app } }`,
            `  - id: ssh-1`,
            `    kind: ssh`,
            `    host: ${ssh.host}`,
            `    port: ${ssh.port}`,
            `    user: ${ssh.user}`,
            `    auth: { type: key, path: ${sshd.clientKeyPath} }`,
            `    hostKey: { policy: strict, knownHosts: [${sshd.knownHostsPath}] }`,
            `    labels: { role: app }`,
            "imports:",
            "  - ssm: { region: us-east-1, tags: { role: app } }",
            ""
          ].join("\n")
        )
        const live = Layer.mergeAll(
          Targets.layerInventory(file, [Target.Local, SshTarget.SshTarget, SsmTarget.SsmTarget]),
          SsmTransport.layerImporter({ endpoint: emulator.endpoint, credentials: Harness.credentials }),
          SsmTransport.layer(Harness.options(emulator)),
          SshTransport.layer(),
          LocalTransport.layer()
        ).pipe(Layer.provide(NodeContext.layer))
        const report = yield* Runner.runJob(
          ScriptSource.job(ScriptSource.script(`echo "$1 ran on \${AWS_SSM_INSTANCE_ID:-not-ssm}"`), { args: ["job"] }),
          { select: "role=app", policy: { concurrency: 10 } }
        ).pipe(Effect.provide(live))
        const byKind: Record<string, Array<string>> = {}
        for (const o of report.outcomes) {
          assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
          ;(byKind[o.kind] ??= []).push(o.stdout.head)
        }
        assert.deepStrictEqual(byKind.local, ["job ran on not-ssm\n"])
        assert.deepStrictEqual(byKind.ssh, ["job ran on not-ssm\n"])
        assert.deepStrictEqual(byKind.ssm?.sort(), emulator.instanceIds.map((id) => `job ran on ${id}\n`).sort())
        assert.strictEqual(emulator.countByOperation().SendCommand, 1, "both ssm targets in one batch")
        yield* Effect.promise(() => sshd.assertNoLeftovers({ waitMs: 5000 }))
      }),
    { timeout: 120_000 }
  )
})
