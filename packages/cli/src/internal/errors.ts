/**
 * The CLI's errors: a one-paragraph message naming the flag or file and the fix, and the exit code.
 *
 * @since 0.1.0
 * @internal
 */
import type { InvalidPlan } from "@runcmd/core/InvalidPlan"
import * as Data from "effect/Data"
import { ExitCode } from "./exitCode.js"

/**
 * A problem that ends the command before anything runs (exit 2 unless said otherwise).
 *
 * @internal
 */
export class CliError extends Data.TaggedError("CliError")<{
  readonly message: string
  readonly code: number
}> {}

/** @internal */
export const usage = (message: string): CliError => new CliError({ message, code: ExitCode.Usage })

/**
 * Flags of `runcmd run` by the plan field they set, for messages that name the flag.
 *
 * @internal
 */
export const flagOfPath: ReadonlyArray<readonly [prefix: string, flag: string]> = [
  ["policy.concurrency", "--concurrency"],
  ["policy.maxErrors", "--max-errors"],
  ["policy.timeout", "--timeout"],
  ["policy.deadline", "--deadline"],
  ["policy.killGrace", "--kill-grace"],
  ["policy.retry.times", "--retry"],
  ["policy.retry.backoff", "--retry-backoff"],
  ["policy.retry", "--retry"],
  ["policy.batchSize", "--batch"],
  ["policy.runAs.user", "--run-as"],
  ["policy.runAs.method", "--become-method"],
  ["policy.runAs.password", "--ask-become-pass"],
  ["policy.runAs", "--run-as"],
  ["policy.cwd", "--cwd"],
  ["policy.idempotent", "--idempotent"],
  ["policy.onControllerLoss", "--on-controller-loss"],
  ["job.source.path", "--script"],
  ["job.source", "--script/--command"],
  ["job.env", "--env"],
  ["job.secrets", "--secret"],
  ["job.stdin", "--stdin"],
  ["job.args", "the arguments after --"],
  ["selector", "--select"]
]

/**
 * The flag a plan field path comes from, if any.
 *
 * @internal
 */
export const flagFor = (path: string): string | undefined => {
  for (const [prefix, flag] of flagOfPath) {
    if (path === prefix || path.startsWith(prefix + ".") || path.startsWith(prefix + "[")) return flag
  }
  return undefined
}

const fixes: Partial<Record<InvalidPlan["reason"], string>> = {
  NoTargets:
    "give targets with --inventory FILE (and --select EXPR) or --target ID, or none at all to run on this machine",
  DuplicateTargetId: "give every target a unique id",
  SelectorMatchedNothing: "check the selector against the labels that `runcmd inventory check FILE` lists",
  NoTransportForKind: "this runcmd carries the local and ssh transports; use targets of those kinds",
  UnsupportedByTransport: "drop that option for these targets or use another transport",
  ChecksumMismatch: "update the checksum or the script",
  FetchFailed: "check the url and the network",
  FileUnreadable: "check the path and its permissions",
  InvalidInventory: "fix the inventory file (`runcmd inventory check FILE` validates it)"
}

/**
 * Turns a plan refused by core into the CLI's one-paragraph message, naming the flag (or file) and the fix.
 *
 * @internal
 */
export const fromInvalidPlan = (
  error: InvalidPlan,
  context: { readonly command: string } = { command: "run" }
): CliError => {
  const flag = flagFor(error.path)
  const where = flag !== undefined
    ? `${flag}: `
    : error.path === "" || error.path === "targets"
    ? ""
    : `${error.path}: `
  const fix = fixes[error.reason]
  const end = context.command === "run" ? " Nothing was run." : ""
  return usage(
    `runcmd ${context.command}: ${where}${ensurePeriod(error.description)}${
      fix === undefined ? "" : ` Fix: ${fix}.`
    }${end}`
  )
}

/** @internal */
export const ensurePeriod = (text: string): string => {
  const t = text.trim()
  return /[.!?)]$/.test(t) ? t : `${t}.`
}

/**
 * A file system error in a few words: `no such file or directory`, `permission denied`...
 *
 * @internal
 */
export const describeFsError = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const e = error as {
      readonly _tag?: unknown
      readonly reason?: unknown
      readonly message?: unknown
      readonly cause?: unknown
    }
    if (e._tag === "SystemError") {
      switch (e.reason) {
        case "NotFound":
          return "no such file or directory"
        case "PermissionDenied":
          return "permission denied"
        case "AlreadyExists":
          return "it already exists"
        case "BadResource": {
          const code = (e.cause as { readonly code?: unknown } | undefined)?.code
          return code === "EISDIR" ? "it is a directory" : "not a readable file"
        }
        default:
          break
      }
    }
    if (typeof e.message === "string") return e.message
  }
  return String(error)
}
