/**
 * `runcmd emulate ssm|azure|winrm`: the transports' emulators as processes, for tests in any language. Each
 * emulator module is loaded only when its command runs (they bring the SDK-free servers, not the SDKs).
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import { ExitCode } from "./exitCode.js"

type Main = (argv: ReadonlyArray<string>) => Promise<void | number>

const emulators: Record<string, () => Promise<{ readonly main: Main }>> = {
  ssm: () => import("@runcmd/transport-ssm/testing"),
  azure: () => import("@runcmd/transport-azure/testing"),
  winrm: () => import("@runcmd/transport-winrm/testing")
}

/**
 * Runs an emulator until it is interrupted, returning the exit code: 0 after a clean stop, 2 for arguments the
 * emulator refuses (the pre-parser has checked the flags' names and values already).
 *
 * The emulator handles SIGINT/SIGTERM itself and stops its instances' processes before its promise resolves, so
 * the wait is uninterruptible: the runtime's own interruption on the same signal waits for that cleanup.
 *
 * @internal
 */
export const run = (name: string, argv: ReadonlyArray<string>): Effect.Effect<number> =>
  Effect.promise(async () => {
    const load = emulators[name]
    if (load === undefined) {
      process.stderr.write(`runcmd emulate: unknown emulator ${JSON.stringify(name)}: ssm, azure or winrm\n`)
      return ExitCode.Usage
    }
    try {
      const code = await (await load()).main(argv)
      return typeof code === "number" ? code : ExitCode.Success
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      process.stderr.write(`runcmd emulate ${name}: ${message}\n`)
      return ExitCode.Usage
    }
  }).pipe(Effect.uninterruptible, Effect.withSpan("Cli.emulate", { attributes: { "runcmd.emulator": name } }))
