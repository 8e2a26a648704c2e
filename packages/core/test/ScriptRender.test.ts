import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { ExitStatus, Invocation } from "../src/Transport.js"
import { groupMembers, killCarriers, run, tokenCarriers } from "./fixtures/wrapper/run.js"

export const invocation = (source: Invocation["source"], over: Partial<Invocation> = {}): Invocation => ({
  runId: "test",
  attempt: 1,
  source,
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(2),
  ...over
})

const sh = (text: string, over: Partial<Invocation> = {}) => invocation(ScriptSource.script(text, "sh"), over)

const shells = [
  { name: "dash", shell: "/bin/sh" },
  { name: "bash", shell: "/bin/bash" }
] as const

const exitOf = (r: { readonly result: Either.Either<ExitStatus, unknown> }): ExitStatus =>
  Either.getOrThrowWith(r.result, (e) => new Error(`expected an exit status, got ${String(e)}`))

describe("ScriptRender.wrapper: the launch", () => {
  it("has a constant bootstrap with no user data", () => {
    const a = ScriptRender.wrapper(sh("echo secret-looking-text", { env: { A: "value-a" } }))
    const b = ScriptRender.wrapper(sh("echo other"))
    assert.deepStrictEqual(a.argv, b.argv)
    assert.strictEqual(a.argv[0], "/bin/sh")
    assert.strictEqual(a.argv[1], "-c")
    assert.strictEqual(a.argv[3], "runcmd")
    assert.notInclude(a.argv.join(" "), "secret-looking-text")
    assert.notInclude(a.commandLine, "value-a")
    assert.notStrictEqual(a.nonce, b.nonce)
    assert.notStrictEqual(a.token, b.token)
  })

  it("parses kill script results", () => {
    assert.deepStrictEqual(ScriptRender.parseKillResult("x\nruncmd-kill:gone\n"), Option.some({ gone: true, alive: 0 }))
    assert.deepStrictEqual(
      ScriptRender.parseKillResult("runcmd-kill:alive 3\n"),
      Option.some({ gone: false, alive: 3 })
    )
    assert.isTrue(Option.isNone(ScriptRender.parseKillResult("nothing")))
  })
})

for (const { name, shell } of shells) {
  describe(`ScriptRender.wrapper with ${name} as the bootstrap shell`, () => {
    it.live("exit codes 0, 1, 42, 255 and clean stderr", () =>
      Effect.gen(function*() {
        for (const code of [0, 1, 42, 255]) {
          const r = yield* run(ScriptRender.wrapper(sh(`echo out; echo err >&2; exit ${code}`)), { shell })
          assert.deepStrictEqual(exitOf(r), { _tag: "Exited", code }, r.stderr.toString())
          assert.strictEqual(r.stdout.toString(), "out\n")
          assert.strictEqual(r.stderr.toString(), "err\n")
        }
      }), 60_000)

    it.live("exit 137 is an exit, not a signal", () =>
      Effect.gen(function*() {
        const r = yield* run(ScriptRender.wrapper(sh("exit 137")), { shell })
        assert.deepStrictEqual(exitOf(r), { _tag: "Exited", code: 137 })
      }), 30_000)

    it.live("signal deaths: SIGKILL, SIGTERM, SIGSEGV", () =>
      Effect.gen(function*() {
        for (const [sig, expected] of [["KILL", "SIGKILL"], ["TERM", "SIGTERM"], ["SEGV", "SIGSEGV"]] as const) {
          const r = yield* run(ScriptRender.wrapper(sh(`echo before; kill -${sig} $$; echo after`)), { shell })
          assert.deepStrictEqual(exitOf(r), { _tag: "Signaled", signal: expected }, r.stderr.toString())
          assert.strictEqual(r.stdout.toString(), "before\n")
        }
      }), 60_000)

    it.live("a Command's argv is quoted by the wrapper", () =>
      Effect.gen(function*() {
        const args = ["a b", "it's", "$(echo no)", "`no`", "\\n", "-n", "--", "", "ü ✓ 🎉", "line1\nline2\n"]
        const r = yield* run(
          ScriptRender.wrapper(
            invocation(ScriptSource.command("printf", "%s\\0", ...args.slice(0, 3)), { args: args.slice(3) })
          ),
          { shell }
        )
        assert.deepStrictEqual(exitOf(r), { _tag: "Exited", code: 0 }, r.stderr.toString())
        assert.deepStrictEqual(r.stdout.toString().split("\0").slice(0, -1), args)
      }), 30_000)

    it.live("a Script gets args as positional parameters; env, cwd and stdin reach it", () =>
      Effect.gen(function*() {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-cwd-"))
        try {
          const stdin = new Uint8Array(256).map((_, i) => i)
          const r = yield* run(
            ScriptRender.wrapper(
              sh(`printf '%s|' "$#" "$1" "$2" "$FOO" "$(pwd)"; cat > "$PWD/stdin.bin"`, {
                args: ["one two", "-x"],
                env: { FOO: "it's $HOME" },
                cwd: dir,
                stdin
              })
            ),
            { shell }
          )
          assert.deepStrictEqual(exitOf(r), { _tag: "Exited", code: 0 }, r.stderr.toString())
          assert.strictEqual(r.stdout.toString(), `2|one two|-x|it's $HOME|${dir}|`)
          assert.deepStrictEqual(new Uint8Array(fs.readFileSync(path.join(dir, "stdin.bin"))), stdin)
        } finally {
          fs.rmSync(dir, { recursive: true, force: true })
        }
      }), 30_000)

    it.live("bash and python interpreters", () =>
      Effect.gen(function*() {
        const b = yield* run(
          ScriptRender.wrapper(
            invocation(ScriptSource.script(`echo "\${BASH_VERSION:+bash} $1"`, "bash"), { args: ["x y"] })
          ),
          { shell }
        )
        assert.strictEqual(b.stdout.toString(), "bash x y\n", b.stderr.toString())
        const hasPython = cp.spawnSync("sh", ["-c", "command -v python3 || command -v python"]).status === 0
        if (hasPython) {
          const p = yield* run(
            ScriptRender.wrapper(
              invocation(ScriptSource.script("import sys\nprint(repr(sys.argv[1:]))\nsys.exit(3)", "python"), {
                args: ["a", "b c"]
              })
            ),
            { shell }
          )
          assert.strictEqual(p.stdout.toString(), "['a', 'b c']\n", p.stderr.toString())
          assert.deepStrictEqual(exitOf(p), { _tag: "Exited", code: 3 })
        }
      }), 30_000)

    it.live("a missing cwd is a clear reserved failure", () =>
      Effect.gen(function*() {
        const r = yield* run(ScriptRender.wrapper(sh("echo hi", { cwd: "/nonexistent/runcmd-dir" })), { shell })
        assert.isTrue(Either.isLeft(r.result))
        const e = Either.getLeft(r.result).pipe(Option.getOrThrow)
        assert.strictEqual(e.reason, "SpawnFailed")
        assert.strictEqual(e.phase, "delivery")
        assert.include(e.description, "/nonexistent/runcmd-dir")
        assert.strictEqual(r.stdout.length, 0)
      }), 30_000)

    it.live("secrets arrive as env over stdin, never in argv, cmdline or wrapper text", () =>
      Effect.gen(function*() {
        const secret = "s3cr3t 'quoted' $(rm -rf /) \\ \n\nline ü\n\n"
        const inv = sh(`printf '%s' "$TOKEN_A"; printf '\\0'; tr '\\0' ' ' < /proc/$$/cmdline; printf '\\0'; cat`, {
          secrets: { TOKEN_A: Redacted.make(secret) },
          stdin: new TextEncoder().encode("stdin after secrets")
        })
        const launch = ScriptRender.wrapper(inv)
        const r = yield* run(launch, { shell })
        assert.deepStrictEqual(exitOf(r), { _tag: "Exited", code: 0 }, r.stderr.toString())
        const [value, cmdline, rest] = r.stdout.toString().split("\0")
        assert.strictEqual(value, secret)
        assert.notInclude(cmdline!, "s3cr3t")
        assert.strictEqual(rest, "stdin after secrets")
        assert.notInclude(launch.argv.join(" "), "s3cr3t")
        assert.notInclude(ScriptRender.preview(inv), "s3cr3t")
        assert.include(ScriptRender.preview(inv), "TOKEN_A=[REDACTED]")
      }), 30_000)

    it.live("reports the pgid of the user's own session", () =>
      Effect.gen(function*() {
        const launch = ScriptRender.wrapper(sh(`ps -o pgid= -o sid= -p $$ | tr -s ' ' ' '; echo " $$"`))
        const r = yield* run(launch, { shell })
        const pgid = yield* launch.pgid
        const [pg, sid, pid] = r.stdout.toString().trim().split(/\s+/).map(Number)
        assert.strictEqual(pg, pgid)
        assert.strictEqual(sid, pgid)
        assert.strictEqual(pid, pgid)
        assert.notStrictEqual(pgid, r.pid)
      }), 30_000)
  })
}

describe("ScriptRender.wrapper: termination", () => {
  const tree = `
trap '' TERM
(trap '' TERM; sleep 300) &
setsid sh -c 'sleep 300' &
sh -c 'sleep 300' &
echo started
wait
`

  for (const { name, shell } of shells) {
    it.live(
      `TERM to the wrapper (${name}) kills the tree, TERM-ignoring and setsid'd grandchildren included`,
      () =>
        Effect.gen(function*() {
          const launch = ScriptRender.wrapper(sh(tree, { killGrace: Duration.millis(500) }))
          try {
            const r = yield* run(launch, {
              shell,
              onStart: (child) =>
                Effect.gen(function*() {
                  yield* launch.pgid
                  // wait until the tree is up
                  for (let i = 0; i < 100 && tokenCarriers(launch.token).length < 5; i++) yield* Effect.sleep(50)
                  child.kill("SIGTERM")
                })
            })
            assert.isBelow(r.ms, 15_000)
            assert.deepStrictEqual(tokenCarriers(launch.token), [])
            const pgid = yield* launch.pgid
            assert.deepStrictEqual(groupMembers(pgid), [])
            // the user's shell ignored TERM: it died of the KILL
            assert.deepStrictEqual(exitOf(r), { _tag: "Signaled", signal: "SIGKILL" }, r.stderr.toString())
          } finally {
            killCarriers(launch.token)
          }
        }),
      30_000
    )
  }

  it.live("killScript kills the group and every token carrier and says so truthfully", () =>
    Effect.gen(function*() {
      const launch = ScriptRender.wrapper(sh(tree))
      try {
        let killOutput = ""
        const r = yield* run(launch, {
          onStart: () =>
            Effect.gen(function*() {
              const pgid = yield* launch.pgid
              for (let i = 0; i < 100 && tokenCarriers(launch.token).length < 5; i++) yield* Effect.sleep(50)
              assert.isAtLeast(tokenCarriers(launch.token).length, 5)
              const out = cp.spawnSync("/bin/sh", ["-c", launch.killScript(pgid, Duration.millis(300))], {
                timeout: 20_000
              })
              killOutput = out.stdout.toString()
            })
        })
        assert.deepStrictEqual(ScriptRender.parseKillResult(killOutput), Option.some({ gone: true, alive: 0 }))
        assert.deepStrictEqual(tokenCarriers(launch.token), [])
        assert.isTrue(Either.isRight(r.result))
      } finally {
        killCarriers(launch.token)
      }
    }), 30_000)

  it.live("killScript reports survivors it cannot kill", () =>
    Effect.gen(function*() {
      // a group member the script's signals never reach (its `kill` is shadowed): it must say "alive 1"
      const child = cp.spawn("sleep", ["30"], { detached: true, stdio: "ignore" })
      try {
        const text = ScriptRender.wrapper(sh("true")).killScript(child.pid!, Duration.millis(100))
        const out = cp.spawnSync("/bin/sh", ["-c", `kill() { :; }\n${text}`], { timeout: 20_000 })
        assert.deepStrictEqual(
          ScriptRender.parseKillResult(out.stdout.toString()),
          Option.some({ gone: false, alive: 1 })
        )
      } finally {
        child.kill("SIGKILL")
      }
    }), 30_000)
})
