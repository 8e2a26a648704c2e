// A child for the ssh-sequential profile step (plain node, no tsx): n executions of `true` over runcmd's SSH
// transport, target from BENCH_SSH_TARGET (JSON: host, port, user, keyPath, knownHosts).
//   node src/ssh-child.mjs <n>
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as SshTarget from "@runcmd/transport-ssh/SshTarget"
import * as SshTransport from "@runcmd/transport-ssh/SshTransport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"

const n = Number(process.argv[2] ?? "100")
const t = JSON.parse(process.env.BENCH_SSH_TARGET ?? "{}")
const target = SshTarget.make({
  host: t.host,
  port: t.port,
  user: t.user,
  auth: SshTarget.keyFile(t.keyPath),
  hostKey: { policy: "strict", knownHosts: [t.knownHosts] }
})
const invocation = {
  runId: "bench",
  attempt: 1,
  source: ScriptSource.command("true"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(2)
}
const scope = Effect.runSync(Scope.make())
const transport = Effect.runSync(Scope.extend(SshTransport.make(), scope))
try {
  for (let i = 0; i < n; i++) {
    const r = await Effect.runPromise(transport.run(target, invocation))
    if (r.exit._tag !== "Exited" || r.exit.code !== 0) throw new Error(`unexpected exit ${JSON.stringify(r.exit)}`)
  }
} finally {
  await Effect.runPromise(Scope.close(scope, Exit.void))
}
