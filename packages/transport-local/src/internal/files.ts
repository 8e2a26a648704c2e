/**
 * The job's files on the local machine: a private directory made for one execution.
 *
 * @internal
 */
import type { ShippedFile } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/**
 * Writes the files into a new directory (mode 0700, under the temporary directory) and removes it, whatever is in
 * it by then, when the scope closes: after the execution's own finalizers, which end its processes.
 *
 * @internal
 */
export const ship = (
  files: ReadonlyArray<ShippedFile>,
  fail: (description: string, cause: unknown) => TransportError
): Effect.Effect<string, TransportError, Scope.Scope> =>
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
      catch: (cause) => fail(`cannot write the job's files: ${cause instanceof Error ? cause.message : String(cause)}`, cause)
    }),
    (dir) => Effect.promise(() => fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined))
  )
