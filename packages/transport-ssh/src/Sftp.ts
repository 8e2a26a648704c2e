/**
 * SFTP over the transport's pooled connections: upload a local file or bytes, download to a file or to memory.
 * An SFTP session takes a channel slot like an execution (servers count it against MaxSessions).
 *
 * @since 0.1.0
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { SFTPWrapper } from "ssh2"
import { withSftpOn } from "./internal/sftpSession.js"
import type * as SshTarget from "./SshTarget.js"
import { SshConnections } from "./SshTransport.js"

/**
 * @since 0.1.0
 * @category models
 */
export const SftpErrorReason = Schema.Literal("NotFound", "PermissionDenied", "Failure", "LocalIo")

/**
 * A file operation that failed (the connection itself fails with core's `TransportError`).
 *
 * @since 0.1.0
 * @category errors
 */
export class SftpError extends Schema.TaggedError<SftpError>("@runcmd/transport-ssh/Sftp/SftpError")("SftpError", {
  reason: SftpErrorReason,
  operation: Schema.String,
  path: Schema.String,
  targetId: Schema.String,
  description: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `sftp ${this.operation} ${this.path} on ${this.targetId}: ${this.reason}: ${this.description}`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface UploadOptions {
  /** File mode of the created remote file (e.g. `0o600`). */
  readonly mode?: number | undefined
}

/**
 * Runs `f` with an SFTP session on a pooled connection to `target`; the session ends afterwards.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withSftp = <A, E>(
  target: SshTarget.SshTarget,
  f: (sftp: SFTPWrapper) => Effect.Effect<A, E>
): Effect.Effect<A, E | TransportError, SshConnections> =>
  Effect.flatMap(SshConnections, ({ pool }) => withSftpOn(pool, target, f))

const spanAttributes = (target: SshTarget.SshTarget, remotePath: string) => ({
  "runcmd.target.id": target.id,
  "runcmd.transport": "ssh",
  "sftp.path": remotePath
})

const toError = (operation: string, path: string, targetId: string) => (err: unknown): SftpError => {
  const e = err as Error & { code?: number | string }
  const reason = e.code === 2 || e.code === "ENOENT"
    ? "NotFound"
    : e.code === 3 || e.code === "EACCES" || e.code === "EPERM"
    ? "PermissionDenied"
    : typeof e.code === "string"
    ? "LocalIo"
    : "Failure"
  return new SftpError({ reason, operation, path, targetId, description: e.message ?? String(err), cause: err })
}

const call = (operation: string, path: string, targetId: string, f: (cb: (err?: Error | null) => void) => void) =>
  Effect.async<void, SftpError>((resume) => {
    f((err) => resume(err ? Effect.fail(toError(operation, path, targetId)(err)) : Effect.void))
  })

/**
 * Uploads a local file (`source` is a path) or bytes to `remotePath`.
 *
 * @since 0.1.0
 * @category operations
 */
export const upload = (
  target: SshTarget.SshTarget,
  source: string | Uint8Array,
  remotePath: string,
  options: UploadOptions = {}
): Effect.Effect<void, SftpError | TransportError, SshConnections> =>
  withSftp(target, (sftp) =>
    typeof source === "string"
      ? call("upload", remotePath, target.id, (cb) =>
        sftp.fastPut(source, remotePath, options.mode === undefined ? {} : { mode: options.mode }, (err) =>
          cb(err)))
      : call("upload", remotePath, target.id, (cb) =>
        sftp.writeFile(
          remotePath,
          Buffer.from(source.buffer, source.byteOffset, source.length),
          options.mode === undefined ? {} : { mode: options.mode },
          (err) =>
            cb(err)
        ))).pipe(Effect.withSpan("Sftp.upload", { attributes: spanAttributes(target, remotePath) }))

/**
 * Downloads `remotePath` to the local file `localPath`.
 *
 * @since 0.1.0
 * @category operations
 */
export const download = (
  target: SshTarget.SshTarget,
  remotePath: string,
  localPath: string
): Effect.Effect<void, SftpError | TransportError, SshConnections> =>
  withSftp(
    target,
    (sftp) => call("download", remotePath, target.id, (cb) => sftp.fastGet(remotePath, localPath, (err) => cb(err)))
  ).pipe(
    Effect.withSpan("Sftp.download", { attributes: spanAttributes(target, remotePath) })
  )

/**
 * Reads `remotePath` into memory.
 *
 * @since 0.1.0
 * @category operations
 */
export const read = (
  target: SshTarget.SshTarget,
  remotePath: string
): Effect.Effect<Uint8Array, SftpError | TransportError, SshConnections> =>
  withSftp(target, (sftp) =>
    Effect.async<Uint8Array, SftpError>((resume) => {
      sftp.readFile(remotePath, (err, data) =>
        resume(err ? Effect.fail(toError("read", remotePath, target.id)(err)) : Effect.succeed(new Uint8Array(data))))
    })).pipe(Effect.withSpan("Sftp.read", { attributes: spanAttributes(target, remotePath) }))
