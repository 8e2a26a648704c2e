/**
 * The `@effect/cli` commands, made from the declared table (`commands.ts`), and running them. Loaded only when a
 * command runs: `--help` and usage errors are answered before.
 *
 * @since 0.1.0
 * @internal
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import {
  azureRunCommandsDelete,
  azureRunCommandsList,
  azureRunCommandsShow,
  becomeMethods,
  checkOutputs,
  controllerLossChoices,
  type Field,
  interpreters,
  inventory,
  inventoryCheck,
  report,
  run as runDoc,
  runOutputs,
  type SwitchFlag,
  type ValueFlag,
  type ValuesFlag
} from "./commands.js"
import { CliError } from "./errors.js"
import { ExitCode } from "./exitCode.js"
import type { RunFlags } from "./plan.js"
import { isInteractive, stripAnsi } from "./style.js"

/**
 * The `@effect/cli` option (or argument) of each field of a command.
 *
 * @internal
 */
export type Parsers<F extends Record<string, Field>> = {
  readonly [K in keyof F]: F[K] extends SwitchFlag ? Options.Options<boolean>
    : F[K] extends ValuesFlag ? Options.Options<Array<string>>
    : F[K] extends ValueFlag ? Options.Options<Option.Option<string>>
    : Args.Args<string>
}

const parserOf = (field: Field): Options.Options<unknown> | Args.Args<string> => {
  if (field._tag === "Positional") return Args.text({ name: field.name }).pipe(Args.withDescription(field.help))
  const named = (options: Options.Options<any>) =>
    (field.alias === undefined ? options : Options.withAlias(options, field.alias)).pipe(
      Options.withDescription(field.help)
    )
  switch (field.kind) {
    case "switch":
      return named(Options.boolean(field.name))
    case "value":
      return named(Options.text(field.name).pipe(Options.withPseudoName(field.arg))).pipe(Options.optional)
    case "values":
      return named(Options.text(field.name).pipe(Options.withPseudoName(field.arg))).pipe(Options.repeated)
  }
}

/**
 * The parser of every field.
 *
 * @internal
 */
export const parsers = <F extends Record<string, Field>>(fields: F): Parsers<F> =>
  Object.fromEntries(Object.entries(fields).map(([key, field]) => [key, parserOf(field)])) as Parsers<F>

// the commands' implementations (core, the transports) load when one runs
const runCommand = Effect.promise(() => import("./runCommand.js"))
const inspect = Effect.promise(() => import("./inspect.js"))
const azure = Effect.promise(() => import("./azure.js"))

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

/**
 * The commands of `@effect/cli` by path (`"inventory check"`) and the `runcmd` command that holds them; `rest` is
 * what followed `--`, `code` receives the exit code.
 *
 * @internal
 */
export const makeCommands = (rest: ReadonlyArray<string>, code: Ref.Ref<number>) => {
  const runCmd = Command.make("run", parsers(runDoc.fields), (o) =>
    Effect.gen(function*() {
      const get = Option.getOrUndefined
      const flags: RunFlags = {
        inventory: get(o.inventory),
        sshConfig: get(o.sshConfig),
        select: o.select,
        target: o.target,
        script: get(o.script),
        command: get(o.command),
        interpreter: yield* choice("run", "interpreter", get(o.interpreter), interpreters),
        argv: rest,
        concurrency: get(o.concurrency),
        maxErrors: get(o.maxErrors),
        timeout: get(o.timeout),
        deadline: get(o.deadline),
        killGrace: get(o.killGrace),
        retry: get(o.retry),
        retryBackoff: get(o.retryBackoff),
        batch: get(o.batch),
        onControllerLoss: yield* choice(
          "run",
          "on-controller-loss",
          get(o.onControllerLoss),
          controllerLossChoices
        ),
        idempotent: o.idempotent,
        runAs: get(o.runAs),
        becomeMethod: yield* choice("run", "become-method", get(o.becomeMethod), becomeMethods),
        askBecomePass: o.askBecomePass,
        env: o.env,
        cwd: get(o.cwd),
        secret: o.secret,
        stdin: get(o.stdin),
        file: o.file,
        output: (yield* choice("run", "output", get(o.output), runOutputs)) ?? "human",
        outDir: get(o.outDir),
        group: o.group,
        report: get(o.report),
        dryRun: o.dryRun,
        rerunFailed: get(o.rerunFailed)
      }
      const RunCommand = yield* runCommand
      yield* Ref.set(code, yield* RunCommand.run(flags))
    })).pipe(Command.withDescription(runDoc.summary))

  const checkCmd = Command.make("check", parsers(inventoryCheck.fields), (o) =>
    Effect.gen(function*() {
      const output = (yield* choice("inventory check", "output", Option.getOrUndefined(o.output), checkOutputs)) ??
        "human"
      const Inspect = yield* inspect
      yield* Ref.set(code, yield* Inspect.inventoryCheck(o.file, o.select, output))
    })).pipe(Command.withDescription(inventoryCheck.summary))

  const inventoryCmd = Command.make("inventory").pipe(
    Command.withDescription(inventory.summary),
    Command.withSubcommands([checkCmd])
  )

  const reportCmd = Command.make("report", parsers(report.fields), (o) =>
    Effect.gen(function*() {
      const Inspect = yield* inspect
      yield* Ref.set(code, yield* Inspect.report(o.file, { failed: o.failed, showOutput: o.showOutput }))
    })).pipe(Command.withDescription(report.summary))

  const azureCmd = (doc: typeof azureRunCommandsList, action: "list" | "show" | "delete") =>
    Command.make(action, parsers(doc.fields), (o) =>
      Effect.gen(function*() {
        const where = `azure run-commands ${action}`
        const output = (yield* choice(where, "output", Option.getOrUndefined(o.output), checkOutputs)) ?? "human"
        const name = "name" in o ? (o as { readonly name: string }).name : undefined
        const Azure = yield* azure
        yield* Ref.set(
          code,
          yield* Azure.runCommands(action, name, {
            inventory: Option.getOrUndefined(o.inventory),
            select: o.select,
            output
          })
        )
      })).pipe(Command.withDescription(doc.summary))
  const listCmd = azureCmd(azureRunCommandsList, "list")
  const showCmd = azureCmd(azureRunCommandsShow, "show")
  const deleteCmd = azureCmd(azureRunCommandsDelete, "delete")
  const azureGroup = Command.make("azure").pipe(
    Command.withSubcommands([
      Command.make("run-commands").pipe(Command.withSubcommands([listCmd, showCmd, deleteCmd]))
    ])
  )

  const root = Command.make("runcmd").pipe(Command.withSubcommands([runCmd, inventoryCmd, reportCmd, azureGroup]))
  return {
    root,
    byPath: {
      "run": runCmd,
      "inventory check": checkCmd,
      "report": reportCmd,
      "azure run-commands list": listCmd,
      "azure run-commands show": showCmd,
      "azure run-commands delete": deleteCmd
    }
  }
}

/** What `@effect/cli` prints (its built-in options, its own errors), without colors when not on a terminal. */
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

const printError = (message: string) => Effect.sync(() => process.stderr.write(`${message}\n`))

/**
 * Parses the pre-parser's tokens with `@effect/cli` and runs the command, returning its exit code.
 *
 * @internal
 */
export const run = (tokens: ReadonlyArray<string>, rest: ReadonlyArray<string>, version: string) =>
  Effect.gen(function*() {
    const code = yield* Ref.make<number>(ExitCode.Success)
    const cli = Command.run(makeCommands(rest, code).root, { name: "runcmd", version })
    return yield* cli(["node", "runcmd", ...tokens]).pipe(
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
  })
