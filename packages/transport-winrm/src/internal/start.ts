/**
 * One execution over WinRM: the PowerShell twin run as `powershell|pwsh -EncodedCommand`, secrets and the job's
 * stdin in `Send` envelopes (the only place a secret travels), output from a `Receive` long-poll loop as it
 * arrives, the exit code from the twin's sentinel (or the command's), and on an early end a `Signal terminate`
 * whose effect is confirmed by the command's `Done` state.
 *
 * @internal
 */
import type { RawChunk } from "@runcmd/core/OutputChunk"
import * as ScriptRender from "@runcmd/core/ScriptRender"
import * as Transport from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { WinRmTarget } from "../WinRmTarget.js"
import type * as Client from "./client.js"
import { FaultError } from "./client.js"
import * as Errors from "./errors.js"
import * as Wsman from "./wsman.js"

/** @internal */
export interface Settings {
  readonly client: (target: WinRmTarget) => Effect.Effect<Client.Client, TransportError>
  readonly killTimeout: Duration.Duration
}

const SEND_CHUNK = 128 * 1024

/**
 * Removes the twin's protocol lines (`runcmd-<nonce>:<message>` up to the end of the line) from a byte stream,
 * holding back only what could begin one.
 */
const protocolFilter = (marker: string) => {
  const needle = Buffer.from(marker)
  let pending = Buffer.alloc(0)
  const messages: Array<string> = []
  return {
    messages,
    push: (chunk: Uint8Array): Uint8Array => {
      let buf = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk])
      const out: Array<Buffer> = []
      for (;;) {
        const at = buf.indexOf(needle)
        if (at < 0) {
          // keep a tail that may be the start of the marker
          let keep = Math.min(needle.length - 1, buf.length)
          while (keep > 0 && !needle.subarray(0, keep).equals(buf.subarray(buf.length - keep))) keep--
          out.push(buf.subarray(0, buf.length - keep))
          pending = Buffer.from(buf.subarray(buf.length - keep))
          break
        }
        const nl = buf.indexOf(0x0a, at)
        if (nl < 0) {
          out.push(buf.subarray(0, at))
          pending = Buffer.from(buf.subarray(at))
          break
        }
        out.push(buf.subarray(0, at))
        messages.push(buf.subarray(at + needle.length, nl).toString("utf8").replace(/\r$/, ""))
        buf = buf.subarray(nl + 1)
      }
      return Buffer.concat(out)
    },
    end: (): Uint8Array => {
      const rest = pending
      pending = Buffer.alloc(0)
      return rest
    }
  }
}

/** @internal */
export const start = (
  settings: Settings,
  target: WinRmTarget,
  original: Transport.Invocation
): Effect.Effect<Transport.RawExecution, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const invocation = original
    const launch = yield* Effect.try({
      try: () => ScriptRender.powershell(invocation, { secretsFromStdin: true }),
      catch: (error) => Errors.make("SpawnFailed", "delivery", `cannot render the job: ${(error as Error).message}`)
    })
    const client = yield* settings.client(target)
    const lease = yield* client.shell
    const shellId = lease.shellId
    const at = (h: { readonly to: string; readonly messageId: string }) => ({
      ...h,
      shellId,
      operationTimeoutSeconds: Math.max(1, Math.round(Duration.toSeconds(client.options.operationTimeout)))
    })
    const program = target.shell === "pwsh" ? "pwsh" : "powershell"
    const commandId = yield* client.call(
      (h) =>
        Wsman.command(at(h), program, `-NoLogo -NoProfile -NonInteractive -EncodedCommand ${launch.encodedCommand}`),
      "Command",
      "delivery"
    ).pipe(
      Effect.flatMap((root) => {
        const id = root.children.length === 0 ? undefined : findCommandId(root)
        return id === undefined
          ? Effect.fail(Errors.make("ProtocolError", "delivery", "Command: the answer names no CommandId"))
          : Effect.succeed(id)
      }),
      Effect.catchIf((e): e is FaultError => e instanceof FaultError, (e) => {
        if (Errors.isShellGone(e.fault)) lease.discard()
        // a shell that is gone before the command started: nothing ran, safe to retry
        return Effect.fail(Errors.fromFault(e.fault, "Command", "delivery"))
      }),
      Effect.tapError(() => Effect.sync(lease.discard))
    )

    const state = { done: false, confirmed: false }
    const finished = yield* Deferred.make<Transport.ExitStatus, TransportError>()

    // an early end: terminate (the host ends the whole tree), then confirm it from the command's Done state
    yield* Effect.addFinalizer(() =>
      state.done ? Effect.void : Effect.gen(function*() {
        const signal = client.call((h) => Wsman.signal(at(h), commandId, "terminate"), "Signal", "execution")
        const confirm = Effect.gen(function*() {
          yield* signal
          for (;;) {
            const root = yield* client.call((h) => Wsman.receive(at(h), commandId), "Receive", "execution").pipe(
              Effect.catchIf(
                (e): e is FaultError => e instanceof FaultError && Errors.isTimedOut(e.fault),
                () => Effect.succeed(undefined)
              )
            )
            if (root !== undefined && Wsman.readReceive(root).done !== undefined) return true
          }
        }).pipe(
          Effect.catchIf(
            // the command (or its shell) is gone: nothing of it is left to run
            (e): e is FaultError => e instanceof FaultError && Errors.isShellGone(e.fault),
            () => Effect.succeed(true)
          ),
          // interruptible in the fiber the timeout forks (the closing fiber may itself be interrupted: a cancel)
          Effect.interruptible,
          Effect.timeout(settings.killTimeout),
          Effect.orElseSucceed(() => false)
        )
        state.confirmed = yield* confirm
        if (!state.confirmed) lease.discard()
        else yield* signal.pipe(Effect.interruptible, Effect.timeout(Duration.seconds(5)), Effect.ignore)
      })
    )

    // the secrets first (the twin reads one line per secret), then the job's stdin; always ended
    const input = Buffer.concat([launch.secretInput(), original.stdin ?? new Uint8Array(0)])
    for (let offset = 0; offset === 0 || offset < input.length; offset += SEND_CHUNK) {
      const chunk = input.subarray(offset, offset + SEND_CHUNK)
      const end = offset + SEND_CHUNK >= input.length
      yield* client.call((h) => Wsman.send(at(h), commandId, chunk, end), "Send", "execution").pipe(
        Effect.catchIf((e): e is FaultError => e instanceof FaultError, (e) => {
          lease.discard()
          return Effect.fail(Errors.fromFault(e.fault, "Send", "execution"))
        })
      )
    }

    const marker = launch.sentinel.slice(0, launch.sentinel.length - "exit=".length)
    const stdout = protocolFilter(marker)
    const stderr = protocolFilter(marker)

    const pump = (emit: (chunk: RawChunk) => Effect.Effect<void>): Effect.Effect<void, TransportError> =>
      Effect.gen(function*() {
        for (;;) {
          const root = yield* client.call((h) => Wsman.receive(at(h), commandId), "Receive", "execution").pipe(
            Effect.catchIf((e): e is FaultError => e instanceof FaultError, (e) => {
              // the long poll ended with nothing to tell: poll again
              if (Errors.isTimedOut(e.fault)) return Effect.succeed(undefined)
              lease.discard()
              return Effect.fail(Errors.fromFault(e.fault, "Receive", "execution"))
            })
          )
          if (root === undefined) continue
          const result = Wsman.readReceive(root)
          for (const chunk of result.chunks) {
            const bytes = chunk.name === "stdout" ? stdout.push(chunk.bytes) : stderr.push(chunk.bytes)
            if (bytes.length > 0) yield* emit({ stream: chunk.name, bytes })
          }
          if (result.done !== undefined) {
            for (const [name, filter] of [["stdout", stdout], ["stderr", stderr]] as const) {
              const rest = filter.end()
              if (rest.length > 0) yield* emit({ stream: name, bytes: rest })
            }
            state.done = true
            // the command is over: release it on the server so that the shell can take the next one
            yield* client.call((h) => Wsman.signal(at(h), commandId, "terminate"), "Signal", "execution").pipe(
              Effect.tapError(() => Effect.sync(lease.discard)),
              Effect.ignore
            )
            yield* Deferred.complete(finished, exitStatus(result.done.exitCode))
            return
          }
        }
      }).pipe(Effect.tapError((e) => Deferred.fail(finished, e)))

    const exitStatus = (commandExit: number): Effect.Effect<Transport.ExitStatus, TransportError> => {
      if (stderr.messages.some((m) => m.startsWith("fail cwd"))) {
        return Effect.fail(
          Errors.make(
            "SpawnFailed",
            "delivery",
            `the working directory ${JSON.stringify(original.cwd)} cannot be entered`
          )
        )
      }
      const sentinel = stdout.messages.map((m) => /^exit=(-?\d+)/.exec(m)).filter((m) => m !== null).at(-1)
      const code = sentinel === undefined ? commandExit : Number(sentinel[1])
      return Effect.succeed(Transport.exited(code))
    }

    return {
      pump,
      exit: Deferred.await(finished),
      killConfirmed: Effect.sync(() => state.confirmed)
    } satisfies Transport.RawExecution
  })

const findCommandId = (root: import("./xml.js").Element): string | undefined => {
  const stack = [root]
  while (stack.length > 0) {
    const e = stack.pop()!
    if (e.name === "CommandId") return e.text.trim()
    for (const child of e.children) stack.push(child)
  }
  return undefined
}
