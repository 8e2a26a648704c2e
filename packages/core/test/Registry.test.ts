import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Target } from "../src/Target.js"
import { drive, InMemoryTransport, Step } from "../src/testing.js"
import * as Transport from "../src/Transport.js"

const target = (id: string, kind: string): Target => ({ kind, id, labels: {}, os: "linux" })
const plan = RunPlan.make({
  targets: [target("a", "alpha"), target("b", "beta")],
  job: ScriptSource.job(ScriptSource.command("true"))
})
const alpha = InMemoryTransport.layer({ name: "alpha-memory", kinds: ["alpha"], default: [Step.exit(0)] })
const beta = InMemoryTransport.layer({ name: "beta-memory", kinds: ["beta"], default: [Step.exit(3)] })
const outcomes = (report: { readonly outcomes: ReadonlyArray<{ readonly _tag: string }> }) =>
  report.outcomes.map((o) => o._tag)

describe("Transport.Registry: one registry however the layers are provided", () => {
  it.effect("two Effect.provide calls keep both transports, in either order", () =>
    Effect.gen(function*() {
      const inner = yield* drive(Runner.run(plan)).pipe(Effect.provide(alpha), Effect.provide(beta))
      const outer = yield* drive(Runner.run(plan)).pipe(Effect.provide(beta), Effect.provide(alpha))
      assert.deepStrictEqual(outcomes(inner), ["Succeeded", "Failed"])
      assert.deepStrictEqual(outcomes(outer), ["Succeeded", "Failed"])
    }))

  it.effect("merged layers share one registry", () =>
    Effect.gen(function*() {
      const report = yield* drive(Runner.run(plan)).pipe(Effect.provide(Layer.merge(alpha, beta)))
      assert.deepStrictEqual(outcomes(report), ["Succeeded", "Failed"])
      const kinds = yield* Effect.map(Transport.Registry, (r) => r.kinds()).pipe(
        Effect.provide(Layer.merge(alpha, beta))
      )
      assert.deepStrictEqual(kinds, ["alpha", "beta"])
    }))

  it.effect("an enclosing registry's kinds are listed and routed from an inner one", () =>
    Effect.gen(function*() {
      const registry = yield* Transport.Registry
      assert.deepStrictEqual(registry.kinds(), ["alpha", "beta"])
      assert.strictEqual(Option.map(registry.get("alpha"), (t) => t.name).pipe(Option.getOrNull), "alpha-memory")
      assert.strictEqual(Option.map(registry.get("beta"), (t) => t.name).pipe(Option.getOrNull), "beta-memory")
    }).pipe(Effect.provide(alpha), Effect.provide(beta)))

  it.effect("two transports for one kind fail at layer build time, merged or nested, naming both and the fix", () =>
    Effect.gen(function*() {
      const again = InMemoryTransport.layer({ name: "alpha-again", kinds: ["alpha"] })
      const failure = yield* Effect.flip(Runner.validate(plan).pipe(Effect.provide(again), Effect.provide(alpha)))
      assert.strictEqual(failure._tag, "DuplicateTransport")
      if (failure._tag === "DuplicateTransport") {
        assert.strictEqual(failure.kind, "alpha")
        assert.strictEqual(failure.existing, "alpha-memory")
        assert.strictEqual(failure.added, "alpha-again")
        assert.include(failure.message, "replace: true")
      }
      const mergedFailure = yield* Effect.flip(Effect.provide(Runner.validate(plan), Layer.merge(alpha, again)))
      assert.strictEqual(mergedFailure._tag, "DuplicateTransport")
    }))

  it.effect("replace: true serves the kind with the new transport, in its scope only", () =>
    Effect.gen(function*() {
      const replacement = Transport.layer(
        Effect.succeed(Transport.make({
          name: "replacement",
          kinds: ["alpha"],
          capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: false, native: false },
          start: () =>
            Effect.succeed(Transport.fromStream({
              output: Stream.make({ stream: "stdout" as const, bytes: new TextEncoder().encode("replaced\n") }),
              exit: Effect.succeed(Transport.exited(7))
            }))
        })),
        { replace: true }
      )
      const report = yield* drive(Runner.run(plan)).pipe(
        Effect.provide(replacement),
        Effect.provide(Layer.merge(alpha, beta))
      )
      assert.deepStrictEqual(outcomes(report), ["Failed", "Failed"])
      const first = report.outcomes[0]!
      assert.isTrue(first._tag === "Failed" && first.exitCode === 7)
    }))
})
