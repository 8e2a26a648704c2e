/**
 * A consumer's plain run with the local transport, through the root entries of the packed packages.
 */
import { assert, it } from "@effect/vitest"
import { Outcome, Runner, RunPlan, RunReport, ScriptSource, Target } from "@runcmd/core"
import { LocalTransport } from "@runcmd/transport-local"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"

it.live("Runner.run with @runcmd/transport-local", () =>
  Effect.gen(function*() {
    const report = yield* Runner.run(RunPlan.make({
      targets: [Target.local("a"), Target.local("b")],
      job: ScriptSource.job(ScriptSource.script("echo \"hello $NAME\"; test \"$TOKEN\" = s3cret"), {
        env: { NAME: "consumer" },
        secrets: { TOKEN: Redacted.make("s3cret") }
      })
    }))
    assert.deepStrictEqual(report.outcomes.map((o) => o._tag), ["Succeeded", "Succeeded"])
    assert.strictEqual(Outcome.capturedText(report.outcomes[0]!.stdout), "hello consumer\n")
    assert.isTrue(RunReport.isSuccess(report))
    assert.notInclude(RunReport.encodeJson(report), "s3cret")
  }).pipe(Effect.provide(LocalTransport.layer())))
