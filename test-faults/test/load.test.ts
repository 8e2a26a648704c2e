/**
 * Load: 500 concurrent executions against one sshd with `MaxSessions 10` and `MaxStartups 10:30:60` (past 10
 * unauthenticated connections sshd drops 30% of new ones, rising to all at 60): no failure, no double execution
 * (a marker file per execution).
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import { SshTransport } from "@runcmd/transport-ssh"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as Pattern from "../support/pattern.js"
import * as Sshd from "../support/sshd.js"

const COUNT = 500
const shape = { chunks: 1, lines: 4, pause: 0 }

describe.skipIf(!Sshd.enabled())("load", () => {
  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  it.layer(Sshd.layer({ maxSessions: 10, maxStartups: "10:30:60" }), Sshd.layerOptions)((it) => {
    it.scoped(
      "500 concurrent executions, MaxSessions 10, MaxStartups 10:30:60: all succeed, each once",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const dir = yield* Effect.acquireRelease(
            Effect.sync(Pattern.workDir),
            (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
          )
          const ids = Array.from({ length: COUNT }, (_, i) => `load-${i}`)
          const report = yield* Runner.run(
            RunPlan.make({
              targets: ids.map((id) => ({ ...sshd.target({ id }), env: Pattern.env(dir, id) })),
              job: ScriptSource.job(ScriptSource.script(Pattern.script(shape))),
              policy: { concurrency: COUNT }
            })
          ).pipe(
            Effect.orDie,
            // more connections than MaxStartups lets through at once: the transport must cope with the drops
            Effect.provide(Layer.fresh(SshTransport.layer({ maxConnectionsPerHost: 40 })))
          )
          const failed = report.outcomes.filter((o) => o._tag !== "Succeeded")
          assert.strictEqual(report.outcomes.length, COUNT)
          assert.deepStrictEqual(
            failed.length,
            0,
            `${failed.length} did not succeed:\n${Pattern.describeOutcomes(failed.slice(0, 20))}`
          )
          const twice = ids.filter((id) => Pattern.executions(dir, id) !== 1)
          assert.deepStrictEqual(twice, [], "every script ran exactly once")
          for (const o of report.outcomes) {
            const text = o.stdout.head + o.stdout.tail
            assert.isTrue(text.startsWith(Pattern.expected(o.targetId, shape)), `${o.targetId}: its output`)
          }
        }),
      { timeout: 180_000 }
    )
  })
})
