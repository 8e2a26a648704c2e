/**
 * Command-line tokens before `@effect/cli` sees them: the command after `--` is split off (so that it is never
 * mistaken for flags), `--flag=value` is expanded, and unknown flags, missing values and stray arguments are
 * refused with a message naming them.
 *
 * @since 0.1.0
 * @internal
 */
import * as Either from "effect/Either"
import { CliError, usage } from "./errors.js"

/**
 * A flag as the pre-parser knows it.
 *
 * @internal
 */
export interface FlagSpec {
  readonly name: string
  readonly alias?: string | undefined
  /** Takes a value (`--timeout 30s`); otherwise a switch (`--dry-run`). */
  readonly value: boolean
}

/**
 * The flags every command accepts (from `@effect/cli`).
 *
 * @internal
 */
export const builtIns: ReadonlyArray<FlagSpec> = [
  { name: "help", alias: "h", value: false },
  { name: "version", value: false },
  { name: "wizard", value: false },
  { name: "completions", value: true },
  { name: "log-level", value: true }
]

/**
 * A (sub)command's flags and positional arguments.
 *
 * @internal
 */
export interface CommandSpec {
  /** `run`, `inventory check`, `report`. */
  readonly path: ReadonlyArray<string>
  readonly flags: ReadonlyArray<FlagSpec>
  /** How many positional arguments it takes (the `--` tail is handled separately). */
  readonly positional: number
  /** What to say about a stray positional argument. */
  readonly strayHint: string
}

/**
 * What the pre-parser hands on: the tokens for `@effect/cli`, and the tokens after `--`.
 *
 * @internal
 */
export interface Split {
  readonly tokens: ReadonlyArray<string>
  readonly rest: ReadonlyArray<string>
  readonly command: CommandSpec | undefined
}

const distance = (a: string, b: string): number => {
  const d: Array<Array<number>> = []
  for (let i = 0; i <= a.length; i++) d.push([i])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)
      )
    }
  }
  return d[a.length]![b.length]!
}

/**
 * The closest known flag to a mistyped one, if it is close.
 *
 * @internal
 */
export const suggest = (flag: string, flags: ReadonlyArray<FlagSpec>): string | undefined => {
  const name = flag.replace(/^-+/, "")
  let best: string | undefined
  let bestDistance = Infinity
  for (const f of flags) {
    const dist = distance(name, f.name)
    if (dist < bestDistance) {
      best = f.name
      bestDistance = dist
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 4)) ? `--${best}` : undefined
}

const isLongFlag = (token: string) => token.startsWith("--") && token.length > 2
const isShortFlag = (token: string) => /^-[A-Za-z]$/.test(token)

/**
 * Splits and checks the tokens of a command line (without node and the script).
 *
 * @internal
 */
export const split = (
  argv: ReadonlyArray<string>,
  commands: ReadonlyArray<CommandSpec>
): Either.Either<Split, CliError> => {
  const dash = argv.indexOf("--")
  const head = dash === -1 ? argv : argv.slice(0, dash)
  const rest = dash === -1 ? [] : argv.slice(dash + 1)
  // the longest command path that prefixes the tokens
  let command: CommandSpec | undefined
  for (const c of commands) {
    if (c.path.every((p, i) => head[i] === p) && (command === undefined || c.path.length > command.path.length)) {
      command = c
    }
  }
  if (command === undefined) return Either.right({ tokens: head, rest, command })
  const name = `runcmd ${command.path.join(" ")}`
  const flags = [...command.flags, ...builtIns]
  const byName = new Map<string, FlagSpec>()
  for (const f of flags) {
    byName.set(`--${f.name}`, f)
    if (f.alias !== undefined) byName.set(`-${f.alias}`, f)
  }
  const out: Array<string> = [...command.path]
  let positional = 0
  const tokens = head.slice(command.path.length)
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    if (isLongFlag(token) || isShortFlag(token)) {
      const eq = token.indexOf("=")
      const key = isLongFlag(token) && eq !== -1 ? token.slice(0, eq) : token
      const spec = byName.get(key)
      if (spec === undefined) {
        const hint = suggest(key, flags)
        return Either.left(usage(
          `${name}: unknown flag ${key}.${
            hint === undefined ? "" : ` Did you mean ${hint}?`
          } Run \`${name} --help\` for the flags${
            command.path[0] === "run"
              ? "; to pass flags to the command itself, put it after -- (runcmd run -- ls -la)"
              : ""
          }.${command.path[0] === "run" ? " Nothing was run." : ""}`
        ))
      }
      out.push(`--${spec.name}`)
      if (key !== token) {
        // --flag=value
        out.push(token.slice(eq + 1))
        continue
      }
      if (spec.value) {
        const next = tokens[i + 1]
        if (next === undefined || (isLongFlag(next) && byName.has(next.split("=")[0]!))) {
          return Either.left(usage(
            `${name}: --${spec.name} needs a value (e.g. --${spec.name} ${
              example(spec.name)
            }). Run \`${name} --help\` for the flags.${command.path[0] === "run" ? " Nothing was run." : ""}`
          ))
        }
        out.push(next)
        i++
      }
      continue
    }
    if (positional < command.positional) {
      positional++
      out.push(token)
      continue
    }
    return Either.left(usage(`${name}: unexpected argument ${JSON.stringify(token)}. ${command.strayHint}`))
  }
  return Either.right({ tokens: out, rest, command })
}

const examples: Record<string, string> = {
  inventory: "inventory.yaml",
  "ssh-config": "~/.ssh/config",
  select: "role=web",
  target: "web-1",
  script: "deploy.sh",
  command: "'uptime'",
  concurrency: "5",
  "max-errors": "10%",
  timeout: "30s",
  deadline: "10m",
  "kill-grace": "5s",
  retry: "2",
  "retry-backoff": "1s",
  batch: "25%",
  "run-as": "root",
  "become-method": "sudo",
  env: "KEY=value",
  cwd: "/tmp",
  secret: "TOKEN=MY_TOKEN_VAR",
  stdin: "input.txt",
  file: "conf/app.ini=./app.ini",
  output: "json",
  "out-dir": "out",
  report: "report.json",
  "rerun-failed": "report.json",
  interpreter: "bash"
}

const example = (name: string): string => examples[name] ?? "VALUE"
