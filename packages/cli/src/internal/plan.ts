/**
 * From flags to a plan: targets (inventory, selectors, ids, a saved report's failures), the job and the policy,
 * all decoded through core's schemas so that the CLI and the library agree on what is valid.
 *
 * @since 0.1.0
 * @internal
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as ExecutionPolicy from "@runcmd/core/ExecutionPolicy"
import type { InvalidPlan } from "@runcmd/core/InvalidPlan"
import * as Runner from "@runcmd/core/Runner"
import type * as RunPlan from "@runcmd/core/RunPlan"
import * as RunReport from "@runcmd/core/RunReport"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as Targets from "@runcmd/core/Targets"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as nodePath from "node:path"
import { CliError, describeFsError, ensurePeriod, fromInvalidPlan, usage } from "./errors.js"
import { ExitCode } from "./exitCode.js"
import * as Prompt from "./prompt.js"
import { importers, kinds } from "./transports.js"

/**
 * The flags of `runcmd run`, as parsed (values still text).
 *
 * @internal
 */
export interface RunFlags {
  readonly inventory: string | undefined
  /** An OpenSSH config file whose hosts join the targets (as `ssh` targets). */
  readonly sshConfig?: string | undefined
  readonly select: ReadonlyArray<string>
  readonly target: ReadonlyArray<string>
  readonly script: string | undefined
  readonly command: string | undefined
  readonly interpreter: ScriptSource.Interpreter | undefined
  /** What follows `--`: the command (or, with --script/--command, the script's arguments). */
  readonly argv: ReadonlyArray<string>
  readonly concurrency: string | undefined
  readonly maxErrors: string | undefined
  readonly timeout: string | undefined
  readonly deadline: string | undefined
  readonly killGrace: string | undefined
  readonly retry: string | undefined
  readonly retryBackoff: string | undefined
  readonly batch: string | undefined
  /** `--on-controller-loss`: what happens to the jobs when runcmd dies without cancelling them. */
  readonly onControllerLoss?: ExecutionPolicy.OnControllerLoss | undefined
  readonly idempotent: boolean
  readonly runAs: string | undefined
  readonly becomeMethod: ExecutionPolicy.RunAs["method"] | undefined
  readonly askBecomePass: boolean
  readonly env: ReadonlyArray<string>
  readonly cwd: string | undefined
  readonly secret: ReadonlyArray<string>
  readonly stdin: string | undefined
  readonly file: ReadonlyArray<string>
  readonly output: "human" | "json" | "jsonl"
  readonly outDir: string | undefined
  readonly group: boolean
  readonly report: string | undefined
  readonly dryRun: boolean
  readonly rerunFailed: string | undefined
}

const fail = (message: string) => Effect.fail(usage(`runcmd run: ${message} Nothing was run.`))

const reasonOf = describeFsError

// -------------------------------------------------------------------------------------------------------------
// targets
// -------------------------------------------------------------------------------------------------------------

const listIds = (targets: ReadonlyArray<Target.Target>) => {
  const ids = targets.map((t) => t.id)
  return ids.length <= 10 ? ids.join(", ") : `${ids.slice(0, 10).join(", ")}, ... and ${ids.length - 10} more`
}

// the inventory module brings the YAML parser: loaded only when an inventory is read
const inventoryModule = Effect.promise(() => import("@runcmd/core/Inventory"))

/**
 * Loads an inventory, naming the file in any problem.
 *
 * @internal
 */
export const loadInventory = (path: string, command: string) =>
  Effect.gen(function*() {
    const Inventory = yield* inventoryModule
    return yield* Inventory.load(path, yield* kinds, { importers })
  }).pipe(Effect.mapError((e) => {
    const error = fromInvalidPlan(e, { command })
    // the inventory's own messages name the file and the place in it
    return e.reason === "FileUnreadable"
      ? usage(
        `runcmd ${command}: ${command === "run" ? "--inventory " : ""}${path}: cannot read the inventory: ${
          describeFsError(e.cause)
        }. Fix: check the path and its permissions.${command === "run" ? " Nothing was run." : ""}`
      )
      : error
  }))

/**
 * Reads and decodes a saved JSON report.
 *
 * @internal
 */
export const readReport = (path: string, flag: string, command: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const suffix = command === "run" ? " Nothing was run." : ""
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((e) =>
        usage(
          `runcmd ${command}: ${flag}${path}: cannot read the report: ${
            reasonOf(e)
          }. Fix: check the path and its permissions.${suffix}`
        )
      )
    )
    return yield* RunReport.decodeJson(text).pipe(
      Effect.mapError((e) => {
        const first = ParseResult.ArrayFormatter.formatErrorSync(e)[0]
        const where = first === undefined || first.path.length === 0 ? "" : ` at ${first.path.join(".")}`
        return usage(
          `runcmd ${command}: ${flag}${path}: not a runcmd JSON report (version 1)${where}: ${
            ensurePeriod(first?.message ?? "invalid")
          } Fix: give a file written by \`runcmd run --report FILE\` or \`--output json\`.${suffix}`
        )
      })
    )
  })

/**
 * The sources of a run's targets as one `Targets` layer: the inventory (its `imports:` run by the importers of `transports.ts`),
 * the hosts of an OpenSSH config, or the local targets named by --target (this machine without any). The SSH
 * module is loaded only when a source needs it.
 */
const targetsLayer = (
  flags: RunFlags,
  localTargets: ReadonlyArray<Target.Target>
): Layer.Layer<Targets.Targets, never, FileSystem.FileSystem> =>
  flags.inventory === undefined && flags.sshConfig === undefined
    ? Targets.layer(localTargets, { name: "--target" })
    : Layer.unwrapEffect(Effect.gen(function*() {
      const SshConfig = yield* Effect.promise(() => import("@runcmd/transport-ssh/SshConfig"))
      const InventoryModule = yield* inventoryModule
      const inventory = flags.inventory === undefined
        ? undefined
        : Layer.merge(
          Targets.layerInventory(flags.inventory, yield* kinds),
          importers.map((importer) => InventoryModule.layerImporter(importer)).reduce((a, b) => Layer.merge(a, b))
        )
      const sshConfig = flags.sshConfig === undefined ? undefined : SshConfig.layer(flags.sshConfig)
      // the inventory's targets first (an enclosing source's come first), then the ssh_config hosts
      return inventory === undefined
        ? sshConfig!
        : sshConfig === undefined
        ? inventory
        : Layer.provideMerge(sshConfig, inventory)
    }))

/** The flag that gave a source of targets, for messages. */
const flagOfSource = (flags: RunFlags, source: string): string =>
  flags.sshConfig !== undefined && source === `ssh_config ${flags.sshConfig}`
    ? `--ssh-config ${flags.sshConfig}`
    : flags.inventory !== undefined && source === flags.inventory
    ? `--inventory ${flags.inventory}`
    : source

/** A problem reading the targets' sources, as a usage error naming the flag and the fix. */
const fromTargetsError = (flags: RunFlags, e: Targets.TargetsError | InvalidPlan): CliError => {
  if (e._tag === "TargetsError") {
    const fix = e.reason === "DuplicateTargetId"
      ? "rename one of the targets (or narrow the ssh_config hosts); target ids must be unique across --inventory and --ssh-config"
      : "check that the source can be read"
    // the description without core's own fix (the CLI names the flags)
    const what = e.reason === "DuplicateTargetId" ? e.description.replace(/;[^;]*$/, "") : e.description
    return usage(`runcmd run: ${flagOfSource(flags, e.source)}: ${ensurePeriod(what)} Fix: ${fix}. Nothing was run.`)
  }
  if (e.reason === "FileUnreadable") {
    if (flags.inventory !== undefined && e.path === flags.inventory) {
      return usage(
        `runcmd run: --inventory ${flags.inventory}: cannot read the inventory: ${
          describeFsError(e.cause)
        }. Fix: check the path and its permissions. Nothing was run.`
      )
    }
    if (flags.sshConfig !== undefined && (e.path === flags.sshConfig || e.description.includes("ssh_config"))) {
      return usage(
        `runcmd run: --ssh-config ${flags.sshConfig}: ${
          ensurePeriod(e.description)
        } Fix: give a readable OpenSSH config file. Nothing was run.`
      )
    }
  }
  return fromInvalidPlan(e, { command: "run" })
}

/** The first invalid or missing value of a `ConfigError`: its key and what is wrong. */
const firstConfigProblem = (e: ConfigError.ConfigError): { readonly key: string; readonly message: string } => {
  switch (e._op) {
    case "And":
    case "Or":
      return firstConfigProblem(e.left)
    case "InvalidData":
    case "MissingData":
    case "SourceUnavailable":
    case "Unsupported": {
      // a schema's tree: its last line says what was expected
      const text = /^"[\s\S]*"$/.test(e.message) ? e.message.slice(1, -1) : e.message
      const lines = text.split("\n").map((l) => l.replace(/^[\s└├│─]+/, "").trim()).filter((l) => l !== "")
      return { key: e.path.join("."), message: lines[lines.length - 1] ?? text }
    }
  }
}

/**
 * A `RUNCMD_*` variable that does not decode, as a usage error naming the key.
 *
 * @internal
 */
export const fromConfigError = (e: ConfigError.ConfigError): CliError => {
  const { key, message } = firstConfigProblem(e)
  const value = key === "" ? undefined : process.env[key]
  return usage(
    `runcmd run: ${
      key === "" ? "" : `${key}${value === undefined ? "" : `=${JSON.stringify(value)}`} (environment): `
    }${
      ensurePeriod(message)
    } Fix: correct the environment variable, or unset it (the flags and \`runcmd run --help\` say what each takes). Nothing was run.`
  )
}

/**
 * The plan of a run and its job: the targets from the `Targets` layer of the flags' sources (all, by id with
 * --target, or by --select; narrowed to the failures of a saved report with --rerun-failed), the policy from the
 * flags given over the inventory's `policy:`, the `RUNCMD_*` variables and the built-in defaults.
 *
 * @internal
 */
export const makePlan = (
  flags: RunFlags
): Effect.Effect<{ readonly plan: RunPlan.RunPlan; readonly job: ResolvedJob }, CliError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const ids = flags.target
    const seen = new Set<string>()
    for (const id of ids) {
      if (Either.isLeft(Schema.decodeUnknownEither(Target.TargetId)(id))) {
        return yield* fail(`--target ${JSON.stringify(id)}: a target id must be non-empty and contain no white space.`)
      }
      if (seen.has(id)) return yield* fail(`--target ${id} is given twice; each target runs once.`)
      seen.add(id)
    }
    const rerun = flags.rerunFailed === undefined
      ? undefined
      : yield* readReport(flags.rerunFailed, "--rerun-failed ", "run")
    const fromSources = flags.inventory !== undefined || flags.sshConfig !== undefined

    let localTargets: ReadonlyArray<Target.Target> = []
    if (!fromSources) {
      if (ids.length > 0) {
        localTargets = ids.map((id) => Target.local(id))
      } else if (rerun !== undefined) {
        // no inventory: the local targets of the saved run
        const failed = rerun.outcomes.filter((o) => o._tag !== "Succeeded")
        const other = failed.filter((o) => o.kind !== "local")
        if (other.length > 0) {
          return yield* fail(
            `--rerun-failed ${flags.rerunFailed}: targets ${other.map((o) => o.targetId).join(", ")} are of kind ${
              [...new Set(other.map((o) => o.kind))].join(", ")
            } and need the inventory they came from. Fix: add --inventory FILE (the one of that run).`
          )
        }
        localTargets = failed.map((o) => Target.local(o.targetId))
      } else {
        localTargets = [Target.local()]
      }
    }

    const job = yield* buildJob(flags)
    const overrides = yield* flagOverrides(flags)

    const planned = yield* Effect.gen(function*() {
      if (fromSources && ids.length > 0) {
        const listing = yield* Targets.list
        const have = new Set(listing.targets.map((t) => t.id))
        const missing = ids.filter((id) => !have.has(id))
        if (missing.length > 0) {
          return yield* fail(
            `--target ${missing.join(", ")}: no such target in ${
              listing.sources.map((s) => s.name).join(" or ")
            }. Fix: use ids from the inventory (${listIds(listing.targets)}), or --select EXPR.`
          )
        }
      }
      return yield* Runner.planJob(job, {
        ...(flags.select.length === 0 ? {} : { select: flags.select }),
        policyLevels: { flags: overrides }
      })
    }).pipe(
      Effect.provide(Layer.merge(targetsLayer(flags, localTargets), ExecutionPolicy.layerConfig())),
      Effect.catchIf(ConfigError.isConfigError, (e) => Effect.fail(fromConfigError(e))),
      Effect.catchIf(
        (e): e is Targets.TargetsError | InvalidPlan => e._tag === "TargetsError" || e._tag === "InvalidPlan",
        (e) => Effect.fail(fromTargetsError(flags, e))
      )
    )

    let targets = planned.targets
    if (fromSources && ids.length > 0) {
      // the targets named by --target, in that order (and matching --select, if given)
      const byId = new Map(targets.map((t) => [t.id, t]))
      targets = ids.flatMap((id) => byId.get(id) ?? [])
      if (targets.length === 0) {
        return yield* fail(
          `none of --target ${ids.join(", ")} matches --select ${
            flags.select.join(" --select ")
          }. Fix: drop --select, or name other targets.`
        )
      }
    }

    if (rerun !== undefined) {
      const failed = RunReport.failedTargets(rerun)
      if (failed.length === 0) {
        return yield* Effect.fail(
          new CliError({
            message:
              `runcmd run: --rerun-failed ${flags.rerunFailed}: every target succeeded in that run; nothing to rerun.`,
            code: ExitCode.Success
          })
        )
      }
      const have = new Set(targets.map((t) => t.id))
      const missing = failed.filter((id) => !have.has(id))
      if (flags.select.length > 0) {
        // --select narrows the rerun to some of the failed targets
        if (missing.length === failed.length) {
          return yield* fail(
            `--rerun-failed ${flags.rerunFailed}: none of the targets that failed in that run (${
              failed.join(", ")
            }) match --select ${flags.select.join(" --select ")}. Fix: drop --select, or select some of them.`
          )
        }
      } else if (missing.length > 0) {
        return yield* fail(
          `--rerun-failed ${flags.rerunFailed}: ${missing.join(", ")} failed in that run but ${
            missing.length === 1 ? "is" : "are"
          } not among the targets given (${
            listIds(targets)
          }). Fix: give the same --inventory/--target/--select as that run.`
        )
      }
      const wanted = new Set(failed)
      targets = targets.filter((t) => wanted.has(t.id))
    }

    let policy = planned.policy
    if (policy.runAs !== undefined) {
      const password = flags.askBecomePass
        ? yield* Prompt.password(`[runcmd] password for ${policy.runAs.method} to ${policy.runAs.user}: `)
        : process.env.RUNCMD_BECOME_PASS !== undefined && process.env.RUNCMD_BECOME_PASS !== ""
        ? Redacted.make(process.env.RUNCMD_BECOME_PASS)
        : undefined
      if (password !== undefined) policy = { ...policy, runAs: { ...policy.runAs, password } }
    }
    return { plan: { ...planned, targets, policy }, job }
  })

// -------------------------------------------------------------------------------------------------------------
// policy
// -------------------------------------------------------------------------------------------------------------

const policyFlags: Record<string, string> = {
  concurrency: "--concurrency",
  maxErrors: "--max-errors",
  timeout: "--timeout",
  deadline: "--deadline",
  killGrace: "--kill-grace",
  batchSize: "--batch",
  cwd: "--cwd",
  idempotent: "--idempotent",
  onControllerLoss: "--on-controller-loss",
  "retry.times": "--retry",
  "retry.backoff": "--retry-backoff",
  "runAs.user": "--run-as",
  "runAs.method": "--become-method",
  "runAs.password": "--ask-become-pass"
}

const policyFixes: Record<string, string> = {
  "--concurrency":
    "give how many targets run at once, a whole number ≥ 1 (--concurrency 5) or a percentage of the targets above 0% (--concurrency 20%)",
  "--max-errors":
    "give how many failing targets are tolerated, a whole number ≥ 0 (--max-errors 2) or a percentage from 0% to 100% (--max-errors 10%)",
  "--batch": "give the size of each wave, a whole number ≥ 1 (--batch 5) or a percentage above 0% (--batch 25%)",
  "--timeout": "give a non-negative duration with a unit, such as 30s, 10m, 1.5h or 250ms",
  "--deadline": "give a non-negative duration with a unit, such as 30s, 10m, 1.5h or 250ms",
  "--kill-grace": "give a non-negative duration with a unit, such as 5s or 500ms",
  "--retry-backoff": "give a non-negative duration with a unit, such as 1s or 500ms",
  "--retry": "give a whole number of retries from 0 to 100",
  "--run-as": "give a plain user name (letters, digits, . _ -)",
  "--cwd": "give a non-empty directory path"
}

const amount = (text: string): string | number => {
  const t = text.trim()
  return /^-?\d+(\.\d+)?$/.test(t) ? Number(t) : t
}

/**
 * The policy fields the flags given set (the `flags` level of `ExecutionPolicy.resolve`), decoded with
 * `ExecutionPolicy.ExecutionPolicy`; a flag not given leaves its field to the levels below.
 *
 * @internal
 */
export const flagOverrides = (
  flags: RunFlags
): Effect.Effect<ExecutionPolicy.Overrides, CliError> =>
  Effect.gen(function*() {
    if (flags.runAs === undefined && (flags.becomeMethod !== undefined || flags.askBecomePass)) {
      return yield* fail(
        `${
          flags.becomeMethod !== undefined ? "--become-method" : "--ask-become-pass"
        } only applies with --run-as USER. Fix: add --run-as root (or the user to run as).`
      )
    }
    const raw: Record<string, unknown> = {}
    const values: Record<string, string> = {}
    const set = (key: string, value: string | undefined, f: (s: string) => unknown = (s) => s) => {
      if (value === undefined) return
      values[key] = value
      const path = key.split(".")
      let obj = raw
      for (const p of path.slice(0, -1)) obj = (obj[p] ??= {}) as Record<string, unknown>
      obj[path[path.length - 1]!] = f(value)
    }
    set("concurrency", flags.concurrency, amount)
    set("maxErrors", flags.maxErrors, amount)
    set("batchSize", flags.batch, amount)
    set("timeout", flags.timeout)
    set("deadline", flags.deadline)
    set("killGrace", flags.killGrace)
    set("retry.times", flags.retry, amount)
    set("retry.backoff", flags.retryBackoff)
    set("cwd", flags.cwd)
    if (flags.idempotent) raw.idempotent = true
    set("onControllerLoss", flags.onControllerLoss)
    set("runAs.user", flags.runAs)
    set("runAs.method", flags.becomeMethod)
    const decoded = Schema.decodeUnknownEither(ExecutionPolicy.ExecutionPolicy)(raw, {
      errors: "first",
      onExcessProperty: "error"
    })
    if (Either.isLeft(decoded)) {
      const first = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
      const key = (first?.path ?? []).map(String).join(".")
      const flag = policyFlags[key] ?? key
      const value = values[key]
      const fix = policyFixes[flag]
      return yield* fail(
        `${flag}${value === undefined ? "" : ` ${value}`}: ${ensurePeriod(first?.message ?? "invalid value")}${
          fix === undefined ? "" : ` Fix: ${fix}.`
        }`
      )
    }
    // only the fields given: the schema's defaults are the built-in level, not the flags'
    const policy = decoded.right as unknown as Record<string, unknown>
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(raw)) {
      if (key === "retry") {
        const retry = policy.retry as Record<string, unknown>
        out.retry = Object.fromEntries(Object.keys(raw.retry as object).map((k) => [k, retry[k]]))
      } else out[key] = policy[key]
    }
    return out as ExecutionPolicy.Overrides
  })

// -------------------------------------------------------------------------------------------------------------
// job
// -------------------------------------------------------------------------------------------------------------

/**
 * A job whose source is resolved (a script file is read here, so that problems name `--script`, and what runs
 * is exactly what `--dry-run` shows).
 *
 * @internal
 */
export interface ResolvedJob extends ScriptSource.Job {
  readonly source: ScriptSource.Command | ScriptSource.Script
}

const envName = Schema.decodeUnknownEither(ScriptSource.EnvName)
const fileName = Schema.decodeUnknownEither(ScriptSource.FileName)

/**
 * The job the flags describe.
 *
 * @internal
 */
export const buildJob = (flags: RunFlags): Effect.Effect<ResolvedJob, CliError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const given = [
      flags.script === undefined ? undefined : "--script",
      flags.command === undefined ? undefined : "--command"
    ].filter((x) => x !== undefined)
    if (given.length > 1) {
      return yield* fail(
        "--script and --command both say what to run; give one. (Arguments after -- are then the script's arguments.)"
      )
    }
    if (given.length === 0 && flags.argv.length === 0) {
      return yield* fail(
        "nothing to run. Fix: give --script FILE, --command 'shell text', or a command after -- (runcmd run -- uptime)."
      )
    }
    let source: ScriptSource.Command | ScriptSource.Script
    let args: ReadonlyArray<string> = []
    if (flags.script !== undefined) {
      const fs = yield* FileSystem.FileSystem
      const path = flags.script
      const text = yield* fs.readFileString(path).pipe(
        Effect.mapError((e) =>
          usage(
            `runcmd run: --script ${path}: cannot read the script file: ${
              reasonOf(e)
            }. Fix: check the path and its permissions. Nothing was run.`
          )
        )
      )
      source = ScriptSource.script(text, flags.interpreter ?? ScriptSource.interpreterFromShebang(text))
      args = flags.argv
    } else if (flags.command !== undefined) {
      if (flags.command.trim() === "") {
        return yield* fail("--command is empty. Fix: give the shell text to run, e.g. --command 'uptime'.")
      }
      source = ScriptSource.script(flags.command, flags.interpreter ?? "sh")
      args = flags.argv
    } else {
      if (flags.interpreter !== undefined) {
        return yield* fail("--interpreter applies to --script and --command, not to a command after --.")
      }
      source = ScriptSource.command(flags.argv[0]!, ...flags.argv.slice(1))
    }

    const env: Record<string, string> = {}
    for (const item of flags.env) {
      const eq = item.indexOf("=")
      const name = eq === -1 ? item : item.slice(0, eq)
      if (eq === -1) {
        return yield* fail(`--env ${JSON.stringify(item)}: expected NAME=VALUE. Fix: write --env ${name}=value.`)
      }
      if (Either.isLeft(envName(name))) {
        return yield* fail(
          `--env ${name}=...: ${
            JSON.stringify(name)
          } is not an environment variable name (it must match [A-Za-z_][A-Za-z0-9_]*).`
        )
      }
      env[name] = item.slice(eq + 1)
    }

    const secrets: Record<string, Redacted.Redacted<string>> = {}
    for (const item of flags.secret) {
      const eq = item.indexOf("=")
      const name = eq === -1 ? item : item.slice(0, eq)
      const from = eq === -1 ? item : item.slice(eq + 1)
      if (Either.isLeft(envName(name))) {
        return yield* fail(
          `--secret ${item}: ${
            JSON.stringify(name)
          } is not an environment variable name (it must match [A-Za-z_][A-Za-z0-9_]*). Fix: write --secret NAME=ENVVAR.`
        )
      }
      if (from === "") {
        return yield* fail(
          `--secret ${item}: no environment variable named after =. Fix: write --secret ${name}=ENVVAR.`
        )
      }
      const value = process.env[from]
      if (value === undefined || value === "") {
        return yield* fail(
          `--secret ${item}: the environment variable ${from} is ${
            value === undefined ? "not set" : "empty"
          } in runcmd's environment. Fix: export ${from} before running runcmd (the value is read from there, never from the command line).`
        )
      }
      secrets[name] = Redacted.make(value)
    }

    let stdin: Uint8Array | undefined
    if (flags.stdin !== undefined) {
      if (flags.stdin === "-") {
        if (flags.askBecomePass && process.stdin.isTTY === true) {
          return yield* fail("--stdin - and --ask-become-pass both read the terminal. Fix: use RUNCMD_BECOME_PASS.")
        }
        stdin = yield* Prompt.readStdin
      } else {
        const fs = yield* FileSystem.FileSystem
        const path = flags.stdin
        stdin = yield* fs.readFile(path).pipe(
          Effect.mapError((e) =>
            usage(
              `runcmd run: --stdin ${path}: cannot read the file: ${
                reasonOf(e)
              }. Fix: check the path and its permissions. Nothing was run.`
            )
          )
        )
      }
    }

    const files: Array<{ readonly name: string; readonly content: Uint8Array; readonly mode: number }> = []
    for (const item of flags.file) {
      // NAME=PATH when what is before the first = is a valid name, else all of it is the path
      const eq = item.indexOf("=")
      const named = eq > 0 && Either.isRight(fileName(item.slice(0, eq)))
      const path = named ? item.slice(eq + 1) : item
      const name = named ? item.slice(0, eq) : nodePath.basename(path)
      if (path === "") return yield* fail(`--file ${item}: no path. Fix: write --file PATH or --file NAME=PATH.`)
      if (Either.isLeft(fileName(name))) {
        return yield* fail(
          `--file ${item}: ${
            JSON.stringify(name)
          } cannot be the file's name on the targets (letters, digits and ._+@=,- in a relative path). Fix: name it, e.g. --file data.txt=${path}.`
        )
      }
      const fs = yield* FileSystem.FileSystem
      const cannot = (e: Parameters<typeof reasonOf>[0]) =>
        usage(
          `runcmd run: --file ${item}: cannot read ${path}: ${
            reasonOf(e)
          }. Fix: check the path and its permissions. Nothing was run.`
        )
      const info = yield* Effect.mapError(fs.stat(path), cannot)
      if (info.type !== "File") return yield* fail(`--file ${item}: ${path} is not a regular file.`)
      const content = yield* Effect.mapError(fs.readFile(path), cannot)
      files.push({ name, content, mode: (info.mode & 0o100) !== 0 ? 0o700 : 0o600 })
    }

    // what the library accepts is what the CLI accepts: the job (without the secrets' values) through its schema
    const encoded = {
      source: source._tag === "Command"
        ? { _tag: "Command", argv: source.argv }
        : { _tag: "Script", text: source.text, interpreter: source.interpreter },
      args,
      env,
      ...(stdin === undefined ? {} : { stdin }),
      ...(files.length === 0 ? {} : { files })
    }
    const decoded = Schema.decodeUnknownEither(ScriptSource.Job)(encoded, {
      errors: "first",
      onExcessProperty: "error"
    })
    if (Either.isLeft(decoded)) {
      const first = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]
      return yield* fail(`${(first?.path ?? []).join(".")}: ${ensurePeriod(first?.message ?? "invalid")}`)
    }
    return { ...decoded.right, source, secrets }
  })
