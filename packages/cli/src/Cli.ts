/**
 * The `runcmd` command line: `runcmd run` (fan a script out over targets), `runcmd inventory check FILE`
 * and `runcmd report FILE.json`. {@link run} parses a command line and returns the exit code.
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import type * as Terminal from "@effect/platform/Terminal"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Argv from "./internal/argv.js"
import { commandSpecs } from "./internal/commands.js"
import { ExitCode } from "./internal/exitCode.js"
import * as Help from "./internal/help.js"

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

// the parser (`@effect/cli`) loads when a command runs: help and usage errors are answered from the table
const parser = Effect.promise(() => import("./internal/parser.js"))

const printError = (message: string) => Effect.sync(() => process.stderr.write(`${message}\n`))

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
    const print = Help.dispatch(args, split.right, version)
    if (print !== undefined) {
      const stream = print.stream === "stdout" ? process.stdout : process.stderr
      yield* Effect.sync(() => stream.write(print.text(Help.widthOf(stream))))
      return print.code
    }
    const command = split.right.command
    if (command !== undefined && command.path[0] === "emulate") {
      const Emulate = yield* Effect.promise(() => import("./internal/emulate.js"))
      return yield* Emulate.run(command.path[1]!, split.right.tokens.slice(command.path.length))
    }
    const Parser = yield* parser
    return yield* Parser.run(split.right.tokens, split.right.rest, version)
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
