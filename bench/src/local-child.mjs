// A child for the `local` benchmark's profile step (plain node, no tsx: nothing but the measured path runs):
//   node src/local-child.mjs <variant> <n>
// variants: transport (LocalTransport.make + Transport.run), runner (Runner.run, one Local target), execa-shell.
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as LocalTransport from "@runcmd/transport-local/LocalTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Scope from "effect/Scope"
import { execa } from "execa"

const [variant = "transport", nArg = "20"] = process.argv.slice(2)
const n = Number(nArg)

if (variant === "execa-shell") {
  for (let i = 0; i < n; i++) await execa("true", { shell: true })
} else if (variant === "transport") {
  const scope = Effect.runSync(Scope.make())
  const transport = Effect.runSync(Scope.extend(LocalTransport.make(), scope))
  const target = Target.local("local")
  const invocation = {
    runId: "bench",
    attempt: 1,
    source: ScriptSource.command("true"),
    args: [],
    env: {},
    secrets: {},
    killGrace: Duration.seconds(2)
  }
  for (let i = 0; i < n; i++) {
    const r = await Effect.runPromise(transport.run(target, invocation))
    if (r.exit._tag !== "Exited" || r.exit.code !== 0) throw new Error(`unexpected exit ${JSON.stringify(r.exit)}`)
  }
  await Effect.runPromise(Scope.close(scope, Exit.void))
} else if (variant === "runner") {
  const runtime = ManagedRuntime.make(LocalTransport.layer())
  const plan = RunPlan.make({ targets: [Target.local("local")], job: ScriptSource.job(ScriptSource.command("true")) })
  for (let i = 0; i < n; i++) {
    const report = await runtime.runPromise(Runner.run(plan))
    if (report.summary.byOutcome.Succeeded !== 1) throw new Error("not succeeded")
  }
  await runtime.dispose()
} else {
  throw new Error(`unknown variant ${variant}`)
}
