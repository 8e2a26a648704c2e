/**
 * The SSM transport's engine: executions of one job that start within a short window are collected into batches of
 * up to 50 instances, each batch checked (`DescribeInstanceInformation` ping status) and sent with one
 * `SendCommand`; one poller per batch reads every member's status with `ListCommandInvocations` at an adaptive
 * interval, and each finished member's output is read once (`GetCommandInvocation`, the full bytes from S3 when a
 * bucket is configured). Closing an execution's scope early cancels its instance (`CancelCommand`) and waits for
 * the service to say it ended; the instances of one command cancelled together go in one `CancelCommand`. Each
 * execution's secrets parameter is deleted when it ends (also after a kill); per batch, the files uploaded are
 * deleted when every member has ended.
 *
 * @internal
 */
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3"
import {
  CancelCommandCommand,
  DeleteParameterCommand,
  DescribeInstanceInformationCommand,
  type DescribeInstanceInformationCommandOutput,
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  ListCommandInvocationsCommand,
  type ListCommandInvocationsCommandOutput,
  PutParameterCommand,
  SendCommandCommand,
  type SendCommandCommandInput,
  type SSMClient
} from "@aws-sdk/client-ssm"
import { getSignedUrl } from "@aws-sdk/s3-request-presigner"
import type { RawChunk } from "@runcmd/core/OutputChunk"
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type * as Transport from "@runcmd/core/Transport"
import { forTransport, TransportError, type TransportErrorReason } from "@runcmd/core/TransportError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as crypto from "node:crypto"
import type { SsmTarget } from "../SsmTarget.js"
import { call, type CallOptions, TRANSPORT } from "./calls.js"
import type { Limiter } from "./limiter.js"

/** The service's cap on inline output per stream (characters). @internal */
export const INLINE_CAP = 24_000

/** @internal */
export const MAX_BATCH = 50

/** Why a stream is incomplete without an output bucket, and the fix (core's `truncatedBy`). @internal */
export const CAPPED =
  `ssm: inline output is capped at 24,000 characters; set outputBucket (RUNCMD_SSM_OUTPUT_BUCKET, ` +
  "SSM's OutputS3BucketName) for all of it"

const CAPPED_NO_OBJECT = (bucket: string) =>
  `ssm: inline output is capped at 24,000 characters and SSM wrote no object to ${bucket} (the instance profile ` +
  "needs s3:PutObject on the output bucket)"

/** @internal */
export interface EngineConfig {
  readonly deliveryTimeoutSeconds: number
  readonly executionTimeoutSeconds: number
  readonly pollMin: number
  readonly pollMax: number
  readonly batchWindow: Duration.Duration
  readonly batchSize: number
  readonly invocationWindowMs: number
  readonly cancelConfirmTimeout: Duration.Duration
  readonly preflight: boolean
  readonly output: { readonly bucket: string; readonly prefix: string } | undefined
  readonly files: { readonly bucket: string; readonly prefix: string } | undefined
  readonly maxInlineBytes: number
  readonly secrets:
    | {
      readonly prefix: string
      readonly kmsKeyId: string | undefined
      readonly fetchCommand: (parameterName: string, region: string) => string
      readonly fetchPowerShell: (parameterName: string, region: string) => string
    }
    | undefined
  readonly backoff: CallOptions["backoff"]
  readonly streamOutput: boolean
  readonly onCall: ((operation: string) => void) | undefined
}

/** What a batch's calls go through: the target's account and region. @internal */
export interface Connection {
  readonly key: string
  readonly region: string
  readonly ssm: SSMClient
  readonly s3: () => S3Client
  readonly limiter: Limiter
}

const failWith = forTransport(TRANSPORT)
const fail = (
  reason: TransportErrorReason,
  phase: "delivery" | "execution",
  description: string,
  detail?: Record<string, unknown>
) => failWith(reason, phase, description, { detail })

const TERMINAL = new Set(["Success", "Failed", "Cancelled", "TimedOut"])

/** One instance of a sent batch. */
interface Member {
  readonly instanceId: string
  status: string
  details: string
  readonly delivered: Deferred.Deferred<void, TransportError>
  readonly finished: Deferred.Deferred<{ readonly status: string; readonly details: string }, TransportError>
  /** Deletes the execution's secrets parameter, if it has one (once, whoever asks first). */
  readonly dropSecrets: Effect.Effect<void>
  /** The execution ended without the service saying so (a cancel never confirmed): no longer polled for. */
  abandoned: boolean
}

/** One `SendCommand`. */
interface Sent {
  readonly commandId: string
  readonly documentName: string
  readonly connection: Connection
  readonly interpret: (code: number | undefined, stdout: Uint8Array, stderr: Uint8Array) => {
    readonly status: Either.Either<Transport.ExitStatus, string>
    readonly stdout: Uint8Array
    readonly stderr: Uint8Array
  }
  readonly members: Map<string, Member>
  readonly sentAt: number
  readonly wake: Queue.Queue<void>
  /** Where the launch's protocol begins on stderr (held back while streaming), if it has one. */
  readonly marker: string | undefined
  /** Where the launch's exit line begins on stdout (held back while streaming), if it has one. */
  readonly sentinel: string | undefined
  /** Instances whose cancel waits for the window to close, and the one `CancelCommand`'s result. */
  cancelling:
    | { readonly instanceIds: Array<string>; readonly done: Deferred.Deferred<void, TransportError> }
    | undefined
}

/** One execution waiting in (or sent with) a batch. */
interface Entry {
  readonly target: SsmTarget
  readonly invocation: Transport.Invocation
  readonly submitted: Deferred.Deferred<{ readonly sent: Sent; readonly member: Member }, TransportError>
  state: "queued" | "flushing" | "dropped"
}

interface Batch {
  readonly key: string
  readonly connection: Connection
  readonly entries: Array<Entry>
}

const encoder = new TextEncoder()

/** Identity of secret values without looking at them: one number per `Redacted` object. */
const secretIds = new WeakMap<object, number>()
let nextSecretId = 0
const secretId = (r: Redacted.Redacted<string>) => {
  let id = secretIds.get(r)
  if (id === undefined) {
    id = nextSecretId++
    secretIds.set(r, id)
  }
  return id
}

const digest = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? null : crypto.createHash("sha256").update(bytes).digest("hex")

/** Executions that can share one `SendCommand`: same account, region, platform, job and launch inputs. */
const batchKey = (connection: Connection, target: SsmTarget, inv: Transport.Invocation): string =>
  crypto.createHash("sha256").update(JSON.stringify([
    connection.key,
    target.os,
    inv.runId,
    inv.attempt,
    inv.source,
    inv.args,
    Object.entries(inv.env).sort(([a], [b]) => (a < b ? -1 : 1)),
    Object.entries(inv.secrets).map(([k, v]) => [k, secretId(v)]).sort(),
    digest(inv.stdin),
    (inv.files ?? []).map((f) => [f.name, f.mode, digest(f.bytes)]),
    inv.cwd ?? null,
    inv.runAs === undefined ? null : [inv.runAs.user, inv.runAs.method, inv.runAs.password !== undefined],
    Duration.toMillis(inv.killGrace)
  ])).digest("hex")

const documentFor = (target: SsmTarget, inv: Transport.Invocation) => {
  if (inv.source._tag === "Native") {
    const doc = inv.source.document
    return typeof doc.name === "string" ? doc.name : String(doc.DocumentName)
  }
  return target.os === "windows" ? "AWS-RunPowerShellScript" : "AWS-RunShellScript"
}

const inlineBytes = (inv: Transport.Invocation) =>
  (inv.stdin?.length ?? 0) + (inv.files ?? []).reduce((n, f) => n + f.bytes.length, 0)

/**
 * Refuses, before anything is sent, what SSM cannot carry: said as a `TransportError` (`Unsupported`, phase
 * `delivery`: the outcome is `Rejected`) naming the fix.
 *
 * @internal
 */
export const validate = (config: EngineConfig, target: SsmTarget, inv: Transport.Invocation) => {
  const secretNames = Object.keys(inv.secrets)
  if (secretNames.length > 0 && config.secrets === undefined) {
    return Option.some(fail(
      "Unsupported",
      "delivery",
      `the job has secrets (${secretNames.sort().join(", ")}), and SSM stores and shows every command, parameter ` +
        "and document (ListCommands returns them): secrets are never sent that way. Enable Parameter Store delivery " +
        "(SsmTransport.layer({ secrets: { parameterStore: {} } }) or RUNCMD_SSM_SECRETS=parameter-store): each " +
        "execution's secrets go to a SecureString parameter fetched on the instance and deleted when it ends"
    ))
  }
  if (inv.source._tag === "Native") {
    if (inv.source.transport !== "ssm") {
      return Option.some(
        fail("Unsupported", "delivery", `a Native source for ${inv.source.transport} cannot run on SSM`)
      )
    }
    const doc = inv.source.document
    if (typeof doc.name !== "string" && typeof doc.DocumentName !== "string") {
      return Option.some(fail(
        "Unsupported",
        "delivery",
        "a Native SSM source names its document: { transport: \"ssm\", document: { name: \"AWS-…\", parameters: { … } } }"
      ))
    }
    if (secretNames.length > 0 || (inv.files ?? []).length > 0 || inv.stdin !== undefined) {
      return Option.some(fail("Unsupported", "delivery", "a Native SSM document takes no secrets, files or stdin"))
    }
    return Option.none()
  }
  const bytes = inlineBytes(inv)
  if (
    bytes > config.maxInlineBytes &&
    (config.files === undefined || inv.stdin !== undefined && inv.stdin.length > config.maxInlineBytes)
  ) {
    return Option.some(fail(
      "Unsupported",
      "delivery",
      `the job's files and stdin are ${bytes} bytes; SSM carries ${config.maxInlineBytes} bytes inline in the ` +
        "command. Configure a bucket for files (SsmTransport.layer({ filesBucket }) or RUNCMD_SSM_FILES_BUCKET): " +
        "larger files go through S3 (pre-signed GET, deleted afterwards)",
      { bytes, limit: config.maxInlineBytes }
    ))
  }
  const probe: Either.Either<unknown, ScriptRender.SelfContainedFailure> = target.os === "windows"
    ? ScriptRender.powershellSelfContained(inv, { maxInlineBytes: Number.MAX_SAFE_INTEGER })
    : ScriptRender.selfContained(inv, {
      secretsSnippet: secretNames.length > 0 ? "true" : undefined,
      maxInlineBytes: Number.MAX_SAFE_INTEGER
    })
  if (Either.isLeft(probe)) {
    return Option.some(fail("Unsupported", "delivery", probe.left.message, { os: target.os ?? "linux" }))
  }
  return Option.none()
}

/** The secrets snippet: the parameter's value is `NAME=<base64>` lines, decoded and exported on the instance. */
const secretsSnippet = (fetch: string) =>
  [
    `__rc_ok=1`,
    `__rc_sv=$(${fetch}) || __rc_ok=0`,
    `for __rc_kv in $__rc_sv; do`,
    `  __rc_k=\${__rc_kv%%=*}`,
    `  __rc_v=$(printf '%s' "\${__rc_kv#*=}" | base64 -d && printf x) || __rc_ok=0`,
    `  __rc_v=\${__rc_v%x}`,
    `  export "$__rc_k=$__rc_v"`,
    `done`,
    `unset __rc_sv __rc_kv __rc_k __rc_v`,
    `[ "$__rc_ok" = 1 ]`
  ].join("\n")

/** A PowerShell single-quoted string. */
const psQuote = (text: string) => `'${text.replace(/['\u2018\u2019\u201a\u201b]/g, "$&$&")}'`

/**
 * The PowerShell secrets prelude: the parameter's `NAME=<base64>` lines become environment variables of the
 * script's process (and of everything it starts) before core's PowerShell launch runs; a failed read says so on
 * stderr and ends the script before the user's code.
 */
const powershellSecrets = (fetch: string, failed: string) =>
  [
    `$__rc_sv = @()`,
    `$global:LASTEXITCODE = 0`,
    `if ($env:AWS_SSM_INSTANCE_ID) { $__rc_sv = @(${fetch}) }`,
    `if (-not $env:AWS_SSM_INSTANCE_ID -or $LASTEXITCODE -ne 0 -or $__rc_sv.Count -eq 0) {`,
    `  [Console]::Error.WriteLine('${failed}')`,
    `  exit 125`,
    `}`,
    `foreach ($__rc_kv in $__rc_sv) {`,
    `  $__rc_i = "$__rc_kv".IndexOf('=')`,
    `  if ($__rc_i -lt 1) { continue }`,
    `  [Environment]::SetEnvironmentVariable("$__rc_kv".Substring(0, $__rc_i), [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String("$__rc_kv".Substring($__rc_i + 1))))`,
    `}`,
    `Remove-Variable __rc_sv, __rc_kv, __rc_i -ErrorAction SilentlyContinue`
  ].join("\r\n")

/**
 * The text up to the launch's protocol line (`marker`), holding back only an end that could begin one: streamed
 * output never shows a part of it, and is not delayed by more than what could be its start.
 */
const beforeProtocol = (text: string, marker: string): string => {
  const at = text.indexOf(marker)
  if (at >= 0) return text.slice(0, at)
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(marker.slice(0, n))) return text.slice(0, text.length - n)
  }
  return text
}

/** @internal */
export const makeEngine = (config: EngineConfig, scope: Scope.Scope) =>
  Effect.gen(function*() {
    const batches = new Map<string, Batch>()
    const runFork = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkIn(effect, scope)

    const options = (connection: Connection, idempotent: boolean, phase: "delivery" | "execution"): CallOptions => ({
      limiter: connection.limiter,
      idempotent,
      backoff: config.backoff,
      phase,
      onCall: config.onCall,
      ...(idempotent ? {} : { maxThrottled: 12 })
    })

    // -- the poller of one batch ------------------------------------------------------------------------------
    const poll = (sent: Sent): Effect.Effect<void> =>
      Effect.gen(function*() {
        let interval = config.pollMin
        const open = () => [...sent.members.values()].some((m) => !TERMINAL.has(m.status) && !m.abandoned)
        while (open()) {
          yield* Effect.raceFirst(Effect.sleep(Duration.millis(interval)), Queue.take(sent.wake))
          // the last open member may have been abandoned meanwhile
          if (!open()) break
          let changed = false
          const seen = new Set<string>()
          let token: string | undefined
          do {
            const page: ListCommandInvocationsCommandOutput = yield* call(
              "ListCommandInvocations",
              (abortSignal) =>
                sent.connection.ssm.send(
                  new ListCommandInvocationsCommand({
                    CommandId: sent.commandId,
                    Details: false,
                    MaxResults: 50,
                    ...(token === undefined ? {} : { NextToken: token })
                  }),
                  { abortSignal }
                ),
              options(sent.connection, true, "execution")
            )
            for (const item of page.CommandInvocations ?? []) {
              const member = item.InstanceId === undefined ? undefined : sent.members.get(item.InstanceId)
              if (member === undefined) continue
              seen.add(member.instanceId)
              const status = item.Status ?? "Pending"
              const details = item.StatusDetails ?? status
              if (status !== member.status || details !== member.details) {
                changed = true
                member.status = status
                member.details = details
                yield* update(member)
              }
            }
            token = page.NextToken
          } while (token !== undefined)
          // an invocation not listed yet is pending, for a bounded window after SendCommand
          if (Date.now() - sent.sentAt > config.invocationWindowMs) {
            for (const member of sent.members.values()) {
              if (seen.has(member.instanceId) || TERMINAL.has(member.status)) continue
              member.status = "Failed"
              member.details = "InvocationNeverAppeared"
              const error = fail(
                "ProtocolError",
                "execution",
                `the invocation of command ${sent.commandId} on ${member.instanceId} was not listed within ` +
                  `${config.invocationWindowMs} ms of SendCommand`
              )
              yield* Deferred.fail(member.delivered, error)
              yield* Deferred.fail(member.finished, error)
            }
          }
          interval = changed ? config.pollMin : Math.min(config.pollMax, Math.round(interval * 1.5))
        }
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.forEach(sent.members.values(), (m) =>
            Effect.zipRight(
              Deferred.failCause(m.delivered, cause),
              Deferred.failCause(m.finished, cause)
            ), { discard: true })
        )
      )

    /** A status seen: delivered once running or ended after a start; ended with a delivery failure otherwise. */
    const update = (member: Member): Effect.Effect<void> => {
      const { details, status } = member
      if (status === "InProgress" || status === "Cancelling") return Deferred.succeed(member.delivered, undefined)
      if (!TERMINAL.has(status)) return Effect.void
      const neverStarted = details === "DeliveryTimedOut" || details === "Undeliverable" ||
        details === "InvalidPlatform" || details === "NoInstancesInTag"
      const deliveryError = details === "DeliveryTimedOut"
        ? fail(
          "ConnectTimeout",
          "delivery",
          `the instance did not pick the command up within the delivery timeout (TimeoutSeconds ` +
            `${config.deliveryTimeoutSeconds}): its SSM agent is offline or busy`,
          { statusDetails: details }
        )
        : details === "Undeliverable"
        ? fail("TargetNotFound", "delivery", "SSM could not deliver the command: the instance is gone or unmanaged", {
          statusDetails: details
        })
        : fail("Unsupported", "delivery", `SSM refused the command for this instance (${details})`, {
          statusDetails: details
        })
      return Effect.zipRight(
        neverStarted ? Deferred.fail(member.delivered, deliveryError) : Deferred.succeed(member.delivered, undefined),
        Deferred.succeed(member.finished, { status, details })
      )
    }

    // -- sending a batch -------------------------------------------------------------------------------------------
    /**
     * One execution's secrets parameter: stored by `PutParameter`, deleted once (by whoever comes first: the
     * execution's end, its scope closing after a kill, or the batch's cleanup); a deletion cut short is tried again
     * by the next.
     */
    const secretsParameter = (connection: Connection, name: string) =>
      Effect.map(Effect.makeSemaphore(1), (lock) => {
        let deleted = false
        return {
          name,
          drop: lock.withPermits(1)(Effect.suspend(() =>
            deleted ? Effect.void : call(
              "DeleteParameter",
              (abortSignal) => connection.ssm.send(new DeleteParameterCommand({ Name: name }), { abortSignal }),
              options(connection, true, "execution")
            ).pipe(
              Effect.tap(() =>
                Effect.sync(() => {
                  deleted = true
                })
              ),
              Effect.catchAll((e) =>
                Effect.logWarning(`ssm: the secrets parameter ${name} was not deleted: ${e.message}`)
              )
            )
          ))
        }
      })

    const cleanups = (
      connection: Connection,
      parameters: ReadonlyArray<{ readonly drop: Effect.Effect<void> }>,
      objects: ReadonlyArray<string>
    ) =>
      Effect.all([
        Effect.forEach(parameters, (p) => p.drop, { discard: true, concurrency: 4 }),
        Effect.forEach(objects, (key) =>
          call(
            "DeleteObject",
            (abortSignal) =>
              connection.s3().send(new DeleteObjectCommand({ Bucket: config.files!.bucket, Key: key }), {
                abortSignal
              }),
            options(connection, true, "execution")
          ).pipe(Effect.catchAll((e) =>
            Effect.logWarning(`ssm: a shipped file was not deleted from S3: ${e.message}`)
          )), {
          discard: true
        })
      ], { discard: true, concurrency: 4 })

    const preflight = (connection: Connection, entries: ReadonlyArray<Entry>) =>
      Effect.gen(function*() {
        if (!config.preflight) {
          return entries
        }
        const ids = [
          ...new Set(entries.map((e) =>
            e.target.instanceId
          ))
        ]
        const found = new Map<string, string>()
        let token: string | undefined
        do {
          const page: DescribeInstanceInformationCommandOutput = yield* call(
            "DescribeInstanceInformation",
            (abortSignal) =>
              connection.ssm.send(
                new DescribeInstanceInformationCommand({
                  Filters: [{ Key: "InstanceIds", Values: ids }],
                  MaxResults: 50,
                  ...(token === undefined ? {} : { NextToken: token })
                }),
                { abortSignal }
              ),
            options(connection, true, "delivery")
          )
          for (const info of page.InstanceInformationList ?? []) {
            if (info.InstanceId !== undefined) {
              found.set(info.InstanceId, info.PingStatus ?? "Unknown")
            }
          }
          token = page.NextToken
        } while (token !== undefined)
        const ok: Array<Entry> = []
        for (const entry of entries) {
          const ping = found.get(entry.target.instanceId)
          if (ping === "Online") {
            ok.push(entry)
            continue
          }
          yield* Deferred.fail(
            entry.submitted,
            ping === undefined
              ? fail(
                "TargetNotFound",
                "delivery",
                `${entry.target.instanceId} is not a managed instance in ${connection.region} for these credentials ` +
                  "(DescribeInstanceInformation does not list it): check the id, the region, the SSM agent and the " +
                  "instance profile",
                { instanceId: entry.target.instanceId }
              )
              : fail(
                "NotManaged",
                "delivery",
                `${entry.target.instanceId}'s SSM agent is not connected (PingStatus ${ping}): nothing was sent`,
                { instanceId: entry.target.instanceId, pingStatus: ping }
              )
          )
        }
        return ok
      })

    const send = (batch: Batch): Effect.Effect<void> =>
      Effect.gen(function*() {
        const { connection } = batch
        const live = batch.entries.filter((e) =>
          e.state === "queued"
        )
        for (const e of live) e.state = "flushing"
        if (live.length === 0) return
        const entries = yield* preflight(connection, live)
        if (entries.length === 0) return
        const first = entries[0]!
        const inv = first.invocation
        const target = first.target
        const runTag = inv.runId.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 60)
        const batchId = crypto.randomBytes(6).toString("hex")
        // each execution's secrets parameter, by instance id
        const parameters = new Map<string, { readonly name: string; readonly drop: Effect.Effect<void> }>()
        const objects: Array<string> = []
        const release = () => cleanups(connection, [...parameters.values()], objects)
        let sending = entries
        /**
         * A SecureString per execution; one command text for the batch, so each instance picks its own parameter
         * by the id the SSM agent gives every Run Command process (AWS_SSM_INSTANCE_ID). Returns the names' common
         * prefix; an execution whose parameter could not be stored ends here, the others go on.
         */
        const storeSecrets = () =>
          Effect.gen(function*() {
            const store = config.secrets!
            const base = `${store.prefix.replace(/\/?$/, "/")}${runTag}/${batchId}/`
            const value = Object.entries(inv.secrets)
              .map(([k, v]) => `${k}=${Buffer.from(Redacted.value(v), "utf8").toString("base64")}`)
              .join("\n")
            const stored = yield* Effect.forEach(sending, (entry) =>
              Effect.gen(function*() {
                const name = `${base}${entry.target.instanceId}`
                const put = yield* call(
                  "PutParameter",
                  (abortSignal) =>
                    connection.ssm.send(
                      new PutParameterCommand({
                        Name: name,
                        Value: value,
                        Type: "SecureString",
                        Overwrite: false,
                        ...(store.kmsKeyId === undefined ? {} : { KeyId: store.kmsKeyId })
                      }),
                      { abortSignal }
                    ),
                  options(connection, false, "delivery")
                ).pipe(Effect.either)
                if (Either.isLeft(put)) {
                  yield* Deferred.fail(entry.submitted, put.left)
                  return false
                }
                parameters.set(entry.target.instanceId, yield* secretsParameter(connection, name))
                return true
              }), { concurrency: 8 })
            sending = sending.filter((_, i) => stored[i])
            return base
          })
        const body = Effect.gen(function*() {
          const documentName = documentFor(target, inv)
          let commands: Array<string>
          let extra: Record<string, Array<string>> = {}
          let interpret: Sent["interpret"]
          let marker: string | undefined
          let sentinel: string | undefined
          if (inv.source._tag === "Native") {
            const doc = inv.source.document
            const params = (doc.parameters ?? doc.Parameters ?? {}) as Record<string, unknown>
            extra = Object.fromEntries(
              Object.entries(params).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : [String(v)]])
            )
            commands = []
            interpret = (code, stdout, stderr) => ({
              status: code === undefined || code < 0
                ? Either.left("the document reported no exit code")
                : Either.right({ _tag: "Exited", code }),
              stdout,
              stderr
            })
          } else {
            /**
             * Files beyond the inline limit: the largest go through S3 (a pre-signed GET the instance fetches) until
             * what is left fits inline; `fetch` says how the instance downloads one URL.
             */
            const offloadFiles = (fetch: (url: string) => string) =>
              Effect.gen(function*() {
                const fileCommands: Record<string, string> = {}
                const files = inv.files ?? []
                if (config.files === undefined || inlineBytes(inv) <= config.maxInlineBytes) return fileCommands
                let inline = inlineBytes(inv)
                for (const file of [...files].sort((a, b) => b.bytes.length - a.bytes.length)) {
                  if (inline <= config.maxInlineBytes) break
                  const key = `${config.files.prefix.replace(/\/?$/, "/")}${runTag}/${batchId}/${file.name}`
                  yield* call(
                    "PutObject",
                    (abortSignal) =>
                      connection.s3().send(
                        new PutObjectCommand({ Bucket: config.files!.bucket, Key: key, Body: file.bytes }),
                        { abortSignal }
                      ),
                    options(connection, false, "delivery")
                  )
                  objects.push(key)
                  const url = yield* Effect.tryPromise({
                    try: () =>
                      getSignedUrl(connection.s3(), new GetObjectCommand({ Bucket: config.files!.bucket, Key: key }), {
                        expiresIn: Math.min(
                          7 * 24 * 3600,
                          config.deliveryTimeoutSeconds + config.executionTimeoutSeconds
                        )
                      }),
                    catch: (e) => fail("Unknown", "delivery", `pre-signing a file's URL failed: ${String(e)}`)
                  })
                  fileCommands[file.name] = fetch(url)
                  inline -= file.bytes.length
                }
                return fileCommands
              })
            if (target.os === "windows") {
              let prelude: string | undefined
              const nonce = crypto.randomBytes(9).toString("base64url").replace(/[^A-Za-z0-9]/g, "x")
              const failed = `runcmd-${nonce}:fail secrets`
              if (Object.keys(inv.secrets).length > 0 && config.secrets !== undefined) {
                const base = yield* storeSecrets()
                if (sending.length === 0) return
                const name = `(${psQuote(base)} + $env:AWS_SSM_INSTANCE_ID)`
                prelude = powershellSecrets(config.secrets.fetchPowerShell(name, connection.region), failed)
              }
              const fileCommands = yield* offloadFiles((url) =>
                `Invoke-WebRequest -UseBasicParsing -Uri ${psQuote(url)} -OutFile $__rc_path -ErrorAction Stop`
              )
              const rendered = ScriptRender.powershellSelfContained(inv, {
                nonce,
                fileCommands,
                maxInlineBytes: config.maxInlineBytes
              })
              if (Either.isLeft(rendered)) return yield* fail("Unsupported", "delivery", rendered.left.message)
              const launch = rendered.right
              marker = `runcmd-${launch.nonce}:`
              sentinel = launch.sentinel
              commands = prelude === undefined ? [launch.script] : [prelude, launch.script]
              interpret = (code, stdout, stderr) => {
                const r = launch.interpret(code, stdout, stderr)
                if (Either.isLeft(r.status) && r.status.left === "fail secrets") {
                  return {
                    ...r,
                    status: Either.left(
                      "fail secrets: the instance could not read its parameter (the instance profile needs " +
                        "ssm:GetParameter and kms:Decrypt; the AWS CLI must be on its PATH)"
                    )
                  }
                }
                return r
              }
            } else {
              let snippet: string | undefined
              if (Object.keys(inv.secrets).length > 0 && config.secrets !== undefined) {
                const base = yield* storeSecrets()
                if (sending.length === 0) return
                const word = `${ScriptRender.quote(base)}"\${AWS_SSM_INSTANCE_ID:?not set by the SSM agent}"`
                snippet = secretsSnippet(config.secrets.fetchCommand(word, connection.region))
              }
              const fileCommands = yield* offloadFiles((url) => {
                const q = ScriptRender.quote(url)
                return `curl -fsS --retry 3 ${q} 2>/dev/null || wget -qO- ${q}`
              })
              const rendered = ScriptRender.selfContained(inv, {
                secretsSnippet: snippet,
                fileCommands,
                maxInlineBytes: config.maxInlineBytes,
                // one text for the batch, a token per instance
                tokenSuffix: `-"\${AWS_SSM_INSTANCE_ID:-$$}"`
              })
              if (Either.isLeft(rendered)) return yield* fail("Unsupported", "delivery", rendered.left.message)
              const launch = rendered.right
              marker = `runcmd-${launch.nonce}:`
              commands = [launch.script]
              interpret = (code, stdout, stderr) => {
                const r = launch.interpret(code, stderr)
                return { status: r.status, stdout, stderr: r.stderr }
              }
            }
          }
          const input: SendCommandInput = {
            DocumentName: documentName,
            InstanceIds: sending.map((e) => e.target.instanceId),
            TimeoutSeconds: config.deliveryTimeoutSeconds,
            Comment: `runcmd ${inv.runId}`.slice(0, 100),
            Parameters: inv.source._tag === "Native" ? extra : {
              commands,
              executionTimeout: [String(config.executionTimeoutSeconds)]
            },
            MaxConcurrency: "100%",
            MaxErrors: "100%",
            ...(config.output === undefined ? {} : {
              OutputS3BucketName: config.output.bucket,
              OutputS3KeyPrefix: `${config.output.prefix.replace(/\/?$/, "/")}${runTag}`,
              OutputS3Region: connection.region
            })
          }
          const out = yield* call(
            "SendCommand",
            (abortSignal) => connection.ssm.send(new SendCommandCommand(input), { abortSignal }),
            options(connection, false, "delivery")
          )
          const commandId = out.Command?.CommandId
          if (commandId === undefined) {
            return yield* fail("ProtocolError", "delivery", "SendCommand returned no CommandId")
          }
          const sent: Sent = {
            commandId,
            documentName,
            connection,
            interpret,
            members: new Map(),
            sentAt: Date.now(),
            wake: yield* Queue.sliding<void>(1),
            marker,
            sentinel,
            cancelling: undefined
          }
          for (const entry of sending) {
            const member: Member = {
              instanceId: entry.target.instanceId,
              status: "Pending",
              details: "Pending",
              delivered: yield* Deferred.make<void, TransportError>(),
              finished: yield* Deferred.make<{ status: string; details: string }, TransportError>(),
              dropSecrets: parameters.get(entry.target.instanceId)?.drop ?? Effect.void,
              abandoned: false
            }
            sent.members.set(member.instanceId, member)
            yield* Deferred.succeed(entry.submitted, { sent, member })
          }
          yield* Effect.logDebug(`ssm: SendCommand ${commandId} to ${sending.length} instance(s)`)
          yield* runFork(Effect.ensuring(poll(sent), release()))
        })
        yield* body.pipe(
          // the transport closing while a batch is sent: what was stored goes
          Effect.onInterrupt(() => release()),
          Effect.catchAll((error) =>
            Effect.zipRight(
              release(),
              Effect.forEach(entries, (e) => Deferred.fail(e.submitted, error), { discard: true })
            )
          )
        )
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.forEach(batch.entries, (e) => Deferred.failCause(e.submitted, cause), { discard: true })
        )
      )

    type SendCommandInput = SendCommandCommandInput

    const flush = (batch: Batch) =>
      Effect.suspend(() => {
        if (batches.get(batch.key) === batch) batches.delete(batch.key)
        return send(batch)
      })

    /** Adds an execution to its batch; the batch goes when full or when the window closes. */
    const enqueue = (connection: Connection, entry: Entry) =>
      Effect.suspend(() => {
        const key = batchKey(connection, entry.target, entry.invocation)
        let batch = batches.get(key)
        if (batch === undefined) {
          const created: Batch = { key, connection, entries: [] }
          batch = created
          batches.set(key, created)
          batch.entries.push(entry)
          return Effect.asVoid(runFork(Effect.delay(flush(created), config.batchWindow)))
        }
        batch.entries.push(entry)
        if (batch.entries.length >= config.batchSize) {
          batches.delete(key)
          return Effect.asVoid(runFork(send(batch)))
        }
        return Effect.void
      })

    // -- one execution -------------------------------------------------------------------------------------------
    const readOutput = (sent: Sent, member: Member) =>
      Effect.gen(function*() {
        const getInvocation = (tries: number): Effect.Effect<GetCommandInvocationCommandOutput, TransportError> =>
          call(
            "GetCommandInvocation",
            (abortSignal) =>
              sent.connection.ssm.send(
                new GetCommandInvocationCommand({ CommandId: sent.commandId, InstanceId: member.instanceId }),
                { abortSignal }
              ),
            options(sent.connection, true, "execution")
          ).pipe(
            // listed but not readable yet (eventual consistency): a few more tries
            Effect.catchIf(
              (e) => tries < 10 && e.detail?.error === "InvocationDoesNotExist",
              () => Effect.delay(getInvocation(tries + 1), Duration.millis(config.pollMin))
            )
          )
        const inv = yield* getInvocation(0)
        const inline = {
          stdout: inv.StandardOutputContent ?? "",
          stderr: inv.StandardErrorContent ?? ""
        }
        const bytes: { stdout: Uint8Array; stderr: Uint8Array } = {
          stdout: encoder.encode(inline.stdout),
          stderr: encoder.encode(inline.stderr)
        }
        const capped = (text: string) => text.length >= INLINE_CAP ? CAPPED : undefined
        const truncated: { stdout: string | undefined; stderr: string | undefined } = {
          stdout: capped(inline.stdout),
          stderr: capped(inline.stderr)
        }
        if (config.output !== undefined) {
          for (const stream of ["stdout", "stderr"] as const) {
            const url = stream === "stdout" ? inv.StandardOutputUrl : inv.StandardErrorUrl
            if (url === undefined || url === "") {
              if (truncated[stream] !== undefined) {
                truncated[stream] = CAPPED_NO_OBJECT(config.output.bucket)
                yield* Effect.logWarning(`ssm: ${stream} of ${member.instanceId} is capped and has no S3 object`)
              }
              continue
            }
            const key = s3Key(url, config.output.bucket)
            const object = yield* call(
              "GetObject",
              async (abortSignal) => {
                const r = await sent.connection.s3().send(
                  new GetObjectCommand({ Bucket: config.output!.bucket, Key: key }),
                  { abortSignal }
                )
                return r.Body === undefined ? new Uint8Array(0) : await r.Body.transformToByteArray()
              },
              options(sent.connection, true, "execution")
            ).pipe(
              Effect.mapError((e) =>
                fail("OutputLost", "execution", `the full ${stream} could not be read from S3: ${e.description}`)
              )
            )
            bytes[stream] = object
            truncated[stream] = undefined
          }
        }
        const r = sent.interpret(inv.ResponseCode, bytes.stdout, bytes.stderr)
        return { inv, status: r.status, stdout: r.stdout, stderr: r.stderr, truncated }
      })

    const statusOf = (
      final: { readonly status: string; readonly details: string },
      read: Effect.Effect.Success<ReturnType<typeof readOutput>>
    ): Either.Either<Transport.ExitStatus, TransportError> => {
      if (final.details === "DeliveryTimedOut") {
        // started, then the command expired with no end reported: the agent went away mid-run
        return Either.left(fail(
          "ConnectionLost",
          "execution",
          "the instance's SSM agent stopped reporting while the command ran, and the command expired " +
            "(DeliveryTimedOut, TimeoutSeconds + executionTimeout after it was sent): whether the script ran to its " +
            "end is unknown",
          { statusDetails: final.details }
        ))
      }
      if (final.status === "TimedOut") {
        return Either.left(fail(
          "Unknown",
          "execution",
          `SSM ended the command after its executionTimeout (${config.executionTimeoutSeconds} s); set the ` +
            "transport's executionTimeout above the policy's timeout",
          { statusDetails: final.details }
        ))
      }
      if (final.details === "Terminated") {
        // SSM's Terminated: the command reached its MaxErrors and the service cancelled the invocations left
        return Either.left(fail(
          "Unknown",
          "execution",
          "SSM terminated the invocation (Terminated: the command reached its MaxErrors, and the service cancelled " +
            "the invocations it had not run yet)",
          { statusDetails: final.details }
        ))
      }
      if (Either.isRight(read.status)) return Either.right(read.status.right)
      const why = read.status.left
      const reason: TransportErrorReason = why.startsWith("fail cwd") || why.startsWith("fail files") ||
          why.startsWith("fail launch")
        ? "SpawnFailed"
        : why.startsWith("fail secrets")
        ? "Unauthorized"
        : "ProtocolError"
      return Either.left(fail(reason, "execution", `the launch on the instance failed: ${why}`, {
        status: final.status,
        statusDetails: final.details
      }))
    }

    const chunks = (stream: "stdout" | "stderr", bytes: Uint8Array): Array<RawChunk> => {
      const out: Array<RawChunk> = []
      for (let i = 0; i < bytes.length; i += 64 * 1024) out.push({ stream, bytes: bytes.subarray(i, i + 64 * 1024) })
      return out
    }

    /**
     * Asks the service to cancel one instance of a sent batch: the instances of one command cancelled within
     * `batchWindow` of each other (a run interrupted, a shared deadline) go in one `CancelCommand`.
     */
    const requestCancel = (sent: Sent, member: Member) =>
      Effect.gen(function*() {
        const fresh = yield* Deferred.make<void, TransportError>()
        const request = yield* Effect.sync(() => {
          const open = sent.cancelling
          if (open !== undefined) {
            open.instanceIds.push(member.instanceId)
            return { ...open, first: false }
          }
          const created = { instanceIds: [member.instanceId], done: fresh }
          sent.cancelling = created
          return { ...created, first: true }
        })
        if (request.first) {
          yield* runFork(
            Effect.gen(function*() {
              yield* Effect.sleep(config.batchWindow)
              const ids = yield* Effect.sync(() => {
                sent.cancelling = undefined
                return request.instanceIds
              })
              yield* call(
                "CancelCommand",
                (abortSignal) =>
                  sent.connection.ssm.send(
                    new CancelCommandCommand({ CommandId: sent.commandId, InstanceIds: ids }),
                    { abortSignal }
                  ),
                options(sent.connection, true, "execution")
              )
              // the batch's poll confirms
              yield* Queue.offer(sent.wake, undefined)
            }).pipe(Effect.exit, Effect.flatMap((exit) => Deferred.done(request.done, exit)))
          )
        }
        yield* Deferred.await(request.done)
      })

    /** Cancels one instance of a sent batch and waits for the service to say it ended. */
    const cancel = (sent: Sent, member: Member) =>
      Effect.gen(function*() {
        if (TERMINAL.has(member.status)) return true
        // bounded although it runs in a finalizer (uninterruptible: a timeout there would wait for what it cuts)
        const final = yield* Effect.zipRight(requestCancel(sent, member), Deferred.await(member.finished)).pipe(
          Effect.interruptible,
          Effect.timeoutOption(config.cancelConfirmTimeout)
        )
        return Option.isSome(final)
      }).pipe(
        Effect.catchAll((e) =>
          Effect.as(Effect.logWarning(`ssm: cancel of ${member.instanceId} failed: ${e.message}`), false)
        )
      )

    const start = (
      connection: Connection,
      target: SsmTarget,
      invocation: Transport.Invocation
    ): Effect.Effect<Transport.RawExecution, TransportError, Scope.Scope> =>
      Effect.gen(function*() {
        const invalid = validate(config, target, invocation)
        if (Option.isSome(invalid)) return yield* invalid.value
        const entry: Entry = {
          target,
          invocation,
          submitted: yield* Deferred.make<{ readonly sent: Sent; readonly member: Member }, TransportError>(),
          state: "queued"
        }
        const killed = { confirmed: false }
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            if (entry.state === "queued") {
              entry.state = "dropped"
              killed.confirmed = true
              return
            }
            const sub = yield* Deferred.await(entry.submitted).pipe(Effect.option)
            if (Option.isNone(sub)) {
              killed.confirmed = true
              return
            }
            const cancelled = yield* cancel(sub.value.sent, sub.value.member)
            // on Windows the agent ends the script's process tree and nothing sweeps what left it (the POSIX
            // launch traps TERM and ends every process carrying its token; a killed PowerShell cannot): the service's
            // "Cancelled" does not prove that nothing of the job is left, so the kill is not told confirmed
            killed.confirmed = cancelled && target.os !== "windows"
            // nobody waits for its end any more: the batch's poll stops once the others have ended
            if (!cancelled) sub.value.member.abandoned = true
            // also after a kill, a timeout or an interruption: the execution's secrets go with it (else the batch's
            // cleanup deletes them when its poll ends)
            yield* sub.value.member.dropSecrets.pipe(
              Effect.interruptible,
              Effect.timeoutOption(config.cancelConfirmTimeout)
            )
          })
        )
        yield* enqueue(connection, entry)
        const { member, sent } = yield* Deferred.await(entry.submitted)
        yield* Deferred.await(member.delivered)
        const result = yield* Effect.cached(
          Effect.gen(function*() {
            const final = yield* Deferred.await(member.finished)
            // the output read and the secrets parameter's deletion (the execution has ended) go side by side
            const [read] = yield* Effect.all([readOutput(sent, member), member.dropSecrets], { concurrency: 2 })
            const truncation: { stdout?: string; stderr?: string } = {}
            for (const stream of ["stdout", "stderr"] as const) {
              const why = read.truncated[stream]
              if (why === undefined) continue
              // the service kept only the first 24,000 characters: the outcome says so (core's truncation flag)
              truncation[stream] = why
              yield* Effect.logWarning(`ssm: ${stream} of ${target.id} truncated at ${INLINE_CAP} characters`)
              yield* Effect.annotateCurrentSpan(`runcmd.ssm.truncated.${stream}`, true)
            }
            return { status: statusOf(final, read), stdout: read.stdout, stderr: read.stderr, truncation }
          })
        )
        // while it runs (streamOutput): the output so far, polled; what was emitted is a prefix of the final bytes
        const emitted = { stdout: 0, stderr: 0 }
        const stream = (emit: (chunk: RawChunk) => Effect.Effect<void>) =>
          Effect.gen(function*() {
            let interval = config.pollMin
            const seen = { stdout: "", stderr: "" }
            while (!(yield* Deferred.isDone(member.finished))) {
              yield* Effect.raceFirst(Effect.sleep(Duration.millis(interval)), Deferred.await(member.finished))
              if (yield* Deferred.isDone(member.finished)) break
              const inv = yield* call(
                "GetCommandInvocation",
                (abortSignal) =>
                  sent.connection.ssm.send(
                    new GetCommandInvocationCommand({ CommandId: sent.commandId, InstanceId: member.instanceId }),
                    { abortSignal }
                  ),
                options(sent.connection, true, "execution")
              ).pipe(Effect.option)
              if (Option.isNone(inv)) continue
              let grew = false
              for (const name of ["stdout", "stderr"] as const) {
                let text = (name === "stdout" ? inv.value.StandardOutputContent : inv.value.StandardErrorContent) ?? ""
                // never past the service's cap (the final read decides), nor into the launch's protocol line
                if (text.length >= INLINE_CAP) text = text.slice(0, INLINE_CAP - 1)
                const held = name === "stderr" ? sent.marker : sent.sentinel
                if (held !== undefined) text = beforeProtocol(text, held)
                // text is only a faithful prefix of the bytes up to the first byte that was not UTF-8 (binary
                // output): the rest comes from the final read
                const invalid = text.indexOf("\uFFFD")
                if (invalid >= 0) text = text.slice(0, invalid)
                // whole characters only (a surrogate pair split at the end waits for the next poll)
                const last = text.charCodeAt(text.length - 1)
                if (last >= 0xd800 && last <= 0xdbff) text = text.slice(0, -1)
                if (text.length <= seen[name].length || !text.startsWith(seen[name])) continue
                const bytes = encoder.encode(text.slice(seen[name].length))
                seen[name] = text
                emitted[name] += bytes.length
                grew = true
                for (const c of chunks(name, bytes)) yield* emit(c)
              }
              interval = grew ? config.pollMin : Math.min(config.pollMax, Math.round(interval * 1.5))
            }
          })
        const raw: Transport.RawExecution = {
          pump: (emit) =>
            Effect.gen(function*() {
              if (config.streamOutput) yield* stream(emit)
              const r = yield* result
              for (const c of chunks("stdout", r.stdout.subarray(Math.min(emitted.stdout, r.stdout.length)))) {
                yield* emit(c)
              }
              for (const c of chunks("stderr", r.stderr.subarray(Math.min(emitted.stderr, r.stderr.length)))) {
                yield* emit(c)
              }
            }),
          exit: Effect.flatMap(
            result,
            (r) => Either.isRight(r.status) ? Effect.succeed(r.status.right) : Effect.fail(r.status.left)
          ),
          killConfirmed: Effect.sync(() => killed.confirmed),
          // read after exit succeeded, so the result is there
          truncated: Effect.map(result, (r) => r.truncation).pipe(Effect.orElseSucceed(() => ({})))
        }
        return raw
      }).pipe(
        Effect.withSpan("SsmTransport.start", {
          attributes: {
            "runcmd.target.id": target.id,
            "runcmd.transport": TRANSPORT,
            "runcmd.ssm.instance": target.instanceId
          }
        })
      )

    return { start }
  })

/** The key of an output object from its URL (path-style `/bucket/key` or virtual-hosted `/key`). */
const s3Key = (url: string, bucket: string): string => {
  const path = (() => {
    try {
      return new URL(url).pathname
    } catch {
      return url
    }
  })()
  const decoded = path.split("/").map(decodeURIComponent).join("/")
  return decoded.startsWith(`/${bucket}/`) ? decoded.slice(bucket.length + 2) : decoded.replace(/^\//, "")
}
