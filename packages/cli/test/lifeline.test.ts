/**
 * The lifeline from outside: the built CLI runs jobs whose processes ignore TERM and HUP and escape into their own
 * session, it is SIGKILLed (no handler runs), and the process table is read until the jobs are gone: locally and on
 * a real sshd on loopback (as its login user). A target with `onControllerLoss: continue` keeps its job, proved
 * once the other target's job (same run, same lifeline) has been swept; the test then kills it.
 */
import { afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
// the SSH transport's own harness: a real OpenSSH server on loopback with generated keys
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import { pwshLoginShell } from "../../transport-ssh/test/harness/pwsh.js"
import * as Sshd from "../../transport-ssh/test/harness/Sshd.js"
import { assertBuilt, descendants, processesMatching, spawn, tempDir, unique, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

/** The job: a TERM/HUP-ignoring `sleep` under a marker name, and a `setsid` escape that ignores them too. */
const job = (marker: string) =>
  [
    "trap '' TERM HUP",
    `setsid bash -c "trap '' TERM HUP; exec -a ${marker}-$ROLE-escaped sleep 300" </dev/null >/dev/null 2>&1 &`,
    "echo started",
    `exec bash -c "exec -a ${marker}-$ROLE-main sleep 300"`
  ].join("\n")

const uidOf = (pid: number): number => {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? -1)
  } catch {
    return -1
  }
}

/** The job's processes of one target (`main` and `escaped`), optionally only those of one user. */
const jobProcesses = (marker: string, role: string, uid?: number) =>
  processesMatching(`${marker}-${role}-`).filter((pid) => uid === undefined || uidOf(pid) === uid)

/** Polls (bounded) until `done` holds. */
const until = (what: string, done: () => boolean, ms = 30_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!done()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting until ${what}`)
      yield* Effect.sleep("50 millis")
    }
  })

/** Kills whatever is left of the markers when the test ends (the `continue` job, or survivors of a failure). */
const cleanup = (marker: string) =>
  Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const pid of processesMatching(marker)) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone
        }
      }
    })
  )

const lifelineOf = (cliPid: number) =>
  descendants(cliPid).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trimEnd().endsWith(
        " runcmd-lifeline"
      )
    } catch {
      return false
    }
  })

describe("runcmd SIGKILLed: the lifeline ends its jobs", () => {
  it.scopedLive(
    "local: every process of a `terminate` job is gone, a `continue` job keeps running",
    () =>
      Effect.gen(function*() {
        const marker = `rc-lifeline-${unique()}`
        yield* cleanup(marker)
        const dir = yield* tempDir
        const inventory = writeFile(
          dir,
          "inv.yaml",
          [
            "targets:",
            "  - { id: ends, kind: local, env: { ROLE: ends } }",
            "  - { id: stays, kind: local, env: { ROLE: stays }, onControllerLoss: continue }",
            ""
          ].join("\n")
        )
        const proc = yield* spawn(["run", "-i", inventory, "--kill-grace", "1s", "--command", job(marker)])
        yield* proc.waitFor(/\[ends\] started/, "40 seconds")
        yield* proc.waitFor(/\[stays\] started/, "40 seconds")
        yield* until(
          "both jobs run",
          () => jobProcesses(marker, "ends").length === 2 && jobProcesses(marker, "stays").length === 2
        )
        // one watchdog for the layer, a child of runcmd (not one per execution)
        const watchdogs = lifelineOf(proc.pid)
        assert.strictEqual(watchdogs.length, 1)

        yield* proc.kill("SIGKILL")
        const r = yield* proc.result("20 seconds")
        assert.strictEqual(r.signal, "SIGKILL")
        yield* until("the terminate job is gone", () => jobProcesses(marker, "ends").length === 0)
        yield* until("the watchdog has exited after its sweep", () =>
          processesMatching(" runcmd-lifeline").every((p) => !watchdogs.includes(p)))
        // swept after the kill grace, the other target's job untouched
        assert.strictEqual(jobProcesses(marker, "stays").length, 2, "the continue job survives runcmd")
      }),
    { timeout: 90_000 }
  )

  it.scopedLive("--on-controller-loss continue (the CLI flag) leaves the job running", () =>
    Effect.gen(function*() {
      const marker = `rc-lifeline-${unique()}`
      yield* cleanup(marker)
      const proc = yield* spawn(
        ["run", "-t", "one", "--on-controller-loss", "continue", "--kill-grace", "1s", "--command", job(marker)],
        { env: { ROLE: "one" } }
      )
      yield* proc.waitFor(/\[one\] started/, "40 seconds")
      yield* until("the job runs", () => jobProcesses(marker, "one").length === 2)
      // no job to watch: no watchdog was started
      assert.deepStrictEqual(lifelineOf(proc.pid), [])
      yield* proc.kill("SIGKILL")
      yield* proc.result("20 seconds")
      assert.strictEqual(jobProcesses(marker, "one").length, 2)
    }), { timeout: 90_000 })
})

describe.skipIf(!Sshd.enabled())("runcmd SIGKILLed: the SSH lifeline ends its jobs on the host", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped(
      "the connection's lifeline sweeps `terminate` jobs when runcmd dies; `continue` stays",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const marker = `rc-lifeline-${unique()}`
          yield* cleanup(marker)
          const dir = yield* tempDir
          const inventory = writeFile(
            dir,
            "inv.yaml",
            [
              "defaults:",
              "  kind: ssh",
              `  host: ${sshd.addresses[0]}`,
              `  port: ${sshd.port}`,
              `  user: ${sshd.user}`,
              `  auth: { type: key, path: ${JSON.stringify(sshd.clientKeyPath)} }`,
              `  hostKey: { policy: strict, knownHosts: [${JSON.stringify(sshd.knownHostsPath)}] }`,
              "targets:",
              "  - { id: ends, env: { ROLE: ends } }",
              "  - { id: stays, env: { ROLE: stays }, onControllerLoss: continue }",
              ""
            ].join("\n")
          )
          const proc = yield* spawn(["run", "-i", inventory, "--kill-grace", "1s", "--command", job(marker)])
          yield* proc.waitFor(/\[ends\] started/, "40 seconds")
          yield* proc.waitFor(/\[stays\] started/, "40 seconds")
          // the processes run on the host as the SSH login user
          const uid = sshd.testUser?.uid ?? process.getuid!()
          yield* until(
            "both jobs run on the host",
            () => jobProcesses(marker, "ends", uid).length === 2 && jobProcesses(marker, "stays", uid).length === 2
          )

          yield* proc.kill("SIGKILL")
          yield* proc.result("20 seconds")
          yield* until("the terminate job is gone from the host", () => jobProcesses(marker, "ends", uid).length === 0)
          yield* until(
            "the lifeline has exited after its sweep",
            () => sshd.leftovers().every((p) => !p.cmd.endsWith(" runcmd-lifeline"))
          )
          assert.strictEqual(jobProcesses(marker, "stays", uid).length, 2, "the continue job survives runcmd")
          yield* Effect.promise(() => sshd.killLeftovers())
        }),
      { timeout: 90_000 }
    )
  })
})

class PwshUser extends Context.Tag("cli/lifeline/PwshUser")<PwshUser, Sshd.TestUser>() {}

const pwshUsersHere = Sshd.enabled() && Sshd.isRoot() && !skipWithoutPwsh("cli lifeline of a pwsh login user")

describe.skipIf(!pwshUsersHere)("runcmd SIGKILLed: the SSH lifeline of a user whose login shell is pwsh", () => {
  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  // sshd runs `pwsh -c <command>` for every channel of this user: the lifeline's pwsh execs the POSIX loop
  const layer = Layer.merge(Sshd.layer(), Sshd.userLayer(PwshUser, { shell: pwshLoginShell() ?? "/bin/false" }))

  it.layer(layer, Sshd.layerOptions)((it) => {
    it.scoped(
      "a pwsh login user's job (a setsid escape ignoring TERM and HUP) is swept when runcmd dies",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const user = yield* PwshUser
          const marker = `rc-lifeline-${unique()}`
          yield* cleanup(marker)
          const dir = yield* tempDir
          const inventory = writeFile(
            dir,
            "inv.yaml",
            [
              "defaults:",
              "  kind: ssh",
              `  host: ${sshd.addresses[0]}`,
              `  port: ${sshd.port}`,
              `  user: ${user.name}`,
              "  shell: pwsh",
              `  auth: { type: key, path: ${JSON.stringify(sshd.clientKeyPath)} }`,
              `  hostKey: { policy: strict, knownHosts: [${JSON.stringify(sshd.knownHostsPath)}] }`,
              "targets:",
              "  - { id: sh, env: { ROLE: sh } }",
              ""
            ].join("\n")
          )
          const proc = yield* spawn(["run", "-i", inventory, "--kill-grace", "1s", "--command", job(marker)])
          // pwsh takes seconds to start on a loaded machine
          yield* proc.waitFor(/\[sh\] started/, "90 seconds")
          yield* until("the job runs on the host", () => jobProcesses(marker, "sh", user.uid).length === 2, 60_000)
          // the loop runs (pwsh became /bin/sh) before the controller dies
          yield* until(
            "the pwsh user's lifeline loop runs",
            () =>
              Sshd.processes().some((p) =>
                p.uid === user.uid && p.comm === "sh" && p.cmd.endsWith(` ${Sshd.LIFELINE}`)
              ),
            60_000
          )

          yield* proc.kill("SIGKILL")
          yield* proc.result("20 seconds")
          yield* until("the job is gone from the host", () => jobProcesses(marker, "sh", user.uid).length === 0)
          yield* until(
            "the lifeline has exited after its sweep",
            () => Sshd.processes().every((p) => p.uid !== user.uid || !p.cmd.endsWith(` ${Sshd.LIFELINE}`))
          )
          yield* Effect.promise(() => sshd.killLeftovers())
        }),
      { timeout: 180_000 }
    )
  })
})
