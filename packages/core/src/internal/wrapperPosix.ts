/**
 * The POSIX wrapper's shell text. Three stages, each read from stdin by the constant bootstrap (a length line,
 * then exactly that many bytes with `head -c`, then `eval`), so nothing of the user's leaves the wrapper's stdin
 * except what the transport itself passes:
 *
 * - outer (the transport's user): switches user (`exec sudo ... /bin/sh -c EBOOT`) or goes on in-process;
 * - inner (the target user): prints `ready`, `cd`s, traps TERM, starts the launcher in a new session through
 *   `setsid setsid -w` (whose exit status tells an exit from a signal death), reports the status line;
 * - launch (the new session's leader): reports its PGID, reads the secrets from stdin, exports env, secrets and
 *   the token, and `exec`s the user's program, which inherits the rest of stdin.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import type { RunAs } from "../ExecutionPolicy.js"
import type { Invocation } from "../Transport.js"

/** @internal */
export const END = "#runcmd-end"

/** @internal */
export const TOKEN_VAR = "RUNCMD_TOKEN"

/** @internal */
export const LAUNCH_MARK = "@runcmd-L@"

/**
 * Reads `<n>\n` then exactly n bytes (GNU/busybox `head -c` never reads past n from a pipe), checks the end
 * marker (a truncated stage never runs) and evaluates it. Constant: no user data, no secrets.
 *
 * @internal
 */
export const BOOTSTRAP = `read -r n || exit 125; w=$(head -c "$n") || exit 125; case $w in *'${END}') ;; ` +
  `*) printf '%s\\n' 'runcmd: truncated wrapper' >&2; exit 125;; esac; eval "$w"`

// random bytes come from a pool refilled 4 KiB at a time: one getRandomValues call per execution costs more
// than the rest of a cheap execution's rendering
const pool = new Uint8Array(4096)
let poolOffset = pool.length
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"))

/** `bytes` random bytes as hex (nonces and tokens). @internal */
export const randomHex = (bytes: number): string => {
  if (poolOffset + bytes > pool.length) {
    globalThis.crypto.getRandomValues(pool)
    poolOffset = 0
  }
  let out = ""
  for (let i = 0; i < bytes; i++) out += HEX[pool[poolOffset++]!]
  return out
}

/**
 * A nonce given by the caller (tests, previews) must be safe in a regular expression and a shell word; a bad one is
 * a defect (transports never pass one).
 *
 * @internal
 */
export const checkNonce = (nonce: string): string => {
  if (!/^[A-Za-z0-9_-]+$/.test(nonce)) throw new Error("ScriptRender: a nonce must match [A-Za-z0-9_-]+")
  return nonce
}

/** @internal */
export const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** @internal */
export const isEnvName = (name: string): boolean => ENV_NAME.test(name)

const IFS_RESET = "IFS=' \t\n'"

/** @internal */
export const marker = (nonce: string): string => `runcmd-${nonce}`

const block = (lines: ReadonlyArray<string>): string => `{\n${lines.join("\n")}\n}\n${END}\n`

/** Ticks of 100 ms. */
const ticks = (d: Duration.Duration): number => Math.max(0, Math.ceil(Duration.toMillis(d) / 100))

/**
 * Sets `$__rc_chain`: how to start a new session and learn how its leader ended (`setsid setsid -w` tells an exit
 * from a signal death), with the default INT/QUIT dispositions given back (an asynchronous list ignores them).
 * Probing costs two process starts, so the answer is cached per user in a file only that user owns; what is read
 * back is checked against the only values the probe can produce. The token goes into the environment of the session
 * leader only (`env` sets it), not into setsid's: a sweep never kills `setsid -w`, which reports how the leader ended.
 *
 * @internal
 */
export const SESSION_CHAIN: ReadonlyArray<string> = [
  `__rc_mode= __rc_ds=`,
  `__rc_cf="\${TMPDIR:-/tmp}/.runcmd-caps-v1-\${USER:-\${LOGNAME:-anon}}"`,
  `if [ -f "$__rc_cf" ] && [ -O "$__rc_cf" ] && { IFS= read -r __rc_mode && IFS= read -r __rc_ds; } <"$__rc_cf"; then`,
  `  case $__rc_mode in w|s|none) ;; *) __rc_mode= ;; esac`,
  `  case $__rc_ds in ''|--default-signal=INT,QUIT) ;; *) __rc_mode= __rc_ds= ;; esac`,
  `else __rc_mode= __rc_ds=; fi`,
  `if [ -z "$__rc_mode" ]; then`,
  `  __rc_mode=none`,
  `  if command -v setsid >/dev/null 2>&1; then`,
  `    if setsid -w true >/dev/null 2>&1; then __rc_mode=w; else __rc_mode=s; fi`,
  `  fi`,
  `  env --default-signal=INT,QUIT true >/dev/null 2>&1 && __rc_ds='--default-signal=INT,QUIT'`,
  `  { printf '%s\\n%s\\n' "$__rc_mode" "$__rc_ds" >"$__rc_cf.$$" && mv -f "$__rc_cf.$$" "$__rc_cf"; } 2>/dev/null || rm -f "$__rc_cf.$$" 2>/dev/null`,
  `fi`,
  `case $__rc_mode in`,
  `  w) __rc_chain="setsid setsid -w env $__rc_ds" ;;`,
  `  s) __rc_chain="setsid env $__rc_ds" ;;`,
  `  *) __rc_chain="env $__rc_ds" ;;`,
  `esac`
]

/**
 * Shell functions shared by the inner stage's TERM trap and the kill script. Expects `__rc_tok` (token) and
 * `__rc_pg` (a process group id, or empty).
 *
 * @internal
 */
export const KILL_LIB = [
  `__rc_nap() { sleep 0.1 2>/dev/null || sleep 1; }`,
  // pids of live processes whose initial environment carries the token (zombies have an empty environ)
  `__rc_tpids() { grep -lsF -e "${TOKEN_VAR}=$__rc_tok" /proc/[0-9]*/environ 2>/dev/null; }`,
  `__rc_stat() { __rc_l=; read -r __rc_l 2>/dev/null < "/proc/$1/stat" || return 1; __rc_l=\${__rc_l##*) }; }`,
  `__rc_self=; __rc_stat $$ && { set -- $__rc_l; __rc_self=$3; }`,
  `__rc_sweep() {`,
  `  [ -n "$__rc_pg" ] && kill -"$1" -"$__rc_pg" 2>/dev/null`,
  `  for __rc_f in $(__rc_tpids); do`,
  `    __rc_q=\${__rc_f#/proc/}; __rc_q=\${__rc_q%/environ}`,
  `    kill -"$1" "$__rc_q" 2>/dev/null`,
  `    if __rc_stat "$__rc_q"; then`,
  `      set -- "$1" $__rc_l`,
  `      case $4 in ''|0|1|"$__rc_self") ;; *) kill -"$1" -"$4" 2>/dev/null ;; esac`,
  `    fi`,
  `  done`,
  `}`,
  // counts live (non-zombie) processes in the group and carrying the token
  `__rc_count() {`,
  `  __rc_n=0`,
  `  if [ -n "$__rc_pg" ]; then`,
  `    for __rc_f in /proc/[0-9]*/stat; do`,
  `      read -r __rc_l 2>/dev/null < "$__rc_f" || continue`,
  `      __rc_l=\${__rc_l##*) }`,
  `      set -- $__rc_l`,
  `      [ "$3" = "$__rc_pg" ] && [ "$1" != Z ] && [ "$1" != X ] && __rc_n=$((__rc_n + 1))`,
  `    done`,
  `  fi`,
  `  for __rc_f in $(__rc_tpids); do`,
  `    __rc_q=\${__rc_f#/proc/}; __rc_q=\${__rc_q%/environ}`,
  `    __rc_stat "$__rc_q" || continue`,
  `    set -- $__rc_l`,
  `    [ "$1" = Z ] && continue`,
  `    [ -n "$__rc_pg" ] && [ "$3" = "$__rc_pg" ] && continue`,
  `    __rc_n=$((__rc_n + 1))`,
  `  done`,
  `}`,
  `__rc_alive() { __rc_count; [ "$__rc_n" -gt 0 ]; }`
]

/**
 * The kill script: TERM the group and every token carrier, wait the grace, KILL, wait, report truthfully.
 *
 * @internal
 */
export const killScript = (options: {
  readonly token: string
  readonly nonce: string
  readonly pgid: number | undefined
  readonly wrapperPid: number | undefined
  readonly grace: Duration.Duration
}): string => {
  const lines = [
    IFS_RESET,
    `__rc_tok=${quote(options.token)}`,
    `__rc_pg=${options.pgid === undefined || !Number.isSafeInteger(options.pgid) ? "" : String(options.pgid)}`,
    ...KILL_LIB
  ]
  if (options.wrapperPid !== undefined && Number.isSafeInteger(options.wrapperPid)) {
    // the wrapper (or the sudo it became) forwards TERM to the inner stage, which may run as another user;
    // only when its command line still names this execution (never a recycled pid)
    lines.push(
      `grep -qsF -e ${quote(marker(options.nonce))} /proc/${options.wrapperPid}/cmdline && ` +
        `kill -TERM ${options.wrapperPid} 2>/dev/null`
    )
  }
  lines.push(
    `__rc_sweep TERM`,
    `__rc_i=0`,
    `while [ "$__rc_i" -lt ${ticks(options.grace)} ] && __rc_alive; do __rc_nap; __rc_i=$((__rc_i + 1)); done`,
    `__rc_sweep KILL`,
    `__rc_i=0`,
    `while [ "$__rc_i" -lt 30 ] && __rc_alive; do __rc_nap; __rc_i=$((__rc_i + 1)); done`,
    `__rc_count`,
    `if [ "$__rc_n" -eq 0 ]; then echo runcmd-kill:gone; else echo "runcmd-kill:alive $__rc_n"; fi`
  )
  return lines.join("\n") + "\n"
}

/** The bootstrap run after escalation: announces the escalated shell, then reads the inner stage. */
const eboot = (nonce: string): string => `printf '%s\\n' '${marker(nonce)}:ready' >&2; ${BOOTSTRAP}`

/** @internal */
export const promptText = (nonce: string): string => `${marker(nonce)}:prompt\n`

/** @internal */
export const escalationCommand = (runAs: RunAs, nonce: string): string => {
  const user = quote(runAs.user)
  const boot = quote(eboot(nonce))
  switch (runAs.method) {
    case "sudo":
      return runAs.password !== undefined
        ? `exec sudo -S -p ${quote(promptText(nonce))} -u ${user} -- /bin/sh -c ${boot}`
        : `exec sudo -n -u ${user} -- /bin/sh -c ${boot}`
    case "runuser":
      return `exec runuser -u ${user} -- /bin/sh -c ${boot}`
    case "su":
      return `exec su -s /bin/sh -c ${boot} ${user}`
    case "doas":
      return `exec doas -n -u ${user} /bin/sh -c ${boot}`
  }
}

/** @internal */
export const outer = (invocation: Invocation, nonce: string): string => {
  const m = marker(nonce)
  const lines = [IFS_RESET, `__rc_R=${quote(m)}`]
  const runAs = invocation.runAs
  if (runAs === undefined) {
    lines.push(`printf '%s:ready\\n' "$__rc_R" >&2`, BOOTSTRAP)
  } else {
    const tool = runAs.method
    lines.push(
      `printf '%s:wrapper %s\\n' "$__rc_R" "$$" >&2`,
      `command -v ${tool} >/dev/null 2>&1 || { printf '%s:fail escalation ${tool}-not-found\\n' "$__rc_R" >&2; exit 125; }`,
      escalationCommand(runAs, nonce)
    )
  }
  return block(lines)
}

/** @internal */
export const inner = (invocation: Invocation, nonce: string, token: string): string => {
  const m = marker(nonce)
  const lines = [
    IFS_RESET,
    `__rc_R=${quote(m)}`,
    `__rc_p() { printf '%s:%s\\n' "$__rc_R" "$*" >&2; }`
  ]
  if (invocation.cwd !== undefined) {
    lines.push(
      `cd -- ${quote(invocation.cwd)} 2>/dev/null || cd ${
        quote(invocation.cwd)
      } 2>/dev/null || { __rc_p 'fail cwd'; exit 125; }`
    )
  }
  lines.push(`__rc_tok=${quote(token)}`, `__rc_pg=`)
  for (const line of KILL_LIB) lines.push(line)
  lines.push(
    `__rc_term() {`,
    `  trap '' TERM INT HUP`,
    `  __rc_sweep TERM`,
    `  __rc_i=0`,
    `  while [ "$__rc_i" -lt ${ticks(invocation.killGrace)} ] && __rc_alive; do __rc_nap; __rc_i=$((__rc_i + 1)); done`,
    `  __rc_sweep KILL`,
    `}`
  )
  for (const line of SESSION_CHAIN) lines.push(line)
  lines.push(
    `__rc_boot=${quote(BOOTSTRAP)}`,
    `trap '__rc_term' TERM INT HUP`,
    `exec 7<&0`,
    `(`,
    `  trap : TERM HUP`,
    `  __rc_st=$($__rc_chain "${TOKEN_VAR}=$__rc_tok" /bin/sh -c "$__rc_boot" runcmd 9>&2 2>&1 1>&8 8>&-)`,
    `  __rc_x=$?`,
    `  case $__rc_st in`,
    `    *'${LAUNCH_MARK}')`,
    `      if [ "$__rc_mode" = w ]; then __rc_p "exit $__rc_x"; else __rc_p "shstatus $__rc_x"; fi`,
    `      exit "$__rc_x" ;;`,
    `    *'${LAUNCH_MARK}'*)`,
    `      __rc_n=$((__rc_x & 127)); __rc_c=`,
    `      [ $((__rc_x & 128)) -ne 0 ] && __rc_c=' core'`,
    `      __rc_p "signal $__rc_n $(kill -l "$__rc_n" 2>/dev/null)$__rc_c"`,
    `      exit $((128 + __rc_n)) ;;`,
    `    *) __rc_p "fail launch $__rc_x"; exit 125 ;;`,
    `  esac`,
    `) 0<&7 7<&- 8>&1 &`,
    `__rc_rp=$!`,
    `exec 7<&-`,
    `while :; do`,
    `  wait "$__rc_rp"; __rc_x=$?`,
    `  kill -0 "$__rc_rp" 2>/dev/null || break`,
    `done`,
    `exit "$__rc_x"`
  )
  return block(lines)
}

/** The longest script passed as one argv string (Linux caps one argument at 128 KiB). @internal */
export const SCRIPT_ARG_MAX = 96 * 1024

const byteLength = (s: string): number => Buffer.byteLength(s, "utf8")

/** A here-document delimiter that is no line of `text`. */
const heredocDelimiter = (text: string, nonce: string): string => {
  let delimiter = `RUNCMD_SCRIPT_${nonce}`
  const lines = new Set(text.split("\n"))
  while (lines.has(delimiter)) delimiter += "_"
  return delimiter
}

/** The `exec` line running the user's source with its arguments. */
const execLine = (invocation: Invocation, nonce: string): ReadonlyArray<string> => {
  const args = invocation.args.map(quote).join(" ")
  const withArgs = (s: string) => (args.length > 0 ? `${s} ${args}` : s)
  const source = invocation.source
  switch (source._tag) {
    case "Command": {
      const [program, ...rest] = source.argv
      const all = [program, ...rest, ...invocation.args].map(quote).join(" ")
      // `exec` takes no `--` in dash: a program name with a leading dash goes through env
      return [program.startsWith("-") ? `exec env -- ${all}` : `exec ${all}`]
    }
    case "Script": {
      const interpreter = source.interpreter === "bash"
        ? "bash"
        : source.interpreter === "python"
        ? "\"$__rc_py\""
        : source.interpreter === "powershell"
        ? "pwsh"
        : "/bin/sh"
      const pre = source.interpreter === "python"
        ? [`__rc_py=python3; command -v python3 >/dev/null 2>&1 || __rc_py=python`]
        : []
      if (source.interpreter === "powershell") {
        return [
          `printf '%s:fail interpreter powershell\\n' ${quote(marker(nonce))} >&2`,
          `exit 125`
        ]
      }
      if (byteLength(source.text) <= SCRIPT_ARG_MAX) {
        // sh/bash: `-c text $0 args...`; python: `-c text args...` (sys.argv[0] is "-c")
        const zero = source.interpreter === "python" ? "" : " runcmd"
        return [...pre, withArgs(`exec ${interpreter} -c ${quote(source.text)}${zero}`)]
      }
      // too long for one argv string: the interpreter reads it from fd 3, a here-document
      const delimiter = heredocDelimiter(source.text, nonce)
      const body = source.text.endsWith("\n") ? source.text : source.text + "\n"
      return [
        ...pre,
        `${withArgs(`exec ${interpreter} /dev/fd/3`)} 3<<'${delimiter}'`,
        body + delimiter
      ]
    }
    case "Native":
      return [`printf '%s:fail native\\n' ${quote(marker(nonce))} >&2`, `exit 125`]
  }
}

/** @internal */
export const secretNames = (invocation: Invocation): ReadonlyArray<string> => Object.keys(invocation.secrets).sort()

/** @internal */
export const launch = (invocation: Invocation, nonce: string, token: string): string => {
  const m = marker(nonce)
  const lines = [
    `printf '%s' '${LAUNCH_MARK}' >&2`,
    `exec 2>&9 9>&-`,
    IFS_RESET,
    `printf '%s:pgid %s\\n' ${quote(m)} "$$" >&2`
  ]
  const bad = [...Object.keys(invocation.env), ...Object.keys(invocation.secrets)].filter((n) => !isEnvName(n))
  if (bad.length > 0) {
    lines.push(`printf '%s:fail env\\n' ${quote(m)} >&2`, `exit 125`)
    return block(lines)
  }
  for (const name of secretNames(invocation)) {
    lines.push(
      `IFS= read -r __rc_v || { printf '%s:fail secrets\\n' ${quote(m)} >&2; exit 125; }`,
      `${name}=$(printf '%bx' "$__rc_v"); ${name}=\${${name}%x}; export ${name}`
    )
  }
  lines.push(`unset __rc_v`)
  for (const [name, value] of Object.entries(invocation.env)) {
    if (Object.hasOwn(invocation.secrets, name)) continue
    lines.push(`${name}=${quote(value)}; export ${name}`)
  }
  lines.push(`${TOKEN_VAR}=${quote(token)}; export ${TOKEN_VAR}`)
  for (const line of execLine(invocation, nonce)) lines.push(line)
  return block(lines)
}

const SAFE_BYTE = (b: number): boolean =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x5f ||
  b === 0x2e || b === 0x2f || b === 0x3a || b === 0x40 || b === 0x2b || b === 0x3d || b === 0x2c

/**
 * One secret value as one line for `read -r` and `printf %b`: every byte outside a small safe set becomes
 * `\0ooo`, so newlines (trailing ones included), backslashes and any UTF-8 survive.
 *
 * @internal
 */
export const encodeSecretLine = (value: string): string => {
  const bytes = Buffer.from(value, "utf8")
  let out = ""
  for (const b of bytes) {
    out += SAFE_BYTE(b) ? String.fromCharCode(b) : "\\0" + b.toString(8).padStart(3, "0")
  }
  return out + "\n"
}

/** `<bytes>\n<text>`: the framing the bootstrap reads. @internal */
export const frame = (text: string): string => `${byteLength(text)}\n${text}`
