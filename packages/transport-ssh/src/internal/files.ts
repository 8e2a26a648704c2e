/**
 * The job's files on an SSH target: a private directory made over SFTP for one execution.
 *
 * @internal
 */
import { FILES_ENV, type Invocation } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as crypto from "node:crypto"
import type { SFTPWrapper } from "ssh2"
import type * as SshTarget from "../SshTarget.js"
import * as Errors from "./errors.js"
import * as Exec from "./exec.js"
import type * as Pool from "./pool.js"
import { withSftpOn } from "./sftpSession.js"

const sftpCall = (f: (done: (err?: Error | null) => void) => void) =>
  Effect.async<void, Error>((resume) => f((err) => resume(err ? Effect.fail(err) : Effect.void)))

/**
 * Creates `dir` (exclusively: an existing path fails, and is then not ours to remove) and writes the files into it,
 * each created exclusively.
 */
const write = (sftp: SFTPWrapper, dir: string, files: NonNullable<Invocation["files"]>, created: () => void) =>
  Effect.gen(function*() {
    yield* sftpCall((done) => sftp.mkdir(dir, { mode: 0o700 }, done))
    created()
    const made = new Set<string>()
    for (const file of files) {
      const parts = file.name.split("/")
      for (let i = 1; i < parts.length; i++) {
        const sub = `${dir}/${parts.slice(0, i).join("/")}`
        if (made.has(sub)) continue
        yield* sftpCall((done) => sftp.mkdir(sub, { mode: 0o700 }, done))
        made.add(sub)
      }
      const to = `${dir}/${file.name}`
      const bytes = Buffer.from(file.bytes.buffer, file.bytes.byteOffset, file.bytes.length)
      yield* sftpCall((done) => sftp.writeFile(to, bytes, { flag: "wx", mode: file.mode }, done))
      yield* sftpCall((done) => sftp.chmod(to, file.mode, done)) // the server's umask may have taken bits away
    }
  })

/**
 * Ships the invocation's files into a new directory on the target (`/tmp/runcmd-files-<random>`, mode 0700, made
 * over SFTP) and returns the invocation with `RUNCMD_FILES` naming it. When the scope closes — after the
 * execution's own finalizers, which end its processes — the directory is removed with `rm -rf` on a channel of its
 * own (bounded in time; a connection that is gone leaves it behind).
 *
 * @internal
 */
export const ship = (
  pool: Pool.Pool,
  target: SshTarget.SshTarget,
  invocation: Invocation
): Effect.Effect<Invocation, TransportError, Scope.Scope> => {
  const files = invocation.files ?? []
  if (files.length === 0) return Effect.succeed(invocation)
  const dir = `/tmp/runcmd-files-${crypto.randomBytes(12).toString("hex")}`
  const remove = Exec.runCollect(pool, target, `rm -rf -- '${dir}'`, {}).pipe(
    Effect.timeout("10 seconds"),
    Effect.ignore
  )
  let created = false
  return Effect.acquireRelease(
    withSftpOn(pool, target, (sftp) =>
      write(sftp, dir, files, () => {
        created = true
      }).pipe(
        Effect.mapError((cause) =>
          Errors.make("SpawnFailed", "delivery", `cannot write the job's files into ${dir}: ${cause.message}`, {
            cause
          })
        )
      )).pipe(Effect.onError(() => (created ? remove : Effect.void))),
    () => remove
  ).pipe(Effect.as({ ...invocation, env: { ...invocation.env, [FILES_ENV]: dir } }))
}
