/**
 * Preparing a run: everything about a plan is checked (targets, transports and their capabilities, the job's files)
 * and resolved (script files read, urls fetched and checksummed) before anything runs; the one place an
 * `Invocation` is built.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as ExecutionPolicy from "../../ExecutionPolicy.js"
import { InvalidPlan } from "../../InvalidPlan.js"
import * as OutputSinks from "../../OutputSinks.js"
import * as Redactor from "../../Redactor.js"
import type { RunPlan } from "../../RunPlan.js"
import * as ScriptSource from "../../ScriptSource.js"
import * as ScriptSources from "../../ScriptSources.js"
import type { Target } from "../../Target.js"
import * as Transport from "../../Transport.js"
import { readLocal } from "../scriptSources.js"

const DEFAULT_CAPTURE = 64 * 1024

/** @internal */
export interface Prepared {
  readonly plan: RunPlan
  readonly runId: string
  readonly routes: ReadonlyMap<string, Transport.Transport>
  readonly source: ScriptSource.ResolvedSource
  readonly stdin: Uint8Array | undefined
  readonly files: ReadonlyArray<Transport.ShippedFile> | undefined
  readonly redactor: Redactor.Redactor
  readonly concurrency: number
  readonly maxErrors: number | undefined
  readonly batchSize: number
  readonly captureHead: number
  readonly captureTail: number
}

/** @internal */
export const invalid = (reason: InvalidPlan["reason"], path: string, description: string) =>
  new InvalidPlan({ reason, path, description })

/** @internal */
export const prepare = (plan: RunPlan): Effect.Effect<Prepared, InvalidPlan, Transport.Registry> =>
  Effect.gen(function*() {
    const { job, policy, targets } = plan
    // the sinks of the OutputSinks in scope see every run (the plan unchanged without any)
    const sinks = yield* OutputSinks.forRun(plan.sinks)
    if (sinks !== plan.sinks) plan = { ...plan, sinks }
    if (targets.length === 0) {
      return yield* invalid("NoTargets", "targets", "the plan has no targets; add targets or fix the selector")
    }
    const seen = new Map<string, number>()
    for (let i = 0; i < targets.length; i++) {
      const id = targets[i]!.id
      const first = seen.get(id)
      if (first !== undefined) {
        return yield* invalid(
          "DuplicateTargetId",
          `targets[${i}].id`,
          `target id ${JSON.stringify(id)} is used by targets[${first}] and targets[${i}]; ids must be unique`
        )
      }
      seen.set(id, i)
    }
    if (Duration.toMillis(policy.killGrace) < 0) {
      return yield* invalid("InvalidValue", "policy.killGrace", "must not be negative")
    }
    const registry = yield* Transport.Registry
    const routes = new Map<string, Transport.Transport>()
    for (let i = 0; i < targets.length; i++) {
      const kind = targets[i]!.kind
      if (routes.has(kind)) continue
      const transport = registry.get(kind)
      if (Option.isNone(transport)) {
        const known = registry.kinds()
        return yield* invalid(
          "NoTransportForKind",
          `targets[${i}].kind`,
          `no transport serves targets of kind ${JSON.stringify(kind)}; provide its transport layer (known: ${
            known.length === 0 ? "none" : known.join(", ")
          })`
        )
      }
      const caps = transport.value.capabilities
      const refuse = (path: string, what: string) =>
        invalid(
          "UnsupportedByTransport",
          path,
          `the ${transport.value.name} transport (kind ${kind}) does not support ${what}`
        )
      if (Object.keys(job.secrets).length > 0 && !caps.secrets) {
        return yield* refuse(
          "job.secrets",
          "secrets (it has no secure channel for them); remove them or use another transport"
        )
      }
      if (job.stdin !== undefined && !caps.stdin) return yield* refuse("job.stdin", "stdin")
      if (policy.runAs !== undefined && !caps.runAs) return yield* refuse("policy.runAs", "run-as")
      if ((job.files?.length ?? 0) > 0 && caps.files !== true) {
        return yield* refuse("job.files", "shipping files with the job; remove them or use another transport")
      }
      if (job.source._tag === "Native" && (!caps.native || job.source.transport !== transport.value.name)) {
        return yield* refuse("job.source", `native documents for ${job.source.transport}`)
      }
      routes.set(kind, transport.value)
    }
    const source = yield* ScriptSources.resolve(job.source)
    const files = yield* resolveFiles(job, policy)
    const secrets: Array<Redacted.Redacted<string>> = Object.values(job.secrets)
    if (policy.runAs?.password !== undefined) secrets.push(policy.runAs.password)
    const total = targets.length
    const capture = plan.captureBytes ?? DEFAULT_CAPTURE
    return {
      plan,
      runId: plan.runId ?? globalThis.crypto.randomUUID(),
      routes,
      source,
      stdin: job.stdin === undefined
        ? undefined
        : typeof job.stdin === "string"
        ? new TextEncoder().encode(job.stdin)
        : job.stdin,
      files,
      redactor: Redactor.make(secrets),
      concurrency: ExecutionPolicy.resolveAmount(policy.concurrency, total, true),
      maxErrors: policy.maxErrors === undefined
        ? undefined
        : ExecutionPolicy.resolveAmount(policy.maxErrors, total, false),
      batchSize: policy.batchSize === undefined ? total : ExecutionPolicy.resolveAmount(policy.batchSize, total, true),
      captureHead: Math.ceil(capture / 2),
      captureTail: Math.floor(capture / 2)
    }
  })

/** Checks the job's files and reads those given by path: every problem is found before anything runs. */
const resolveFiles = (
  job: ScriptSource.Job,
  policy: RunPlan["policy"]
): Effect.Effect<ReadonlyArray<Transport.ShippedFile> | undefined, InvalidPlan> =>
  Effect.gen(function*() {
    const files = job.files ?? []
    if (files.length === 0) return undefined
    if (policy.runAs !== undefined) {
      return yield* invalid(
        "InvalidValue",
        "job.files",
        "files cannot be shipped to a run-as job yet (their directory is private to the login user); remove policy.runAs or the files"
      )
    }
    if (Transport.FILES_ENV in job.env || Transport.FILES_ENV in job.secrets) {
      const where = Transport.FILES_ENV in job.env ? "env" : "secrets"
      return yield* invalid(
        "InvalidValue",
        `job.${where}.${Transport.FILES_ENV}`,
        `${Transport.FILES_ENV} names the directory of the job's files; use another name`
      )
    }
    const names = new Map<string, number>()
    const shipped: Array<Transport.ShippedFile> = []
    for (let i = 0; i < files.length; i++) {
      const file = files[i]!
      const at = `job.files[${i}]`
      const name = Schema.decodeUnknownEither(ScriptSource.FileName)(file.name)
      if (Either.isLeft(name)) {
        return yield* invalid("InvalidValue", `${at}.name`, ParseResult.TreeFormatter.formatErrorSync(name.left))
      }
      for (const [other, j] of names) {
        if (other === file.name || other.startsWith(`${file.name}/`) || file.name.startsWith(`${other}/`)) {
          return yield* invalid(
            "InvalidValue",
            `${at}.name`,
            `${JSON.stringify(file.name)} collides with job.files[${j}] (${
              JSON.stringify(other)
            }); give each file its own path`
          )
        }
      }
      names.set(file.name, i)
      if ((file.content === undefined) === (file.path === undefined)) {
        return yield* invalid("InvalidValue", at, "give the file's content or its path, exactly one of them")
      }
      const bytes = file.content !== undefined
        ? typeof file.content === "string" ? new TextEncoder().encode(file.content) : file.content
        : yield* readLocal(file.path!, `${at}.path`)
      shipped.push({ name: file.name, bytes, mode: file.mode ?? 0o600 })
    }
    return shipped
  })

/**
 * What the transport receives for one attempt on one target: the job, the policy's part of it and the target's
 * own environment under the job's.
 *
 * @internal
 */
export const invocation = (prepared: Prepared, target: Target, attempt: number): Transport.Invocation => {
  const { job, policy } = prepared.plan
  return {
    runId: prepared.runId,
    attempt,
    source: prepared.source,
    args: job.args,
    env: target.env === undefined ? job.env : { ...target.env, ...job.env },
    secrets: job.secrets,
    stdin: prepared.stdin,
    cwd: policy.cwd,
    runAs: policy.runAs,
    killGrace: policy.killGrace,
    onControllerLoss: ExecutionPolicy.forTarget(policy, target),
    files: prepared.files
  }
}
