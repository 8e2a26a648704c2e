/**
 * The job's files on the local machine: a private directory made for one execution.
 *
 * @internal
 */
import { FILES_ENV, type Invocation, type ShippedFile } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Errors from "./errors.js"

/**
 * Writes the invocation's files into a new directory (mode 0700, under the temporary directory), named to the
 * process by `FILES_ENV`, and removes it, whatever is in it by then, when the scope closes: after the execution's
 * own finalizers, which end its processes. Without files: the invocation as it is.
 *
 * @internal
 */
export const ship = (invocation: Invocation): Effect.Effect<Invocation, TransportError, Scope.Scope> => {
  const files = invocation.files ?? []
  if (files.length === 0) return Effect.succeed(invocation)
  return Effect.map(write(files), (dir) => ({ ...invocation, env: { ...invocation.env, [FILES_ENV]: dir } }))
}

const write = (files: ReadonlyArray<ShippedFile>): Effect.Effect<string, TransportError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), "runcmd-files-"))
        try {
          for (const file of files) {
            const to = path.join(dir, file.name)
            await fs.promises.mkdir(path.dirname(to), { recursive: true, mode: 0o700 })
            await fs.promises.writeFile(to, file.bytes, { flag: "wx", mode: file.mode })
            await fs.promises.chmod(to, file.mode) // the umask may have taken bits away
          }
          return dir
        } catch (error) {
          await fs.promises.rm(dir, { recursive: true, force: true })
          throw error
        }
      },
      catch: (cause) =>
        Errors.make(
          "SpawnFailed",
          "delivery",
          `cannot write the job's files: ${cause instanceof Error ? cause.message : String(cause)}`,
          { cause }
        )
    }),
    (dir) => Effect.promise(() => fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined))
  )
