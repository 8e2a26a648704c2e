/**
 * The driver of the POSIX wrapper's protocol: stdin gets the stages, the sudo password when prompted, the secrets
 * and the user's stdin; stderr loses the protocol lines (PGID, ready, the status line) that the wrapper writes
 * with the execution's nonce; the exit the wrapper reports becomes the user's exit, or a `TransportError` for the
 * wrapper's own failures.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import type * as ScriptRender from "../ScriptRender.js"
import type { ExitStatus, Invocation } from "../Transport.js"
import { TransportError } from "../TransportError.js"
import * as posixInternal from "./wrapperPosix.js"
import { makeParser } from "./wrapperProtocol.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Linux signal numbers (x86/arm; the wrapper also reports the remote shell's own name when it can). */
const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  10: "SIGUSR1",
  11: "SIGSEGV",
  12: "SIGUSR2",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  16: "SIGSTKFLT",
  17: "SIGCHLD",
  18: "SIGCONT",
  19: "SIGSTOP",
  20: "SIGTSTP",
  21: "SIGTTIN",
  22: "SIGTTOU",
  23: "SIGURG",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  26: "SIGVTALRM",
  27: "SIGPROF",
  28: "SIGWINCH",
  29: "SIGIO",
  30: "SIGPWR",
  31: "SIGSYS"
}

/** A signal's name from its number, or from what the wrapper reported. @internal */
export const signalName = (n: number, reported: string | undefined): string => {
  if (reported !== undefined && /^[A-Z][A-Z0-9+-]*$/.test(reported)) {
    return reported.startsWith("SIG") ? reported : `SIG${reported}`
  }
  return SIGNALS[n] ?? (n >= 34 && n <= 64 ? `SIGRTMIN+${n - 34}` : `SIG${n}`)
}

type Reported =
  | { readonly _tag: "Exit"; readonly code: number }
  | { readonly _tag: "Signal"; readonly number: number; readonly name: string; readonly core: boolean }
  | { readonly _tag: "ShellStatus"; readonly code: number }

interface State {
  ready: boolean
  prompts: number
  escalationFailed: string | undefined
  fail: { readonly what: string; readonly detail: string } | undefined
  reported: Reported | undefined
  wrapperPid: number | undefined
  /** stderr before `ready` (bounded): the escalation tool's complaints, for the error. */
  early: string
}

const EARLY_MAX = 2048

/**
 * The POSIX wrapper for one invocation.
 *
 * @internal
 */
export const make = (invocation: Invocation, options?: ScriptRender.RenderOptions): ScriptRender.WrapperLaunch => {
  const nonce = posixInternal.checkNonce(options?.nonce ?? posixInternal.randomHex(12))
  const token = posixInternal.randomHex(16)
  const transport = options?.transport ?? "wrapper"
  const marker = posixInternal.marker(nonce)
  const runAs = invocation.runAs
  const waitsForPrompt = runAs !== undefined && runAs.method === "sudo" && runAs.password !== undefined

  const outerText = posixInternal.outer(invocation, nonce)
  const innerText = posixInternal.inner(invocation, nonce, token)
  const launchText = posixInternal.launch(invocation, nonce, token)

  const state: State = {
    ready: false,
    prompts: 0,
    escalationFailed: undefined,
    fail: undefined,
    reported: undefined,
    wrapperPid: undefined,
    early: ""
  }
  const pgidDeferred = Deferred.unsafeMake<number>(FiberId.none)
  const readyDeferred = Deferred.unsafeMake<void>(FiberId.none)

  const rest = (): Uint8Array => {
    let secrets = ""
    for (const name of posixInternal.secretNames(invocation)) {
      secrets += posixInternal.encodeSecretLine(Redacted.value(invocation.secrets[name]!))
    }
    return encoder.encode(posixInternal.frame(innerText) + posixInternal.frame(launchText) + secrets)
  }

  const onMessage = (message: string, events: Queue.Queue<"prompt" | "ready" | "end">): Effect.Effect<void> => {
    const space = message.indexOf(" ")
    const word = space < 0 ? message : message.slice(0, space)
    const args = space < 0 ? [] : message.slice(space + 1).split(" ")
    switch (word) {
      case "ready":
        state.ready = true
        return Effect.zipRight(Deferred.succeed(readyDeferred, undefined), Queue.offer(events, "ready"))
      case "prompt":
        state.prompts++
        return Queue.offer(events, "prompt")
      case "wrapper": {
        const pid = Number(args[0])
        if (Number.isSafeInteger(pid) && pid > 0) state.wrapperPid = pid
        return Effect.void
      }
      case "pgid": {
        const pgid = Number(args[0])
        return Number.isSafeInteger(pgid) && pgid > 0 ? Deferred.succeed(pgidDeferred, pgid) : Effect.void
      }
      case "exit":
        state.reported = { _tag: "Exit", code: Number(args[0]) }
        return Effect.void
      case "shstatus":
        state.reported = { _tag: "ShellStatus", code: Number(args[0]) }
        return Effect.void
      case "signal": {
        const n = Number(args[0])
        const named = args[1] === "core" ? undefined : args[1]
        state.reported = { _tag: "Signal", number: n, name: signalName(n, named), core: args.includes("core") }
        return Effect.void
      }
      case "fail":
        state.fail = { what: args[0] ?? "unknown", detail: args.slice(1).join(" ") }
        return Effect.void
      default:
        return Effect.void
    }
  }

  const drive = (io: ScriptRender.WrapperIo) =>
    Effect.gen(function*() {
      const out = yield* Queue.bounded<Take.Take<Uint8Array, TransportError>>(64)
      const events = yield* Queue.unbounded<"prompt" | "ready" | "end">()
      const parser = makeParser(marker)

      const reader = io.stderr.pipe(
        Stream.runForEach((chunk) =>
          Effect.gen(function*() {
            const { bytes, messages } = parser.push(chunk)
            if (!state.ready && bytes.length > 0 && state.early.length < EARLY_MAX) {
              state.early = (state.early + decoder.decode(bytes)).slice(0, EARLY_MAX)
            }
            if (bytes.length > 0) yield* Queue.offer(out, Take.chunk(Chunk.of(bytes)))
            for (const message of messages) yield* onMessage(message, events)
          })
        ),
        Effect.matchCauseEffect({
          onFailure: (cause) => Queue.offer(out, Take.failCause(cause)),
          onSuccess: () => {
            const tail = parser.end()
            return Effect.zipRight(
              tail.length > 0 ? Queue.offer(out, Take.chunk(Chunk.of(tail))) : Effect.void,
              Queue.offer(out, Take.end)
            )
          }
        }),
        Effect.ensuring(Queue.offer(events, "end"))
      )

      const writer = Effect.gen(function*() {
        yield* io.writeStdin(encoder.encode(posixInternal.frame(outerText)))
        if (waitsForPrompt) {
          let answered = false
          for (;;) {
            const event = yield* Queue.take(events)
            if (event === "end") return
            if (event === "ready") break
            if (!answered) {
              answered = true
              const bytes = encoder.encode(Redacted.value(runAs!.password!) + "\n")
              yield* io.writeStdin(bytes)
            } else {
              // a second prompt: the password was refused; EOF makes sudo give up at once
              state.escalationFailed = "the password was refused (sudo prompted again)"
              return yield* io.endStdin
            }
          }
        }
        yield* io.writeStdin(rest())
        if (invocation.stdin !== undefined && invocation.stdin.length > 0) yield* io.writeStdin(invocation.stdin)
        yield* io.endStdin
      }).pipe(Effect.catchAllCause(() => Effect.ignore(io.endStdin)))

      yield* Effect.forkScoped(reader)
      yield* Effect.forkScoped(writer)
      return Stream.flattenTake(Stream.fromQueue(out, { shutdown: true }))
    }).pipe(Effect.withSpan("ScriptRender.drive"))

  const fail = (
    reason: TransportError["reason"],
    phase: TransportError["phase"],
    description: string,
    detail: Record<string, unknown> = {}
  ) =>
    new TransportError({
      reason,
      transport,
      phase,
      description,
      detail: { ...detail, ...(state.early.length > 0 ? { stderr: state.early.trim() } : {}) }
    })

  const interpretExit = (status: ExitStatus): Effect.Effect<ExitStatus, TransportError> =>
    Effect.suspend((): Effect.Effect<ExitStatus, TransportError> => {
      const wrapperStatus = status._tag === "Exited" ? `exit ${status.code}` : status.signal
      if (state.fail !== undefined) {
        const { detail, what } = state.fail
        switch (what) {
          case "escalation":
            return Effect.fail(
              fail("EscalationFailed", "delivery", `cannot switch user: ${detail}`, { runAs: runAs?.user })
            )
          case "cwd":
            return Effect.fail(
              fail(
                "SpawnFailed",
                "delivery",
                `the working directory ${JSON.stringify(invocation.cwd)} does not exist or is not accessible`,
                {
                  wrapper: "CwdNotFound",
                  cwd: invocation.cwd
                }
              )
            )
          case "env":
            return Effect.fail(
              fail("SpawnFailed", "delivery", "an environment variable name is not valid", { wrapper: "InvalidEnv" })
            )
          case "interpreter":
          case "native":
            return Effect.fail(
              fail("Unsupported", "delivery", `the POSIX wrapper cannot run this source (${what} ${detail})`.trim())
            )
          case "secrets":
            return Effect.fail(fail("ProtocolError", "delivery", "the secrets did not reach the wrapper"))
          default:
            return Effect.fail(
              fail("SpawnFailed", "delivery", `the wrapper could not start the script (${what} ${detail})`.trim(), {
                wrapperStatus
              })
            )
        }
      }
      if (state.escalationFailed !== undefined) {
        return Effect.fail(fail("EscalationFailed", "delivery", state.escalationFailed, { runAs: runAs?.user }))
      }
      if (!state.ready) {
        return runAs !== undefined
          ? Effect.fail(
            fail("EscalationFailed", "delivery", `${runAs.method} to ${runAs.user} failed (${wrapperStatus})`, {
              runAs: runAs.user,
              method: runAs.method
            })
          )
          : status._tag === "Signaled"
          ? Effect.succeed(status)
          : Effect.fail(fail("ProtocolError", "delivery", `the wrapper did not start (${wrapperStatus})`))
      }
      const reported = state.reported
      if (reported !== undefined) {
        switch (reported._tag) {
          case "Exit":
            if (Number.isInteger(reported.code) && reported.code >= 0 && reported.code <= 255) {
              return Effect.succeed({ _tag: "Exited", code: reported.code } as const)
            }
            break
          case "Signal":
            return Effect.succeed({ _tag: "Signaled", signal: reported.name } as const)
          case "ShellStatus": {
            const code = reported.code
            if (code > 128 && code <= 128 + 64) {
              return Effect.succeed({ _tag: "Signaled", signal: signalName(code - 128, undefined) } as const)
            }
            if (Number.isInteger(code) && code >= 0 && code <= 255) {
              return Effect.succeed({ _tag: "Exited", code } as const)
            }
            break
          }
        }
      }
      if (status._tag === "Signaled") return Effect.succeed(status)
      return Effect.fail(
        fail(
          "ProtocolError",
          "execution",
          `the wrapper exited without reporting the script's status (${wrapperStatus})`,
          {
            wrapperStatus
          }
        )
      )
    })

  return {
    argv: ["/bin/sh", "-c", posixInternal.BOOTSTRAP, "runcmd"],
    commandLine: `/bin/sh -c ${posixInternal.quote(posixInternal.BOOTSTRAP)} runcmd`,
    nonce,
    token,
    tokenVariable: posixInternal.TOKEN_VAR,
    drive,
    pgid: Deferred.await(pgidDeferred),
    pgidNow: Deferred.poll(pgidDeferred).pipe(
      Effect.flatMap(Option.match({ onNone: () => Effect.succeedNone, onSome: (e) => Effect.asSome(e) }))
    ),
    ready: Deferred.await(readyDeferred),
    killScript: (pgid, grace) => posixInternal.killScript({ token, nonce, pgid, wrapperPid: state.wrapperPid, grace }),
    interpretExit
  }
}
