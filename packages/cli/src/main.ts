/**
 * The `runcmd` entry point: runs the command line on Node's runtime and exits with the command's code
 * (`bin/runcmd.js` calls {@link main}).
 *
 * @since 0.1.0
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Cli from "./Cli.js"
import { ExitCode, signals } from "./internal/exitCode.js"

// what the commands use, not all of `NodeContext` (its command executor and workers would load for nothing)
const environment: Layer.Layer<Cli.Environment> = Layer.mergeAll(
  NodeFileSystem.layer,
  NodePath.layer,
  NodeTerminal.layer
)

/**
 * Runs `runcmd` with the process's arguments and exits with its code: 0 all targets succeeded, 1 some did not,
 * 2 bad usage or an invalid plan, 130 interrupted (143 terminated), 70 an internal error.
 *
 * @since 0.1.0
 * @category running
 */
export const main = (argv: ReadonlyArray<string> = process.argv): void => {
  // a closed pipe (`runcmd ... | head`) ends the output, not the run with a stack trace
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") throw error
    })
  }
  NodeRuntime.runMain(Cli.run(argv.slice(2)).pipe(Effect.provide(environment)), {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => {
      const code = Exit.isSuccess(exit)
        ? typeof exit.value === "number" ? exit.value : ExitCode.Success
        : Cause.isInterruptedOnly(exit.cause)
        ? signals.last === "SIGTERM" ? ExitCode.Terminated : ExitCode.Interrupted
        : ExitCode.Internal
      // let pending output drain, then exit (also with 0: nothing left running should hold the process)
      process.stdout.write("", () =>
        process.stderr.write("", () => {
          onExit(code)
          process.exit(code)
        }))
    }
  })
}
