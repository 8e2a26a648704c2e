import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as RunReport from "@runcmd/core/RunReport"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { assertBuilt, processesMatching, spawn, tempDir, unique } from "./helpers.js"

beforeAll(assertBuilt)

/** Waits (bounded) until no process matches; returns those left. */
const leftBehind = (text: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 20; i++) {
      if (processesMatching(text).length === 0) return []
      yield* Effect.sleep("100 millis")
    }
    return processesMatching(text)
  })

describe("interrupting runcmd run", () => {
  it.scopedLive(
    "SIGINT: running targets killed, the rest skipped, report printed and written, exit 130, no process left",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const reportFile = path.join(dir, "report.json")
        // a unique duration makes the sleep processes recognisable in /proc
        const sleep = `sleep 31.${unique()}`
        const proc = yield* spawn([
          "run",
          "-t",
          "t1",
          "-t",
          "t2",
          "-t",
          "t3",
          "-t",
          "queued",
          "--concurrency",
          "3",
          "--report",
          reportFile,
          "--command",
          `echo started; ${sleep}; echo never`
        ])
        for (const id of ["t1", "t2", "t3"]) yield* proc.waitFor(new RegExp(`\\[${id}\\] started`))
        // the sleeps are really running (so that the check below means something)
        for (let i = 0; i < 40 && processesMatching(sleep, true).length < 3; i++) yield* Effect.sleep("50 millis")
        assert.strictEqual(processesMatching(sleep, true).length, 3)

        yield* proc.kill("SIGINT")
        const r = yield* proc.result("15 seconds")
        assert.strictEqual(r.code, 130, r.stderr)
        assert.match(r.stderr, /interrupted/)
        assert.match(r.stdout, /TARGET\s+OUTCOME/)
        assert.match(r.stdout, /^t1\s+Cancelled/m)
        assert.match(r.stdout, /^queued\s+Skipped/m)
        assert.notMatch(r.stdout, /never/)

        const report = yield* Effect.orDie(RunReport.decodeJson(fs.readFileSync(reportFile, "utf8")))
        assert.isTrue(report.interrupted)
        const byId = Object.fromEntries(report.outcomes.map((o) => [o.targetId, o]))
        for (const id of ["t1", "t2", "t3"]) {
          const o = byId[id]!
          assert.strictEqual(o._tag, "Cancelled")
          if (o._tag === "Cancelled") assert.isTrue(o.confirmed, `${id}: kill confirmed`)
        }
        assert.strictEqual(byId.queued!._tag, "Skipped")

        assert.deepStrictEqual(yield* leftBehind(sleep), [], "no sleep process left behind")
      }),
    { timeout: 40_000 }
  )

  it.scopedLive(
    "SIGINT with --output json: the interrupted report on stdout; SIGTERM exits 143",
    () =>
      Effect.gen(function*() {
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
          const sleep = `sleep 32.${unique()}`
          const proc = yield* spawn(["run", "--output", "json", "--", "sh", "-c", `echo up; ${sleep}`])
          for (let i = 0; i < 100 && processesMatching(sleep, true).length < 1; i++) yield* Effect.sleep("50 millis")
          assert.strictEqual(processesMatching(sleep, true).length, 1)
          yield* proc.kill(signal)
          const r = yield* proc.result("15 seconds")
          assert.strictEqual(r.code, signal === "SIGINT" ? 130 : 143, r.stderr)
          const report = yield* Effect.orDie(RunReport.decodeJson(r.stdout))
          assert.isTrue(report.interrupted)
          assert.strictEqual(report.outcomes[0]!._tag, "Cancelled")
          assert.deepStrictEqual(yield* leftBehind(sleep), [])
        }
      }),
    { timeout: 40_000 }
  )
})
