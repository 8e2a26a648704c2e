/**
 * The bad-input corpus (`corpus/`): its files, their expectations, and a transport that proves nothing ran.
 */
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Transport from "@runcmd/core/Transport"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const CORPUS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../corpus")

export interface Entry {
  readonly name: string
  readonly file: string
  /** The file's text after its `# expect:` line. */
  readonly text: string
  /** What the error must say. */
  readonly expect: RegExp
}

/** The files of one corpus directory, sorted, each with its expectation. */
export const entries = (dir: string): Array<Entry> =>
  fs.readdirSync(path.join(CORPUS, dir)).filter((f) => !f.startsWith(".")).sort().map((name) => {
    const file = path.join(CORPUS, dir, name)
    const content = fs.readFileSync(file, "utf8")
    const m = /^# expect: (.*)\n/.exec(content)
    if (m === null) throw new Error(`${file}: the first line must be "# expect: <regex>"`)
    return { name, file, text: content.slice(m[0].length), expect: new RegExp(m[1]!, "i") }
  })

/** A job that would create `marker` (run by the local transport for real, by {@link markerTransport} for others). */
export const markerJob = (marker: string) => ScriptSource.job(ScriptSource.command("touch", marker))

/**
 * A transport for the kinds no real transport serves here (ssh: no server is running): starting anything creates
 * the marker file, so that a case where something started is seen.
 */
export const markerTransport = (kinds: ReadonlyArray<string>, marker: string) =>
  Transport.layer(Effect.succeed(Transport.make({
    name: "marker",
    kinds,
    capabilities: { output: "live", cancel: "kills", secrets: true, stdin: true, runAs: true, native: false },
    start: () =>
      Effect.sync(() => {
        fs.writeFileSync(marker, "started\n")
        return Transport.fromStream({ output: Stream.empty, exit: Effect.succeed(Transport.exited(0)) })
      })
  })))
