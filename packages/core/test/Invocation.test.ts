import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Target } from "../src/Target.js"
import { drive, InMemory, InMemoryTransport } from "../src/testing.js"

const target = (id: string, env?: Record<string, string>): Target => ({
  kind: "memory",
  id,
  labels: {},
  os: "linux",
  ...(env === undefined ? {} : { env })
})
const plan = RunPlan.make({
  targets: [target("a", { REGION: "eu", SHARED: "from-target" }), target("b")],
  job: ScriptSource.job(ScriptSource.script("echo"), {
    args: ["x"],
    env: { SHARED: "from-job" },
    secrets: { TOKEN: Redacted.make("t0k3n") }
  }),
  policy: { killGrace: Duration.seconds(2), cwd: "/srv" },
  runId: "run-1"
})

describe("the Invocation core builds (one builder, for the Runner and Runner.preview)", () => {
  it.effect("a target's env under the job's: the job wins a clash; the rest of the invocation from job and policy", () =>
    Effect.gen(function*() {
      const preview = yield* Runner.preview(plan)
      assert.strictEqual(preview.runId, "run-1")
      const [a, b] = preview.targets
      assert.deepStrictEqual(a!.invocation.env, { REGION: "eu", SHARED: "from-job" })
      assert.deepStrictEqual(b!.invocation.env, { SHARED: "from-job" })
      assert.strictEqual(a!.transport, "memory")
      assert.strictEqual(a!.invocation.attempt, 1)
      assert.deepStrictEqual(a!.invocation.args, ["x"])
      assert.strictEqual(a!.invocation.cwd, "/srv")
      assert.deepStrictEqual(a!.invocation.killGrace, Duration.seconds(2))
      assert.strictEqual(Redacted.value(a!.invocation.secrets["TOKEN"]!), "t0k3n")

      // what the transport receives when the plan runs is the same
      yield* drive(Runner.run(plan))
      const memory = yield* InMemory
      const starts = yield* memory.starts
      const byId = Object.fromEntries(starts.map((s) => [s.targetId, s.invocation]))
      assert.deepStrictEqual(byId["a"]!.env, a!.invocation.env)
      assert.deepStrictEqual(byId["b"]!.env, b!.invocation.env)
    }).pipe(Effect.provide(InMemoryTransport.layer())))
})
