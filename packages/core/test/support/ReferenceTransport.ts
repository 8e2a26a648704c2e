/**
 * A minimal reference transport on node:child_process for the conformance suite's own tests (not a product:
 * transport-local is the real one). It proves the suite's sh scripts, process checks and cleanup work on a POSIX
 * host, independently of the transport packages.
 *
 * - `killTree: true` (the reference): the execution's processes are its process group and every process carrying
 *   its token (an environment variable every descendant inherits, found in `/proc/<pid>/environ`); a kill TERMs
 *   them, KILLs what is left after the grace, and is confirmed only once none is left.
 * - `killTree: false` (deliberately broken): signals the child's process group only and reports the kill confirmed
 *   once the child exited, whatever is left (a grandchild in a session of its own survives).
 */
import type { RawChunk } from "@runcmd/core/OutputChunk"
import type * as Target from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import { TransportError } from "@runcmd/core/TransportError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import { spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"

export const NAME = "reference-child-process"

/** The environment variable carrying an execution's token. */
export const TOKEN_VARIABLE = "RUNCMD_REFERENCE_TOKEN"

export interface Options {
  /** Kill the whole tree (group and token carriers) and confirm only when none is left (default true). */
  readonly killTree?: boolean | undefined
}

const signal = (pid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

const isDead = (state: string | undefined) => state === undefined || state === "Z" || state === "X" || state === "x"

/** Live processes in the group or carrying `NAME=token` in their environment. */
const members = (pgid: number, token: string): Array<number> => {
  const needle = Buffer.from(`${TOKEN_VARIABLE}=${token}`)
  const out: Array<number> = []
  let entries: Array<string> = []
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return out
  }
  for (const e of entries) {
    const pid = Number(e)
    if (!Number.isSafeInteger(pid) || pid === process.pid) continue
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (isDead(fields[0])) continue
      if (Number(fields[2]) === pgid || fs.readFileSync(`/proc/${pid}/environ`).includes(needle)) out.push(pid)
    } catch {
      // gone, or not ours
    }
  }
  return out
}

const start = (options: Options) => (target: Target.Target, inv: Transport.Invocation) =>
  Effect.gen(function*() {
    const killTree = options.killTree ?? true
    const source = inv.source
    const [file, argv] = source._tag === "Command"
      ? [source.argv[0], [...source.argv.slice(1), ...inv.args]]
      : source._tag === "Script"
      ? ["sh", ["-c", source.text, "sh", ...inv.args]]
      : ["", []]
    const secrets = Object.fromEntries(Object.entries(inv.secrets).map(([k, v]) => [k, Redacted.value(v)]))
    const token = crypto.randomBytes(12).toString("hex")
    const output = yield* Queue.unbounded<Take.Take<RawChunk, TransportError>>()
    const exited = yield* Deferred.make<Transport.ExitStatus, TransportError>()
    const closed = yield* Deferred.make<void>()
    const child = spawn(file, argv, {
      cwd: inv.cwd,
      env: { ...process.env, ...inv.env, ...secrets, ...(killTree ? { [TOKEN_VARIABLE]: token } : {}) },
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
    const left = () => (killTree ? members(pid, token) : [])
    const signalAll = (sig: NodeJS.Signals) => {
      signal(-pid, sig)
      for (const p of left()) signal(p, sig)
    }
    child.stdout.on("data", (b: Buffer) =>
      Queue.unsafeOffer(output, Take.of({ stream: "stdout", bytes: new Uint8Array(b) })))
    child.stderr.on("data", (b: Buffer) =>
      Queue.unsafeOffer(output, Take.of({ stream: "stderr", bytes: new Uint8Array(b) })))
    let open = 2
    const onEnd = () => {
      if (--open === 0) {
        Deferred.unsafeDone(closed, Effect.void)
      }
    }
    child.stdout.on("close", onEnd)
    child.stderr.on("close", onEnd)
    let done = false
    child.on("exit", (code, sig) => {
      done = true
      Deferred.unsafeDone(
        exited,
        sig !== null
          ? Effect.succeed(Transport.signaled(sig))
          : code !== null
          ? Effect.succeed(Transport.exited(code))
          : Effect.fail(
            new TransportError({
              reason: "Unknown",
              transport: NAME,
              phase: "execution",
              description: "no exit status"
            })
          )
      )
    })
    child.stdin.on("error", () => {})
    child.stdin.end(inv.stdin === undefined ? undefined : Buffer.from(inv.stdin))

    // the stream ends when both pipes closed, or 1 s after the exit (a grandchild holding a pipe: kill the tree)
    yield* Effect.forkScoped(Effect.interruptible(
      Effect.gen(function*() {
        yield* Effect.exit(Deferred.await(exited))
        const closedInTime = yield* Effect.timeoutOption(Deferred.await(closed), Duration.seconds(1))
        if (closedInTime._tag === "None") {
          signalAll("SIGKILL")
          child.stdout.destroy()
          child.stderr.destroy()
        }
        yield* Queue.offer(output, Take.end)
      })
    ))
    let confirmed = true
    // finalizers run uninterruptibly: what a timeout may cut short must be made interruptible
    const awaitExit = Effect.interruptible(Effect.exit(Deferred.await(exited)))
    // the child exited and (killing the tree) nothing of it is left
    const pollGone: Effect.Effect<void> = Effect.suspend(() =>
      left().length === 0 ? Effect.void : Effect.zipRight(Effect.sleep("50 millis"), pollGone)
    )
    const awaitGone = Effect.interruptible(Effect.zipRight(awaitExit, pollGone))
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (done && left().length === 0) {
          signal(-pid, "SIGKILL")
          return
        }
        signalAll("SIGTERM")
        const gone = yield* Effect.timeoutOption(awaitGone, inv.killGrace)
        signalAll("SIGKILL")
        if (gone._tag === "None") {
          const killed = yield* Effect.timeoutOption(awaitGone, Duration.seconds(5))
          confirmed = killed._tag === "Some"
        }
        child.stdout.destroy()
        child.stderr.destroy()
      })
    )
    const raw: Transport.RawExecution = Transport.fromStream({
      output: Stream.fromQueue(output).pipe(Stream.flattenTake),
      exit: Deferred.await(exited),
      killConfirmed: Effect.sync(() =>
        confirmed
      )
    })
    return raw
  })

/** The reference transport for `local` targets (`killTree: false`: the broken variant). */
export const layer = (options: Options = {}): Layer.Layer<Transport.Registry, Transport.DuplicateTransport> =>
  Transport.layer(Effect.succeed(Transport.make({
    name: options.killTree === false ? `${NAME}-group-only` : NAME,
    kinds: ["local"],
    capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: false, native: false },
    start: start(options)
  })))
