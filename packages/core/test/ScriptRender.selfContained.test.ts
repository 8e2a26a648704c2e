import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { ExitStatus, Invocation } from "../src/Transport.js"

const invocation = (source: Invocation["source"], over: Partial<Invocation> = {}): Invocation => ({
  runId: "test",
  attempt: 1,
  source,
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  ...over
})

const sh = (text: string, over: Partial<Invocation> = {}) => invocation(ScriptSource.script(text, "sh"), over)

interface Ran {
  readonly status: Either.Either<ExitStatus, string>
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly launch: ScriptRender.SelfContainedLaunch
}

const render = (inv: Invocation, options?: ScriptRender.SelfContainedOptions) =>
  Either.getOrThrowWith(ScriptRender.selfContained(inv, options), (f) => new Error(f.message))

/**
 * Runs the script as the services do (SSM's `_script.sh`, Azure's script file): written to a file run by `sh`,
 * nothing on stdin, then interprets code and stderr.
 */
const run = (inv: Invocation, options?: ScriptRender.SelfContainedOptions, onStart?: (pid: number) => void) =>
  Effect.async<Ran>((resume) => {
    const launch = render(inv, options)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-sc-"))
    const file = path.join(dir, "_script.sh")
    fs.writeFileSync(file, launch.script)
    const child = cp.spawn("sh", [file], { stdio: ["ignore", "pipe", "pipe"] })
    onStart?.(child.pid!)
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (d: Buffer) => out.push(d))
    child.stderr.on("data", (d: Buffer) => err.push(d))
    child.on("close", (code) => {
      fs.rmSync(dir, { recursive: true, force: true })
      const r = launch.interpret(code ?? undefined, new Uint8Array(Buffer.concat(err)))
      resume(Effect.succeed({
        status: r.status,
        code,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.from(r.stderr).toString("utf8"),
        launch
      }))
    })
  }).pipe(Effect.timeout("30 seconds"), Effect.orDie)

const exited = (r: Ran) => Either.getOrThrowWith(r.status, (why) => new Error(`launch failed: ${why}`))

describe("ScriptRender.selfContained", () => {
  it.live("passes argv with quotes, newlines and non-ASCII through whole", () =>
    Effect.gen(function*() {
      const args = ["it's", "a \"b\" $HOME `x`", "line1\nline2\n", "héllo wörld ✓", "", "--", "\\n"]
      const r = yield* run(sh(`for a in "$@"; do printf '<%s>' "$a"; done`, { args }))
      assert.deepStrictEqual(exited(r), { _tag: "Exited", code: 0 })
      assert.strictEqual(r.stdout, args.map((a) => `<${a}>`).join(""))
      assert.strictEqual(r.stderr, "")
    }))

  it.live("a command, bash and python get their arguments", () =>
    Effect.gen(function*() {
      const c = yield* run(invocation(ScriptSource.command("printf", "%s|%s"), { args: ["a b", "c'd"] }))
      assert.strictEqual(c.stdout, "a b|c'd")
      const b = yield* run(
        invocation(ScriptSource.script("echo \"${BASH_VERSION:+bash} $1\"", "bash"), { args: ["x"] })
      )
      assert.strictEqual(b.stdout, "bash x\n")
      const p = yield* run(
        invocation(ScriptSource.script("import sys; print(sys.argv[1:])", "python"), { args: ["ü"] })
      )
      assert.strictEqual(p.stdout, "['ü']\n")
    }))

  it.live("propagates exit codes, and tells a signal death from an exit code", () =>
    Effect.gen(function*() {
      for (const code of [0, 1, 3, 42, 137, 255]) {
        const r = yield* run(sh(`echo out; echo err >&2; exit ${code}`))
        assert.deepStrictEqual(exited(r), { _tag: "Exited", code })
        assert.strictEqual(r.code, code)
        assert.strictEqual(r.stdout, "out\n")
        assert.strictEqual(r.stderr, "err\n", "the protocol line is removed from stderr")
      }
      const killed = yield* run(sh("kill -9 $$"))
      assert.deepStrictEqual(exited(killed), { _tag: "Signaled", signal: "SIGKILL" })
      const termed = yield* run(sh("kill -TERM $$"))
      assert.deepStrictEqual(exited(termed), { _tag: "Signaled", signal: "SIGTERM" })
    }))

  it.live("a script over 128 KiB (one exec argument's limit) runs from the private directory, sh and python", () =>
    Effect.gen(function*() {
      // 300 KiB of comments, then the work: given inline this would be an exec argument Linux refuses
      const padding = `# ${"x".repeat(1000)}\n`.repeat(300)
      const big = yield* run(
        sh(`${padding}printf '%s|' "$@"; echo "$RUNCMD_TOKEN" | wc -c; exit 3`, { args: ["a b", "c"] })
      )
      assert.deepStrictEqual(exited(big), { _tag: "Exited", code: 3 }, big.stderr)
      assert.strictEqual(big.stdout, "a b|c|33\n")
      assert.strictEqual(big.stderr, "")
      const staged = /__rc_d\/source/.test(big.launch.script)
      assert.isTrue(staged, "staged to a file")
      const py = yield* run(
        invocation(ScriptSource.script(`${padding}import sys\nprint(sys.argv[1:])\nsys.exit(5)`, "python"), {
          args: ["z"]
        })
      )
      assert.deepStrictEqual(exited(py), { _tag: "Exited", code: 5 }, py.stderr)
      assert.strictEqual(py.stdout, "['z']\n")
      // a small script stays inline (no directory made)
      assert.notMatch(render(sh("echo small")).script, /mktemp/)
    }))

  it.live("sets env, the token and cwd; a missing cwd is a launch failure", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rc-sc-"))
      try {
        const r = yield* run(sh(`printf '%s|%s|%s' "$GREETING" "$(pwd)" "$RUNCMD_TOKEN"`, {
          env: { GREETING: "hi 'there'\n✓" },
          cwd: dir
        }))
        assert.strictEqual(r.stdout, `hi 'there'\n✓|${fs.realpathSync(dir)}|${r.launch.token}`)
        const missing = yield* run(sh("echo never", { cwd: path.join(dir, "nope") }))
        assert.isTrue(Either.isLeft(missing.status))
        assert.strictEqual(Either.getLeft(missing.status).pipe((o) => o._tag === "Some" ? o.value : ""), "fail cwd")
        assert.strictEqual(missing.stdout, "")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.live("a token suffix evaluated at run time gives each machine its own token", () =>
    Effect.gen(function*() {
      const r = yield* run(sh(`printf '%s' "$RUNCMD_TOKEN"`, { env: {} }), { tokenSuffix: `-"\${RC_TEST_HOST:-none}"` })
      assert.strictEqual(r.stdout, `${r.launch.token}-none`)
    }))

  it.live("writes files into a private directory, removed at the end, and feeds stdin", () =>
    Effect.gen(function*() {
      const bytes = new Uint8Array(3000).map((_, i) => (i * 7) % 256)
      const r = yield* run(sh(
        `cd "$RUNCMD_FILES"; stat -c '%a' .; stat -c '%a' bin/tool.sh; ./bin/tool.sh; od -An -tx1 data.bin | tr -d ' \\n' | head -c 16; echo; cat; echo "$RUNCMD_FILES" >&2`,
        {
          files: [
            { name: "bin/tool.sh", bytes: new TextEncoder().encode("#!/bin/sh\necho tool ran\n"), mode: 0o700 },
            { name: "data.bin", bytes, mode: 0o600 }
          ],
          stdin: new TextEncoder().encode("from stdin\n")
        }
      ))
      assert.deepStrictEqual(exited(r), { _tag: "Exited", code: 0 })
      assert.strictEqual(r.stdout, "700\n700\ntool ran\n00070e151c232a31\nfrom stdin\n")
      const dir = r.stderr.trim()
      assert.isTrue(dir.length > 0)
      assert.isFalse(fs.existsSync(dir), "the files directory is removed when the script ends")
    }))

  it.live("files fetched by a command instead of inline", () =>
    Effect.gen(function*() {
      const r = yield* run(
        sh(`cat "$RUNCMD_FILES/big.txt"`, {
          files: [{ name: "big.txt", bytes: new Uint8Array(100_000), mode: 0o600 }]
        }),
        { fileCommands: { "big.txt": "printf 'fetched\\n'" } }
      )
      assert.strictEqual(r.stdout, "fetched\n")
    }))

  it("refuses too many inline bytes, secrets without a snippet, PowerShell and Native, naming the fix", () => {
    const big = ScriptRender.selfContained(sh("true", {
      files: [{ name: "x", bytes: new Uint8Array(ScriptRender.SELF_CONTAINED_MAX_INLINE_BYTES + 1), mode: 0o600 }]
    }))
    assert.isTrue(Either.isLeft(big) && big.left.reason === "FilesTooLarge" && /bucket/.test(big.left.message))
    const secret = ScriptRender.selfContained(sh("true", { secrets: { TOKEN: Redacted.make("s3cr3t-value") } }))
    assert.isTrue(Either.isLeft(secret) && secret.left.reason === "Secrets" && /TOKEN/.test(secret.left.message))
    assert.notInclude(JSON.stringify(secret), "s3cr3t-value")
    const ps = ScriptRender.selfContained(invocation(ScriptSource.script("Write-Output 1", "powershell")))
    assert.isTrue(Either.isLeft(ps) && ps.left.reason === "Unsupported")
  })

  it.live("secrets come from the snippet at run time and are never in the text", () =>
    Effect.gen(function*() {
      const inv = sh(`printf '%s' "$TOKEN"`, { secrets: { TOKEN: Redacted.make("s3cr3t-value") } })
      const snippet = `TOKEN=$(printf '%s' 's3cr3t' && printf '%s' '-value'); export TOKEN`
      const r = yield* run(inv, { secretsSnippet: snippet })
      assert.strictEqual(r.stdout, "s3cr3t-value")
      assert.notInclude(r.launch.script, "s3cr3t-value")
      const failing = yield* run(inv, { secretsSnippet: "false" })
      assert.isTrue(Either.isLeft(failing.status))
      assert.strictEqual(failing.stdout, "")
    }))

  it.live("the kill script ends the program and its children by token, and says so", () =>
    Effect.gen(function*() {
      const launch = render(sh("sleep 300 & sleep 300; wait"))
      const child = cp.spawn("sh", ["-c", launch.script], { stdio: ["ignore", "pipe", "pipe"] })
      const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
      yield* Effect.promise(async () => {
        // the program is up when a process carries the token
        for (let i = 0; i < 300; i++) {
          const found = cp.spawnSync("sh", [
            "-c",
            `grep -lsF RUNCMD_TOKEN=${launch.token} /proc/[0-9]*/environ | wc -l`
          ])
            .stdout.toString().trim()
          if (Number(found) >= 2) return
          await new Promise((r) => setTimeout(r, 50))
        }
        throw new Error("the program did not start")
      })
      const kill = cp.spawnSync("sh", ["-c", launch.killScript(Duration.seconds(1))], { timeout: 20_000 })
      assert.deepStrictEqual(ScriptRender.parseKillResult(kill.stdout.toString())._tag, "Some")
      assert.include(kill.stdout.toString(), "runcmd-kill:gone")
      const code = yield* Effect.promise(() => closed)
      assert.notStrictEqual(code, 0)
    }).pipe(Effect.timeout("40 seconds")))
})
