/**
 * Launches that need no wrapper stage. An invocation without run-as whose source is a command or a sh/bash
 * script needs none of the wrapper's work except a new session and the token in the environment, which a
 * transport that spawns processes itself does natively, and which a one-line stage read by the login shell does
 * over SSH. Everything else (run-as, python, long scripts, secrets a line cannot carry) keeps the full wrapper.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as ScriptRender from "../ScriptRender.js"
import type { Invocation } from "../Transport.js"
import { TransportError } from "../TransportError.js"
import {
  checkNonce,
  isEnvName,
  killScript,
  quote,
  randomHex,
  SCRIPT_ARG_MAX,
  secretNames,
  TOKEN_VAR
} from "./wrapperPosix.js"

const encoder = new TextEncoder()

const hasNul = (s: string): boolean => s.includes("\0")

/** Program and arguments, when the source runs without a wrapper stage. @internal */
export const program = (
  invocation: Invocation
): { readonly file: string; readonly args: Array<string> } | undefined => {
  const source = invocation.source
  switch (source._tag) {
    case "Command": {
      const [file, ...rest] = source.argv
      return { file, args: [...rest, ...invocation.args] }
    }
    case "Script":
      if (source.interpreter !== "sh" && source.interpreter !== "bash") return undefined
      if (Buffer.byteLength(source.text, "utf8") > SCRIPT_ARG_MAX) return undefined
      return {
        file: source.interpreter === "sh" ? "/bin/sh" : "bash",
        args: ["-c", source.text, "runcmd", ...invocation.args]
      }
    default:
      return undefined
  }
}

/** What both direct forms require: no user switch, names the environment accepts, no NUL anywhere. @internal */
export const eligible = (invocation: Invocation): boolean => {
  if (invocation.runAs !== undefined) return false
  for (const name of Object.keys(invocation.env)) {
    if (!isEnvName(name) || hasNul(invocation.env[name]!)) return false
  }
  for (const name of Object.keys(invocation.secrets)) {
    if (!isEnvName(name) || hasNul(Redacted.value(invocation.secrets[name]!))) return false
  }
  if (invocation.cwd !== undefined && hasNul(invocation.cwd)) return false
  if (invocation.args.some(hasNul)) return false
  const source = invocation.source
  if (source._tag === "Command" && source.argv.some(hasNul)) return false
  if (source._tag === "Script" && hasNul(source.text)) return false
  return true
}

/** The job's environment, its secrets (revealed) and the token, as the program gets them. @internal */
export const environment = (invocation: Invocation, token: string): Record<string, string> => {
  const env: Record<string, string> = { ...invocation.env }
  for (const name of Object.keys(invocation.secrets)) env[name] = Redacted.value(invocation.secrets[name]!)
  env[TOKEN_VAR] = token
  return env
}

/**
 * The constant command line a POSIX login shell runs for a direct shell launch: it reads a line count, then that
 * many lines, and evaluates them; builtins only (no process is started before the user's program), and `read`
 * never consumes past the last line, so the user's stdin follows on the same pipe.
 *
 * @internal
 */
export const SHELL_BOOTSTRAP = `IFS= read -r __rc_n || exit 125; __rc_s=; ` +
  `while [ "$__rc_n" -gt 0 ]; do IFS= read -r __rc_l || exit 125; __rc_s="$__rc_s$__rc_l\n"; ` +
  `__rc_n=$((__rc_n - 1)); done; unset __rc_l __rc_n; eval "$__rc_s"`

/** The longest stage sent to {@link SHELL_BOOTSTRAP} (`read` takes it one byte per system call). @internal */
export const SHELL_STAGE_MAX = 16 * 1024

/** Marks a failed `cd` at the very start of stderr, before anything of the user's can write. @internal */
export const cwdFailure = (nonce: string): string => `runcmd-${nonce}:fail cwd\n`

/**
 * The stage {@link SHELL_BOOTSTRAP} evaluates: `cd`, the token, env, secrets read from the following stdin lines
 * (one each; values with a newline need the full wrapper), and `exec` of the program. Undefined when the
 * invocation needs the wrapper.
 *
 * @internal
 */
export const shellStage = (
  invocation: Invocation,
  nonce: string,
  token: string
): { readonly stage: string; readonly secretLines: () => string } | undefined => {
  if (!eligible(invocation)) return undefined
  const names = secretNames(invocation)
  for (const name of names) {
    if (Redacted.value(invocation.secrets[name]!).includes("\n")) return undefined
  }
  const run = program(invocation)
  if (run === undefined) return undefined
  const parts: Array<string> = []
  if (invocation.cwd !== undefined) {
    const dir = quote(invocation.cwd)
    parts.push(
      `cd -- ${dir} 2>/dev/null || cd ${dir} 2>/dev/null || { printf '%s' ${quote(cwdFailure(nonce))} >&2; exit 125; }`
    )
  }
  parts.push(`${TOKEN_VAR}=${quote(token)}; export ${TOKEN_VAR}`)
  for (const name of names) {
    parts.push(`IFS= read -r ${name} || exit 125; export ${name}`)
  }
  for (const [name, value] of Object.entries(invocation.env)) {
    if (Object.hasOwn(invocation.secrets, name)) continue
    parts.push(`${name}=${quote(value)}; export ${name}`)
  }
  const words = [run.file, ...run.args].map(quote).join(" ")
  // `exec` takes no `--` in dash: a program name with a leading dash goes through env
  parts.push(run.file.startsWith("-") ? `exec env -- ${words}` : `exec ${words}`)
  const text = parts.join("\n")
  const lines = text.split("\n").length
  const stage = `${lines}\n${text}\n`
  if (Buffer.byteLength(stage, "utf8") > SHELL_STAGE_MAX) return undefined
  return {
    stage,
    secretLines: () => names.map((name) => Redacted.value(invocation.secrets[name]!) + "\n").join("")
  }
}

/**
 * The direct launch of an invocation that needs no wrapper stage.
 *
 * @internal
 */
export const make = (invocation: Invocation): Option.Option<ScriptRender.DirectLaunch> => {
  if (!eligible(invocation)) return Option.none()
  const run = program(invocation)
  if (run === undefined) return Option.none()
  const token = randomHex(16)
  return Option.some({
    file: run.file,
    args: run.args,
    cwd: invocation.cwd,
    token,
    tokenVariable: TOKEN_VAR,
    environment: () => environment(invocation, token)
  })
}

/**
 * The direct launch through the login shell: a constant command line, the stage and secrets on stdin, a filter for
 * the launch's own failure line on stderr.
 *
 * @internal
 */
export const makeShell = (
  invocation: Invocation,
  options?: ScriptRender.RenderOptions
): Option.Option<ScriptRender.DirectShellLaunch> => {
  const nonce = checkNonce(options?.nonce ?? randomHex(12))
  const token = randomHex(16)
  const rendered = shellStage(invocation, nonce, token)
  if (rendered === undefined) return Option.none()
  const transport = options?.transport ?? "wrapper"
  const marker = encoder.encode(cwdFailure(nonce))
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
    commandLine: SHELL_BOOTSTRAP,
    nonce,
    token,
    tokenVariable: TOKEN_VAR,
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
    killScript: (pgid, grace) => killScript({ token, nonce, pgid, wrapperPid: undefined, grace })
  })
}
