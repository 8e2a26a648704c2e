import { assert, describe, it } from "@effect/vitest"
import * as cp from "node:child_process"
import * as crypto from "node:crypto"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { carriers, killMarked } from "./helpers.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, "../../..")

const waitFor = async (check: () => boolean, ms: number) => {
  const until = Date.now() + ms
  while (!check() && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  return check()
}

/** Starts the host fixture, waits for `ready`, sends it `signal`; resolves with how it ended. */
const hostRun = async (mark: string, signal: NodeJS.Signals, extra: Array<string> = []) => {
  const child = cp.spawn(
    process.execPath,
    ["--conditions=@runcmd/source", "--import", "tsx", path.join(here, "fixtures/host.ts"), mark, ...extra],
    { cwd: root, stdio: ["ignore", "pipe", "inherit"] }
  )
  try {
    let out = ""
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()))
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal }))
    )
    assert.isTrue(
      await waitFor(() => out.includes("ready") && carriers(mark).length >= 2, 30_000),
      "host did not start"
    )
    child.kill(signal)
    const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 20_000))
    const result = await Promise.race([ended, timeout])
    assert.notStrictEqual(result, "timeout", "the host did not exit")
    return result as { code: number | null; signal: NodeJS.Signals | null }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    killMarked(mark)
  }
}

describe("LocalTransport and the host's signals", () => {
  it("SIGTERM to the host kills its live executions, then the host dies of SIGTERM", async () => {
    const mark = `RUNCMD_TEST_MARK=${crypto.randomBytes(6).toString("hex")}`
    const r = await hostRun(mark, "SIGTERM")
    assert.strictEqual(r.signal, "SIGTERM")
    assert.isTrue(await waitFor(() => carriers(mark).length === 0, 5_000))
  }, 60_000)

  it("with another SIGTERM listener the host is left to it, and the executions are still killed", async () => {
    const mark = `RUNCMD_TEST_MARK=${crypto.randomBytes(6).toString("hex")}`
    const r = await hostRun(mark, "SIGTERM", ["with-listener"])
    assert.strictEqual(r.code, 7)
    assert.isTrue(await waitFor(() => carriers(mark).length === 0, 5_000))
  }, 60_000)
})
