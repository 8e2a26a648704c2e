/**
 * The real-process path of the conformance suite, against a minimal reference transport built on
 * node:child_process in this file (not a product: transport-local is the real one). It proves the suite's sh
 * scripts, process checks and cleanup work on a POSIX host, independently of the transport packages.
 */
import * as Target from "@runcmd/core/Target"
import { conformance } from "@runcmd/core/testing"
import * as Transport from "@runcmd/core/Transport"
import { TransportError } from "@runcmd/core/TransportError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import { spawn } from "node:child_process"
import type { RawChunk } from "@runcmd/core/OutputChunk"

const NAME = "reference-child-process"

const signalGroup = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pid, signal)
  } catch {
    // already gone
  }
}

const start = (target: Target.Target, inv: Transport.Invocation) =>
  Effect.gen(function*() {
    const source = inv.source
    const [file, argv] = source._tag === "Command"
      ? [source.argv[0], [...source.argv.slice(1), ...inv.args]]
      : source._tag === "Script"
      ? ["sh", ["-c", source.text, "sh", ...inv.args]]
      : ["", []]
    const secrets = Object.fromEntries(Object.entries(inv.secrets).map(([k, v]) => [k, Redacted.value(v)]))
    const output = yield* Queue.unbounded<Take.Take<RawChunk, TransportError>>()
    const exited = yield* Deferred.make<Transport.ExitStatus, TransportError>()
    const closed = yield* Deferred.make<void>()
    const child = spawn(file, argv, {
      cwd: inv.cwd,
      env: { ...process.env, ...inv.env, ...secrets },
      detached: true,
      stdio: ["pipe", "pipe", "pipe"]
    })
    // one outcome of the spawn, no race (start may run where interruption is off)
    const spawned = yield* Deferred.make<TransportError | undefined>()
    child.on("error", (cause) =>
      Deferred.unsafeDone(
        spawned,
        Effect.succeed(
          new TransportError({
            reason: "SpawnFailed",
            transport: NAME,
            phase: "delivery",
            description: cause.message,
            targetId: target.id
          })
        )
      ))
    child.on("spawn", () => Deferred.unsafeDone(spawned, Effect.succeed(undefined)))
    const failed = yield* Deferred.await(spawned)
    if (failed !== undefined) return yield* Effect.fail(failed)
    const pid = child.pid!
    child.stdout.on("data", (b: Buffer) => Queue.unsafeOffer(output, Take.of({ stream: "stdout", bytes: new Uint8Array(b) })))
    child.stderr.on("data", (b: Buffer) => Queue.unsafeOffer(output, Take.of({ stream: "stderr", bytes: new Uint8Array(b) })))
    let open = 2
    const onEnd = () => {
      if (--open === 0) Deferred.unsafeDone(closed, Effect.void)
    }
    child.stdout.on("close", onEnd)
    child.stderr.on("close", onEnd)
    let done = false
    child.on("exit", (code, signal) => {
      done = true
      Deferred.unsafeDone(
        exited,
        signal !== null
          ? Effect.succeed(Transport.signaled(signal))
          : code !== null
          ? Effect.succeed(Transport.exited(code))
          : Effect.fail(
            new TransportError({ reason: "Unknown", transport: NAME, phase: "execution", description: "no exit status" })
          )
      )
    })
    child.stdin.on("error", () => {})
    child.stdin.end(inv.stdin === undefined ? undefined : Buffer.from(inv.stdin))

    // the stream ends when both pipes closed, or 1 s after the exit (a grandchild holding a pipe: kill the group)
    yield* Effect.forkScoped(Effect.interruptible(
      Effect.gen(function*() {
        yield* Effect.exit(Deferred.await(exited))
        const closedInTime = yield* Effect.timeoutOption(Deferred.await(closed), Duration.seconds(1))
        if (closedInTime._tag === "None") {
          signalGroup(pid, "SIGKILL")
          child.stdout.destroy()
          child.stderr.destroy()
        }
        yield* Queue.offer(output, Take.end)
      })
    ))
    let confirmed = true
    // finalizers run uninterruptibly: what a timeout may cut short must be made interruptible
    const awaitExit = Effect.interruptible(Effect.exit(Deferred.await(exited)))
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (done) {
          signalGroup(pid, "SIGKILL")
          return
        }
        signalGroup(pid, "SIGTERM")
        const gone = yield* Effect.timeoutOption(awaitExit, inv.killGrace)
        signalGroup(pid, "SIGKILL")
        if (gone._tag === "None") {
          const killed = yield* Effect.timeoutOption(awaitExit, Duration.seconds(5))
          confirmed = killed._tag === "Some"
        }
        child.stdout.destroy()
        child.stderr.destroy()
      })
    )
    const raw: Transport.RawExecution = Transport.fromStream({
      output: Stream.fromQueue(output).pipe(Stream.flattenTake),
      exit: Deferred.await(exited),
      killConfirmed: Effect.sync(() => confirmed)
    })
    return raw
  })

const reference = Transport.layer(Effect.succeed(Transport.make({
  name: NAME,
  kinds: ["local"],
  capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: false, native: false },
  start
})))

await conformance("reference child_process transport", reference, {
  targets: (n) => Array.from({ length: n }, (_, i) => Target.local(`ref-${i}`))
})
