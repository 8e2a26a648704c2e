/**
 * Script rendering: how a shell transport launches an `Invocation`. Four launches, each a model and a constructor:
 *
 * - {@link wrapper} ({@link WrapperLaunch}): the POSIX wrapper, for anything. A constant bootstrap
 *   (`/bin/sh -c BOOTSTRAP runcmd`) reads the wrapper from stdin; secrets and the user's stdin follow it on the same
 *   pipe, so nothing of the user's is in argv or in the process table. The wrapper switches user
 *   (sudo/su/runuser/doas), changes directory, starts the user's program in a new session (its PGID is reported on
 *   stderr), forwards TERM to it and escalates to KILL after the grace, and reports how the program ended in a
 *   protocol line that {@link WrapperLaunch.drive} removes from stderr.
 * - {@link direct} ({@link DirectLaunch}): no wrapper, for a transport that spawns the program itself (local), when
 *   the wrapper would have nothing to do (no run-as, a command or a sh/bash script).
 * - {@link directShell} ({@link DirectShellLaunch}): no wrapper, through the target user's POSIX login shell (SSH
 *   `exec`), under the same conditions.
 * - {@link powershell} ({@link PowerShellLaunch}): the PowerShell twin of the wrapper, for Windows targets.
 * - {@link powershellProcess} ({@link PowerShellProcessLaunch}): the same twin run by a PowerShell process the
 *   transport starts (local `pwsh`, the `pwsh` login shell of an SSH user): a constant bootstrap reads it from stdin.
 * - {@link selfContained} and {@link powershellSelfContained}: one script text carrying files and stdin, for
 *   services that run a script and nothing else (AWS SSM and Azure Run Command).
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as directInternal from "./internal/directLaunch.js"
import * as selfContainedInternal from "./internal/selfContained.js"
import * as selfContainedPowershellInternal from "./internal/selfContainedPowershell.js"
import * as launchInternal from "./internal/wrapperLaunch.js"
import * as posixInternal from "./internal/wrapperPosix.js"
import * as powershellInternal from "./internal/wrapperPowershell.js"
import * as previewInternal from "./internal/wrapperPreview.js"
import type { ExitStatus, Invocation } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

/**
 * What a transport gives the driver: the process's stdin and its raw stderr.
 *
 * @since 0.1.0
 * @category models
 */
export interface WrapperIo {
  readonly writeStdin: (bytes: Uint8Array) => Effect.Effect<void, TransportError>
  readonly endStdin: Effect.Effect<void, TransportError>
  /** The process's raw stderr. */
  readonly stderr: Stream.Stream<Uint8Array, TransportError>
}

/**
 * The POSIX wrapper launch: a constant bootstrap that reads the wrapper from stdin, for any invocation (run-as,
 * any interpreter, secrets of any shape). How to start it, how to drive it, how to kill it, how to read its exit.
 *
 * @since 0.1.0
 * @category models
 */
export interface WrapperLaunch {
  /** Constant bootstrap: ["/bin/sh", "-c", BOOTSTRAP, "runcmd"]; contains no user data and no secrets. */
  readonly argv: ReadonlyArray<string>
  /** The same bootstrap as one shell command line, for transports that take a string (SSH exec). */
  readonly commandLine: string
  readonly nonce: string
  /** Token exported into the environment of everything the execution starts (found via /proc/<pid>/environ). */
  readonly token: string
  /** The environment variable carrying {@link WrapperLaunch.token}. */
  readonly tokenVariable: string
  /**
   * Drives the protocol: writes the preamble, answers the sudo prompt with the password, then secrets and the
   * user's stdin, then ends stdin. Returns stderr with every protocol line/prompt removed. Forked in the scope.
   */
  readonly drive: (io: WrapperIo) => Effect.Effect<Stream.Stream<Uint8Array, TransportError>, never, Scope.Scope>
  /** Completes when the wrapper reported the PGID of the user script's process group. */
  readonly pgid: Effect.Effect<number>
  /** Polls without waiting. */
  readonly pgidNow: Effect.Effect<Option.Option<number>>
  /** Completes when the escalated (or plain) wrapper shell announced itself: the user switch succeeded. */
  readonly ready: Effect.Effect<void>
  /**
   * A POSIX sh script (run separately: a second SSH channel, or `sh -c` locally) that TERMs the recorded group
   * and every process carrying `token`, waits `grace`, KILLs what is left, and prints one final line
   * `runcmd-kill:gone` or `runcmd-kill:alive <n>` (truthful: checked after the KILL).
   */
  readonly killScript: (pgid: number | undefined, grace: Duration.Duration) => string
  /**
   * Maps the wrapper's exit to the user's exit; wrapper-reserved failures (escalation failed, cwd missing, ...)
   * become TransportError (EscalationFailed → reason "EscalationFailed", phase "delivery").
   */
  readonly interpretExit: (status: ExitStatus) => Effect.Effect<ExitStatus, TransportError>
}

/**
 * The direct launch: no wrapper, for a transport that starts processes itself (local): the program, its arguments
 * and environment, to be started **in a new session** (its PGID is its pid) with {@link DirectLaunch.environment}
 * added to the transport's own environment. Offered by {@link direct} only when the wrapper would do nothing
 * else: no run-as, a `Command` or a `sh`/`bash` script. The exposure is the wrapper's: it also ends in an `exec`
 * of this argv with the secrets exported into the program's environment, never in argv.
 *
 * @since 0.1.0
 * @category models
 */
export interface DirectLaunch {
  readonly file: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string | undefined
  /** Exported into the program's environment, found later in /proc/<pid>/environ by kill sweeps. */
  readonly token: string
  readonly tokenVariable: string
  /** The job's env, its secrets (revealed: call it at the native call, never log the result) and the token. */
  readonly environment: () => Record<string, string>
}

/**
 * The direct launch through the login shell: no wrapper, for a transport that runs a command line through the
 * target user's **POSIX** login shell (SSH `exec`): {@link DirectShellLaunch.commandLine} is constant (no user text); it reads a short stage
 * from stdin with builtins only and `exec`s the program, which inherits the rest of stdin. No process is started
 * before the user's program, against seven for the full wrapper. The program runs in the session the server made
 * for the channel (sshd calls `setsid`), with the token in its environment; a kill sweep finds it by the token.
 *
 * @since 0.1.0
 * @category models
 */
export interface DirectShellLaunch {
  /** Constant; contains no user data and no secrets. Needs a POSIX login shell (sh, bash, dash, zsh, ksh). */
  readonly commandLine: string
  readonly nonce: string
  readonly token: string
  readonly tokenVariable: string
  /** The stage, the secret lines (revealed) and the job's stdin: write them to stdin, then end it. */
  readonly input: () => Uint8Array
  /** Removes the launch's own failure line from the start of stderr (identity when there is no `cwd`). */
  readonly filterStderr: (chunk: Uint8Array) => Uint8Array
  /** Releases what {@link DirectShellLaunch.filterStderr} held back when stderr ended. */
  readonly flushStderr: () => Uint8Array
  /** A missing `cwd` becomes `SpawnFailed` (as with the wrapper); any other status is the program's. */
  readonly interpretExit: (status: ExitStatus) => Effect.Effect<ExitStatus, TransportError>
  /** As {@link WrapperLaunch.killScript}: TERMs every token carrier and its group, waits, KILLs, reports truthfully. */
  readonly killScript: (pgid: number | undefined, grace: Duration.Duration) => string
}

/**
 * The PowerShell launch: the twin of the wrapper, for Windows targets.
 *
 * @since 0.1.0
 * @category models
 */
export interface PowerShellLaunch {
  /** The whole script: UTF-8 output, env prelude, cwd, the user's script, exit code, sentinel line. */
  readonly script: string
  /** The script as `powershell -EncodedCommand` wants it (base64 of UTF-16LE). */
  readonly encodedCommand: string
  /** The sentinel line's prefix: `<sentinel><code>` is the script's last stdout line. */
  readonly sentinel: string
  readonly nonce: string
  /**
   * Parses the exit status from the sentinel line in stdout, if present. It is absent when the script left with
   * `exit N` (PowerShell cannot catch an `exit`): the process's exit code is then the script's.
   */
  readonly parseSentinel: (stdout: string) => Option.Option<number>
  /**
   * With `secretsFromStdin`: the bytes to write on stdin before the user's stdin (one base64 line per secret,
   * sorted by name). A function, so that the values stay out of anything that prints the wrapper.
   */
  readonly secretInput: () => Uint8Array
}

/**
 * The PowerShell twin run by a PowerShell process the transport starts: `pwsh` (or `powershell`) with
 * {@link PowerShellProcessLaunch.args}, or a PowerShell login shell given {@link PowerShellProcessLaunch.commandLine}
 * (SSH `exec`: sshd runs `pwsh -c <commandLine>`). Both carry only a constant bootstrap; the twin, the secrets and
 * the job's stdin go over stdin ({@link PowerShellProcessLaunch.drive}). The twin exports the token into
 * everything it starts and reports its process group on stderr (from `/proc`, else its PID; a protocol line the
 * driver removes): the POSIX kill script TERMs that group (a login shell leads the session sshd made) and every
 * token carrier, KILLs after the grace and reports what is left. No sentinel: the exit code is the process's.
 *
 * @since 0.1.0
 * @category models
 */
export interface PowerShellProcessLaunch extends
  Pick<
    WrapperLaunch,
    "nonce" | "token" | "tokenVariable" | "drive" | "pgid" | "pgidNow" | "killScript" | "interpretExit"
  >
{
  /** The arguments of `pwsh`/`powershell`: `-NoLogo -NoProfile -NonInteractive -Command <bootstrap>`. Constant. */
  readonly args: ReadonlyArray<string>
  /** The bootstrap alone, for a PowerShell login shell (`pwsh -c`). Constant: no user data, no secrets. */
  readonly commandLine: string
  /** The twin the bootstrap reads (no secrets), for previews and tests. */
  readonly script: string
  /** What {@link PowerShellProcessLaunch.drive} writes on stdin: the framed twin, the secret lines (revealed), the job's stdin. */
  readonly input: () => Uint8Array
}

/**
 * Options of {@link powershellProcess}.
 *
 * @since 0.1.0
 * @category models
 */
export interface PowerShellProcessOptions {
  /** The protocol's nonce (`[A-Za-z0-9_-]+`). Default: random. For tests. */
  readonly nonce?: string | undefined
  /** The transport named in the `TransportError`s of the launch. Default `"wrapper"`. */
  readonly transport?: string | undefined
}

/**
 * Options of {@link wrapper} and {@link directShell}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RenderOptions {
  /** The protocol's nonce (`[A-Za-z0-9_-]+`; another value throws). Default: random. For tests. */
  readonly nonce?: string | undefined
  /** The transport named in the `TransportError`s of the launch. Default `"wrapper"`. */
  readonly transport?: string | undefined
}

/**
 * Options of {@link powershell}.
 *
 * @since 0.1.0
 * @category models
 */
export interface PowerShellOptions {
  /** The sentinel's nonce (`[A-Za-z0-9_-]+`). Default: random. */
  readonly nonce?: string | undefined
  /** Secrets as lines on stdin (before the user's stdin) rather than from environment variables. */
  readonly secretsFromStdin?: boolean | undefined
}

/**
 * The constant bootstrap evaluated by `/bin/sh -c`.
 *
 * @since 0.1.0
 * @category constants
 */
export const BOOTSTRAP: string = posixInternal.BOOTSTRAP

/**
 * The environment variable that carries an execution's token.
 *
 * @since 0.1.0
 * @category constants
 */
export const TOKEN_VARIABLE: string = posixInternal.TOKEN_VAR

/**
 * Quotes one word for a POSIX shell (single quotes; `'` becomes `'\''`). Byte-exact for any string without NUL.
 *
 * @since 0.1.0
 * @category utils
 */
export const quote: (word: string) => string = posixInternal.quote

/**
 * Renders the POSIX wrapper for one invocation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const wrapper: (invocation: Invocation, options?: RenderOptions) => WrapperLaunch = launchInternal.make

/**
 * The direct launch of an invocation that needs no wrapper stage, or `None` (use {@link wrapper}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const direct: (invocation: Invocation) => Option.Option<DirectLaunch> = directInternal.make

/**
 * The direct launch through the login shell of an invocation that needs no wrapper stage (no run-as, a `Command`
 * or a short `sh`/`bash` script, secrets without newlines), or `None` (use {@link wrapper}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const directShell: (invocation: Invocation, options?: RenderOptions) => Option.Option<DirectShellLaunch> =
  directInternal.makeShell

/**
 * Renders the PowerShell launch. Secrets are not in the text: they are read from the environment variables named
 * in `secretVariables` (the transport sets them over its secure channel) or, when `secretsFromStdin`, from stdin
 * lines before the user's stdin. A script for another interpreter than `powershell` runs as
 * `<interpreter> -c <text>` (`python -c <text>`): the interpreter must be on the host's PATH (Git for Windows'
 * `sh`/`bash`, `python`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const powershell: (invocation: Invocation, options?: PowerShellOptions) => PowerShellLaunch =
  powershellInternal.make

/**
 * The constant bootstrap of {@link powershellProcess}: reads a framed script from the raw stdin and runs it.
 *
 * @since 0.1.0
 * @category constants
 */
export const POWERSHELL_BOOTSTRAP: string = powershellInternal.BOOTSTRAP

/**
 * Renders the PowerShell twin for a PowerShell process the transport starts (see {@link PowerShellProcessLaunch}).
 * Throws on an environment variable name PowerShell cannot set (`[A-Za-z_][A-Za-z0-9_]*`) and on a `Native` source.
 *
 * @since 0.1.0
 * @category constructors
 */
export const powershellProcess: (
  invocation: Invocation,
  options?: PowerShellProcessOptions
) => PowerShellProcessLaunch = powershellInternal.makeProcess

/**
 * Parses the last line a kill script printed.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseKillResult = (output: string): Option.Option<{ readonly gone: boolean; readonly alive: number }> => {
  const lines = output.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("runcmd-kill:"))
  const last = lines.at(-1)
  if (last === undefined) return Option.none()
  if (last === "runcmd-kill:gone") return Option.some({ gone: true, alive: 0 })
  const m = /^runcmd-kill:alive (\d+)$/.exec(last)
  return m === null ? Option.none() : Option.some({ gone: false, alive: Number(m[1]) })
}

/**
 * For --dry-run: what would run (the direct launch when no wrapper stage is needed, else the wrapper's text), with
 * secrets shown as [REDACTED].
 *
 * @since 0.1.0
 * @category utils
 */
export const preview: (invocation: Invocation) => string = previewInternal.preview

/**
 * The self-contained POSIX launch: one `sh` script text for services that run a script and nothing else (AWS SSM
 * Run Command, Azure Run Command: no stdin, no second channel). The text:
 *
 * - exports the execution token ({@link SelfContainedLaunch.token}) into everything it starts, and the job's env;
 * - writes the job's files (`Invocation.files`) inline, base64, into a private directory (0700) named by
 *   `RUNCMD_FILES` and removed at the end (also after a TERM), and the job's stdin likewise. Inline bytes (files plus
 *   stdin) are limited to `maxInlineBytes` (default {@link SELF_CONTAINED_MAX_INLINE_BYTES}, 32 KiB, which keeps the
 *   text within the services' parameter limits); a file named in `fileCommands` is fetched at run time instead
 *   (e.g. `curl -fsS <pre-signed url>`, written to stdout) and does not count. `base64` must be on the target;
 * - changes directory, switches user (sudo/runuser/doas without password), starts the user's source with its args
 *   and interpreter (sh, bash, python; a command) in a new session and exits with its code;
 * - reports how the program ended on stderr in a protocol line; {@link SelfContainedLaunch.interpret} removes it
 *   and tells an exit from a signal death (the exit code alone cannot: 137 is both);
 * - contains **no secrets**: a job with secrets needs `secretsSnippet`, shell text run before the program (as the
 *   target user) that fetches them and `export`s them (e.g. from AWS Parameter Store with the instance's CLI);
 *   without it the result is a `Secrets` failure.
 *
 * Fails (without rendering anything) when the job cannot be carried this way, with a message saying how to fix it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const selfContained: (
  invocation: Invocation,
  options?: SelfContainedOptions
) => Either.Either<SelfContainedLaunch, SelfContainedFailure> = selfContainedInternal.make

/**
 * The inline byte limit of {@link selfContained} by default (files plus stdin).
 *
 * @since 0.1.0
 * @category constants
 */
export const SELF_CONTAINED_MAX_INLINE_BYTES: number = selfContainedInternal.DEFAULT_MAX_INLINE_BYTES

/**
 * Options of {@link selfContained}.
 *
 * @since 0.1.0
 * @category models
 */
export interface SelfContainedOptions {
  /** The protocol's nonce (`[A-Za-z0-9_-]+`). Default: random. For tests. */
  readonly nonce?: string | undefined
  /**
   * Shell text run as the target user before the program, which must set and `export` every secret of the job
   * (it fetches them at run time; the text itself must contain none). A non-zero status ends the launch with
   * `fail secrets`.
   */
  readonly secretsSnippet?: string | undefined
  /** Per file name: a shell command writing the file's bytes to stdout, instead of inlining them. */
  readonly fileCommands?: { readonly [name: string]: string } | undefined
  /** Inline bytes allowed (files plus stdin). Default {@link SELF_CONTAINED_MAX_INLINE_BYTES}. */
  readonly maxInlineBytes?: number | undefined
  /**
   * Shell text appended to the token at run time (e.g. `-"$AWS_SSM_INSTANCE_ID"`), so that one text sent to many
   * machines gives each execution its own token. The kill script matches the token as a prefix.
   */
  readonly tokenSuffix?: string | undefined
}

/**
 * Why {@link selfContained} cannot carry a job: `Secrets` (secrets and no `secretsSnippet`), `FilesTooLarge`,
 * `Unsupported` (a PowerShell script, a `Native` source, run-as by su or with a password), `InvalidEnv`.
 *
 * @since 0.1.0
 * @category models
 */
export type SelfContainedFailure = selfContainedInternal.Failure

/**
 * The self-contained launch of one invocation.
 *
 * @since 0.1.0
 * @category models
 */
export interface SelfContainedLaunch {
  /** The whole `sh` script; no secrets. */
  readonly script: string
  readonly nonce: string
  /** Exported into the environment of everything the execution starts (found via /proc/<pid>/environ). */
  readonly token: string
  readonly tokenVariable: string
  /** Bytes of files and stdin inlined in the text. */
  readonly inlineBytes: number
  /** A separate `sh` script that TERMs every token carrier, waits `grace`, KILLs, prints `runcmd-kill:gone|alive N`. */
  readonly killScript: (grace: Duration.Duration) => string
  /**
   * Reads how the program ended from the service's exit code and the whole stderr: the status (or why the launch
   * failed: `fail cwd`, `fail secrets`, `fail files`, `fail launch N`) and stderr without the protocol line.
   */
  readonly interpret: (
    code: number | undefined,
    stderr: Uint8Array
  ) => { readonly status: Either.Either<ExitStatus, string>; readonly stderr: Uint8Array }
}

/**
 * The self-contained PowerShell launch: the twin of {@link selfContained} for Windows targets of services that run a
 * PowerShell script and nothing else (AWS SSM `AWS-RunPowerShellScript`, Azure `RunPowerShellScript`). The text:
 *
 * - writes the job's files (`Invocation.files`) inline, base64, into a private directory named by `RUNCMD_FILES`
 *   (an ACL for the running account alone on Windows, 0700 elsewhere), removed when the script ends; a file named in
 *   `fileCommands` is fetched at run time instead and does not count against `maxInlineBytes` (default
 *   {@link SELF_CONTAINED_MAX_INLINE_BYTES}, files plus stdin);
 * - gives the job's stdin to the user's program by running it in a child PowerShell (the constant
 *   {@link POWERSHELL_BOOTSTRAP}) whose stdin pipe it writes the program and the bytes to; the child's stdout and
 *   stderr are the script's own, so output is the same as without stdin;
 * - sets the environment, the execution token and the working directory, runs the user's script or command and
 *   prints the sentinel line with its exit code (also when the program ends with `exit N` in the child);
 * - contains **no secrets**: the transport sets them as environment variables before the text runs (a prelude
 *   that fetches them, or the service's protected parameters).
 *
 * Fails (without rendering anything) for run-as (a Windows account needs its password to start a process),
 * a `Native` source, an environment variable name PowerShell cannot set, or too many inline bytes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const powershellSelfContained: (
  invocation: Invocation,
  options?: PowerShellSelfContainedOptions
) => Either.Either<PowerShellSelfContainedLaunch, SelfContainedFailure> = selfContainedPowershellInternal.make

/**
 * Options of {@link powershellSelfContained}.
 *
 * @since 0.1.0
 * @category models
 */
export interface PowerShellSelfContainedOptions {
  /** The protocol's nonce (`[A-Za-z0-9_-]+`). Default: random. For tests. */
  readonly nonce?: string | undefined
  /**
   * Per file name: PowerShell statements that write the file's bytes to the path in `$__rc_path` (e.g.
   * `Invoke-WebRequest -UseBasicParsing -Uri '<pre-signed url>' -OutFile $__rc_path`), instead of inlining them.
   */
  readonly fileCommands?: { readonly [name: string]: string } | undefined
  /** Inline bytes allowed (files plus stdin). Default {@link SELF_CONTAINED_MAX_INLINE_BYTES}. */
  readonly maxInlineBytes?: number | undefined
}

/**
 * The self-contained PowerShell launch of one invocation.
 *
 * @since 0.1.0
 * @category models
 */
export interface PowerShellSelfContainedLaunch {
  /** The whole PowerShell script; no secrets. */
  readonly script: string
  readonly nonce: string
  /** Exported into the environment of everything the execution starts. */
  readonly token: string
  readonly tokenVariable: string
  /** The sentinel line's prefix: `<sentinel><code>` is the script's last stdout line. */
  readonly sentinel: string
  /** Bytes of files and stdin inlined in the text. */
  readonly inlineBytes: number
  /** The exit status from the sentinel line in stdout, if present. */
  readonly parseSentinel: (stdout: string) => Option.Option<number>
  /**
   * Reads how the program ended from the service's exit code and the whole output: the status (or why the launch
   * failed: `fail cwd`, `fail files`), stdout without the sentinel line and stderr without the protocol lines.
   */
  readonly interpret: (
    code: number | undefined,
    stdout: Uint8Array,
    stderr: Uint8Array
  ) => {
    readonly status: Either.Either<ExitStatus, string>
    readonly stdout: Uint8Array
    readonly stderr: Uint8Array
  }
}
