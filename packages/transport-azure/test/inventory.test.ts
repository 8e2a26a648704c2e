/**
 * Targets from inventories: VMs and scale-set instances discovered by tags through `imports: [{ azure: ... }]`,
 * and one inventory mixing `azure-vm`, `ssh` and `local` targets in one run.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as Targets from "@runcmd/core/Targets"
import * as LocalTransport from "@runcmd/transport-local/LocalTransport"
import * as SshTarget from "@runcmd/transport-ssh/SshTarget"
import * as SshTransport from "@runcmd/transport-ssh/SshTransport"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Sshd from "../../transport-ssh/test/harness/Sshd.js"
import * as AzureDiscovery from "../src/AzureDiscovery.js"
import * as AzureTarget from "../src/AzureTarget.js"
import * as AzureTransport from "../src/AzureTransport.js"
import * as Emulator from "../src/testing.js"
import { SUBSCRIPTION, transportOptions } from "./harness.js"

const writeInventory = (text: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-azure-inventory-"))
      const file = path.join(dir, "inventory.yaml")
      fs.writeFileSync(file, text)
      return file
    }),
    (file) => Effect.sync(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
  )

const text = (c: Outcome.Captured) => Outcome.capturedText(c)

describe("inventories with Azure targets", () => {
  it.live("30 VMs found by tag plus a 5-instance scale set, in one run", () =>
    Effect.scoped(Effect.gen(function*() {
      const emulator = yield* Emulator.make({
        vms: [
          ...Array.from({ length: 30 }, (_, i) => ({ name: `web-${i}`, tags: { role: "web", env: "prod" } })),
          ...Array.from({ length: 5 }, (_, i) => ({ name: `db-${i}`, tags: { role: "db" } })),
          { name: "web-old", tags: { role: "web" }, powerState: "deallocated" as const }
        ],
        scaleSets: [
          { name: "webss", instances: 5, tags: { role: "web" } },
          { name: "batch", instances: 3, tags: { role: "batch" } }
        ]
      })
      const file = yield* writeInventory(`imports:
  - azure: { subscription: ${SUBSCRIPTION}, tags: { role: web } }
    group: web
    labels: { source: azure }
`)
      const options = transportOptions(emulator)
      const targets = Layer.mergeAll(
        Targets.layerInventory(file, AzureTarget.kinds),
        AzureDiscovery.layerImporter(options)
      ).pipe(Layer.provide(NodeFileSystem.layer))
      const report = yield* Runner.runJob(ScriptSource.job(ScriptSource.script("echo \"on $RUNCMD_TARGET\"\n")), {
        policy: { concurrency: 40 }
      }).pipe(Effect.provide(Layer.merge(targets, AzureTransport.layer(options))))
      const byKind = { vm: 0, vmss: 0 }
      for (const o of report.outcomes) {
        if (o.targetId === "web-old") {
          assert.strictEqual(o._tag, "Unreachable", "a deallocated VM is Unreachable")
          continue
        }
        assert.strictEqual(o._tag, "Succeeded", JSON.stringify(o))
        if (o.targetId.startsWith("webss")) byKind.vmss++
        else byKind.vm++
      }
      assert.deepStrictEqual(byKind, { vm: 30, vmss: 5 })
      assert.strictEqual(report.outcomes.length, 36)
      const executions = emulator.executions()
      assert.strictEqual(Object.keys(executions).length, 35)
      assert.isTrue(Object.values(executions).every((n) => n === 1), "each ran once")
      assert.isUndefined(executions["db-0"], "untagged VMs are not targets")
      const listing = yield* Targets.list.pipe(Effect.provide(targets))
      const ss = listing.targets.find((t) => t.id === "webss_0")!
      assert.strictEqual(ss.kind, "azure-vmss-vm")
      assert.deepStrictEqual(
        {
          group: ss.labels.group,
          source: ss.labels.source,
          set: ss.labels["azure-scale-set"],
          power: ss.labels["azure-power-state"]
        },
        { group: "web", source: "azure", set: "webss", power: "running" }
      )
    })), 180_000)

  it.live("flexible scale sets expand into their member VMs", () =>
    Effect.scoped(Effect.gen(function*() {
      const emulator = yield* Emulator.make({
        vms: 0,
        scaleSets: [{ name: "flex", instances: 3, orchestrationMode: "Flexible", tags: { role: "api" } }]
      })
      const arm = yield* AzureTransport.makeArm(transportOptions(emulator))
      const found = yield* AzureDiscovery.discover(arm, { subscription: SUBSCRIPTION, tags: { role: "api" } })
      assert.strictEqual(found.length, 3)
      for (const t of found) {
        assert.strictEqual(t.kind, "azure-vm")
        assert.strictEqual(t.labels["azure-scale-set"], "flex")
      }
    })), 60_000)

  it.live("a bad azure import names the field", () =>
    Effect.scoped(Effect.gen(function*() {
      const file = yield* writeInventory(`imports:\n  - azure: { subscription: not-a-guid }\n`)
      const listed = yield* Effect.either(
        Targets.list.pipe(
          Effect.provide(
            Layer.mergeAll(
              Targets.layerInventory(file, AzureTarget.kinds),
              AzureDiscovery.layerImporter({ credential: Emulator.credential })
            )
              .pipe(Layer.provide(NodeFileSystem.layer))
          )
        )
      )
      assert.isTrue(listed._tag === "Left")
      if (listed._tag === "Left") assert.include(listed.left.message, "subscription")
    })), 30_000)
})

describe.skipIf(!Sshd.enabled())("one inventory mixing azure-vm, ssh and local", () => {
  it.live("one run reaches all three kinds", () =>
    Effect.scoped(Effect.gen(function*() {
      const emulator = yield* Emulator.make({ vms: 1 })
      const sshd = yield* Sshd.scoped({})
      const ssh = sshd.target({ id: "ssh-1" })
      const file = yield* writeInventory(`targets:
  - { id: azure-1, kind: azure-vm, subscription: ${SUBSCRIPTION}, resourceGroup: ${emulator.resourceGroup}, vmName: vm-0 }
  - ${JSON.stringify(Schema.encodeSync(SshTarget.SshTarget)(ssh))}
  - { id: local-1, kind: local }
`)
      const layer = Layer.mergeAll(
        Targets.layerInventory(file, [Target.Local, SshTarget.SshTarget, ...AzureTarget.kinds]).pipe(
          Layer.provide(NodeFileSystem.layer)
        ),
        AzureTransport.layer(transportOptions(emulator)),
        SshTransport.layer(),
        LocalTransport.layer()
      )
      const report = yield* Runner.runJob(ScriptSource.job(ScriptSource.script("echo \"hello from $0\"\n"))).pipe(
        Effect.provide(layer)
      )
      assert.deepStrictEqual(report.outcomes.map((o) => [o.targetId, o._tag]), [
        ["azure-1", "Succeeded"],
        ["ssh-1", "Succeeded"],
        ["local-1", "Succeeded"]
      ])
      for (const o of report.outcomes) assert.include(text(o.stdout), "hello from")
      assert.strictEqual(emulator.executions()["vm-0"], 1)
    })), 120_000)
})
