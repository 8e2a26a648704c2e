/**
 * The self-contained POSIX launch: one `sh` script text for services that take a script and nothing else (AWS SSM
 * Run Command, Azure Run Command): no stdin, no second channel. The text carries the environment, the working
 * directory, the job's files (inline, base64) and its stdin, and starts the user's program in a new session with
 * the execution token in its environment; it reports how the program ended in a protocol line on stderr that
 * {@link SelfContainedLaunch.interpret} removes. It never contains a secret: a caller-given snippet fetches them
 * at run time.
 *
 * Stages (each a separate `sh`):
 * - main (the service's user, root under SSM): traps TERM/INT/HUP (sweeps the token's processes, grace, KILL),
 *   writes the files (and a script over 64 KiB, which would not fit in one `exec` argument) into a private
 *   directory (0700), starts the launcher, waits, removes the directory, exits with the program's code;
 * - launcher (the new session's leader): prints the launch mark, then `exec`s the escalation tool (run-as) or
 *   directly the inner stage;
 * - inner (the target user): fetches the secrets (the snippet), exports env, `RUNCMD_FILES` and the token, `cd`s,
 *   `exec`s the user's program.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import type { ExitStatus, Invocation } from "../Transport.js"
import { FILES_ENV } from "../Transport.js"
import {
  checkNonce,
  isEnvName,
  KILL_LIB,
  killScript,
  LAUNCH_MARK,
  marker,
  quote,
  randomHex,
  SESSION_CHAIN,
  TOKEN_VAR
} from "./wrapperPosix.js"
import { makeParser } from "./wrapperProtocol.js"

/** @internal */
export const DEFAULT_MAX_INLINE_BYTES = 32 * 1024

/** @internal */
export interface Options {
  readonly nonce?: string | undefined
  readonly secretsSnippet?: string | undefined
  readonly fileCommands?: { readonly [name: string]: string } | undefined
  readonly maxInlineBytes?: number | undefined
  readonly tokenSuffix?: string | undefined
}

/** @internal */
export type Failure =
  | { readonly reason: "Secrets"; readonly message: string }
  | { readonly reason: "FilesTooLarge"; readonly message: string; readonly bytes: number; readonly limit: number }
  | { readonly reason: "Unsupported"; readonly message: string }
  | { readonly reason: "InvalidEnv"; readonly message: string }

/** @internal */
export interface Launch {
  readonly script: string
  readonly nonce: string
  readonly token: string
  readonly tokenVariable: string
  readonly inlineBytes: number
  readonly killScript: (grace: Duration.Duration) => string
  readonly interpret: (
    code: number | undefined,
    stderr: Uint8Array
  ) => { readonly status: Either.Either<ExitStatus, string>; readonly stderr: Uint8Array }
}

const IFS_RESET = "IFS=' \t\n'"

const ticks = (d: Duration.Duration): number => Math.max(0, Math.ceil(Duration.toMillis(d) / 100))

/**
 * A script longer than this is written into the private directory and run from there: given inline it would be one
 * argument of `exec`, and Linux refuses an argument over 128 KiB (`MAX_ARG_STRLEN`). The program's `$0`
 * (`sys.argv[0]`) is then the file's path instead of `runcmd` (`-c`).
 */
const STAGED_SOURCE_BYTES = 64 * 1024

/** Where a staged script is written, in the private directory. */
const STAGED_SOURCE = `"$__rc_d/source"`

/** The inner stage's last line: the user's program with its arguments, or why it cannot run. */
const execLine = (invocation: Invocation, redirect: string, staged: boolean): Either.Either<string, Failure> => {
  const args = invocation.args.map(quote).join(" ")
  const withArgs = (s: string) => (args.length > 0 ? `${s} ${args}` : s)
  const source = invocation.source
  switch (source._tag) {
    case "Command": {
      const all = [...source.argv, ...invocation.args].map(quote).join(" ")
      return Either.right(`${source.argv[0].startsWith("-") ? "exec env -- " : "exec "}${all}${redirect}`)
    }
    case "Script": {
      switch (source.interpreter) {
        case "sh":
        case "bash":
          return Either.right(
            withArgs(
              `exec ${source.interpreter === "sh" ? "/bin/sh" : "bash"} ${
                staged ? STAGED_SOURCE : `-c ${quote(source.text)} runcmd`
              }`
            ) + redirect
          )
        case "python":
          return Either.right(
            `__rc_py=python3; command -v python3 >/dev/null 2>&1 || __rc_py=python\n` +
              withArgs(`exec "$__rc_py" ${staged ? STAGED_SOURCE : `-c ${quote(source.text)}`}`) + redirect
          )
        case "powershell":
          return Either.left({
            reason: "Unsupported",
            message: "a PowerShell script cannot run in the POSIX self-contained launch; " +
              "give the target os: windows (ScriptRender.powershell) or use an sh/bash/python script"
          })
      }
    }
    // falls through: TypeScript knows every interpreter is handled
    case "Native":
      return Either.left({
        reason: "Unsupported",
        message: "a Native source is sent by the transport itself, not through the self-contained launch"
      })
  }
}

const escalation = (invocation: Invocation): Either.Either<string, Failure> => {
  const runAs = invocation.runAs
  if (runAs === undefined) return Either.right("")
  if (runAs.password !== undefined) {
    return Either.left({
      reason: "Unsupported",
      message: "run-as with a password needs a channel for it (no stdin here); use passwordless sudo (NOPASSWD), " +
        "runuser or doas for this target"
    })
  }
  const user = quote(runAs.user)
  const env = `env "${TOKEN_VAR}=$2"`
  switch (runAs.method) {
    case "sudo":
      return Either.right(`sudo -n -u ${user} -- ${env} `)
    case "runuser":
      return Either.right(`runuser -u ${user} -- ${env} `)
    case "doas":
      return Either.right(`doas -n -u ${user} ${env} `)
    case "su":
      return Either.left({
        reason: "Unsupported",
        message: "run-as by su needs a terminal or a password; use sudo, runuser or doas for this target"
      })
  }
}

const base64Lines = (bytes: Uint8Array): string => {
  const text = Buffer.from(bytes).toString("base64")
  const lines: Array<string> = []
  for (let i = 0; i < text.length; i += 76) lines.push(text.slice(i, i + 76))
  return lines.join("\n")
}

/** Environment variable names both shells can set, or why not. @internal */
export const checkEnvNames = (invocation: Invocation): Failure | undefined => {
  const bad = Object.keys(invocation.env).filter((n) => !isEnvName(n))
  return bad.length === 0 ? undefined : {
    reason: "InvalidEnv",
    message: `environment variable names must match [A-Za-z_][A-Za-z0-9_]*: ${bad.join(", ")}`
  }
}

/** The bytes a self-contained launch carries inline (stdin and the files not fetched), within `limit`. @internal */
export const inlineBytesOf = (
  invocation: Invocation,
  fetched: { readonly [name: string]: string },
  limit: number
): Either.Either<number, Failure> => {
  let bytes = invocation.stdin?.length ?? 0
  for (const file of invocation.files ?? []) if (fetched[file.name] === undefined) bytes += file.bytes.length
  return bytes <= limit ? Either.right(bytes) : Either.left({
    reason: "FilesTooLarge",
    message: `the job's files and stdin are ${bytes} bytes, more than the ${limit} bytes that go inline ` +
      "in the script text; configure a bucket for files (the transport's files option) or ship fewer bytes",
    bytes,
    limit
  })
}

/** @internal */
export const make = (invocation: Invocation, options: Options = {}): Either.Either<Launch, Failure> => {
  const nonce = options.nonce === undefined ? randomHex(12) : checkNonce(options.nonce)
  const token = randomHex(16)
  const m = marker(nonce)
  const limit = options.maxInlineBytes ?? DEFAULT_MAX_INLINE_BYTES

  const env = checkEnvNames(invocation)
  if (env !== undefined) return Either.left(env)
  const secretNames = Object.keys(invocation.secrets)
  if (secretNames.length > 0 && options.secretsSnippet === undefined) {
    return Either.left({
      reason: "Secrets",
      message: `the job has secrets (${secretNames.sort().join(", ")}) but this launch is plain script text ` +
        "that the service stores and shows: secrets are never written into it. Enable a run-time secret fetch " +
        "(the transport's secrets option) or remove the secrets from the job"
    })
  }
  const files = invocation.files ?? []
  const fetched = options.fileCommands ?? {}
  const inline = inlineBytesOf(invocation, fetched, limit)
  if (Either.isLeft(inline)) return Either.left(inline.left)
  const inlineBytes = inline.right
  const source = invocation.source
  const staged = source._tag === "Script" && Buffer.byteLength(source.text, "utf8") > STAGED_SOURCE_BYTES
  const hasDir = files.length > 0 || invocation.stdin !== undefined || staged
  const redirect = invocation.stdin === undefined ? "" : ` <"$__rc_d/stdin"`
  const exec = execLine(invocation, redirect, staged)
  if (Either.isLeft(exec)) return Either.left(exec.left)
  const escalate = escalation(invocation)
  if (Either.isLeft(escalate)) return Either.left(escalate.left)

  // the inner stage, as the target user
  const inner: Array<string> = [IFS_RESET, `__rc_p() { printf '%s:%s\\n' ${quote(m)} "$*" >&2; }`]
  if (hasDir) inner.push(`__rc_d=$1`)
  if (options.secretsSnippet !== undefined) {
    inner.push(`{\n${options.secretsSnippet}\n} || { __rc_p 'fail secrets'; exit 125; }`)
  }
  for (const [name, value] of Object.entries(invocation.env)) inner.push(`${name}=${quote(value)}; export ${name}`)
  if (files.length > 0) inner.push(`${FILES_ENV}="$__rc_d/files"; export ${FILES_ENV}`)
  inner.push(`${TOKEN_VAR}=$2; export ${TOKEN_VAR}`)
  if (invocation.cwd !== undefined) {
    inner.push(
      `cd -- ${quote(invocation.cwd)} 2>/dev/null || cd ${quote(invocation.cwd)} 2>/dev/null || ` +
        `{ __rc_p 'fail cwd'; exit 125; }`
    )
  }
  inner.push(exec.right)
  const innerText = inner.join("\n") + "\n"

  // the launcher: the new session's leader
  const boot = `printf '%s' '${LAUNCH_MARK}' >&2; exec 2>&9 9>&-; exec ${escalate.right}/bin/sh -c ${
    quote(innerText)
  } runcmd "$1" "$2"`

  const main: Array<string> = [
    `# runcmd self-contained launch`,
    IFS_RESET,
    `__rc_R=${quote(m)}`,
    `__rc_p() { printf '%s:%s\\n' "$__rc_R" "$*" >&2; }`,
    `__rc_tok=${quote(token)}${options.tokenSuffix ?? ""}`,
    `__rc_pg=`,
    ...KILL_LIB,
    `__rc_d=`,
    `__rc_clean() { [ -n "$__rc_d" ] && rm -rf -- "$__rc_d" 2>/dev/null; }`,
    `__rc_term() {`,
    `  trap '' TERM INT HUP`,
    `  __rc_sweep TERM`,
    `  __rc_i=0`,
    `  while [ "$__rc_i" -lt ${ticks(invocation.killGrace)} ] && __rc_alive; do __rc_nap; __rc_i=$((__rc_i + 1)); done`,
    `  __rc_sweep KILL`,
    `  __rc_clean`,
    `  exit 143`,
    `}`
  ]
  if (hasDir) {
    main.push(
      `__rc_d=$(umask 077 && mktemp -d "\${TMPDIR:-/tmp}/runcmd.XXXXXXXX") || { __rc_p 'fail files'; exit 125; }`,
      `chmod 700 "$__rc_d" && mkdir -m 700 "$__rc_d/files" || { __rc_p 'fail files'; exit 125; }`
    )
    const decodes = invocation.stdin !== undefined || files.some((file) => fetched[file.name] === undefined)
    if (decodes) main.push(`command -v base64 >/dev/null 2>&1 || { __rc_p 'fail files base64-not-found'; exit 125; }`)
    const write = (path: string, bytes: Uint8Array | undefined, command: string | undefined, mode: number) => {
      const delimiter = `RUNCMD_B64_${nonce}`
      if (command !== undefined) {
        main.push(`{ ${command}\n} >"${path}" || { __rc_p 'fail files fetch'; __rc_clean; exit 125; }`)
      } else {
        main.push(
          `base64 -d >"${path}" <<'${delimiter}' || { __rc_p 'fail files'; __rc_clean; exit 125; }`,
          base64Lines(bytes ?? new Uint8Array(0)),
          delimiter
        )
      }
      main.push(`chmod ${mode.toString(8)} "${path}"`)
    }
    for (const file of files) {
      const slash = file.name.lastIndexOf("/")
      if (slash > 0) main.push(`mkdir -p -m 700 "$__rc_d/files/"${quote(file.name.slice(0, slash))}`)
      write(`$__rc_d/files/"${quote(file.name)}"`, file.bytes, fetched[file.name], file.mode)
    }
    if (invocation.stdin !== undefined) write(`$__rc_d/stdin`, invocation.stdin, undefined, 0o600)
    if (staged && source._tag === "Script") {
      // printf is a builtin: no exec, so no argument limit
      main.push(
        `__rc_src=${quote(source.text)}`,
        `printf '%s' "$__rc_src" >${STAGED_SOURCE} || { __rc_p 'fail files source'; __rc_clean; exit 125; }`,
        `unset __rc_src; chmod 600 ${STAGED_SOURCE}`
      )
    }
    if (invocation.runAs !== undefined) {
      main.push(
        `chown -R ${quote(invocation.runAs.user)} "$__rc_d" || { __rc_p 'fail files chown'; __rc_clean; exit 125; }`
      )
    }
  }
  // how to start a new session and learn how its leader ended (the probe's answer cached per user, as the wrapper does)
  for (const line of SESSION_CHAIN) main.push(line)
  main.push(
    `__rc_boot=${quote(boot)}`,
    `trap '__rc_term' TERM INT HUP`,
    `(`,
    `  trap - TERM INT HUP`,
    `  __rc_st=$($__rc_chain "${TOKEN_VAR}=$__rc_tok" /bin/sh -c "$__rc_boot" runcmd "$__rc_d" "$__rc_tok" </dev/null 9>&2 2>&1 1>&8 8>&-)`,
    `  __rc_x=$?`,
    `  case $__rc_st in`,
    `    *'${LAUNCH_MARK}')`,
    `      if [ "$__rc_mode" = w ]; then __rc_p "exit $__rc_x"; else __rc_p "shstatus $__rc_x"; fi`,
    `      exit "$__rc_x" ;;`,
    `    *'${LAUNCH_MARK}'*)`,
    `      __rc_n=$((__rc_x & 127))`,
    `      __rc_p "signal $__rc_n $(kill -l "$__rc_n" 2>/dev/null)"`,
    `      exit $((128 + __rc_n)) ;;`,
    `    *) __rc_p "fail launch $__rc_x"; exit 125 ;;`,
    `  esac`,
    `) 8>&1 &`,
    `__rc_rp=$!`,
    `while :; do`,
    `  wait "$__rc_rp"; __rc_x=$?`,
    `  kill -0 "$__rc_rp" 2>/dev/null || break`,
    `done`,
    `__rc_clean`,
    `exit "$__rc_x"`
  )
  const script = main.join("\n") + "\n"

  const interpret = (code: number | undefined, stderr: Uint8Array) => {
    const parser = makeParser(m)
    const { bytes, messages } = parser.push(stderr)
    const rest = parser.end()
    const cleaned = rest.length === 0 ? bytes : Buffer.concat([bytes, rest])
    // a stage that failed says so before the main stage reports its status
    const last = messages.find((message) => message.startsWith("fail")) ?? messages.at(-1)
    let status: Either.Either<ExitStatus, string>
    if (last === undefined) {
      status = code === undefined || code < 0
        ? Either.left("the launch reported nothing and the service gave no exit code")
        : Either.right({ _tag: "Exited", code })
    } else if (last.startsWith("exit ") || last.startsWith("shstatus ")) {
      status = Either.right({ _tag: "Exited", code: Number(last.slice(last.indexOf(" ") + 1)) })
    } else if (last.startsWith("signal ")) {
      const [, number, name] = last.split(" ")
      status = Either.right({
        _tag: "Signaled",
        signal: name !== undefined && name !== "" ? `SIG${name}` : `SIG${number}`
      })
    } else {
      status = Either.left(last)
    }
    return { status, stderr: cleaned }
  }

  return Either.right({
    script,
    nonce,
    token,
    tokenVariable: TOKEN_VAR,
    inlineBytes,
    killScript: (grace) => killScript({ token, nonce, pgid: undefined, wrapperPid: undefined, grace }),
    interpret
  })
}
