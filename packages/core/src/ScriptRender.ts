/**
 * Script rendering: the one wrapper every shell transport runs (POSIX `sh`, and a PowerShell twin for Windows
 * targets), rendered from an `Invocation`, plus the driver of its stdin/stderr protocol.
 *
 * The POSIX launch is a constant bootstrap (`/bin/sh -c BOOTSTRAP runcmd`) that reads the wrapper from stdin;
 * secrets and the user's stdin follow it on the same pipe, so nothing of the user's is in argv or in the process
 * table. The wrapper switches user (sudo/su/runuser/doas), changes directory, starts the user's program in a new
 * session (its PGID is reported on stderr), forwards TERM to it and escalates to KILL after the grace, and
 * reports how the program ended (an exit code or a signal) in a protocol line that {@link Launch.drive} removes
 * from stderr.
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import * as directInternal from "./internal/directLaunch.js"
import * as posixInternal from "./internal/wrapperPosix.js"
import * as powershellInternal from "./internal/wrapperPowershell.js"
import { makeParser } from "./internal/wrapperProtocol.js"
import { REPLACEMENT } from "./Redactor.js"
import type { ExitStatus, Invocation } from "./Transport.js"
import { TransportError } from "./TransportError.js"

/**
 * What a transport gives the driver: the process's stdin and its raw stderr.
 *
 * @since 0.1.0
 * @category models
 */
export interface WrapperIo {
  readonly writeStdin: (bytes: Uint8Array) => Effect.Effect<void, TransportError>
  readonly endStdin: Effect.Effect<void, TransportError>
  /** The process's raw stderr. */
  readonly stderr: Stream.Stream<Uint8Array, TransportError>
}

/**
 * One rendered POSIX execution: how to start it, how to drive it, how to kill it, how to read its exit.
 *
 * @since 0.1.0
 * @category models
 */
export interface Launch {
  /** Constant bootstrap: ["/bin/sh", "-c", BOOTSTRAP, "runcmd"]; contains no user data and no secrets. */
  readonly argv: ReadonlyArray<string>
  /** The same bootstrap as one shell command line, for transports that take a string (SSH exec). */
  readonly commandLine: string
  readonly nonce: string
  /** Token exported into the environment of everything the execution starts (found via /proc/<pid>/environ). */
  readonly token: string
  /** The environment variable carrying {@link Launch.token}. */
  readonly tokenVariable: string
  /**
   * Drives the protocol: writes the preamble, answers the sudo prompt with the password, then secrets and the
   * user's stdin, then ends stdin. Returns stderr with every protocol line/prompt removed. Forked in the scope.
   */
  readonly drive: (io: WrapperIo) => Effect.Effect<Stream.Stream<Uint8Array, TransportError>, never, Scope.Scope>
  /** Completes when the wrapper reported the PGID of the user script's process group. */
  readonly pgid: Effect.Effect<number>
  /** Polls without waiting. */
  readonly pgidNow: Effect.Effect<Option.Option<number>>
  /** Completes when the escalated (or plain) wrapper shell announced itself: the user switch succeeded. */
  readonly ready: Effect.Effect<void>
  /**
   * A POSIX sh script (run separately: a second SSH channel, or `sh -c` locally) that TERMs the recorded group
   * and every process carrying `token`, waits `grace`, KILLs what is left, and prints one final line
   * `runcmd-kill:gone` or `runcmd-kill:alive <n>` (truthful: checked after the KILL).
   */
  readonly killScript: (pgid: number | undefined, grace: Duration.Duration) => string
  /**
   * Maps the wrapper's exit to the user's exit; wrapper-reserved failures (escalation failed, cwd missing, ...)
   * become TransportError (EscalationFailed → reason "EscalationFailed", phase "delivery").
   */
  readonly interpretExit: (status: ExitStatus) => Effect.Effect<ExitStatus, TransportError>
}

/**
 * The constant bootstrap evaluated by `/bin/sh -c`.
 *
 * @since 0.1.0
 * @category constants
 */
export const BOOTSTRAP: string = posixInternal.BOOTSTRAP

/**
 * The environment variable that carries an execution's token.
 *
 * @since 0.1.0
 * @category constants
 */
export const TOKEN_VARIABLE: string = posixInternal.TOKEN_VAR

/**
 * Quotes one word for a POSIX shell (single quotes; `'` becomes `'\''`). Byte-exact for any string without NUL.
 *
 * @since 0.1.0
 * @category utils
 */
export const quote: (word: string) => string = posixInternal.quote

/**
 * Parses the last line a kill script printed.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseKillResult = (output: string): Option.Option<{ readonly gone: boolean; readonly alive: number }> => {
  const lines = output.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("runcmd-kill:"))
  const last = lines.at(-1)
  if (last === undefined) return Option.none()
  if (last === "runcmd-kill:gone") return Option.some({ gone: true, alive: 0 })
  const m = /^runcmd-kill:alive (\d+)$/.exec(last)
  return m === null ? Option.none() : Option.some({ gone: false, alive: Number(m[1]) })
}

// random bytes come from a pool refilled 4 KiB at a time: one getRandomValues call per execution costs more
// than the rest of a cheap execution's rendering
const pool = new Uint8Array(4096)
let poolOffset = pool.length
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"))

const randomHex = (bytes: number): string => {
  if (poolOffset + bytes > pool.length) {
    globalThis.crypto.getRandomValues(pool)
    poolOffset = 0
  }
  let out = ""
  for (let i = 0; i < bytes; i++) out += HEX[pool[poolOffset++]!]
  return out
}

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

const signalName = (n: number, reported: string | undefined): string => {
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
 * Renders the POSIX wrapper for one invocation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const posix = (
  invocation: Invocation,
  options?: { readonly nonce?: string | undefined; readonly transport?: string | undefined }
): Launch => {
  const nonce = options?.nonce ?? randomHex(12)
  if (!/^[A-Za-z0-9_-]+$/.test(nonce)) throw new Error("ScriptRender.posix: a nonce must match [A-Za-z0-9_-]+")
  const token = randomHex(16)
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

  const drive = (io: WrapperIo) =>
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
              fail("SpawnFailed", "delivery", `the working directory ${JSON.stringify(invocation.cwd)} does not exist or is not accessible`, {
                wrapper: "CwdNotFound",
                cwd: invocation.cwd
              })
            )
          case "env":
            return Effect.fail(fail("SpawnFailed", "delivery", "an environment variable name is not valid", { wrapper: "InvalidEnv" }))
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
        fail("ProtocolError", "execution", `the wrapper exited without reporting the script's status (${wrapperStatus})`, {
          wrapperStatus
        })
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
    killScript: (pgid, grace) =>
      posixInternal.killScript({ token, nonce, pgid, wrapperPid: state.wrapperPid, grace }),
    interpretExit
  }
}

/**
 * A launch without the wrapper, for a transport that starts processes itself (local): the program, its arguments
 * and environment, to be started **in a new session** (its PGID is its pid) with {@link DirectLaunch.environment}
 * added to the transport's own environment. Offered by {@link direct} only when the wrapper would do nothing
 * else: no run-as, a `Command` or a `sh`/`bash` script. The exposure is the wrapper's: it also ends in an `exec`
 * of this argv with the secrets exported into the program's environment, never in argv.
 *
 * @since 0.1.0
 * @category models
 */
export interface DirectLaunch {
  readonly file: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string | undefined
  /** Exported into the program's environment, found later in /proc/<pid>/environ by kill sweeps. */
  readonly token: string
  readonly tokenVariable: string
  /** The job's env, its secrets (revealed: call it at the native call, never log the result) and the token. */
  readonly environment: () => Record<string, string>
}

/**
 * The direct launch of an invocation that needs no wrapper stage, or `None` (use {@link posix}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const direct = (invocation: Invocation): Option.Option<DirectLaunch> => {
  if (!directInternal.eligible(invocation)) return Option.none()
  const run = directInternal.program(invocation)
  if (run === undefined) return Option.none()
  const token = randomHex(16)
  return Option.some({
    file: run.file,
    args: run.args,
    cwd: invocation.cwd,
    token,
    tokenVariable: posixInternal.TOKEN_VAR,
    environment: () => directInternal.environment(invocation, token)
  })
}

/**
 * A launch without the wrapper for a transport that runs a command line through the target user's **POSIX**
 * login shell (SSH `exec`): {@link ShellLaunch.commandLine} is constant (no user text); it reads a short stage
 * from stdin with builtins only and `exec`s the program, which inherits the rest of stdin. No process is started
 * before the user's program, against seven for the full wrapper. The program runs in the session the server made
 * for the channel (sshd calls `setsid`), with the token in its environment; a kill sweep finds it by the token.
 *
 * @since 0.1.0
 * @category models
 */
export interface ShellLaunch {
  /** Constant; contains no user data and no secrets. Needs a POSIX login shell (sh, bash, dash, zsh, ksh). */
  readonly commandLine: string
  readonly nonce: string
  readonly token: string
  readonly tokenVariable: string
  /** The stage, the secret lines (revealed) and the job's stdin: write them to stdin, then end it. */
  readonly input: () => Uint8Array
  /** Removes the launch's own failure line from the start of stderr (identity when there is no `cwd`). */
  readonly filterStderr: (chunk: Uint8Array) => Uint8Array
  /** Releases what {@link ShellLaunch.filterStderr} held back when stderr ended. */
  readonly flushStderr: () => Uint8Array
  /** A missing `cwd` becomes `SpawnFailed` (as with the wrapper); any other status is the program's. */
  readonly interpretExit: (status: ExitStatus) => Effect.Effect<ExitStatus, TransportError>
  /** As {@link Launch.killScript}: TERMs every token carrier and its group, waits, KILLs, reports truthfully. */
  readonly killScript: (pgid: number | undefined, grace: Duration.Duration) => string
}

/**
 * The shell launch of an invocation that needs no wrapper stage (no run-as, a `Command` or a short `sh`/`bash`
 * script, secrets without newlines), or `None` (use {@link posix}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const directShell = (
  invocation: Invocation,
  options?: { readonly nonce?: string | undefined; readonly transport?: string | undefined }
): Option.Option<ShellLaunch> => {
  const nonce = options?.nonce ?? randomHex(12)
  const token = randomHex(16)
  const rendered = directInternal.shellStage(invocation, nonce, token)
  if (rendered === undefined) return Option.none()
  const transport = options?.transport ?? "wrapper"
  const marker = encoder.encode(directInternal.cwdFailure(nonce))
  // stderr's first bytes are held back while they may still be the marker
  let head: Uint8Array | undefined = invocation.cwd === undefined ? undefined : new Uint8Array(0)
  let cwdFailed = false
  const filterStderr = (chunk: Uint8Array): Uint8Array => {
    if (head === undefined) return chunk
    const joined = new Uint8Array(head.length + chunk.length)
    joined.set(head)
    joined.set(chunk, head.length)
    const n = Math.min(joined.length, marker.length)
    for (let i = 0; i < n; i++) {
      if (joined[i] !== marker[i]) {
        head = undefined
        return joined
      }
    }
    if (joined.length < marker.length) {
      head = joined
      return new Uint8Array(0)
    }
    head = undefined
    cwdFailed = true
    return joined.subarray(marker.length)
  }
  return Option.some({
    commandLine: directInternal.SHELL_BOOTSTRAP,
    nonce,
    token,
    tokenVariable: posixInternal.TOKEN_VAR,
    input: () => {
      const text = encoder.encode(rendered.stage + rendered.secretLines())
      const stdin = invocation.stdin
      if (stdin === undefined || stdin.length === 0) return text
      const out = new Uint8Array(text.length + stdin.length)
      out.set(text)
      out.set(stdin, text.length)
      return out
    },
    filterStderr,
    flushStderr: () => {
      const rest = head ?? new Uint8Array(0)
      head = undefined
      return rest
    },
    interpretExit: (status) =>
      cwdFailed && status._tag === "Exited" && status.code === 125
        ? Effect.fail(
          new TransportError({
            reason: "SpawnFailed",
            transport,
            phase: "delivery",
            description: `the working directory ${JSON.stringify(invocation.cwd)} does not exist or is not accessible`,
            detail: { wrapper: "CwdNotFound", cwd: invocation.cwd }
          })
        )
        : Effect.succeed(status),
    killScript: (pgid, grace) => posixInternal.killScript({ token, nonce, pgid, wrapperPid: undefined, grace })
  })
}

/**
 * The PowerShell twin of the wrapper, for Windows targets.
 *
 * @since 0.1.0
 * @category models
 */
export interface PowerShellWrapper {
  /** The whole script: UTF-8 output, env prelude, cwd, the user's script, exit code, sentinel line. */
  readonly script: string
  /** The script as `powershell -EncodedCommand` wants it (base64 of UTF-16LE). */
  readonly encodedCommand: string
  /** The sentinel line's prefix: `<sentinel><code>` is the script's last stdout line. */
  readonly sentinel: string
  readonly nonce: string
  /** Parses the exit status from the sentinel line in stdout, if present. */
  readonly parseSentinel: (stdout: string) => Option.Option<number>
  /**
   * With `secretsFromStdin`: the bytes to write on stdin before the user's stdin (one base64 line per secret,
   * sorted by name). A function, so that the values stay out of anything that prints the wrapper.
   */
  readonly secretInput: () => Uint8Array
}

/**
 * Renders the PowerShell twin. Secrets are not in the text: they are read from the environment variables named
 * in `secretVariables` (the transport sets them over its secure channel) or, when `secretsFromStdin`, from stdin
 * lines before the user's stdin.
 *
 * @since 0.1.0
 * @category constructors
 */
export const powershell = (
  invocation: Invocation,
  options?: { readonly nonce?: string | undefined; readonly secretsFromStdin?: boolean | undefined }
): PowerShellWrapper => ({
  ...powershellInternal.render(invocation, options?.nonce ?? randomHex(12), options?.secretsFromStdin ?? false),
  secretInput: () => encoder.encode(powershellInternal.secretLines(invocation))
})

/**
 * For --dry-run: what would run (the direct launch when no wrapper stage is needed, else the wrapper's text), with
 * secrets shown as [REDACTED].
 *
 * @since 0.1.0
 * @category utils
 */
export const preview = (invocation: Invocation): string => {
  if (invocation.source._tag === "Script" && invocation.source.interpreter === "powershell") {
    return powershell(invocation, { nonce: "preview" }).script
  }
  const nonce = "preview"
  const token = "preview-token"
  const secrets = posixInternal.secretNames(invocation)
  const run = directInternal.eligible(invocation) ? directInternal.program(invocation) : undefined
  if (run !== undefined) {
    const added = [
      ...Object.entries(invocation.env).filter(([name]) => !Object.hasOwn(invocation.secrets, name)).map(([name, value]) =>
        `${name}=${posixInternal.quote(value)}`
      ),
      ...secrets.map((name) => `${name}=${REPLACEMENT}`),
      `${posixInternal.TOKEN_VAR}=<per execution>`
    ]
    const lines = [
      `# launch: direct (no run-as, nothing for a wrapper stage to do): the program is started in a new session`,
      `${invocation.cwd === undefined ? "" : `cd ${posixInternal.quote(invocation.cwd)} && `}exec ${
        [run.file, ...run.args].map(posixInternal.quote).join(" ")
      }`,
      `# environment added: ${added.join(" ")}`,
      `# (local: spawned as is; SSH: a one-line stage read by the login shell from stdin, secrets on the next lines)`
    ]
    if (invocation.stdin !== undefined) lines.push(`# then the job's stdin (${invocation.stdin.length} bytes)`)
    return lines.join("\n")
  }
  const parts = [
    `# bootstrap: /bin/sh -c ${posixInternal.quote(posixInternal.BOOTSTRAP)} runcmd`,
    `# stage 1 (transport user)`,
    posixInternal.outer(invocation, nonce),
    `# stage 2 (${invocation.runAs === undefined ? "same user" : `as ${invocation.runAs.user}`})`,
    posixInternal.inner(invocation, nonce, token),
    `# stage 3 (new session)`,
    posixInternal.launch(invocation, nonce, token)
  ]
  if (secrets.length > 0) {
    parts.push(`# then on stdin, one line each: ${secrets.map((s) => `${s}=${REPLACEMENT}`).join(" ")}`)
  }
  if (invocation.stdin !== undefined) parts.push(`# then the job's stdin (${invocation.stdin.length} bytes)`)
  return parts.join("\n")
}
