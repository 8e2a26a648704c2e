import { assert, describe, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import type * as Transport from "@runcmd/core/Transport"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as LocalTransport from "../src/LocalTransport.js"
import { carriers, eventually, groupMembers, invocation, killMarked, local, sh, target } from "./helpers.js"

const decode = (b: Uint8Array) => Buffer.from(b).toString("utf8")

/** Starts an execution in its own scope and waits for `ready` on stdout; returns the scope, chunks so far... */
const startUntil = (t: Transport.Transport, inv: Transport.Invocation, marker: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const execution = yield* t.start(target, inv).pipe(Scope.extend(scope))
    let seen = ""
    const drained = yield* execution.output.pipe(
      Stream.runForEach((c) =>
        Effect.sync(() => {
          if (c.stream === "stdout") seen += decode(c.bytes)
        })
      ),
      Effect.forkDaemon
    )
    const ok = yield* eventually(() => seen.includes(marker), 20_000)
    assert.isTrue(ok, `the script did not print ${marker}`)
    return { scope, execution, drained, seen: () => seen }
  })

// every behaviour holds for both launches: the direct spawn (the default) and the full wrapper
for (const direct of [true, false]) {
  it.layer(LocalTransport.layer({ exitGrace: Duration.millis(700), direct }), { timeout: 30_000 })(
    `LocalTransport (${direct ? "direct" : "wrapper"})`,
    (it) => {
      it.effect("registers under kind local with its capabilities", () =>
        Effect.gen(function*() {
          const t = yield* local
          assert.strictEqual(t.name, "local")
          assert.deepStrictEqual(t.kinds, ["local"])
          assert.deepStrictEqual(t.capabilities, {
            output: "live",
            cancel: "kills",
            secrets: true,
            stdin: true,
            runAs: true,
            native: false,
            files: true,
            terminatesOnControllerLoss: true
          })
        }))

      it.effect("exit codes 0, 1, 42, 255", () =>
        Effect.gen(function*() {
          const t = yield* local
          for (const code of [0, 1, 42, 255]) {
            const r = yield* t.run(target, sh(`echo out; echo err >&2; exit ${code}`))
            assert.deepStrictEqual(r.exit, { _tag: "Exited", code })
            assert.strictEqual(decode(r.stdout), "out\n")
            assert.strictEqual(decode(r.stderr), "err\n")
          }
        }), 30_000)

      it.effect("signal deaths are Signaled", () =>
        Effect.gen(function*() {
          const t = yield* local
          for (const [sig, name] of [["KILL", "SIGKILL"], ["TERM", "SIGTERM"], ["SEGV", "SIGSEGV"]] as const) {
            const r = yield* t.run(target, sh(`kill -${sig} $$`))
            assert.deepStrictEqual(r.exit, { _tag: "Signaled", signal: name })
          }
        }), 30_000)

      it.effect("10 MiB of binary stdout arrives intact", () =>
        Effect.gen(function*() {
          const t = yield* local
          const input = crypto.randomBytes(10 * 1024 * 1024)
          const r = yield* t.run(target, sh("cat", { stdin: new Uint8Array(input) }))
          assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 0 })
          assert.strictEqual(r.stdout.length, input.length)
          assert.isTrue(Buffer.from(r.stdout).equals(input))
          const all = new Uint8Array(256).map((_, i) => i)
          const b = yield* t.run(target, sh("cat; cat >&2", { stdin: all }))
          assert.deepStrictEqual(b.stdout, all)
        }), 60_000)

      it.effect("a stderr flood alone does not hang", () =>
        Effect.gen(function*() {
          const t = yield* local
          const r = yield* t.run(target, sh("head -c 8000000 /dev/zero >&2; echo done"))
          assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 0 })
          assert.strictEqual(r.stderr.length, 8_000_000)
          assert.strictEqual(decode(r.stdout), "done\n")
        }), 60_000)

      it.effect("argv, env, cwd and stdin round-trip", () =>
        Effect.gen(function*() {
          const t = yield* local
          const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-local-"))
          try {
            const args = ["a b", "it's", "$(no)", "-n", "", "ü\n✓"]
            const env = { A: "x'y\"z", B: "$HOME `no` \\", C: "line1\nline2\n" }
            const r = yield* t.run(
              target,
              invocation(ScriptSource.command("sh", "-c", `printf '%s\\0' "$@" "$A" "$B" "$C" "$(pwd)"; cat`, "sh"), {
                args,
                env,
                cwd: dir,
                stdin: new TextEncoder().encode("in\0put")
              })
            )
            assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 0 }, decode(r.stderr))
            const parts = decode(r.stdout).split("\0")
            assert.deepStrictEqual(parts.slice(0, -1), [...args, env.A, env.B, env.C, dir, "in"])
            assert.strictEqual(parts.at(-1), "put")
          } finally {
            fs.rmSync(dir, { recursive: true, force: true })
          }
        }), 30_000)

      it.effect(
        "secrets are in the script's env, never in argv or any /proc/*/cmdline while it runs",
        () =>
          Effect.gen(function*() {
            const t = yield* local
            const secret = `S3CRET-${crypto.randomBytes(8).toString("hex")}`
            const flag = path.join(os.tmpdir(), `runcmd-flag-${crypto.randomBytes(4).toString("hex")}`)
            const run = yield* startUntil(
              t,
              sh(
                `[ "$MY_SECRET" = "${
                  secret.slice(0, 7)
                }$REST" ] && echo match; echo ready; while [ ! -e "${flag}" ]; do sleep 0.05; done`,
                {
                  secrets: { MY_SECRET: Redacted.make(secret) },
                  env: { REST: secret.slice(7) }
                }
              ),
              "ready"
            )
            try {
              // REST is in the env prelude (not a secret) and so are its bytes; the whole secret must appear nowhere
              const leaks: Array<string> = []
              for (const entry of fs.readdirSync("/proc")) {
                if (!/^\d+$/.test(entry)) {
                  continue
                }
                try {
                  if (fs.readFileSync(`/proc/${entry}/cmdline`).includes(secret)) leaks.push(entry)
                } catch {
                  // gone
                }
              }
              assert.deepStrictEqual(leaks, [])
              assert.include(run.seen(), "match")
            } finally {
              fs.writeFileSync(flag, "")
            }
            const exit = yield* run.execution.exit
            assert.deepStrictEqual(exit, { _tag: "Exited", code: 0 })
            yield* Scope.close(run.scope, Exit.void)
            fs.rmSync(flag, { force: true })
          }),
        30_000
      )

      it.effect(
        "closing the scope early kills the tree (TERM-ignoring, setsid'd, pipe-holding) and confirms it",
        () =>
          Effect.gen(function*() {
            const t = yield* local
            const mark = `RUNCMD_TEST_MARK=${crypto.randomBytes(6).toString("hex")}`
            const tree = `
export ${mark}
trap '' TERM
(trap '' TERM; exec sleep 300) &
setsid sh -c 'trap "" TERM; sleep 300' &
setsid sh -c 'exec sleep 300' >/dev/null 2>&1 &
sleep 300 &
echo ready
wait
`
            const run = yield* startUntil(t, sh(tree, { killGrace: Duration.millis(500) }), "ready")
            try {
              assert.isTrue(
                yield* eventually(() => carriers(mark).length >= 4, 10_000)
              )
              const started = Date.now()
              yield* Scope.close(run.scope, Exit.void)
              const took = Date.now() - started
              assert.isTrue(yield* run.execution.killConfirmed)
              assert.isBelow(took, 10_000)
              assert.deepStrictEqual(carriers(mark), [])
            } finally {
              killMarked(mark)
            }
          }),
        30_000
      )

      it.effect(
        "a grandchild holding stdout after the script exits neither hangs the run nor survives",
        () =>
          Effect.gen(function*() {
            const t = yield* local
            const mark = `RUNCMD_TEST_MARK=${crypto.randomBytes(6).toString("hex")}`
            try {
              const started = Date.now()
              const r = yield* t.run(target, sh(`export ${mark}; sleep 300 & setsid sleep 300 & echo done; exit 3`))
              assert.isBelow(Date.now() - started, 10_000)
              assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 3 })
              assert.strictEqual(decode(r.stdout), "done\n")
              assert.isTrue(
                yield* eventually(() => carriers(mark).length === 0, 5_000)
              )
            } finally {
              killMarked(mark)
            }
          }),
        30_000
      )

      it.effect(
        "leftover daemons that do not hold the pipes are ended with the execution",
        () =>
          Effect.gen(function*() {
            const t = yield* local
            const mark = `RUNCMD_TEST_MARK=${crypto.randomBytes(6).toString("hex")}`
            try {
              const r = yield* t.run(
                target,
                sh(`export ${mark}; setsid sleep 300 >/dev/null 2>&1 </dev/null & echo done`)
              )
              assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 0 })
              assert.deepStrictEqual(carriers(mark), [])
            } finally {
              killMarked(mark)
            }
          }),
        30_000
      )

      it.effect("the user's process group is reported and is not the wrapper's", () =>
        Effect.gen(function*() {
          const t = yield* local
          const r = yield* t.run(target, sh(`ps -o pgid= -p $$; ps -o pgid= -p $PPID`))
          const [own, parent] = decode(r.stdout).trim().split(/\s+/).map(Number)
          assert.notStrictEqual(own, parent)
          assert.deepStrictEqual(groupMembers(own!), [])
        }), 30_000)

      it.effect("a Native source is refused", () =>
        Effect.gen(function*() {
          const t = yield* local
          const e = yield* Effect.flip(
            t.run(target, invocation(new ScriptSource.Native({ transport: "ssm", document: {} })))
          )
          assert.strictEqual(e.reason, "Unsupported")
          assert.strictEqual(e.phase, "delivery")
        }))

      it.effect("a missing cwd is a SpawnFailed before the script starts", () =>
        Effect.gen(function*() {
          const t = yield* local
          const e = yield* Effect.flip(t.run(target, sh("echo hi", { cwd: "/nonexistent/runcmd" })))
          assert.strictEqual(e.reason, "SpawnFailed")
          assert.strictEqual(e.targetId, target.id)
        }))

      it.effect("output is live (a chunk arrives before the script ends)", () =>
        Effect.gen(function*() {
          const t = yield* local
          const flag = path.join(os.tmpdir(), `runcmd-live-${crypto.randomBytes(4).toString("hex")}`)
          const run = yield* startUntil(
            t,
            sh(`echo first; while [ ! -e "${flag}" ]; do sleep 0.05; done; echo second`),
            "first"
          )
          fs.writeFileSync(flag, "")
          yield* Effect.fromFiber(run.drained)
          assert.strictEqual(run.seen(), "first\nsecond\n")
          yield* Scope.close(run.scope, Exit.void)
          fs.rmSync(flag, { force: true })
        }), 30_000)

      it.effect("a program that is not there exits 127 with the reason on stderr, as a shell reports it", () =>
        Effect.gen(function*() {
          const t = yield* local
          const r = yield* t.run(target, invocation(ScriptSource.command("runcmd-no-such-program", "x")))
          assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 127 })
          assert.match(decode(r.stderr), /runcmd-no-such-program: .*not found/)
        }))

      it.effect(
        direct
          ? "a command without run-as is spawned directly: no wrapper process in between"
          : "the wrapper sits between the host and the program",
        () =>
          Effect.gen(function*() {
            const t = yield* local
            const r = yield* t.run(
              target,
              sh(`echo "$PPID"; tr '\\0' '\\n' < /proc/$$/environ | grep -c '^RUNCMD_TOKEN='`)
            )
            const [parent, tokens] = decode(r.stdout).trim().split("\n")
            assert.strictEqual(Number(parent) === process.pid, direct)
            assert.strictEqual(tokens, "1")
          })
      )
    }
  )
}

describe("LocalTransport layer scope", () => {
  it.live("closing the layer's scope kills the executions still alive", () =>
    Effect.gen(function*() {
      const mark = `RUNCMD_TEST_MARK=${crypto.randomBytes(6).toString("hex")}`
      const layerScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(LocalTransport.layer(), layerScope)
      const t = yield* Effect.provide(local, context)
      try {
        const run = yield* startUntil(t, sh(`export ${mark}; trap '' TERM; sleep 300 & echo ready; wait`), "ready")
        assert.isTrue(yield* eventually(() => carriers(mark).length >= 1, 10_000))
        assert.isAtLeast(LocalTransport.liveExecutions(), 1)
        yield* Scope.close(layerScope, Exit.void)
        assert.isTrue(yield* eventually(() => carriers(mark).length === 0, 10_000))
        yield* Scope.close(run.scope, Exit.void)
      } finally {
        killMarked(mark)
      }
    }), 30_000)

  it.live("the Runner reports a timeout with the kill confirmed", () =>
    Effect.gen(function*() {
      const Runner = yield* Effect.promise(() => import("@runcmd/core/Runner"))
      const RunPlan = yield* Effect.promise(() => import("@runcmd/core/RunPlan"))
      const mark = `RUNCMD_TEST_MARK=${crypto.randomBytes(6).toString("hex")}`
      try {
        const report = yield* Runner.run(
          RunPlan.make({
            targets: [target],
            job: ScriptSource.job(ScriptSource.script(`export ${mark}; trap '' TERM; sleep 300 & echo started; wait`)),
            policy: { timeout: Duration.seconds(1), killGrace: Duration.millis(300) }
          })
        ).pipe(Effect.provide(LocalTransport.layer()))
        const outcome = report.outcomes[0]!
        assert.strictEqual(outcome._tag, "TimedOut")
        assert.isTrue((outcome as { killConfirmed?: boolean }).killConfirmed)
        assert.deepStrictEqual(carriers(mark), [])
      } finally {
        killMarked(mark)
      }
    }), 30_000)

  it.live(
    "a job's files: in a private directory for the script, removed after a timeout kill",
    () =>
      Effect.gen(function*() {
        const Runner = yield* Effect.promise(() => import("@runcmd/core/Runner"))
        const RunPlan = yield* Effect.promise(() => import("@runcmd/core/RunPlan"))
        const Outcome = yield* Effect.promise(() => import("@runcmd/core/Outcome"))
        const report = yield* Runner.run(
          RunPlan.make({
            targets: [target],
            job: ScriptSource.job(
              ScriptSource.script(`printf '%s\\n' "$RUNCMD_FILES"; "$RUNCMD_FILES/run.sh"; sleep 300`),
              {
                files: [{ name: "run.sh", content: "#!/bin/sh\necho ran\n", mode: 0o700 }]
              }
            ),
            // long enough for the first execution of a layer (its watchdog is started then) on a loaded machine
            policy: { timeout: Duration.seconds(3), killGrace: Duration.millis(300) }
          })
        ).pipe(Effect.provide(LocalTransport.layer()))
        const outcome = report.outcomes[0]!
        assert.strictEqual(outcome._tag, "TimedOut")
        const [dir, ran] = Outcome.capturedText(outcome.stdout).split("\n")
        assert.strictEqual(ran, "ran")
        assert.strictEqual(path.dirname(dir!), os.tmpdir())
        assert.isFalse(fs.existsSync(dir!), "removed once the killed execution has ended")
      }),
    30_000
  )
})

void Chunk
