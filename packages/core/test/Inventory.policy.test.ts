import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as ExecutionPolicy from "../src/ExecutionPolicy.js"
import * as Inventory from "../src/Inventory.js"
import * as Runner from "../src/Runner.js"
import * as ScriptSource from "../src/ScriptSource.js"
import * as Target from "../src/Target.js"
import * as Targets from "../src/Targets.js"

const parse = (text: string) => Inventory.parse(text, "inventory.yaml", [Target.Local])

describe("Inventory policy:", () => {
  it.effect("keeps the fields written, decoded as a plan's", () =>
    Effect.gen(function*() {
      const inv = yield* parse(
        "targets: [{ id: a, kind: local }]\npolicy:\n  concurrency: 20%\n  timeout: 2m\n  retry: { times: 2 }\n"
      )
      assert.deepStrictEqual(inv.policy, { concurrency: "20%", timeout: Duration.minutes(2), retry: { times: 2 } })
      const none = yield* parse("targets: [{ id: a, kind: local }]\n")
      assert.strictEqual(none.policy, undefined)
      // the inventory level: under the plan's, over the layer's, retry merged by field
      const policy = ExecutionPolicy.resolve({
        layer: { concurrency: 3, retry: { backoff: Duration.millis(5) } },
        inventory: inv.policy,
        plan: { timeout: Duration.seconds(1) }
      })
      assert.strictEqual(policy.concurrency, "20%")
      assert.deepStrictEqual(policy.timeout, Duration.seconds(1))
      assert.deepStrictEqual(policy.retry, { times: 2, backoff: Duration.millis(5), factor: 2 })
    }))

  it.effect("a bad field is an InvalidInventory at its place; no password in a file", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(parse("targets: [{ id: a, kind: local }]\npolicy:\n  concurrency: 0\n"))
      assert.strictEqual(bad.reason, "InvalidInventory")
      assert.strictEqual(bad.path, "inventory.yaml: policy.concurrency")
      assert.match(bad.description, /concurrency must be a whole number/)
      assert.match(bad.description, /line 3/)
      const unknown = yield* Effect.flip(parse("targets: [{ id: a, kind: local }]\npolicy: { parallel: 3 }\n"))
      assert.strictEqual(unknown.path, "inventory.yaml: policy.parallel")
      assert.match(unknown.description, /unknown policy field/)
      const password = yield* Effect.flip(
        parse("targets: [{ id: a, kind: local }]\npolicy: { runAs: { user: root, password: hunter2 } }\n")
      )
      assert.strictEqual(password.path, "inventory.yaml: policy.runAs.password")
      assert.notInclude(password.message, "hunter2")
      const list = yield* Effect.flip(parse("targets: [{ id: a, kind: local }]\npolicy: [1]\n"))
      assert.strictEqual(list.path, "inventory.yaml: policy")
    }))

  it.effect("Runner.planJob: flag > plan > inventory (Targets.layerInventory) > layer > built-in", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-inv-policy-"))
      try {
        const file = path.join(dir, "inventory.yaml")
        fs.writeFileSync(
          file,
          "targets: [{ id: a, kind: local }]\npolicy: { concurrency: 4, timeout: 4s, killGrace: 4s, maxErrors: 4 }\n"
        )
        const plan = yield* Runner.planJob(ScriptSource.job(ScriptSource.command("x")), {
          policy: { timeout: Duration.seconds(2), killGrace: Duration.seconds(2) },
          policyLevels: { flags: { killGrace: Duration.seconds(1) } }
        }).pipe(Effect.provide(Layer.mergeAll(
          Targets.layerInventory(file, [Target.Local]).pipe(Layer.provide(NodeFileSystem.layer)),
          ExecutionPolicy.layer({ concurrency: 8, maxErrors: 8, cwd: "/srv" })
        )))
        assert.deepStrictEqual(plan.policy.killGrace, Duration.seconds(1)) // flag
        assert.deepStrictEqual(plan.policy.timeout, Duration.seconds(2)) // plan
        assert.strictEqual(plan.policy.concurrency, 4) // inventory
        assert.strictEqual(plan.policy.maxErrors, 4) // inventory
        assert.strictEqual(plan.policy.cwd, "/srv") // layer
        assert.strictEqual(plan.policy.idempotent, false) // built-in
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})
