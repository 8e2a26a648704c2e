// The exact bytes a transport writes to the wrapper's stdin for one invocation (rendered once, replayed by the
// diagnostic variants: the wrapper's own cost, with no runcmd code on the node side).
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type * as Transport from "@runcmd/core/Transport"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

export const renderedWrapper = async (
  invocation: Transport.Invocation,
  transport: string
): Promise<{ readonly argv: ReadonlyArray<string>; readonly commandLine: string; readonly input: Buffer }> => {
  const launch = ScriptRender.wrapper(invocation, { transport })
  const parts: Array<Uint8Array> = []
  await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        // the filtered stderr stream is not consumed: only the bytes written to stdin matter here
        yield* Effect.asVoid(launch.drive({
          writeStdin: (bytes) => Effect.sync(() => void parts.push(bytes)),
          endStdin: Effect.void,
          stderr: Stream.empty
        }))
        yield* Effect.sleep("100 millis")
      })
    )
  )
  return { argv: launch.argv, commandLine: launch.commandLine, input: Buffer.concat(parts) }
}

/** Splits the bootstrap's input into its framed stages (`<n>\n<n bytes>`...). */
const stages = (input: Buffer): Array<string> => {
  const text = input.toString("latin1")
  const out: Array<string> = []
  let i = 0
  while (i < text.length) {
    const nl = text.indexOf("\n", i)
    if (nl < 0) break
    const n = Number(text.slice(i, nl))
    if (!Number.isSafeInteger(n)) break
    out.push(text.slice(nl + 1, nl + 1 + n))
    i = nl + 1 + n
  }
  return out
}

const frame = (t: string) => `${Buffer.byteLength(t, "latin1")}\n${t}`

/** The capability probes: per execution (as first written) or cached per user in a file (since 7abe2a9). */
const PROBES = new RegExp(
  [
    String.raw`__rc_mode=none\nif command -v setsid[\s\S]*?__rc_ds='--default-signal=INT,QUIT'\n`,
    String.raw`__rc_mode= __rc_ds=\n__rc_cf=[\s\S]*?rm -f "\$__rc_cf\.\$\$" 2>\/dev\/null\nfi\n`
  ].join("|")
)

/**
 * A prototype of the trimmed wrapper proposed in BENCHMARKS.md, derived from the rendered one by text surgery (for
 * a plain `Command` without run-as): (1) the `setsid -w` / `env --default-signal` probes (or, since 7abe2a9, the read
 * of their per-user cache file) replaced by their results, rendered by the transport that probed once, (2) no outer stage (the inner stage prints
 * `ready` itself), (3) the launch stage handed to the session leader in an environment variable instead of a third
 * `head -c`. Same protocol lines, same process group and token handling. Undefined when the rendered wrapper no
 * longer has the expected shape (core changed it).
 */
export const trimmedWrapper = (input: Buffer): Buffer | undefined => {
  const s = stages(input)
  if (s.length !== 3) return undefined
  const [, inner, launch] = s as [string, string, string]
  if (!PROBES.test(inner) || !inner.includes(`/bin/sh -c "$__rc_boot" runcmd`) || !inner.includes("__rc_boot=")) {
    return undefined
  }
  const execAt = launch.lastIndexOf("\nexec ")
  if (execAt < 0) return undefined
  const launchEnv = launch.slice(0, execAt) + "\nunset __rc_L" + launch.slice(execAt)
  // replacement functions, not strings: a replacement string would turn the script's `$$` into `$`
  const innerTrimmed = inner
    .replace(PROBES, () => "__rc_mode=w\n__rc_ds='--default-signal=INT,QUIT'\n")
    .replace("__rc_p() {", () => "printf '%s:ready\\n' \"$__rc_R\" >&2\n__rc_p() {")
    .replace(`/bin/sh -c "$__rc_boot" runcmd`, () => `__rc_L="$__rc_L" /bin/sh -c 'eval "$__rc_L"' runcmd`)
    .replace("__rc_boot=", () => `__rc_L='${launchEnv.replace(/'/g, "'\\''")}'\n__rc_boot=`)
  return Buffer.from(frame(innerTrimmed), "latin1")
}
