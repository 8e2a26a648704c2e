import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Target from "@runcmd/core/Target"
import * as Targets from "@runcmd/core/Targets"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SshConfig from "../src/SshConfig.js"
import * as SshTarget from "../src/SshTarget.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-sshcfg-targets-"))
const config = path.join(dir, "ssh_config")
fs.writeFileSync(
  config,
  "Host web-1 web-2 db-1\n  HostName 127.0.0.1\n  Port 2222\n  User u\n  StrictHostKeyChecking no\n"
)
const inventory = path.join(dir, "inventory.yaml")
fs.writeFileSync(
  inventory,
  "targets:\n  - { id: box, kind: local, labels: { role: web } }\nimports:\n  - sshConfig: ./ssh_config\n    hosts: db-1\n    labels: { role: db }\n"
)
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
const kinds = [Target.Local, SshTarget.SshTarget]
const ids = (targets: ReadonlyArray<Target.Target>) => targets.map((t) => t.id)

describe("SshConfig as a source of Targets", () => {
  it.effect("SshConfig.layer: the config's hosts, labelled, narrowed by hosts; the selector applies as to any source", () =>
    Effect.gen(function*() {
      const listing = yield* Targets.list
      assert.deepStrictEqual(ids(listing.targets), ["box", "web-1", "web-2"])
      assert.deepStrictEqual(listing.sources.map((s) => s.name), ["static targets", `ssh_config ${config}`])
      const web = yield* Targets.select("role=web,kind=ssh")
      assert.deepStrictEqual(ids(web), ["web-1", "web-2"])
      const first = web[0] as SshTarget.SshTarget
      assert.deepStrictEqual([first.host, first.port, first.user], ["127.0.0.1", 2222, "u"])
      assert.deepStrictEqual(first.labels, { role: "web", "ssh-config-host": "web-1" })
    }).pipe(Effect.provide(Layer.mergeAll(
      Targets.layer([Target.local("box", { role: "web" })]),
      SshConfig.layer(config, { hosts: ["web-*"], labels: { role: "web" } })
    ))))

  it.effect("a host also given by another source is a DuplicateTargetId", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Targets.list)
      assert.strictEqual(error._tag, "TargetsError")
      assert.match(error.message, /"web-1" is given by static targets and by ssh_config/)
    }).pipe(Effect.provide(Layer.mergeAll(Targets.layer([Target.local("web-1")]), SshConfig.layer(config)))))

  it.effect("SshConfig.layerImporter: an inventory's `imports: [{ sshConfig }]` read through Targets.layerInventory", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(ids(yield* Targets.select("role=db")), ["db-1"])
      assert.deepStrictEqual(ids(yield* Targets.select("role")), ["box", "db-1"])
    }).pipe(Effect.provide(
      Layer.mergeAll(Targets.layerInventory(inventory, kinds), SshConfig.layerImporter).pipe(
        Layer.provide(NodeFileSystem.layer)
      )
    )))

  it.effect("an unreadable config is an InvalidPlan naming the file, when the targets are listed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Targets.list)
      assert.strictEqual(error._tag, "InvalidPlan")
      assert.include(error.message, path.join(dir, "nope"))
    }).pipe(Effect.provide(SshConfig.layer(path.join(dir, "nope")))))
})
