/**
 * The help of `runcmd` and its commands, rendered from the declared table (`commands.ts`): one line per flag,
 * grouped, a few examples, at most {@link maxWidth} columns. Also what to do with a command line that asks for
 * help, names no command, or names an unknown one (before the parser loads).
 *
 * @since 0.1.0
 * @internal
 */
import { type Split, suggest } from "./argv.js"
import {
  type CommandDoc,
  commandSpecs,
  type Flag,
  globalFlags,
  type GroupDoc,
  groupDocs,
  type Positional,
  root
} from "./commands.js"
import { ExitCode } from "./exitCode.js"

/**
 * The widest line help is rendered to (narrower on a narrower terminal).
 *
 * @internal
 */
export const maxWidth = 100

const minWidth = 60

/** Word-wraps `text` into lines of at most `width` characters (a longer word stays whole). */
const wrap = (text: string, width: number): Array<string> => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else {
      line = line === "" ? word : `${line} ${word}`
    }
  }
  if (line !== "") lines.push(line)
  return lines
}

type Row = readonly [term: string, description: string]

/** Where descriptions start for these rows. */
const columnOf = (rows: ReadonlyArray<Row>): number =>
  Math.min(Math.max(0, ...rows.map(([term]) => term.length)) + 4, 34)

/** Rows of a two-column table (a term, its description), the descriptions starting at `column`. */
const table = (rows: ReadonlyArray<Row>, width: number, column: number = columnOf(rows)): Array<string> =>
  rows.flatMap(([term, description]) => {
    const indent = " ".repeat(column)
    const lines = wrap(description, Math.max(width - column, 20)).map((l) => indent + l)
    const head = `  ${term}`
    return head.length + 2 > column
      ? [head, ...lines]
      : [head.padEnd(column) + (lines[0] ?? "").slice(column), ...lines.slice(1)]
  })

/**
 * How a flag is written in help: `-i, --inventory FILE`, `    --dry-run`.
 *
 * @internal
 */
export const synopsis = (flag: Flag): string =>
  `${flag.alias === undefined ? "    " : `-${flag.alias}, `}--${flag.name}${flag.arg === "" ? "" : ` ${flag.arg}`}`

const describe = (flag: Flag): string =>
  flag.kind === "values" && !/repeat/i.test(flag.help) ? `${flag.help}; repeatable` : flag.help

const flagRow = (flag: Flag): Row => [synopsis(flag), describe(flag)]

const positionalRow = (p: Positional): Row => [p.name, p.help]

const section = (title: string, lines: ReadonlyArray<string>): Array<string> =>
  lines.length === 0 ? [] : ["", `${title}:`, ...lines]

const commandLines = (lines: ReadonlyArray<string>): Array<string> => lines.map((l) => `  runcmd ${l}`)

/** The global flags shown under a command: the rest are in `runcmd --help`. */
const commandGlobals = globalFlags.filter((f) => f.name === "help" || f.name === "log-level")

/**
 * The help of a command (`runcmd run --help`).
 *
 * @internal
 */
export const command = (doc: CommandDoc, width: number = maxWidth): string => {
  // every description starts in the same column, across the groups
  const groups = doc.groups.map((g) => ({ title: g.title, flags: doc.flags.filter((f) => f.group === g.id) }))
  const positionals = doc.positionals.map(positionalRow)
  const globals = commandGlobals.map(flagRow)
  const column = columnOf([...positionals, ...groups.flatMap((g) => g.flags.map(flagRow)), ...globals])
  const rows = (r: ReadonlyArray<Row>) => table(r, width, column)
  return [
    ...doc.about.flatMap((a) => wrap(a, width)),
    ...section("Usage", commandLines(doc.usage)),
    ...section("Arguments", rows(positionals)),
    ...groups.flatMap((g) => section(g.title, rows(g.flags.map(flagRow)))),
    ...section("Global flags", rows(globals)),
    ...section("Examples", commandLines(doc.examples)),
    ...(doc.notes.length === 0 ? [] : ["", ...doc.notes.flatMap((n) => wrap(n, width))]),
    ""
  ].join("\n")
}

const commandList = (width: number): Array<string> =>
  table(root.commands.map((c) => [c.path.join(" "), c.summary]), width)

/**
 * The help of `runcmd` (`runcmd --help`).
 *
 * @internal
 */
export const main = (width: number = maxWidth): string =>
  [
    ...root.about.flatMap((a) => wrap(a, width)),
    ...section("Usage", commandLines(root.usage)),
    ...section("Commands", commandList(width)),
    ...section("Global flags", table(globalFlags.map(flagRow), width)),
    ...section("Examples", commandLines(root.examples)),
    "",
    ...wrap("Run `runcmd COMMAND --help` for a command's flags.", width),
    ""
  ].join("\n")

/**
 * What `runcmd` alone prints (on stderr, exit 2).
 *
 * @internal
 */
export const short = (width: number = maxWidth): string =>
  [
    "Usage: runcmd COMMAND [flags]",
    ...section("Commands", commandList(width)),
    "",
    ...wrap("Run `runcmd --help` for the global flags and examples, `runcmd COMMAND --help` for a command's.", width),
    ""
  ].join("\n")

/**
 * The help of a command that groups others (`runcmd inventory --help`).
 *
 * @internal
 */
export const group = (doc: GroupDoc, width: number = maxWidth): string =>
  [
    `Usage: runcmd ${doc.path.join(" ")} COMMAND [flags]`,
    ...section("Commands", table(doc.commands.map((c) => [c.path.join(" "), c.summary]), width)),
    "",
    ...wrap(`Run \`runcmd ${doc.path.join(" ")} COMMAND --help\` for a command's flags.`, width),
    ""
  ].join("\n")

/**
 * The width to render help to on a stream: its width on a terminal (within bounds), else {@link maxWidth}.
 *
 * @internal
 */
export const widthOf = (stream: { readonly isTTY?: boolean; readonly columns?: number }): number =>
  stream.isTTY === true && typeof stream.columns === "number" && stream.columns > 0
    ? Math.max(minWidth, Math.min(maxWidth, stream.columns))
    : maxWidth

/**
 * What to print instead of parsing: help (stdout, exit 0), or a usage error or the short help (stderr, exit 2).
 *
 * @internal
 */
export interface Print {
  readonly stream: "stdout" | "stderr"
  readonly text: (width: number) => string
  readonly code: number
}

const help = (text: (width: number) => string): Print => ({ stream: "stdout", text, code: ExitCode.Success })

const error = (message: string): Print => ({ stream: "stderr", text: () => `${message}\n`, code: ExitCode.Usage })

const isHelp = (token: string | undefined) => token === "--help" || token === "-h"

const globalNames = new Set(
  globalFlags.flatMap((f) => [`--${f.name}`, ...(f.alias === undefined ? [] : [`-${f.alias}`])])
)

const names = (all: ReadonlyArray<string>, quote: (s: string) => string = (s) => s) =>
  all.length === 1 ? quote(all[0]!) : `${all.slice(0, -1).map(quote).join(", ")} or ${quote(all.at(-1)!)}`

const unknownCommand = (prefix: ReadonlyArray<string>, token: string, known: ReadonlyArray<string>): Print => {
  const where = ["runcmd", ...prefix].join(" ")
  const hint = suggest(token, known.map((name) => ({ name, value: false })))
  return error(
    `${where}: unknown command ${JSON.stringify(token)}.${
      hint === undefined ? "" : ` Did you mean ${hint.slice(2)}?`
    } ` +
      `${known.length === 1 ? "The command is" : "The commands are"} ${names(known)}. Run \`${where} --help\` for help.`
  )
}

/**
 * Decides whether a command line is answered here (help, the version, the short help, an unknown or missing
 * command or argument) rather than by the parser. `split` is the pre-parser's view of `args`.
 *
 * @internal
 */
export const dispatch = (args: ReadonlyArray<string>, split: Split, version: string): Print | undefined => {
  if (args.length === 0) return { stream: "stderr", text: short, code: ExitCode.Usage }
  const printVersion = help(() => `${version}\n`)
  const doc = split.command as CommandDoc | undefined
  if (doc !== undefined) {
    // the pre-parser's tokens: the command path, then `--flag [value]`s (aliases expanded) and positionals
    const where = `runcmd ${doc.path.join(" ")}`
    const byName = new Map([...doc.flags, ...globalFlags].map((f) => [`--${f.name}`, f]))
    let positionals = 0
    const tokens = split.tokens.slice(doc.path.length)
    for (let i = 0; i < tokens.length; i++) {
      const flag = byName.get(tokens[i]!)
      if (flag === undefined) positionals++
      else if (flag.name === "help") return help((width) => command(doc, width))
      else if (flag.name === "version") return printVersion
      else if (flag.value) i++
    }
    const missing = doc.positionals[positionals]
    if (missing !== undefined && !tokens.some((t) => globalNames.has(t))) {
      return error(
        `${where}: missing ${missing.name} (${missing.help}). Usage: runcmd ${doc.usage[0]}. ` +
          `Run \`${where} --help\` for help.`
      )
    }
    return undefined
  }
  const head = split.tokens
  const first = head[0]
  if (first === undefined) {
    return error(`runcmd: a command is missing before --. Run \`runcmd --help\` for help.`)
  }
  if (isHelp(first)) return help(main)
  if (first === "--version") return printVersion
  const parent = groupDocs.find((g) => g.path.every((p, i) => head[i] === p))
  if (parent !== undefined) {
    const next = head[parent.path.length]
    if (next === undefined) return { stream: "stderr", text: (width) => group(parent, width), code: ExitCode.Usage }
    if (isHelp(next)) return help((width) => group(parent, width))
    const known = [...new Set(parent.commands.map((c) => c.path[parent.path.length]!))]
    if (!globalNames.has(next)) return unknownCommand(parent.path, next, known)
    return undefined
  }
  if (globalNames.has(first)) return undefined // --completions, --log-level, --wizard: the parser's
  if (first.startsWith("-")) {
    const flag = first.split("=")[0]!
    const owners = commandSpecs.filter((c) =>
      c.flags.some((f) => `--${f.name}` === flag || (f.alias !== undefined && `-${f.alias}` === flag))
    )
    return error(
      owners.length > 0
        ? `runcmd: ${flag} is a flag of ${
          names(owners.map((c) => c.path.join(" ")), (s) => `\`runcmd ${s}\``)
        }: put it after the command (runcmd ${owners[0]!.path.join(" ")} ${flag} ...). Run \`runcmd --help\` for help.`
        : `runcmd: unknown flag ${flag}. Run \`runcmd --help\` for help.`
    )
  }
  return unknownCommand([], first, [...new Set(commandSpecs.map((c) => c.path[0]!))])
}
