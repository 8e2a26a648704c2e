/**
 * The lifeline: a small POSIX `sh` loop that a transport starts once (per layer locally, per pooled connection over
 * SSH) with a pipe from the controller on its stdin. The transport tells it, before each execution starts, the
 * execution's token (and its process groups once known), and tells it to forget the execution when it has ended.
 * When its stdin reaches EOF (the controller died by any means: SIGKILL, a crash, an OOM kill; the SSH connection
 * dropped) it ends every execution it still knows: TERM to the groups, to every process whose environment carries
 * a token and to their groups (`setsid` escapes), the longest kill grace, then KILL, and exits.
 *
 * It costs one process, which runs only builtins while it waits (`read`, `case`): a message is a line of a few
 * dozen bytes, and no process is started per execution. It ignores the terminal's signals (INT, HUP, QUIT) and
 * TERM, so a Ctrl-C or a TERM to the controller's process group cannot take it down before its sweep.
 *
 * Protocol (one line per message):
 * - `+ ID PGID TICKS TOKEN`: an execution: its id (a short number), a process group (`0` when not known yet), its kill
 *   grace in ticks of 100 ms and its token (hex; the first 16 digits are enough);
 * - `g ID PGID`: another process group of execution ID;
 * - `- ID`: execution ID has ended, forget it;
 * - `x ID`, a kill script's lines, `#runcmd-end`: kill execution ID now (the kill runs in the background, so kills
 *   do not queue behind each other) and answer `x ID <the kill script's output>` on stdout: over SSH, a kill
 *   needs no new session;
 * - `r ID`, a kill script's lines, `#runcmd-end`: how to end execution ID at EOF besides the sweep (a run-as job:
 *   the loop runs as the login user, the script reaches the other user's processes the way a kill does).
 *
 * - `d TICKS` (SSH): discover the executions instead of being told each one: at EOF, the loop also ends every
 *   process that carries a token and the loop's own `SSH_CONNECTION` (so was started over the same connection)
 *   and started after the loop, except the spared ones; `TICKS` is the longest kill grace so far. The loop answers
 *   the first one `d on` when it can (a `SSH_CONNECTION`, a grep with `-z`), else `d off`; until `d on` the
 *   controller tells every execution;
 * - `s TOKEN`: spare the processes carrying this token at EOF (an execution that has ended, whose processes left
 *   behind on purpose live on; a job that must outlive the controller).
 *
 * With discovery, an execution costs the loop nothing when it starts (no message on the connection before its
 * channel opens) and a few bytes when it has ended, batched with the others' (the controller flushes them at most
 * twice a second).
 *
 * A controller that closes the lifeline on purpose (a layer or a connection closing) has ended its jobs already: at
 * EOF the lifeline knows none and exits.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as DurationNs from "effect/Duration"
import * as posix from "./internal/wrapperPosix.js"

/**
 * The name the lifeline runs under (its `$0`, visible in the process table).
 *
 * @since 0.1.0
 * @category constants
 */
export const NAME = "runcmd-lifeline"

const T = posix.TOKEN_VAR

const SCRIPT = [
  // the terminal's signals and a TERM to the controller's group must not end it before its sweep
  `trap '' INT HUP QUIT TERM PIPE`,
  `IFS=' \t\n'`,
  `L=; G=0; R=; D=; P=; N=0; M=512`,
  // ST: when the loop started (clock ticks since boot, /proc/PID/stat field 22)
  `rc_start() { l=; read -r l 2>/dev/null < /proc/$$/stat || return 1; l=\${l##*) }; set -- $l; ST=\${20}; [ -n "$ST" ]; }`,
  // P: the spared tokens; dropped once no process carries them (one grep of every environment per 512 spared)
  `rc_prune() {`,
  `  a=$(grep -ohas "${T}=[0-9a-f]*" /proc/[0-9]*/environ 2>/dev/null); n=; N=0`,
  `  for t in $P; do case $a in *"${T}=$t"*) n="$n $t"; N=$((N + 1)) ;; esac; done`,
  `  P=$n; M=$((N + 512))`,
  `}`,
  // the executions of this connection: live token carriers with our SSH_CONNECTION, started after us, not spared
  `rc_discover() {`,
  `  f=$(grep -lszxF -e "SSH_CONNECTION=$SSH_CONNECTION" /proc/[0-9]*/environ 2>/dev/null)`,
  `  [ -n "$f" ] || return 0`,
  `  for m in $(grep -oasH "${T}=[0-9a-f]*" $f 2>/dev/null); do`,
  `    q=\${m%%/environ:*}; q=\${q#/proc/}; t=\${m##*=}`,
  `    [ "$q" = "$$" ] && continue`,
  `    [ \${#t} -gt 16 ] && t=\${t%"\${t#????????????????}"}`,
  `    case " $P " in *" $t "*) continue ;; esac`,
  `    l=; read -r l 2>/dev/null < "/proc/$q/stat" || continue`,
  `    l=\${l##*) }; set -- $l`,
  `    [ "\${20}" -ge "$ST" ] 2>/dev/null && L="$L 0:0:$t"`,
  `  done`,
  `}`,
  // S: the lines up to the end mark (a kill script); fails at EOF
  `rc_body() { S=; while IFS= read -r l; do [ "$l" = '${posix.END}' ] && return 0; S="$S$l\n"; done; return 1; }`,
  `while read -r o i a b c; do`,
  `  case $o in`,
  `    +) L="$L $i:$a:$c"; [ "$b" -gt "$G" ] 2>/dev/null && G=$b ;;`,
  `    g) L="$L $i:$a:" ;;`,
  `    -) n=; for e in $L; do case $e in "$i":*) ;; *) n="$n $e" ;; esac; done; L=$n`,
  `       case " $R " in *" $i "*) n=; for e in $R; do [ "$e" = "$i" ] || n="$n $e"; done; R=$n; unset "R_$i" ;; esac ;;`,
  `    x) if rc_body; then { r=$(eval "$S" 2>/dev/null </dev/null); printf 'x %s %s\n' "$i" "$r"; } & fi ;;`,
  `    r) rc_body && case $i in *[!0-9]*|'') ;; *) R="$R $i"; eval "R_$i=\\$S" ;; esac ;;`,
  // answered once (`d on`, or `d off` when it cannot discover): the controller also learns the loop runs
  `    d) if [ -z "$D" ]; then`,
  `         if [ -n "$SSH_CONNECTION" ] && rc_start && printf 'a=b\\0' | grep -qzxF 'a=b' 2>/dev/null`,
  `         then D=1; echo 'd on'; else D=0; echo 'd off'; fi`,
  `       fi`,
  `       [ "$i" -gt "$G" ] 2>/dev/null && G=$i ;;`,
  `    s) P="$P $i"; N=$((N + 1)); [ "$N" -gt "$M" ] && rc_prune ;;`,
  `  esac`,
  `done`,
  `[ "$D" = 1 ] && rc_discover`,
  `[ -z "$L" ] && [ -z "$R" ] && exit 0`,
  // the run-as jobs' own kills, beside the sweep
  `for i in $R; do eval "S=\\$R_$i"; (eval "$S" >/dev/null 2>&1 </dev/null) & done`,
  // our own group (a session leader's), never signalled
  `S=$$`,
  `rc_nap() { sleep 0.1 2>/dev/null || sleep 1; }`,
  // C: live processes carrying a token (a zombie's environ is empty)
  `rc_carriers() {`,
  `  C=; set --`,
  `  for e in $L; do t=\${e##*:}; [ -n "$t" ] && set -- "$@" -e "${T}=$t"; done`,
  `  [ $# -eq 0 ] && return`,
  `  for f in $(grep -lsF "$@" /proc/[0-9]*/environ 2>/dev/null); do q=\${f#/proc/}; C="$C \${q%/environ}"; done`,
  `}`,
  `rc_group_ok() { case $1 in ''|0|1|"$S") return 1 ;; esac; }`,
  `rc_sweep() {`,
  `  for e in $L; do g=\${e#*:}; g=\${g%%:*}; rc_group_ok "$g" && kill -"$1" -"$g" 2>/dev/null; done`,
  `  rc_carriers`,
  `  for p in $C; do`,
  `    kill -"$1" "$p" 2>/dev/null`,
  `    l=; read -r l 2>/dev/null < "/proc/$p/stat" || continue`,
  `    l=\${l##*) }; set -- "$1" $l`,
  `    rc_group_ok "$4" && kill -"$1" -"$4" 2>/dev/null`,
  `  done`,
  `}`,
  `rc_alive() {`,
  `  for e in $L; do g=\${e#*:}; g=\${g%%:*}; rc_group_ok "$g" && kill -0 -"$g" 2>/dev/null && return 0; done`,
  `  rc_carriers; [ -n "$C" ]`,
  `}`,
  `rc_sweep TERM`,
  `k=0; while [ "$k" -lt "$G" ] && rc_alive; do rc_nap; k=$((k + 1)); done`,
  `k=0; while [ "$k" -lt 20 ] && rc_alive; do rc_sweep KILL; rc_nap; k=$((k + 1)); done`,
  `wait`,
  `exit 0`,
  posix.END
].join("\n")

/**
 * The command that starts a lifeline: the wrapper's constant bootstrap (reads a framed script from stdin and
 * evaluates it), under the name {@link NAME}. No user data.
 *
 * @since 0.1.0
 * @category constants
 */
export const argv: ReadonlyArray<string> = ["/bin/sh", "-c", posix.BOOTSTRAP, NAME]

/**
 * {@link argv} as one shell command line (for SSH `exec`; any login shell that runs `/bin/sh`).
 *
 * @since 0.1.0
 * @category constants
 */
export const commandLine: string = `/bin/sh -c ${posix.quote(posix.BOOTSTRAP)} ${NAME}`

/**
 * What to write first on the lifeline's stdin: its script, framed for the bootstrap.
 *
 * @since 0.1.0
 * @category constants
 */
export const preamble: string = posix.frame(SCRIPT)

const ticks = (grace: Duration.Duration): number => Math.max(0, Math.ceil(DurationNs.toMillis(grace) / 100))

/**
 * `+ ID PGID TICKS TOKEN`: an execution is starting (`pgid` 0 or undefined when not known yet).
 *
 * @since 0.1.0
 * @category encoding
 */
export const watch = (id: number, pgid: number | undefined, grace: Duration.Duration, token: string): string =>
  `+ ${id} ${pgid ?? 0} ${ticks(grace)} ${token.slice(0, TOKEN_PREFIX)}\n`

/**
 * The loop reads its input one byte per system call (`read`): it is told the first 16 hex digits of a token (64
 * random bits, as unique among the live executions as the whole), and finds the carriers by that prefix.
 */
const TOKEN_PREFIX = 16

/**
 * `g ID PGID`: another process group of an execution.
 *
 * @since 0.1.0
 * @category encoding
 */
export const group = (id: number, pgid: number): string => `g ${id} ${pgid}\n`

/**
 * `- ID`: the execution has ended.
 *
 * @since 0.1.0
 * @category encoding
 */
export const forget = (id: number): string => `- ${id}\n`

/**
 * `d TICKS`: discover this connection's executions (SSH), with the longest kill grace so far; the loop answers
 * `d on` when it can (see {@link isDiscovering}).
 *
 * @since 0.1.0
 * @category encoding
 */
export const discover = (grace: Duration.Duration): string => `d ${ticks(grace)}\n`

/**
 * Whether a line of the loop's output says it discovers the executions (the answer to {@link discover}).
 *
 * @since 0.1.0
 * @category decoding
 */
export const isDiscovering = (line: string): boolean => line === "d on"

/**
 * Whether a line of the loop's output answers {@link discover} at all (`d on` or `d off`): the loop is running
 * (under a login shell that starts slowly, such as PowerShell, some seconds after its channel opened).
 *
 * @since 0.1.0
 * @category decoding
 */
export const isDiscoveryAnswer = (line: string): boolean => line === "d on" || line === "d off"

/**
 * `s TOKEN`: at EOF, spare the processes carrying this token.
 *
 * @since 0.1.0
 * @category encoding
 */
export const spare = (token: string): string => `s ${token.slice(0, TOKEN_PREFIX)}\n`

const body = (script: string): string => `${script.endsWith("\n") ? script : `${script}\n`}${posix.END}\n`

/**
 * `x ID` and a kill script: kill execution ID now; the loop answers with a line `x ID <the script's output>`
 * (see {@link parseKillAnswer}).
 *
 * @since 0.1.0
 * @category encoding
 */
export const kill = (id: number, script: string): string => `x ${id}\n${body(script)}`

/**
 * `r ID` and a kill script: how to end execution ID at EOF besides the sweep (run-as jobs).
 *
 * @since 0.1.0
 * @category encoding
 */
export const recipe = (id: number, script: string): string => `r ${id}\n${body(script)}`

/**
 * A line of the loop's output: the answer to {@link kill} for execution `id`, with the kill script's output.
 *
 * @since 0.1.0
 * @category decoding
 */
export const parseKillAnswer = (line: string): { readonly id: number; readonly output: string } | undefined => {
  const m = /^x (\d+) ?(.*)$/.exec(line)
  return m === null ? undefined : { id: Number(m[1]), output: m[2]! }
}
