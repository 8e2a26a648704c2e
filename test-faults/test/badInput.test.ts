/**
 * Bad input: every file of the corpus (plans, inventories, ssh_config files, CLI invocations) is refused with a
 * typed error naming the field or flag, and nothing runs (the job would create a marker file: it never exists).
 */
import { NodeContext } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as Target from "@runcmd/core/Target"
import * as Targets from "@runcmd/core/Targets"
import { LocalTransport } from "@runcmd/transport-local"
import { SshConfig, SshTarget } from "@runcmd/transport-ssh"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as cp from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as YAML from "yaml"
import { CORPUS, entries, type Entry, markerJob, markerTransport } from "../support/corpus.js"

const KINDS = [Target.Local, SshTarget.SshTarget]
const BIN = path.resolve(CORPUS, "../../packages/cli/bin/runcmd.js")

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-faults-corpus-"))
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }))
const newMarker = () => path.join(scratch, `marker-${crypto.randomBytes(6).toString("hex")}`)

/** The transports a case would run on: the real local one (it would `touch` the marker) and the marker one. */
const transports = (marker: string) => Layer.mergeAll(LocalTransport.layer(), markerTransport(["ssh"], marker))

/** The typed error of a case (its tag and message), or a failure of the test when the effect did anything else. */
const refusal = <A, E extends { readonly _tag: string; readonly message: string }>(
  effect: Effect.Effect<A, E>
): Effect.Effect<{ readonly tag: string; readonly message: string }> =>
  effect.pipe(
    Effect.matchCauseEffect({
      onSuccess: () => Effect.dieMessage("accepted: the input was not refused"),
      onFailure: (cause) =>
        cause._tag === "Fail"
          ? Effect.succeed({ tag: cause.error._tag, message: cause.error.message })
          : Effect.dieMessage(`not a typed error: ${String(cause)}`)
    })
  )

const check = (entry: Entry, marker: string, error: { readonly tag: string; readonly message: string }) => {
  assert.oneOf(error.tag, ["InvalidPlan", "TargetsError"], error.message)
  assert.match(error.message, entry.expect, `${entry.name}: the error names the field`)
  assert.isFalse(fs.existsSync(marker), `${entry.name}: nothing ran`)
}

/** Runs the built CLI (bounded: KILLed after a minute). */
const runcmd = (args: ReadonlyArray<string>) =>
  new Promise<{ readonly status: number | null; readonly stderr: string }>((resolve, reject) => {
    cp.execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: scratch,
        encoding: "utf8",
        timeout: 60_000,
        killSignal: "SIGKILL",
        env: { ...process.env, NO_COLOR: "1" }
      },
      (error, _stdout, stderr) => {
        if (error !== null && typeof error.code !== "number") reject(error)
        else resolve({ status: error === null ? 0 : (error.code as number), stderr })
      }
    )
  })

describe("bad input: the corpus", () => {
  it("holds at least 60 cases", () => {
    const count = ["plans", "inventories", "ssh_config", "cli"].reduce((n, dir) => n + entries(dir).length, 0)
    assert.isAtLeast(count, 60)
  })

  describe("plans", () => {
    for (const entry of entries("plans")) {
      it.effect(entry.name, () =>
        Effect.gen(function*() {
          const marker = newMarker()
          const input: unknown = YAML.parse(entry.text.replaceAll("MARKER", marker))
          const error = yield* refusal(
            Effect.flatMap(RunPlan.decode(input, KINDS), (plan) => Runner.run(plan)).pipe(
              Effect.provide(transports(marker))
            )
          )
          check(entry, marker, error)
        }))
    }
  })

  describe("inventories", () => {
    for (const entry of entries("inventories")) {
      it.effect(entry.name, () =>
        Effect.gen(function*() {
          const marker = newMarker()
          const error = yield* refusal(
            Runner.runJob(markerJob(marker)).pipe(
              Effect.provide(Layer.mergeAll(
                transports(marker),
                Targets.layerInventory(entry.file, KINDS).pipe(Layer.provide(SshConfig.layerImporter))
              )),
              Effect.provide(NodeContext.layer)
            )
          )
          check(entry, marker, error)
        }))
    }
  })

  describe("ssh_config files", () => {
    for (const entry of entries("ssh_config")) {
      it.effect(entry.name, () =>
        Effect.gen(function*() {
          const marker = newMarker()
          const error = yield* refusal(
            Runner.runJob(markerJob(marker)).pipe(
              Effect.provide(Layer.mergeAll(transports(marker), SshConfig.layer(entry.file)))
            )
          )
          check(entry, marker, error)
        }))
    }
  })

  describe.concurrent("CLI invocations (the built runcmd)", () => {
    beforeAll(() => {
      if (!fs.existsSync(path.resolve(BIN, "../../dist/bundle/runcmd.cjs"))) {
        throw new Error("packages/cli is not built: `npm run build` first (`npm test` does it)")
      }
    })
    for (const entry of entries("cli")) {
      it(entry.name, async () => {
        const marker = newMarker()
        const args = entry.text.split("\n").filter((l) => l !== "").map((a) =>
          a.replaceAll("MARKER", marker).replaceAll("CORPUS", CORPUS)
        )
        const result = await runcmd(args)
        assert.strictEqual(result.status, 2, `${entry.name}: exit 2 (usage); stderr:\n${result.stderr}`)
        assert.match(result.stderr, entry.expect, `${entry.name}: the message names the flag`)
        assert.isFalse(fs.existsSync(marker), `${entry.name}: nothing ran`)
      }, 90_000)
    }
  })
})
