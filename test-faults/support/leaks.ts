/**
 * The leak cases: executions whose children ignore TERM and HUP and `setsid` away, ended by their timeout or by a
 * cancel of the run; afterwards the process table must hold none of their processes. Each execution carries a
 * marker of its own (`<case mark>-<n>`, in its environment and in the argv of its escaped grandchild).
 */
import { assert } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import type { OutputSink } from "@runcmd/core/OutputSink"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import type * as Target from "@runcmd/core/Target"
import type * as Transport from "@runcmd/core/Transport"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as crypto from "node:crypto"
import * as ProcessTable from "./processTable.js"

/** The variable carrying an execution's marker. */
export const MARK_VARIABLE = "RUNCMD_FAULTS_MARK"

/**
 * Ignores TERM and HUP, and so do its children: one in its subshell, one escaped into a session of its own (its
 * `$0` is the marker), which says `escaped` once it runs.
 */
export const STUBBORN = `trap '' TERM HUP
( trap '' TERM HUP; sleep 300; : ) &
setsid sh -c 'trap "" TERM HUP; echo "escaped $$"; sleep 300; :' "$${MARK_VARIABLE}" &
wait
echo never
`

/** A fresh case mark. */
export const newMark = (what: string): string => `runcmd-faults-${what}-${crypto.randomBytes(6).toString("hex")}`

/** A sink that completes `all` once every one of `count` targets has said `escaped`. */
const escapes = (count: number, all: Deferred.Deferred<void>, seen: Set<string>): OutputSink => ({
  name: "escapes",
  open: () =>
    Effect.succeed({
      write: (event) => {
        if (event._tag !== "Output" || event.chunk.stream !== "stdout") return Effect.void
        if (!Buffer.from(event.chunk.bytes).includes("escaped")) return Effect.void
        seen.add(event.chunk.targetId)
        return seen.size >= count ? Deferred.succeed(all, undefined) : Effect.void
      }
    })
})

export interface LeakCase {
  readonly path: "timeout" | "cancel"
  readonly count: number
  /** The targets, each with the given environment. */
  readonly targets: (env: (i: number) => Record<string, string>) => ReadonlyArray<Target.Target>
  /** Executions at once: the run's concurrency (timeouts), or the size of each cancelled run (cancels). */
  readonly batch: number
  readonly timeout?: Duration.DurationInput | undefined
  /** How long the process table may take to empty after the run (reaping, the kill's own checks). */
  readonly settleMs?: number | undefined
}

/** One run of the targets; a cancel once every one of them has escaped. */
const runOnce = (c: LeakCase, mark: string, targets: ReadonlyArray<Target.Target>) =>
  Effect.gen(function*() {
    const all = yield* Deferred.make<void>()
    const seen = new Set<string>()
    let seenBefore = 0
    const cancelWhen = Deferred.await(all).pipe(
      Effect.timeout("90 seconds"),
      Effect.ignore,
      // the check that finds leftovers afterwards must see the running processes now
      Effect.zipRight(Effect.sync(() => (seenBefore = ProcessTable.marked(mark).length)))
    )
    const report = yield* Runner.run(
      RunPlan.make({
        targets,
        job: ScriptSource.job(ScriptSource.script(STUBBORN)),
        policy: {
          concurrency: c.batch,
          killGrace: Duration.millis(300),
          ...(c.path === "timeout" ? { timeout: Duration.decode(c.timeout ?? "5 seconds") } : {})
        },
        sinks: [escapes(targets.length, all, seen)]
      }),
      c.path === "cancel" ? { cancelWhen } : {}
    ).pipe(Effect.orDie)
    if (c.path === "cancel") {
      assert.isTrue(report.interrupted)
      // 3 processes per execution at least: the script, its subshell's sleep, the escaped shell
      assert.isAtLeast(seenBefore, 3 * targets.length, "before the cancel, the process table showed the executions")
    }
    return report.outcomes
  })

/**
 * Runs the case and checks it: one outcome per target, the one the path gives, every execution escaped before it
 * was ended, and no process of any of them left in the process table.
 */
export const runLeakCase = (c: LeakCase): Effect.Effect<void, never, Transport.Registry> => {
  const mark = newMark(`leak-${c.path}`)
  return Effect.gen(function*() {
    const targets = c.targets((i) => ({ [MARK_VARIABLE]: `${mark}-${i}` }))
    const outcomes = c.path === "timeout"
      ? yield* runOnce(c, mark, targets)
      : (yield* Effect.forEach(chunks(targets, c.batch), (batch) => runOnce(c, mark, batch))).flat()
    const left = yield* Effect.promise(() => ProcessTable.waitNone(mark, c.settleMs ?? 5000))

    assert.strictEqual(outcomes.length, c.count, "one outcome per target")
    assert.strictEqual(new Set(outcomes.map((o) => o.targetId)).size, c.count, "no target twice")
    const expected = c.path === "timeout" ? "TimedOut" : "Cancelled"
    const problems: Array<string> = []
    for (const o of outcomes) {
      const stdout = Outcome.capturedText(o.stdout)
      const what = `${o.targetId}: ${o._tag} ${JSON.stringify(stdout + Outcome.capturedText(o.stderr))}`
      // the kill's own confirmation is not asserted: under load it may come after the transport's kill timeout
      // (then `false`, which is truthful); the process table below is the proof
      if (o._tag !== expected) problems.push(`not ${expected}: ${what}`)
      else if (!stdout.includes("escaped")) problems.push(`ended before its grandchild escaped: ${what}`)
      else if (stdout.includes("never")) problems.push(`the script went on after its children: ${what}`)
    }
    assert.deepStrictEqual(
      [left.length, problems.length],
      [0, 0],
      `processes left behind:\n${ProcessTable.describe(left)}\n${problems.length} executions wrong:\n${
        problems.join("\n")
      }`
    )
  }).pipe(Effect.ensuring(Effect.promise(() => ProcessTable.killMarked(mark))))
}

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}
