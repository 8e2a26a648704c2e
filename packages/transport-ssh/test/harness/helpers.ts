/**
 * Small helpers shared by the SSH tests: invocations, plans through the Runner, outcome text.
 */
import type * as ExecutionPolicy from "@runcmd/core/ExecutionPolicy"
import * as Outcome from "@runcmd/core/Outcome"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import type { RunReport } from "@runcmd/core/RunReport"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import type * as Target from "@runcmd/core/Target"
import type * as Transport from "@runcmd/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as cp from "node:child_process"
import * as net from "node:net"

export const encoder = new TextEncoder()
export const decoder = new TextDecoder()
export const text = (b: Uint8Array) => decoder.decode(b)

/** An invocation for `transport.start` / `transport.run`. */
export const invocation = (
  source: ScriptSource.ResolvedSource,
  extra: Partial<Transport.Invocation> = {}
): Transport.Invocation => ({
  runId: "test",
  attempt: 1,
  source,
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  ...extra
})

export const sh = (script: string, extra: Partial<Transport.Invocation> = {}) =>
  invocation(ScriptSource.script(script), extra)

/** Runs a plan through the Runner. */
export const run = (
  targets: ReadonlyArray<Target.Target>,
  job: ScriptSource.Job | string,
  policy: Partial<ExecutionPolicy.ExecutionPolicy> = {}
): Effect.Effect<RunReport, never, Transport.Registry> =>
  Runner.run(
    RunPlan.make({
      targets,
      job: typeof job === "string" ? ScriptSource.job(ScriptSource.script(job)) : job,
      policy
    })
  ).pipe(Effect.orDie)

/** One line per outcome, for assertion messages. */
export const describeOutcome = (o: Outcome.Outcome): string => {
  const base = `${o.targetId}: ${o._tag}`
  switch (o._tag) {
    case "Failed":
      return `${base}(${o.exitCode}) stderr=${JSON.stringify(Outcome.capturedText(o.stderr).slice(-300))}`
    case "Unreachable":
    case "Rejected":
    case "TransportFailed":
      return `${base}(${o.error.reason}: ${o.error.message})`
    case "TimedOut":
      return `${base}(killConfirmed=${o.killConfirmed})`
    default:
      return base
  }
}

export const describeReport = (r: RunReport): string => r.outcomes.map(describeOutcome).join("\n")

export const stdoutOf = (o: Outcome.Outcome): string => Outcome.capturedText(o.stdout)
export const stderrOf = (o: Outcome.Outcome): string => Outcome.capturedText(o.stderr)

/** RSS and heap in MiB. */
export const memory = () => {
  const m = process.memoryUsage()
  return { rss: m.rss / 1048576, heap: m.heapUsed / 1048576 }
}

/** A TCP server on loopback that accepts and then does `behaviour` with each socket; closed by the scope. */
/**
 * A loopback port that takes no connection: a listener in a stopped child process (SIGSTOP: it never accepts) whose
 * accept queue is then filled, so that the kernel drops further SYNs and a connect hangs as to a host that does not
 * answer. Everything (child, sockets) is ended with the scope.
 */
export const blackHole = Effect.acquireRelease(
  Effect.async<{ port: number; child: cp.ChildProcess; sockets: Array<net.Socket> }>((resume) => {
    const child = cp.spawn(process.execPath, [
      "-e",
      `require("net").createServer().listen({ port: 0, host: "127.0.0.1", backlog: 1 }, function () { process.stdout.write(this.address().port + "\\n") })`
    ], { stdio: ["ignore", "pipe", "inherit"] })
    child.stdout!.once("data", (data: Buffer) => {
      const port = Number(data.toString().trim())
      child.kill("SIGSTOP")
      // fill the accept queue (backlog 1: two connections) until a connect no longer completes
      const sockets: Array<net.Socket> = []
      const fill = () => {
        const socket = net.connect({ port, host: "127.0.0.1" })
        sockets.push(socket)
        socket.on("error", () => {})
        const timer = setTimeout(() => resume(Effect.succeed({ port, child, sockets })), 300)
        socket.once("connect", () => {
          clearTimeout(timer)
          if (sockets.length >= 16) resume(Effect.dieMessage("the accept queue never filled"))
          else fill()
        })
      }
      fill()
    })
    child.once("error", (e) => resume(Effect.die(e)))
  }),
  ({ child, sockets }) =>
    Effect.sync(() => {
      for (const s of sockets) s.destroy()
      child.kill("SIGKILL")
    })
)

export const fakeServer = (behaviour: (socket: net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<{ server: net.Server; port: number; sockets: Set<net.Socket> }>((resume) => {
      const sockets = new Set<net.Socket>()
      const server = net.createServer((s) => {
        sockets.add(s)
        s.on("error", () => {})
        s.resume()
        s.on("close", () => sockets.delete(s))
        behaviour(s)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, port: (server.address() as net.AddressInfo).port, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) {
          s.destroy()
        }
        server.close(() =>
          resume(Effect.void)
        )
      })
  )
