/**
 * The data of the conformance suite: tricky values, expected outputs, POSIX sh snippets shared by the cases.
 *
 * @internal
 */

const encoder = new TextEncoder()

/** @internal */
export const bytes = (s: string): Uint8Array => encoder.encode(s)

/** @internal */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let size = 0
  for (const p of parts) size += p.length
  const out = new Uint8Array(size)
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

/** @internal */
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length &&
  Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))

/** Where two byte arrays first differ (for messages). @internal */
export const firstDifference = (a: Uint8Array, b: Uint8Array): string => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) {
      return `first difference at byte ${i} (got ${a[i]}, expected ${b[i]}); lengths ${a.length}/${b.length}`
    }
  }
  return a.length === b.length ? "identical" : `lengths differ: got ${a.length}, expected ${b.length}`
}

/**
 * Values that break naive quoting: quotes, newlines, `$`, globs, UTF-8, leading dashes, empty strings.
 *
 * @internal
 */
export const trickyValues: ReadonlyArray<string> = [
  "plain",
  "with space",
  "it's",
  "\"double quoted\"",
  "'\"'\"'",
  "back\\slash \\n \\\\",
  "$HOME ${PATH} $(id) `id` $$ $1 $@",
  "* ? [a-z] ~",
  "a;b|c&d>e<f (g) {h}",
  "line1\nline2",
  "trailing newline\n",
  "\ttab and\rcarriage return",
  "ünïcødé ✓ 日本語 🚀",
  "-n",
  "--flag=value",
  "-",
  "",
  "%s %d %% \\0",
  "#not a comment",
  "!event"
]

/** `printf '%s\0' ...` of the values. @internal */
export const nulJoined = (values: ReadonlyArray<string>): Uint8Array => concat(values.map((v) => bytes(v + "\0")))

/** Every byte value 0..255, in order. @internal */
export const allBytes: Uint8Array = Uint8Array.from({ length: 256 }, (_, i) => i)

/** POSIX sh printing all 256 byte values (to stdout, or to stderr reversed). @internal */
export const allBytesScript = `i=0
while [ "$i" -lt 256 ]; do printf "\\\\$(printf '%03o' "$i")"; i=$((i + 1)); done
i=255
while [ "$i" -ge 0 ]; do printf "\\\\$(printf '%03o' "$i")" >&2; i=$((i - 1)); done
`

/** @internal */
export const allBytesReversed: Uint8Array = Uint8Array.from({ length: 256 }, (_, i) => 255 - i)

/** `lines` numbered 64-byte lines: awk `printf "%063d\n", i`. @internal */
export const numberedLines = (lines: number): Uint8Array => {
  const out = new Uint8Array(lines * 64)
  for (let i = 0; i < lines; i++) {
    out.set(bytes(String(i).padStart(63, "0") + "\n"), i * 64)
  }
  return out
}

/** @internal */
export const numberedLinesScript = (lines: number, toStderr: boolean) =>
  `awk 'BEGIN { for (i = 0; i < ${lines}; i++) printf "%063d\\n", i }'${toStderr ? " >&2" : ""}`

/** @internal */
export const MiB = 1024 * 1024

/**
 * A sh function: `alive PID` succeeds while the process exists and is not a zombie.
 *
 * @internal
 */
const aliveFunction = `alive() {
  if command -v ps >/dev/null 2>&1; then
    s=$(ps -o stat= -p "$1" 2>/dev/null)
    case "$s" in "" | Z*) return 1 ;; *) return 0 ;; esac
  fi
  kill -0 "$1" 2>/dev/null
}
`

/**
 * Exits 0 once none of the pids given as arguments is alive (waiting up to ~`seconds`), else prints the live
 * ones and exits 1.
 *
 * @internal
 */
export const allGoneScript = (seconds: number) =>
  `${aliveFunction}i=0
while :; do
  left=""
  for p in "$@"; do if alive "$p"; then left="$left $p"; fi; done
  if [ -z "$left" ]; then echo gone; exit 0; fi
  i=$((i + 1))
  if [ "$i" -gt ${seconds * 4} ]; then echo "alive:$left"; exit 1; fi
  sleep 0.25 2>/dev/null || sleep 1
done
`

/**
 * Kills (KILL) the given pids if they are still `sleep` or a shell: cleanup after a case that may leave them.
 *
 * @internal
 */
export const cleanupScript = `for p in "$@"; do
  c=$(ps -o comm= -p "$p" 2>/dev/null) || continue
  case "$c" in sleep | sh | dash | bash | ash | busybox) kill -s KILL "$p" 2>/dev/null ;; esac
done
exit 0
`

/** Numbers following `word ` in the text (`pids 12 13` → [12, 13]). @internal */
export const pidsAfter = (text: string, word: string): Array<string> => {
  const out: Array<string> = []
  const re = new RegExp(`(?:^|\\n)${word}((?: [0-9]+)+)`, "g")
  for (const m of text.matchAll(re)) {
    for (const pid of m[1]!.trim().split(/ +/)) out.push(pid)
  }
  return out
}

/** @internal */
export const randomHex = (n: number): string => {
  const b = new Uint8Array(n)
  globalThis.crypto.getRandomValues(b)
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("")
}

/** @internal */
export const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }

// ---------------------------------------------------------------------------------------------------------------
// the process tree of an execution, found from the process table by a mark
// ---------------------------------------------------------------------------------------------------------------

/** The environment variable carrying a kill-tree case's mark (every descendant inherits it). @internal */
export const MARK_VARIABLE = "RUNCMD_CONFORMANCE_MARK"

/** @internal */
export const MARK_PREFIX = "runcmd-conformance-"

/**
 * A fresh mark: `runcmd-conformance-<hex>`. The case puts it in its job's environment and in the command line of
 * the grandchild; the process table is searched for it. Helpers are given only the hex part (so that no helper
 * process ever carries the whole mark in its own argv or environment).
 *
 * @internal
 */
export const newMark = (): { readonly mark: string; readonly hex: string } => {
  const hex = randomHex(8)
  return { mark: `${MARK_PREFIX}${hex}`, hex }
}

/**
 * A script leaving a grandchild in a session of its own (`setsid`) that ignores TERM and HUP (a shell carrying the
 * mark as its `$0`, and its `sleep`); with `ignoreTerm` the script itself ignores TERM as well (the kill needs the
 * KILL after the grace). It prints `child <pid>` and, from the grandchild, `grandchild <pid>`, then waits.
 * Exits 97 when the target has no `setsid`.
 *
 * @internal
 */
export const setsidGrandchildScript = (mark: string, ignoreTerm: boolean): string =>
  `command -v setsid >/dev/null 2>&1 || { echo "runcmd-conformance: no setsid on the target" >&2; exit 97; }
${ignoreTerm ? "trap '' TERM\n" : ""}setsid sh -c 'trap "" TERM HUP; echo "grandchild $$"; sleep 300; :' '${mark}' &
echo "child $$"
wait
echo never
`

/**
 * Scans the process table for the live processes whose argv or environment carries the mark
 * `runcmd-conformance-$1` (`/proc`, else the command lines `ps` shows), polling up to `$2` seconds:
 * - `$3 = check`: until none is left; prints `gone` and exits 0, else prints `left:` and one line per process
 *   (pid, name, parent, group, session, command line) and exits 1;
 * - `$3 = kill`: KILLs them until none is left (same output).
 * The mark is assembled here and handed to grep on its stdin: no process of this script carries it.
 *
 * @internal
 */
export const markedProcessesScript = `m="${MARK_PREFIX}$1"
limit=$(( $2 * 4 ))
action=$3
marked() {
  if [ -r /proc/self/stat ]; then
    for f in $(printf '%s\\n' "$m" | grep -lsF -f - /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null); do
      p=\${f#/proc/}; p=\${p%%/*}
      [ "$p" = "$$" ] && continue
      l=; read -r l 2>/dev/null < "/proc/$p/stat" || continue
      l=\${l##*) }
      case $l in Z* | X* | x*) continue ;; esac
      echo "$p"
    done | sort -u
  else
    ps -A -o pid= -o args= 2>/dev/null | while read -r p a; do
      case $a in *"$m"*) [ "$p" = "$$" ] || echo "$p" ;; esac
    done
  fi
}
describe() {
  for p in "$@"; do
    c=; read -r c 2>/dev/null < "/proc/$p/comm"
    l=; read -r l 2>/dev/null < "/proc/$p/stat"
    l=\${l##*) }
    set -- $l
    a=$(tr '\\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)
    echo "  pid $p ($c) state $1 ppid $2 pgrp $3 sid $4: $a"
  done
}
i=0
while :; do
  left=$(marked)
  if [ -z "$left" ]; then echo gone; exit 0; fi
  if [ "$action" = kill ]; then for p in $left; do kill -s KILL "$p" 2>/dev/null; done; fi
  i=$((i + 1))
  if [ "$i" -gt "$limit" ]; then
    echo "left:"
    describe $left
    exit 1
  fi
  sleep 0.25 2>/dev/null || sleep 1
done
`
