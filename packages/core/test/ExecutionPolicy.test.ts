import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ExecutionPolicy from "../src/ExecutionPolicy.js"

const fromEnv = (env: Record<string, string>) =>
  Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("ExecutionPolicy precedence", () => {
  it("flag > plan > inventory > layer > built-in, field by field", () => {
    const policy = ExecutionPolicy.resolve({
      layer: { concurrency: 2, timeout: Duration.seconds(1), killGrace: Duration.seconds(2), maxErrors: 1, cwd: "/l" },
      inventory: { concurrency: 3, timeout: Duration.seconds(3), killGrace: Duration.seconds(3) },
      plan: { concurrency: 4, timeout: Duration.seconds(4) },
      flags: { concurrency: 5 }
    })
    assert.strictEqual(policy.concurrency, 5) // flag
    assert.deepStrictEqual(policy.timeout, Duration.seconds(4)) // plan
    assert.deepStrictEqual(policy.killGrace, Duration.seconds(3)) // inventory
    assert.strictEqual(policy.maxErrors, 1) // layer
    assert.strictEqual(policy.cwd, "/l") // layer
    assert.strictEqual(policy.idempotent, false) // built-in
    assert.deepStrictEqual(policy.retry, ExecutionPolicy.defaults.retry) // built-in
    assert.strictEqual(policy.deadline, undefined)
  })

  it("undefined does not set a field; retry merges by its own fields", () => {
    const policy = ExecutionPolicy.resolve({
      layer: { retry: { times: 3, backoff: Duration.millis(10) } },
      plan: { retry: { times: 1 }, concurrency: undefined }
    })
    assert.deepStrictEqual(policy.retry, { times: 1, backoff: Duration.millis(10), factor: 2 })
    assert.strictEqual(policy.concurrency, 10)
  })

  it.effect("current reads the Defaults in scope; nested layers override field by field", () =>
    Effect.gen(function*() {
      const bare = yield* ExecutionPolicy.current()
      assert.deepStrictEqual(bare, ExecutionPolicy.defaults)
      const policy = yield* ExecutionPolicy.current({ plan: { timeout: Duration.seconds(9) } }).pipe(
        Effect.provide(ExecutionPolicy.layer({ concurrency: 2 })),
        Effect.provide(ExecutionPolicy.layer({ concurrency: 7, maxErrors: 1, timeout: Duration.seconds(1) }))
      )
      assert.strictEqual(policy.concurrency, 2)
      assert.strictEqual(policy.maxErrors, 1)
      assert.deepStrictEqual(policy.timeout, Duration.seconds(9))
    }))
})

describe("ExecutionPolicy.layerConfig", () => {
  it.effect("reads RUNCMD_* variables", () =>
    Effect.gen(function*() {
      const policy = yield* ExecutionPolicy.current({ plan: { maxErrors: 0 } }).pipe(
        Effect.provide(
          ExecutionPolicy.layerConfig().pipe(Layer.provide(fromEnv({
            RUNCMD_CONCURRENCY: "20%",
            RUNCMD_TIMEOUT: "30s",
            RUNCMD_DEADLINE: "10m",
            RUNCMD_KILL_GRACE: "250ms",
            RUNCMD_RETRY: "2",
            RUNCMD_RETRY_BACKOFF: "2s",
            RUNCMD_MAX_ERRORS: "3",
            RUNCMD_BATCH: "5",
            RUNCMD_IDEMPOTENT: "true",
            RUNCMD_CWD: "/srv",
            RUNCMD_RUN_AS: "deploy",
            RUNCMD_BECOME_METHOD: "doas"
          })))
        )
      )
      assert.strictEqual(policy.concurrency, "20%")
      assert.deepStrictEqual(policy.timeout, Duration.seconds(30))
      assert.deepStrictEqual(policy.deadline, Duration.minutes(10))
      assert.deepStrictEqual(policy.killGrace, Duration.millis(250))
      assert.deepStrictEqual(policy.retry, { times: 2, backoff: Duration.seconds(2), factor: 2 })
      assert.strictEqual(policy.maxErrors, 0) // the plan wins over the layer
      assert.strictEqual(policy.batchSize, 5)
      assert.strictEqual(policy.idempotent, true)
      assert.strictEqual(policy.cwd, "/srv")
      assert.deepStrictEqual(policy.runAs, { user: "deploy", method: "doas" })
    }))

  it.effect("no variable set: the built-in defaults", () =>
    Effect.gen(function*() {
      const policy = yield* ExecutionPolicy.current().pipe(
        Effect.provide(ExecutionPolicy.layerConfig().pipe(Layer.provide(fromEnv({}))))
      )
      assert.deepStrictEqual(policy, ExecutionPolicy.defaults)
    }))

  it.effect("a value that does not decode is a ConfigError naming its key", () =>
    Effect.gen(function*() {
      for (
        const [key, value, expected] of [
          ["RUNCMD_CONCURRENCY", "0", /concurrency must be a whole number/],
          ["RUNCMD_CONCURRENCY", "lots", /concurrency must be/],
          ["RUNCMD_TIMEOUT", "soon", /expected a non-negative duration/],
          ["RUNCMD_RETRY", "-1", /RUNCMD_RETRY/],
          ["RUNCMD_MAX_ERRORS", "200%", /max-errors/],
          ["RUNCMD_IDEMPOTENT", "perhaps", /RUNCMD_IDEMPOTENT/],
          ["RUNCMD_RUN_AS", "bad user", /plain user name/],
          ["RUNCMD_BECOME_METHOD", "pkexec", /RUNCMD_BECOME_METHOD/]
        ] as const
      ) {
        const error = yield* Effect.flip(
          Layer.build(ExecutionPolicy.layerConfig().pipe(Layer.provide(fromEnv({ [key]: value })))).pipe(Effect.scoped)
        )
        assert.include(String(error), key, String(error))
        assert.match(String(error), expected)
      }
    }))
})
