/**
 * The `runcmd` command line: `runcmd run` (fan a script out over targets), `runcmd inventory check FILE`
 * and `runcmd report FILE.json`. {@link run} parses a command line and returns the exit code.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import type * as Terminal from "@effect/platform/Terminal"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Argv from "./internal/argv.js"
import { commandSpecs } from "./internal/commands.js"
import { CliError } from "./internal/errors.js"
import { ExitCode } from "./internal/exitCode.js"
import type { RunFlags } from "./internal/plan.js"
import { isInteractive, stripAnsi } from "./internal/style.js"

/**
 * The version printed by `runcmd --version`.
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"

/**
 * What the commands need from the platform (`NodeContext.layer` provides it).
 *
 * @since 0.1.0
 * @category models
 */
export type Environment = FileSystem.FileSystem | Path.Path | Terminal.Terminal

const opt = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName(pseudo), Options.withDescription(description), Options.optional)

const many = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName(pseudo), Options.withDescription(description), Options.repeated)

const flag = (name: string, description: string) => Options.boolean(name).pipe(Options.withDescription(description))

const runOptions = {
  inventory: opt(
    "inventory",
    "FILE",
    "A YAML inventory of targets (groups, labels, defaults)."
  ).pipe(Options.withAlias("i")),
  sshConfig: opt(
    "ssh-config",
    "FILE",
    "Add the hosts of an OpenSSH config file as ssh targets (id = Host alias; HostName, User, Port, IdentityFile, ProxyJump)."
  ),
  select: many(
    "select",
    "EXPR",
    "Run on the targets matching a selector: labels (role=web,env!=prod), `!label`, id globs (web-*). Repeat to OR."
  ).pipe(Options.withAlias("s")),
  target: many(
    "target",
    "ID",
    "Run on this target id (from the inventory; without one, a local target of that name). Repeatable."
  ).pipe(Options.withAlias("t")),
  script: opt("script", "FILE", "A script file to run (interpreter from its shebang, else sh)."),
  command: opt(
    "command",
    "TEXT",
    "Shell text to run with sh (arguments after -- are its $1, $2...)."
  ).pipe(Options.withAlias("c")),
  interpreter: opt(
    "interpreter",
    "sh|bash|python|powershell",
    "Interpreter for --script/--command: sh, bash, python or powershell."
  ),
  concurrency: opt("concurrency", "N|N%", "Targets running at once: N or N% of the targets (default 10)."),
  maxErrors: opt("max-errors", "N|N%", "Failures tolerated before the rest is skipped: N or N% (default: no limit)."),
  timeout: opt("timeout", "DURATION", "Per-target timeout, e.g. 30s, 10m (TERM, then KILL after the kill grace)."),
  deadline: opt("deadline", "DURATION", "Deadline for the whole run, e.g. 10m."),
  killGrace: opt("kill-grace", "DURATION", "Time between TERM and KILL (default 5s)."),
  retry: opt("retry", "N", "Retries of a failure before delivery (and of any failure with --idempotent)."),
  retryBackoff: opt("retry-backoff", "DURATION", "First delay between retries, doubling (default 1s)."),
  batch: opt("batch", "N|N%", "Rolling batches: run in waves of N or N% of the targets."),
  idempotent: flag("idempotent", "The script is safe to run twice: retry failures that happened after it started."),
  runAs: opt("run-as", "USER", "Run the script as this user."),
  becomeMethod: opt(
    "become-method",
    "sudo|su|runuser|doas",
    "How to switch user: sudo (default), su, runuser or doas."
  ),
  askBecomePass: flag("ask-become-pass", "Ask for the --run-as password on the terminal (or set RUNCMD_BECOME_PASS)."),
  env: many(
    "env",
    "NAME=VALUE",
    "Set an environment variable for the script: NAME=VALUE. Repeatable."
  ).pipe(Options.withAlias("e")),
  cwd: opt("cwd", "DIR", "Working directory of the script on each target."),
  secret: many(
    "secret",
    "NAME=ENVVAR",
    "Pass a secret: NAME=ENVVAR reads the value from runcmd's environment variable ENVVAR; it is delivered as $NAME, never in argv, and redacted from all output. Repeatable."
  ),
  stdin: opt("stdin", "FILE|-", "Feed this file (or - for runcmd's stdin) to the script's standard input."),
  file: many(
    "file",
    "[NAME=]PATH",
    "Ship a local file with the job: each target gets it in a private directory named by $RUNCMD_FILES, as NAME (default: the file's name; conf/app.ini makes a subdirectory), mode 0700 if it is executable here, else 0600; the directory is removed when the script ends. Repeatable."
  ),
  output: opt(
    "output",
    "human|json|jsonl",
    "human (default), json (the report on stdout) or jsonl (run events as JSON lines)."
  ).pipe(Options.withAlias("o")),
  outDir: opt("out-dir", "DIR", "Write each target's stdout and stderr to files in this directory."),
  group: flag("group", "Print each target's output as one block when it finishes, instead of prefixed lines."),
  report: opt("report", "FILE", "Write the JSON report to this file (also when interrupted)."),
  dryRun: flag("dry-run", "Show the targets and the rendered wrapper script (secrets redacted); run nothing."),
  rerunFailed: opt(
    "rerun-failed",
    "FILE.json",
    "Run again on the targets that did not succeed in this saved JSON report."
  )
}

// the commands' implementations (core, the transports) load when one runs: `--help` and usage errors need none
const runCommand = Effect.promise(() => import("./internal/runCommand.js"))
const inspect = Effect.promise(() => import("./internal/inspect.js"))

const choice = <A extends string>(
  command: string,
  flagName: string,
  value: string | undefined,
  choices: ReadonlyArray<A>
): Effect.Effect<A | undefined, CliError> =>
  value === undefined || (choices as ReadonlyArray<string>).includes(value)
    ? Effect.succeed(value as A | undefined)
    : Effect.fail(
      new CliError({
        code: ExitCode.Usage,
        message: `runcmd ${command}: --${flagName} ${JSON.stringify(value)}: expected one of ${choices.join(", ")}.${
          command === "run" ? " Nothing was run." : ""
        }`
      })
    )

const makeRoot = (rest: ReadonlyArray<string>, code: Ref.Ref<number>) => {
  const runCmd = Command.make("run", runOptions, (o) =>
    Effect.gen(function*() {
      const get = Option.getOrUndefined
      const output = (yield* choice("run", "output", get(o.output), ["human", "json", "jsonl"] as const)) ?? "human"
      const flags: RunFlags = {
        inventory: get(o.inventory),
        sshConfig: get(o.sshConfig),
        select: o.select,
        target: o.target,
        script: get(o.script),
        command: get(o.command),
        interpreter: yield* choice("run", "interpreter", get(o.interpreter), ["sh", "bash", "python", "powershell"] as const),
        argv: rest,
        concurrency: get(o.concurrency),
        maxErrors: get(o.maxErrors),
        timeout: get(o.timeout),
        deadline: get(o.deadline),
        killGrace: get(o.killGrace),
        retry: get(o.retry),
        retryBackoff: get(o.retryBackoff),
        batch: get(o.batch),
        idempotent: o.idempotent,
        runAs: get(o.runAs),
        becomeMethod: yield* choice("run", "become-method", get(o.becomeMethod), ["sudo", "su", "runuser", "doas"] as const),
        askBecomePass: o.askBecomePass,
        env: o.env,
        cwd: get(o.cwd),
        secret: o.secret,
        stdin: get(o.stdin),
        file: o.file,
        output,
        outDir: get(o.outDir),
        group: o.group,
        report: get(o.report),
        dryRun: o.dryRun,
        rerunFailed: get(o.rerunFailed)
      }
      const RunCommand = yield* runCommand
      yield* Ref.set(code, yield* RunCommand.run(flags))
    })).pipe(Command.withDescription(
      "Run a script, shell text or command on targets, in parallel: runcmd run [FLAGS] (--script FILE | --command TEXT | -- COMMAND [ARGS...]). No targets given: this machine. Exit 0 all succeeded, 1 some did not, 2 bad usage (nothing run), 130 interrupted."
    ))

  const checkCmd = Command.make("check", {
    file: Args.text({ name: "FILE" }).pipe(Args.withDescription("The YAML inventory.")),
    select: many(
      "select",
      "EXPR",
      "Show only the targets matching this selector (repeat to OR)."
    ).pipe(Options.withAlias("s")),
    output: opt("output", "human|json", "human (default) or json.").pipe(Options.withAlias("o"))
  }, (o) =>
    Effect.gen(function*() {
      const output = (yield* choice("inventory check", "output", Option.getOrUndefined(o.output), ["human", "json"] as const)) ??
        "human"
      const Inspect = yield* inspect
      yield* Ref.set(code, yield* Inspect.inventoryCheck(o.file, o.select, output))
    })).pipe(Command.withDescription("Validate an inventory and list its targets and labels."))

  const inventoryCmd = Command.make("inventory").pipe(
    Command.withDescription("Inventory tools."),
    Command.withSubcommands([checkCmd])
  )

  const reportCmd = Command.make("report", {
    file: Args.text({ name: "FILE" }).pipe(Args.withDescription("A JSON report (runcmd run --report FILE).")),
    failed: flag("failed", "Print only the ids of the targets that did not succeed, one per line."),
    showOutput: flag("show-output", "Also print each target's captured output.")
  }, (o) =>
    Effect.gen(function*() {
      const Inspect = yield* inspect
      yield* Ref.set(code, yield* Inspect.report(o.file, { failed: o.failed, showOutput: o.showOutput }))
    })).pipe(Command.withDescription("Render a saved JSON report; exits as that run did (0, 1 or 130)."))

  return Command.make("runcmd").pipe(
    Command.withDescription("Run scripts on many targets at once: local processes, SSH hosts..."),
    Command.withSubcommands([runCmd, inventoryCmd, reportCmd])
  )
}

const printError = (message: string) => Effect.sync(() => process.stderr.write(`${message}\n`))

/** What `@effect/cli` prints (help, its own errors), without colors when not on a terminal. */
const withPlainConsole = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((console) => {
    const colors = isInteractive(process.stdout) && isInteractive(process.stderr)
    if (colors) return effect
    const strip = (args: ReadonlyArray<unknown>) => args.map((a) => (typeof a === "string" ? stripAnsi(a) : a))
    return Effect.withConsole(effect, {
      ...console,
      log: (...args: ReadonlyArray<unknown>) => console.log(...strip(args)),
      error: (...args: ReadonlyArray<unknown>) => console.error(...strip(args))
    })
  })

/**
 * Runs a command line (the arguments after `node script`), returning the exit code: 0 all targets succeeded,
 * 1 some did not, 2 bad usage or an invalid plan (nothing run), 130 interrupted. Never fails.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (args: ReadonlyArray<string>): Effect.Effect<number, never, Environment> =>
  Effect.gen(function*() {
    const split = Argv.split(args, commandSpecs)
    if (Either.isLeft(split)) {
      yield* printError(split.left.message)
      return split.left.code
    }
    const code = yield* Ref.make<number>(ExitCode.Success)
    const root = makeRoot(split.right.rest, code)
    const cli = Command.run(root, { name: "runcmd", version })
    return yield* cli(["node", "runcmd", ...split.right.tokens]).pipe(
      withPlainConsole,
      Effect.zipRight(Ref.get(code)),
      Effect.catchAll((error) =>
        error instanceof CliError
          ? Effect.as(printError(error.message), error.code)
          : ValidationError.isValidationError(error)
          ? Effect.succeed(ExitCode.Usage) // @effect/cli has printed it
          : Effect.as(printError(`runcmd: ${String(error)}`), ExitCode.Internal)
      )
    )
  }).pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause as Cause.Cause<never>)
        : Effect.as(
          printError(`runcmd: internal error (a bug in runcmd; please report it):\n${Cause.pretty(cause)}`),
          ExitCode.Internal
        )
    ),
    Effect.withSpan("Cli.run", { attributes: { "runcmd.command": args[0] ?? "" } })
  ) as Effect.Effect<number, never, Environment>
