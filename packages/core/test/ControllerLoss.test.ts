import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ExecutionPolicy from "../src/ExecutionPolicy.js"
import * as Inventory from "../src/Inventory.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as ScriptSource from "../src/ScriptSource.js"
import * as Target from "../src/Target.js"
import { InMemoryTransport } from "../src/testing.js"
import * as Transport from "../src/Transport.js"

const fromEnv = (env: Record<string, string>) =>
  Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

const memory = (id: string, onControllerLoss?: ExecutionPolicy.OnControllerLoss): Target.Target => ({
  kind: "memory",
  id,
  labels: {},
  os: "linux",
  ...(onControllerLoss === undefined ? {} : { onControllerLoss })
})

describe("onControllerLoss", () => {
  it("defaults to terminate; resolved with the policy's precedence; a target's own field wins for it", () => {
    assert.strictEqual(ExecutionPolicy.defaults.onControllerLoss, "terminate")
    const policy = ExecutionPolicy.resolve({
      layer: { onControllerLoss: "continue" },
      inventory: { onControllerLoss: "terminate" },
      plan: { onControllerLoss: "continue" }
    })
    assert.strictEqual(policy.onControllerLoss, "continue")
    assert.strictEqual(ExecutionPolicy.forTarget(policy, memory("a")), "continue")
    assert.strictEqual(ExecutionPolicy.forTarget(policy, memory("b", "terminate")), "terminate")
  })

  it.effect("RUNCMD_ON_CONTROLLER_LOSS sets the layer level; a bad value is a ConfigError naming the key", () =>
    Effect.gen(function*() {
      const policy = yield* ExecutionPolicy.current().pipe(
        Effect.provide(
          ExecutionPolicy.layerConfig().pipe(
            Layer.provide(fromEnv({ RUNCMD_ON_CONTROLLER_LOSS: "continue" }))
          )
        )
      )
      assert.strictEqual(policy.onControllerLoss, "continue")
      const error = yield* Effect.flip(
        Layer.build(
          ExecutionPolicy.layerConfig().pipe(
            Layer.provide(fromEnv({ RUNCMD_ON_CONTROLLER_LOSS: "linger" }))
          )
        ).pipe(Effect.scoped)
      )
      assert.include(String(error), "RUNCMD_ON_CONTROLLER_LOSS")
    }))

  it.effect("the Invocation carries each target's value (Runner.preview: what the transport receives)", () =>
    Effect.gen(function*() {
      const plan = RunPlan.make({
        targets: [memory("a"), memory("b", "terminate")],
        job: ScriptSource.job(ScriptSource.command("true")),
        policy: { onControllerLoss: "continue" }
      })
      const preview = yield* Runner.preview(plan)
      assert.deepStrictEqual(preview.targets.map((t) => t.invocation.onControllerLoss), ["continue", "terminate"])
    }).pipe(Effect.provide(InMemoryTransport.layer())))

  it.effect("an inventory sets it in policy: and per target; a bad value names its place", () =>
    Effect.gen(function*() {
      const text = [
        "policy: { onControllerLoss: continue }",
        "targets:",
        "  - { id: a, kind: local }",
        "  - { id: b, kind: local, onControllerLoss: terminate }",
        ""
      ].join("\n")
      const inventory = yield* Inventory.parse(text, "inv.yaml", [Target.Local])
      assert.strictEqual(inventory.policy?.onControllerLoss, "continue")
      assert.deepStrictEqual(inventory.targets.map((t) => t.onControllerLoss), [undefined, "terminate"])
      const bad = yield* Effect.flip(
        Inventory.parse("policy: { onControllerLoss: linger }\n", "inv.yaml", [Target.Local])
      )
      assert.include(bad.path, "policy.onControllerLoss")
    }))

  it.effect("a transport answers per target whether it terminates; the answer narrows its capability", () =>
    Effect.gen(function*() {
      const perTarget = (target: Target.Target) => target.id !== "windows-host"
      const narrowed = yield* InMemoryTransport.make({
        capabilities: { terminatesOnControllerLoss: true },
        terminatesOnControllerLoss: perTarget
      })
      assert.isTrue(Transport.terminatesOnControllerLoss(narrowed.transport, memory("linux-host")))
      assert.isFalse(Transport.terminatesOnControllerLoss(narrowed.transport, memory("windows-host")))
      // never widened: a transport that cannot terminate cannot for any target
      const cannot = yield* InMemoryTransport.make({ terminatesOnControllerLoss: () => true })
      assert.isFalse(Transport.terminatesOnControllerLoss(cannot.transport, memory("linux-host")))
      // no per-target answer: the capability for every target
      const every = yield* InMemoryTransport.make({ capabilities: { terminatesOnControllerLoss: true } })
      assert.isTrue(Transport.terminatesOnControllerLoss(every.transport, memory("windows-host")))
    }))
})
