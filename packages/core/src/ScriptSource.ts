/**
 * What to run: a script source plus its arguments, environment, stdin and secrets.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * A program and its arguments; runcmd quotes every element, nothing is concatenated into a command string.
 *
 * @since 0.1.0
 * @category schemas
 */
export class Command extends Schema.TaggedClass<Command>()("Command", {
  argv: Schema.NonEmptyArray(Schema.String)
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const Interpreter = Schema.Literal("sh", "bash", "powershell", "python")

/**
 * @since 0.1.0
 * @category models
 */
export type Interpreter = typeof Interpreter.Type

/**
 * The interpreter a script's `#!` line names (`bash`, `python3`, `pwsh`...); `sh` when it names none we know.
 *
 * @since 0.1.0
 * @category utils
 */
export const interpreterFromShebang = (text: string): Interpreter => {
  if (!text.startsWith("#!")) return "sh"
  const end = text.indexOf("\n")
  const first = end === -1 ? text : text.slice(0, end)
  if (/\bbash\b/.test(first)) return "bash"
  if (/\bpython[0-9.]*\b/.test(first)) return "python"
  if (/\bpwsh\b|\bpowershell\b/.test(first)) return "powershell"
  return "sh"
}

/**
 * Script text run by an interpreter; `args` become its positional parameters.
 *
 * @since 0.1.0
 * @category schemas
 */
export class Script extends Schema.TaggedClass<Script>()("Script", {
  text: Schema.String,
  interpreter: Schema.optionalWith(Interpreter, { default: () => "sh" as const })
}) {}

/**
 * A local script file, read before anything runs (interpreter from the option, else the shebang, else `sh`).
 *
 * @since 0.1.0
 * @category schemas
 */
export class File extends Schema.TaggedClass<File>()("File", {
  path: Schema.String.pipe(Schema.minLength(1)),
  interpreter: Schema.optional(Interpreter)
}) {}

/**
 * A script fetched over HTTP(S) and verified against its SHA-256 before anything runs.
 *
 * @since 0.1.0
 * @category schemas
 */
export class Url extends Schema.TaggedClass<Url>()("Url", {
  url: Schema.String.pipe(
    Schema.pattern(/^https?:\/\//, { message: () => "a script url must start with http:// or https://" })
  ),
  sha256: Schema.String.pipe(
    Schema.pattern(/^[0-9a-fA-F]{64}$/, { message: () => "sha256 must be 64 hex digits (sha256sum of the script)" })
  ),
  interpreter: Schema.optional(Interpreter)
}) {}

/**
 * An opaque transport-native document (an SSM document, an Azure commandId); only transports that declare
 * `native` support accept it.
 *
 * @since 0.1.0
 * @category schemas
 */
export class Native extends Schema.TaggedClass<Native>()("Native", {
  transport: Schema.String,
  document: Schema.Record({ key: Schema.String, value: Schema.Unknown })
}) {}

/**
 * @since 0.1.0
 * @category schemas
 */
export const ScriptSource = Schema.Union(Command, Script, File, Url, Native)

/**
 * @since 0.1.0
 * @category models
 */
export type ScriptSource = typeof ScriptSource.Type

/**
 * What transports receive: `File` and `Url` are resolved to `Script` by the Runner before anything starts.
 *
 * @since 0.1.0
 * @category models
 */
export type ResolvedSource = Command | Script | Native

/**
 * A POSIX environment variable name.
 *
 * @since 0.1.0
 * @category schemas
 */
export const EnvName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    message: () => "an environment variable name must match [A-Za-z_][A-Za-z0-9_]*"
  })
)

/**
 * Where a shipped file goes under the job's files directory: a relative path of names made of letters, digits and
 * `._+@=,-` (`conf/app.ini`), without `.` or `..` segments.
 *
 * @since 0.1.0
 * @category schemas
 */
export const FileName = Schema.String.pipe(
  Schema.filter((name) =>
    /^[A-Za-z0-9._+@=,-]+(\/[A-Za-z0-9._+@=,-]+)*$/.test(name) &&
      !name.split("/").some((part) => part === "." || part === "..")
      ? undefined
      : "a shipped file's name must be a relative path of names made of letters, digits and ._+@=,- (no . or .. segments), like conf/app.ini"
  )
)

/**
 * A file shipped with the job: before the script starts, each target gets it in a private directory (mode 0700)
 * whose path is in the script's environment as `RUNCMD_FILES`; the directory is removed when the execution ends.
 * Give the content (`content`: text, written as UTF-8, or bytes) or a local file read when the plan is prepared
 * (`path`), not both.
 *
 * @since 0.1.0
 * @category schemas
 */
export const JobFile = Schema.Struct({
  name: FileName,
  content: Schema.optional(Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf)),
  path: Schema.optional(Schema.String),
  /** Permission bits (default 0o600; 0o700 for a program). */
  mode: Schema.optional(Schema.Int.pipe(Schema.between(0, 0o777)))
})

/**
 * @since 0.1.0
 * @category models
 */
export type JobFile = typeof JobFile.Type

/**
 * The job: what runs on every target.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Job = Schema.Struct({
  source: ScriptSource,
  args: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  env: Schema.optionalWith(Schema.Record({ key: EnvName, value: Schema.String }), { default: () => ({}) }),
  /** Bytes (or UTF-8 text) fed to the script's stdin. */
  stdin: Schema.optional(Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf)),
  /** Delivered as environment variables over each transport's secure channel; never in argv or script text. */
  secrets: Schema.optionalWith(Schema.Record({ key: EnvName, value: Schema.Redacted(Schema.String) }), {
    default: () => ({})
  }),
  /** Files shipped next to the script, in the directory named by `$RUNCMD_FILES` (see `JobFile`). */
  files: Schema.optional(Schema.Array(JobFile))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Job = typeof Job.Type

/**
 * @since 0.1.0
 * @category constructors
 */
export const command = (...argv: readonly [string, ...Array<string>]): Command => new Command({ argv })

/**
 * @since 0.1.0
 * @category constructors
 */
export const script = (text: string, interpreter: Interpreter = "sh"): Script => new Script({ text, interpreter })

/**
 * @since 0.1.0
 * @category constructors
 */
export const job = (
  source: ScriptSource,
  options: Partial<Omit<Job, "source">> = {}
): Job => ({
  source,
  args: options.args ?? [],
  env: options.env ?? {},
  secrets: options.secrets ?? {},
  ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
  ...(options.files === undefined ? {} : { files: options.files })
})
