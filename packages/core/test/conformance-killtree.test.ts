/**
 * The conformance suite's process-tree cases can fail: run directly (not registered as vitest tests) against a
 * deliberately broken transport, which signals only its child's process group and reports the kill confirmed once
 * the child exited, they fail, naming the `setsid` grandchild left running; and their cleanup leaves nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Target from "@runcmd/core/Target"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as internal from "../src/internal/conformance.js"
import * as C from "../src/internal/conformanceCases.js"
import * as ReferenceTransport from "./support/ReferenceTransport.js"

const options = { targets: (n: number) => Array.from({ length: n }, (_, i) => Target.local(`broken-${i}`)) }

/** Live processes of this host carrying any conformance mark (a case's own cleanup must leave none). */
const marked = (): Array<string> => {
  const out: Array<string> = []
  for (const e of fs.readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(e) || Number(e) === process.pid) continue
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, "latin1")
      if (/^[ZXx]/.test(stat.slice(stat.lastIndexOf(")") + 2))) continue
      const environ = fs.readFileSync(`/proc/${e}/environ`, "latin1")
      if (environ.includes(`${C.MARK_VARIABLE}=${C.MARK_PREFIX}`)) {
        out.push(`${e} ${fs.readFileSync(`/proc/${e}/cmdline`, "latin1")}`)
      }
    } catch {
      // gone, or not ours
    }
  }
  return out
}

const hasSetsid = cp.spawnSync("sh", ["-c", "command -v setsid"]).status === 0 && fs.existsSync("/proc/self/stat")

describe.skipIf(!hasSetsid)(
  "conformance: the process-tree cases catch a transport that leaves a setsid grandchild",
  () => {
    for (const c of internal.killTreeCases) {
      it.live(`fails against a group-only kill reported confirmed: ${c.title}`, () =>
        Effect.gen(function*() {
          const exit = yield* Effect.exit(
            internal.runCase(c, options).pipe(Effect.provide(ReferenceTransport.layer({ killTree: false })))
          )
          assert.isTrue(Exit.isFailure(exit), "the case fails")
          if (Exit.isFailure(exit)) {
            const message = Cause.pretty(exit.cause)
            assert.match(message, /[cC]onfirmed: true/, message)
            assert.include(message, "yet processes of the execution are still running", message)
            assert.match(message, /\(sleep\) state [^Z].* sid /, `the grandchild's sleep is named: ${message}`)
          }
          assert.deepStrictEqual(marked(), [], "the case's cleanup killed what the transport left")
        }), 60_000)

      it.live(
        `passes against the reference transport (the tree killed, then confirmed): ${c.title}`,
        () =>
          Effect.gen(function*() {
            yield* internal.runCase(c, options).pipe(Effect.provide(ReferenceTransport.layer()))
            assert.deepStrictEqual(marked(), [])
          }),
        60_000
      )
    }
  }
)
