/**
 * One execution on one Azure target, in either mode.
 *
 * - managed (default): `PUT runCommands/{name}` with `asyncExecution` (the name derived from the run, the target and
 *   the attempt, so a retried PUT finds the same resource and runs nothing again), then the instance view polled
 *   at an adaptive interval (honouring `Retry-After`) and, with a storage container, the append blobs tailed while
 *   the script runs; the exit from the instance view (`exitCode`) and the launch's protocol line, never from
 *   `provisioningState`. Closed early: DELETE, then polled until it is gone (`killConfirmed` only then). Deleted
 *   after completion unless retained (the DELETE as ARM accepts it: its operation is not polled).
 * - action: `POST runCommand`, one at a time per VM (a per-VM lock; a 409 is retried with backoff), the
 *   `[stdout]`/`[stderr]` message split into the two streams. The service cannot cancel it: `killConfirmed: false`.
 *
 * @internal
 */
import type { RawChunk } from "@runcmd/core/OutputChunk"
import type { Target } from "@runcmd/core/Target"
import type * as Transport from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import type { AzureTarget } from "../AzureTarget.js"
import * as Address from "./address.js"
import * as Arm from "./arm.js"
import * as Blobs from "./blobs.js"
import * as Render from "./render.js"

/** @internal */
export interface Settings {
  readonly mode: "managed" | "action"
  readonly clients: Arm.Clients
  readonly storage: Blobs.Container | undefined
  readonly pollInitial: Duration.Duration
  readonly pollMax: Duration.Duration
  readonly retain: boolean
  readonly serviceTimeoutSeconds: number
  readonly preflight: boolean
  readonly inlineScriptBytes: number
  readonly deleteTimeout: Duration.Duration
  readonly busyTimeout: Duration.Duration
  readonly outputCapBytes: number
  /** The service's own run-as (managed only); the password revealed only into the PUT body. */
  readonly runAs: { readonly user: string; readonly password: Redacted.Redacted<string> | undefined } | undefined
  /** Per-VM locks of action mode. */
  readonly locks: Map<string, Effect.Semaphore>
  /** Locations learnt per VM. */
  readonly locations: Map<string, string>
}

const TERMINAL = new Set(["Succeeded", "Failed", "TimedOut", "Canceled"])

/** A run-command name from the run, the target and the attempt: the same on a retried PUT, distinct otherwise. */
export const runCommandName = (runId: string, targetId: string, attempt: number): string =>
  `runcmd-${createHash("sha256").update(`${runId}\u0000${targetId}\u0000${attempt}`).digest("hex").slice(0, 24)}`

const call = <A>(what: string, phase: "delivery" | "execution", f: (signal: AbortSignal) => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => ({ raw: e, error: Arm.fromRest(e, phase, what) }) })

/** Retries transient failures (5xx, lost connections) a few times; 429s never reach here (the limiter waits). */
const retryTransient = <A>(
  effect: Effect.Effect<A, { readonly raw: unknown; readonly error: TransportError }>,
  times = 5
): Effect.Effect<A, TransportError> =>
  effect.pipe(
    Effect.retry({
      schedule: Schedule.exponential(Duration.millis(100), 2).pipe(
        Schedule.union(Schedule.spaced(Duration.seconds(5)))
      ),
      times,
      while: (e) => Arm.isTransient(e.raw)
    }),
    Effect.mapError((e) => e.error)
  )

const encoder = new TextEncoder()

/** @internal */
export const start = (
  settings: Settings,
  target: AzureTarget,
  invocation: Transport.Invocation
): Effect.Effect<Transport.RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const address = Address.of(target)
    const client = settings.clients.get(address.subscription)
    const api = Address.calls(client, address)
    const managed = settings.mode === "managed"
    const rendered = Render.render(target.os, invocation, {
      secretChannel: managed,
      exitFromChild: !managed,
      maxInlineBytes: managed && settings.storage !== undefined ? 64 * 1024 * 1024 : 96 * 1024
    })
    if (Either.isLeft(rendered)) return yield* Effect.fail(rendered.left)
    const launch = rendered.right
    const scriptBytes = Buffer.byteLength(launch.script)
    if (scriptBytes > settings.inlineScriptBytes && (!managed || settings.storage === undefined)) {
      return yield* Effect.fail(Arm.error(
        "Unsupported",
        "delivery",
        `the script with its files is ${scriptBytes} bytes, over the ${settings.inlineScriptBytes} bytes sent inline; ` +
          (managed
            ? "give the transport a storage container (storage.containerUrl) to send it through a blob"
            : "action run commands take inline scripts only: use managed run commands with a storage container")
      ))
    }
    const sasProblem = settings.storage?.check()
    if (sasProblem !== undefined) return yield* Effect.fail(Arm.error("Unauthorized", "delivery", sasProblem))

    // the power state first: a stopped or deallocated VM is Unreachable before anything is sent
    let location = address.location ?? settings.locations.get(address.key)
    if (settings.preflight || location === undefined) {
      const machine = yield* retryTransient(
        call(`reading ${address.describe}`, "delivery", (s) => api.describeMachine(s))
      )
      if (machine.location !== undefined) {
        location = machine.location
        settings.locations.set(address.key, machine.location)
      }
      if (settings.preflight && machine.powerState !== undefined && machine.powerState !== "running") {
        return yield* Effect.fail(Arm.error(
          "NotManaged",
          "delivery",
          `${address.describe} is ${machine.powerState}: start it before running commands on it`,
          { detail: { powerState: machine.powerState } }
        ))
      }
    }

    return managed
      ? yield* startManaged(settings, address, api, launch, invocation, location ?? "eastus", scriptBytes)
      : yield* startAction(settings, address, api, launch, target)
  })

// ---------------------------------------------------------------------------------------------------------------
// managed
// ---------------------------------------------------------------------------------------------------------------

const startManaged = (
  settings: Settings,
  address: Address.Address,
  api: ReturnType<typeof Address.calls>,
  launch: Render.Rendered,
  invocation: Transport.Invocation,
  location: string,
  scriptBytes: number
) =>
  Effect.gen(function*() {
    const name = runCommandName(invocation.runId, address.key, invocation.attempt)
    const storage = settings.storage
    const blobNames = { stdout: `${name}/stdout`, stderr: `${name}/stderr`, script: `${name}/script` }
    const state = { finished: false, created: false, gone: false }

    // deleted when the scope closes: after completion unless retained; at once (a kill) when closed early
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        if (!state.created || (state.finished && settings.retain)) return
        const removed = yield* retryTransient(
          call(`deleting run command ${name}`, "execution", (s) => api.requestRemoval(name, s))
        ).pipe(
          // ended early: confirmed gone by a GET answering 404 (only then is the kill confirmed); after completion the
          // DELETE alone, as ARM accepted it: nothing is polled after the command finished, not even the deletion
          Effect.zipRight(state.finished ? Effect.succeed(true) : confirmGone(settings, api, name)),
          Effect.timeout(settings.deleteTimeout),
          Effect.orElseSucceed(() => false)
        )
        state.gone = removed
        if (storage !== undefined && !settings.retain) {
          yield* Effect.promise(() =>
            Promise.all(Object.values(blobNames).map((b) => Blobs.remove(storage, b).catch(() => undefined)))
          ).pipe(Effect.timeout(Duration.seconds(10)), Effect.ignore)
        }
      })
    )

    let source: { script: string } | { scriptUri: string } = { script: launch.script }
    let outputBlobUri: string | undefined
    let errorBlobUri: string | undefined
    if (storage !== undefined) {
      const [out, err] = yield* retryTransient(call("creating the output blobs", "delivery", (s) =>
        Promise.all([
          Blobs.createAppendBlob(storage, blobNames.stdout, s),
          Blobs.createAppendBlob(storage, blobNames.stderr, s)
        ])))
      outputBlobUri = out
      errorBlobUri = err
      if (scriptBytes > settings.inlineScriptBytes) {
        const uri = yield* retryTransient(
          call("uploading the script", "delivery", (s) =>
            Blobs.upload(storage, blobNames.script, encoder.encode(launch.script), s))
        )
        source = { scriptUri: uri }
      }
    }
    const protectedParameters = launch.protectedParameters()
    const body = {
      location,
      source,
      asyncExecution: true,
      timeoutInSeconds: settings.serviceTimeoutSeconds,
      treatFailureAsDeploymentFailure: false,
      ...(protectedParameters.length > 0 ? { protectedParameters: [...protectedParameters] } : {}),
      ...(settings.runAs === undefined ? {} : { runAsUser: settings.runAs.user }),
      ...(settings.runAs?.password === undefined ? {} : { runAsPassword: Redacted.value(settings.runAs.password) }),
      ...(outputBlobUri === undefined ? {} : { outputBlobUri, errorBlobUri })
    }
    state.created = true
    // a lost response is retried with the same name and body: the service runs nothing again
    yield* retryTransient(
      call(`creating run command ${name} on ${address.describe}`, "delivery", (s) =>
        api.put(name, body, s)).pipe(
          // a 409 while an earlier attempt of ours is being deleted: wait for it
          Effect.retry({
            schedule: Schedule.spaced(settings.pollInitial),
            times: 20,
            while: (e) =>
              Arm.statusOf(e.raw) === 409
          })
        )
    )

    const outFilter = Render.makeProtocolFilter(launch.nonce)
    const errFilter = Render.makeProtocolFilter(launch.nonce)
    const filters = launch.protocolStream === "stdout" ? { stdout: outFilter, stderr: undefined } : {
      stdout: undefined,
      stderr: errFilter
    }
    const offsets = { stdout: 0, stderr: 0 }
    const truncation: { stdout?: string; stderr?: string } = {}
    let exitStatus: Either.Either<Transport.ExitStatus, TransportError> | undefined

    const pump = (emit: (chunk: RawChunk) => Effect.Effect<void>) =>
      Effect.gen(function*() {
        const push = (stream: "stdout" | "stderr", bytes: Uint8Array) => {
          const filter = filters[stream]
          const out = filter === undefined ? bytes : filter.push(bytes)
          return out.length === 0 ? Effect.void : emit({ stream, bytes: out })
        }
        const tail = Effect.gen(function*() {
          if (storage === undefined) return
          for (const stream of ["stdout", "stderr"] as const) {
            const got = yield* call("reading the output blob", "execution", (s) =>
              Blobs.readFrom(storage, blobNames[stream], offsets[stream], s)).pipe(
                Effect.orElseSucceed(() =>
                  Buffer.alloc(0)
                )
              )
            offsets[stream] += got.length
            if (got.length > 0) yield* push(stream, got)
          }
        })
        let interval = Duration.toMillis(settings.pollInitial)
        const max = Duration.toMillis(settings.pollMax)
        let view: Address.RunCommandView | undefined
        for (;;) {
          yield* Effect.sleep(Duration.millis(interval))
          yield* tail
          let retryAfter: number | undefined
          const polled = yield* call(`reading run command ${name}`, "execution", (s) =>
            api.get(name, s, (r: { headers?: { get(n: string): string | undefined } }) => {
              retryAfter = Arm.retryAfterMs(r.headers)
            })).pipe(Effect.either)
          if (Either.isLeft(polled)) {
            // a failed poll never fails the command: the deadline bounds it. A resource gone is the exception.
            if (Arm.statusOf(polled.left.raw) === 404) {
              exitStatus = Either.left(Arm.error(
                "ConnectionLost",
                "execution",
                `run command ${name} disappeared from ${address.describe} while it ran`
              ))
              break
            }
            interval = Math.max(interval, retryAfter ?? interval)
            continue
          }
          view = polled.right
          const executionState = view.instanceView?.executionState ?? "Pending"
          if (TERMINAL.has(executionState)) {
            break
          }
          interval = Math.min(max, Math.max(retryAfter ?? 0, Math.ceil(interval * 1.5)))
        }
        // the agent wrote every byte to the blobs before it reported the end
        yield* tail
        if (view !== undefined && exitStatus === undefined) {
          const iv = view.instanceView ?? {}
          if (storage === undefined) {
            // the instance view's last 4 KB: all there is without a storage container
            const out = Buffer.from(iv.output ?? "")
            const err = Buffer.from(iv.error ?? "")
            if (out.length > 0) {
              yield* push("stdout", out)
            }
            if (err.length > 0) {
              yield* push("stderr", err)
            }
            for (const [stream, bytes] of [["stdout", out], ["stderr", err]] as const) {
              if (bytes.length >= settings.outputCapBytes - 4) {
                truncation[stream] =
                  `azure: the run command's instance view keeps only the last ${settings.outputCapBytes} ` +
                  `bytes of ${stream}; give the transport a storage container (storage.containerUrl) for all of it`
              }
            }
          }
          const held = (launch.protocolStream === "stdout" ? outFilter : errFilter).end()
          const other = (launch.protocolStream === "stdout" ? errFilter : outFilter).end()
          if (other.length > 0) {
            yield* emit({ stream: launch.protocolStream === "stdout" ? "stderr" : "stdout", bytes: other })
          }
          const executionState = iv.executionState ?? "Unknown"
          const r = launch.interpret(iv.exitCode ?? undefined, held)
          if (r.rest.length > 0) {
            yield* emit({ stream: launch.protocolStream, bytes: r.rest })
          }
          if (executionState === "TimedOut" || executionState === "Canceled") {
            exitStatus = Either.left(Arm.error(
              "Unknown",
              "execution",
              `run command ${name} ended ${executionState} by the service (${iv.executionMessage ?? ""}); ` +
                "its timeoutInSeconds is the transport's serviceTimeout"
            ))
          } else {
            exitStatus = Either.isRight(r.status)
              ? Either.right(r.status.right)
              : Either.left(
                Arm.error(
                  "SpawnFailed",
                  "execution",
                  `${r.status.left} (${executionState}${iv.executionMessage ? `: ${iv.executionMessage}` : ""})`
                )
              )
          }
        }
        state.finished = true
      })

    return {
      pump,
      exit: Effect.suspend(() =>
        exitStatus === undefined
          ? Effect.fail(Arm.error("ProtocolError", "execution", `run command ${name}: no exit status`))
          : exitStatus
      ),
      killConfirmed: Effect.sync(() => state.gone),
      truncated: Effect.sync(() => ({ ...truncation }))
    } satisfies Transport.RawExecution
  })

const confirmGone = (settings: Settings, api: ReturnType<typeof Address.calls>, name: string) =>
  call("checking the run command is gone", "execution", (s) => api.get(name, s)).pipe(
    Effect.either,
    Effect.flatMap((r) =>
      Either.isLeft(r) && Arm.statusOf(r.left.raw) === 404 ? Effect.succeed(true) : Effect.fail("still there" as const)
    ),
    Effect.retry(Schedule.spaced(settings.pollInitial)),
    Effect.orElseSucceed(() => false)
  )

// ---------------------------------------------------------------------------------------------------------------
// action
// ---------------------------------------------------------------------------------------------------------------

const lockOf = (settings: Settings, key: string) => {
  let lock = settings.locks.get(key)
  if (lock === undefined) {
    lock = Effect.unsafeMakeSemaphore(1)
    settings.locks.set(key, lock)
  }
  return lock
}

/** Splits the Linux result message `Enable succeeded: \n[stdout]\n...\n[stderr]\n...`. */
export const splitLinuxMessage = (message: string): { readonly stdout: string; readonly stderr: string } => {
  const o = message.indexOf("[stdout]\n")
  const e = message.lastIndexOf("\n[stderr]\n")
  if (o < 0 || e < o) return { stdout: message, stderr: "" }
  return { stdout: message.slice(o + "[stdout]\n".length, e), stderr: message.slice(e + "\n[stderr]\n".length) }
}

const startAction = (
  settings: Settings,
  address: Address.Address,
  api: ReturnType<typeof Address.calls>,
  launch: Render.Rendered,
  target: Target
) =>
  Effect.gen(function*() {
    const lock = lockOf(settings, address.key)
    yield* Effect.acquireRelease(lock.take(1), () => lock.release(1))
    const windows = target.os === "windows"
    const input = {
      commandId: windows ? "RunPowerShellScript" : "RunShellScript",
      script: launch.script.split("\n")
    }
    const interval = Duration.toMillis(settings.pollInitial)
    // a second action on the VM (another client's) is refused with 409 until the first ends: retried with backoff
    // (a poller is a thenable: wrapped, or awaiting it would wait for the end)
    const { poller } = yield* call(`running the action run command on ${address.describe}`, "delivery", async (s) => {
      const p = api.action(input, interval, s)
      await p.submitted()
      return { poller: p }
    }).pipe(
      Effect.retry({
        schedule: Schedule.exponential(Duration.millis(Math.max(50, interval)), 1.5).pipe(
          Schedule.union(Schedule.spaced(Duration.seconds(15))),
          Schedule.upTo(settings.busyTimeout)
        ),
        while: (e) => Arm.statusOf(e.raw) === 409 || Arm.isTransient(e.raw)
      }),
      Effect.mapError((e) => e.error)
    )
    let exitStatus: Either.Either<Transport.ExitStatus, TransportError> | undefined
    const truncation: { stdout?: string; stderr?: string } = {}
    const pump = (emit: (chunk: RawChunk) => Effect.Effect<void>) =>
      Effect.gen(function*() {
        const result = yield* Effect.tryPromise({
          try: (signal) => poller.pollUntilDone({ abortSignal: signal }),
          catch: (e) => Arm.fromRest(e, "execution", `the action run command on ${address.describe}`)
        })
        const statuses: ReadonlyArray<{ readonly code?: string | undefined; readonly message?: string | undefined }> =
          result.value ?? []
        let stdout = ""
        let stderr = ""
        if (windows) {
          stdout = statuses.find((s) => s.code?.includes("StdOut") === true)?.message ?? ""
          stderr = statuses.find((s) => s.code?.includes("StdErr") === true)?.message ?? ""
        } else {
          const split = splitLinuxMessage(statuses[0]?.message ?? "")
          stdout = split.stdout
          stderr = split.stderr
        }
        const filter = Render.makeProtocolFilter(launch.nonce)
        const protocolText = launch.protocolStream === "stdout" ? stdout : stderr
        const otherText = launch.protocolStream === "stdout" ? stderr : stdout
        const clean = filter.push(Buffer.from(protocolText))
        const held = filter.end()
        const r = launch.interpret(undefined, held)
        const chunks: Record<"stdout" | "stderr", Array<Uint8Array>> = { stdout: [], stderr: [] }
        const otherStream = launch.protocolStream === "stdout" ? "stderr" : "stdout"
        chunks[launch.protocolStream].push(clean, r.rest)
        chunks[otherStream].push(Buffer.from(otherText))
        for (const stream of ["stdout", "stderr"] as const) {
          for (const bytes of chunks[stream]) if (bytes.length > 0) yield* emit({ stream, bytes })
        }
        for (const [stream, text] of [["stdout", stdout], ["stderr", stderr]] as const) {
          if (Buffer.byteLength(text) >= settings.outputCapBytes - 4) {
            truncation[stream] = `azure: action run commands keep only the last ${settings.outputCapBytes} bytes of ` +
              `${stream}; use managed run commands with a storage container (storage.containerUrl) for all of it`
          }
        }
        exitStatus = Either.isRight(r.status)
          ? Either.right(r.status.right)
          : Either.left(Arm.error("SpawnFailed", "execution", r.status.left))
      })
    return {
      pump,
      exit: Effect.suspend(() =>
        exitStatus === undefined
          ? Effect.fail(Arm.error("ProtocolError", "execution", "the action run command gave no result"))
          : exitStatus
      ),
      // the service cannot cancel an action run command
      killConfirmed: Effect.succeed(false),
      truncated: Effect.sync(() => ({ ...truncation }))
    } satisfies Transport.RawExecution
  })
