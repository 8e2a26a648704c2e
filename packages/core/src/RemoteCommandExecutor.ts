/**
 * `@effect/platform`'s `CommandExecutor` over any transport and target, so code written with
 * `Command.make(...)` runs unchanged on a remote target.
 *
 * Limits: the command's stdin, when it is a `Stream`, is collected before the remote start (transports take
 * stdin up front); writes to `process.stdin` after the start are discarded. Output not read by the caller is
 * buffered in memory. A signal death is reported as exit code 128 + signal number, as a shell does.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as PlatformError from "@effect/platform/Error"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as HashMap from "effect/HashMap"
import { NodeInspectSymbol } from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import * as ScriptSource from "./ScriptSource.js"
import type { Target } from "./Target.js"
import * as Transport from "./Transport.js"

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Time between TERM and KILL when a process is killed or its scope closes. Default 5 seconds. */
  readonly killGrace?: Duration.DurationInput | undefined
}

const toPlatformError = (method: string, description: string, cause?: unknown) =>
  new PlatformError.SystemError({ reason: "Unknown", module: "Command", method, description, cause })

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`

const invocationFor = (
  command: Command.Command,
  stdin: Uint8Array | undefined,
  killGrace: Duration.Duration
): Transport.Invocation => {
  const parts = Command.flatten(command)
  const env: Record<string, string> = {}
  for (const part of parts) for (const [k, v] of HashMap.toEntries(part.env)) env[k] = v
  const first = parts[0]
  const source = parts.length === 1
    ? new ScriptSource.Command({ argv: [first.command, ...first.args] })
    : ScriptSource.script(parts.map((p) => [p.command, ...p.args].map(quote).join(" ")).join(" | "))
  return {
    runId: "command-executor",
    attempt: 1,
    source,
    args: [],
    env,
    secrets: {},
    stdin,
    cwd: Option.getOrUndefined(first.cwd),
    killGrace
  }
}

let nextPid = 1

/**
 * A CommandExecutor that runs every command on `target` through the transport registered for its kind.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  target: Target,
  options: Options = {}
): Effect.Effect<CommandExecutor.CommandExecutor, never, Transport.Registry> =>
  Effect.gen(function*() {
    const registry = yield* Transport.Registry
    const killGrace = Duration.decode(options.killGrace ?? Duration.seconds(5))
    const start = (command: Command.Command) =>
      Effect.gen(function*() {
        const transport = yield* Option.match(registry.get(target.kind), {
          onNone: () => Effect.fail(toPlatformError("start", `no transport serves targets of kind ${target.kind}`)),
          onSome: Effect.succeed
        })
        const input = Command.flatten(command)[0].stdin
        const stdin = typeof input === "string"
          ? undefined
          : yield* Stream.runCollect(input).pipe(
            Effect.map((chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks))),
            Effect.mapError((e) => toPlatformError("start", "reading the command's stdin failed", e))
          )
        const outer = yield* Effect.scope
        const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
        const execution = yield* Scope.extend(transport.start(target, invocationFor(command, stdin, killGrace)), scope)
          .pipe(
            Effect.mapError((e) => toPlatformError("start", e.message, e))
          )
        const stdout = yield* Queue.unbounded<Uint8Array | null>()
        const stderr = yield* Queue.unbounded<Uint8Array | null>()
        const exit = yield* Deferred.make<CommandExecutor.ExitCode, PlatformError.PlatformError>()
        yield* Stream.runForEach(execution.output, (c) => Queue.offer(c.stream === "stdout" ? stdout : stderr, c.bytes))
          .pipe(
            Effect.zipRight(execution.exit),
            Effect.map((status) =>
              CommandExecutor.ExitCode(status._tag === "Exited" ? status.code : 128 + (SIGNALS[status.signal] ?? 0))
            ),
            Effect.mapError((e) => toPlatformError("exitCode", e.message, e)),
            Effect.exit,
            Effect.flatMap((result) => Deferred.done(exit, result)),
            Effect.ensuring(Effect.zipRight(Queue.offer(stdout, null), Queue.offer(stderr, null))),
            Effect.forkIn(scope)
          )
        const drain = (queue: Queue.Queue<Uint8Array | null>) =>
          Stream.fromQueue(queue).pipe(Stream.takeWhile((b): b is Uint8Array => b !== null))
        const pid = CommandExecutor.ProcessId(nextPid++)
        const process: CommandExecutor.Process = {
          [CommandExecutor.ProcessTypeId]: CommandExecutor.ProcessTypeId,
          pid,
          exitCode: Deferred.await(exit),
          isRunning: Effect.map(Deferred.isDone(exit), (done) => !done),
          kill: () => Scope.close(scope, Exit.void),
          stdout: drain(stdout),
          stderr: drain(stderr),
          stdin: Sink.drain,
          toJSON: () => ({ _id: "@runcmd/core/RemoteCommandExecutor/Process", pid, target: target.id }),
          toString: () => `Process(${target.id}#${pid})`,
          [NodeInspectSymbol]: () => ({ _id: "@runcmd/core/RemoteCommandExecutor/Process", pid, target: target.id })
        }
        return process
      })
    return CommandExecutor.makeExecutor(start)
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  target: Target,
  options: Options = {}
): Layer.Layer<CommandExecutor.CommandExecutor, never, Transport.Registry> =>
  Layer.effect(CommandExecutor.CommandExecutor, make(target, options))
