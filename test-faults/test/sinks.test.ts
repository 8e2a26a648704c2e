/**
 * Sinks under faults: a full disk (`/dev/full` as an output file) or an output directory deleted mid-run gives a
 * typed sink error (`OutputSinkError`, `WriteFailed`, naming the file), the run goes on, every target's outcome is
 * in the report, and the report says which sink lost output.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as OutputSink from "@runcmd/core/OutputSink"
import * as RunEvent from "@runcmd/core/RunEvent"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import type { RunReport } from "@runcmd/core/RunReport"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import { LocalTransport } from "@runcmd/transport-local"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const COUNT = 6
const targets = Array.from({ length: COUNT }, (_, i) => Target.local(`t${i}`))
/** A known pattern per target: 2,000 numbered lines (its own id in each). */
const SCRIPT = `i=0; while [ $i -lt 2000 ]; do echo "$RUNCMD_FAULTS_ID line $i"; i=$((i + 1)); done`
const expected = (id: string) => Array.from({ length: 2000 }, (_, i) => `${id} line ${i}\n`).join("")

const run = (sinks: ReadonlyArray<OutputSink.OutputSink>, concurrency = COUNT) =>
  Runner.run(
    RunPlan.make({
      targets: targets.map((t) => ({ ...t, env: { RUNCMD_FAULTS_ID: t.id } })),
      job: ScriptSource.job(ScriptSource.script(SCRIPT)),
      policy: { concurrency },
      captureBytes: 1024 * 1024,
      sinks
    })
  ).pipe(Effect.orDie, Effect.provide(LocalTransport.layer()))

/** Every target succeeded and its whole output is in the report, whatever the sinks did. */
const assertAllRecorded = (report: RunReport) => {
  assert.strictEqual(report.outcomes.length, COUNT)
  for (const o of report.outcomes) {
    assert.strictEqual(o._tag, "Succeeded", `${o.targetId}: ${o._tag}`)
    assert.strictEqual(Outcome.capturedText(o.stdout), expected(o.targetId), `${o.targetId}: its output is captured`)
  }
}

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-faults-sinks-"))

describe.skipIf(!fs.existsSync("/dev/full"))("sinks under faults", () => {
  it.live("events to /dev/full: WriteFailed naming it, every outcome recorded, the report says so", () =>
    Effect.gen(function*() {
      // the sink alone: a typed error
      const error = yield* Effect.scoped(
        Effect.gen(function*() {
          const handle = yield* OutputSink.events({ path: "/dev/full", bufferBytes: 16 }).open({ runId: "r", targets })
          return yield* Effect.flip(
            handle.write(new RunEvent.RunFinished({ runId: "r", at: 0, interrupted: false }))
          )
        })
      )
      assert.instanceOf(error, OutputSink.OutputSinkError)
      assert.strictEqual(error.reason, "WriteFailed")
      assert.match(error.message, /\/dev\/full/)
      assert.isUndefined(error.file, "the sink's only file: the sink stops")
      // in a run: the run goes on, the report says which sink stopped
      const report = yield* run([OutputSink.events({ path: "/dev/full" })])
      assertAllRecorded(report)
      assert.strictEqual(report.warnings.length, 1, report.warnings.join("\n"))
      assert.match(report.warnings[0]!, /events:\/dev\/full stopped: .*WriteFailed.*\/dev\/full.*ENOSPC/)
    }))

  it.live("a per-target file on /dev/full: WriteFailed naming it; the other targets' files are whole", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      fs.symlinkSync("/dev/full", path.join(dir, "t2.stdout"))
      const report = yield* run([OutputSink.file({ dir, layout: "per-target", bufferBytes: 1024 })])
      assertAllRecorded(report)
      assert.strictEqual(report.warnings.length, 1, report.warnings.join("\n"))
      assert.match(report.warnings[0]!, /lost a file: .*WriteFailed: cannot write .*t2\.stdout: ENOSPC/)
      for (const t of targets) {
        if (t.id === "t2") continue
        assert.strictEqual(fs.readFileSync(path.join(dir, `${t.id}.stdout`), "utf8"), expected(t.id), t.id)
      }
      fs.rmSync(dir, { recursive: true, force: true })
    }))

  it.live("the output directory deleted mid-run: WriteFailed naming the file, the run goes on", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      // before the file sink sees t0's end, the directory goes: t0's files were open, the others' are not yet
      const remover: OutputSink.OutputSink = {
        name: "remover",
        open: () =>
          Effect.succeed({
            write: (event) =>
              Effect.sync(() => {
                if (event._tag === "Finished" && event.targetId === "t0") fs.rmSync(dir, { recursive: true })
              })
          })
      }
      const report = yield* run([remover, OutputSink.file({ dir, layout: "per-target" })], 1)
      assertAllRecorded(report)
      assert.strictEqual(report.warnings.length, 1, report.warnings.join("\n"))
      // the directory is gone for every file: the sink stops (one warning, not one per file)
      assert.match(report.warnings[0]!, /stopped: .*WriteFailed: cannot open .*t0\.stderr: ENOENT/)
      assert.isFalse(fs.existsSync(dir), "nothing recreated the directory behind the user's back")
    }))
})
