import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as fc from "fast-check"
import * as cp from "node:child_process"
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

interface ShellRun {
  readonly pid: number
  readonly exit: Exit.Exit<ExitStatus, unknown>
  readonly stdout: Buffer
  readonly stderr: Buffer
}

/** Runs a ShellLaunch as SSH would: `<login shell> -c COMMANDLINE`, the input on stdin, stderr filtered. */
const runShell = (launch: ScriptRender.DirectShellLaunch, shell: string) =>
  Effect.async<ShellRun>((resume) => {
    const child = cp.spawn(shell, ["-c", launch.commandLine], { detached: true, stdio: ["pipe", "pipe", "pipe"] })
    const out: Array<Buffer> = []
    const err: Array<Uint8Array> = []
    child.stdout.on("data", (d: Buffer) => out.push(d))
    child.stderr.on("data", (d: Buffer) => err.push(launch.filterStderr(new Uint8Array(d))))
    child.stdin.on("error", () => {})
    child.stdin.end(launch.input())
    child.on("close", (code, signal) => {
      err.push(launch.flushStderr())
      const status: ExitStatus = signal !== null ? { _tag: "Signaled", signal } : { _tag: "Exited", code: code ?? 255 }
      void Effect.runPromiseExit(launch.interpretExit(status)).then((exit) =>
        resume(Effect.succeed({ pid: child.pid!, exit, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }))
      )
    })
  }).pipe(Effect.timeout("20 seconds"), Effect.orDie)

const shellLaunch = (inv: Invocation) =>
  Option.getOrThrowWith(ScriptRender.directShell(inv), () => new Error("expected a direct shell launch"))

describe("ScriptRender.direct", () => {
  it("is offered when the wrapper has nothing to do, and only then", () => {
    const long = "#".repeat(100 * 1024)
    assert.isTrue(Option.isSome(ScriptRender.direct(invocation(ScriptSource.command("true")))))
    assert.isTrue(Option.isSome(ScriptRender.direct(sh("echo hi"))))
    assert.isTrue(Option.isSome(ScriptRender.direct(invocation(ScriptSource.script("echo hi", "bash")))))
    assert.isTrue(Option.isNone(ScriptRender.direct(sh("echo hi", { runAs: { user: "root", method: "sudo" } }))))
    assert.isTrue(Option.isNone(ScriptRender.direct(invocation(ScriptSource.script("print(1)", "python")))))
    assert.isTrue(Option.isNone(ScriptRender.direct(sh(long))))
    assert.isTrue(Option.isNone(ScriptRender.direct(sh("echo", { env: { "BAD-NAME": "x" } }))))
    assert.isTrue(Option.isNone(ScriptRender.direct(sh("echo", { args: ["a\0b"] }))))
    assert.isTrue(Option.isNone(ScriptRender.direct(sh("echo", { secrets: { S: Redacted.make("a\0b") } }))))
  })

  it("gives the program, its arguments and its environment (secrets and token included)", () => {
    const d = Option.getOrThrow(ScriptRender.direct(invocation(ScriptSource.command("printf", "%s"), {
      args: ["x"],
      env: { A: "1" },
      secrets: { S: Redacted.make("s3cr3t") },
      cwd: "/tmp"
    })))
    assert.strictEqual(d.file, "printf")
    assert.deepStrictEqual(d.args, ["%s", "x"])
    assert.strictEqual(d.cwd, "/tmp")
    assert.deepStrictEqual(d.environment(), { A: "1", S: "s3cr3t", [d.tokenVariable]: d.token })
    assert.notInclude(JSON.stringify(d), "s3cr3t")
    const script = Option.getOrThrow(ScriptRender.direct(sh("echo \"$1\"", { args: ["a b"] })))
    assert.deepStrictEqual([script.file, ...script.args], ["/bin/sh", "-c", "echo \"$1\"", "runcmd", "a b"])
  })

  it("the dry-run preview shows the direct launch with secrets redacted", () => {
    const text = ScriptRender.preview(sh("echo hi", { env: { MODE: "fast" }, secrets: { S: Redacted.make("s3cr3t") } }))
    assert.include(text, "launch: direct")
    assert.include(text, "MODE='fast'")
    assert.include(text, "S=[REDACTED]")
    assert.notInclude(text, "s3cr3t")
  })
})

describe("ScriptRender.directShell", () => {
  it("is offered without run-as for commands and short sh/bash scripts; secrets with a newline need the wrapper", () => {
    assert.isTrue(Option.isSome(ScriptRender.directShell(invocation(ScriptSource.command("true")))))
    assert.isTrue(Option.isNone(ScriptRender.directShell(sh("x", { secrets: { S: Redacted.make("two\nlines") } }))))
    assert.isTrue(Option.isNone(ScriptRender.directShell(sh("#".repeat(20 * 1024)))))
    assert.isTrue(Option.isNone(ScriptRender.directShell(sh("x", { runAs: { user: "root", method: "sudo" } }))))
  })

  it("has a constant command line: no user data, no secrets", () => {
    const a = shellLaunch(
      sh("echo secret-looking-text", { env: { A: "value-a" }, secrets: { S: Redacted.make("s3cr3t") } })
    )
    const b = shellLaunch(sh("echo other"))
    assert.strictEqual(a.commandLine, b.commandLine)
    assert.notInclude(a.commandLine, "secret-looking-text")
    assert.notInclude(a.commandLine, "s3cr3t")
    assert.notStrictEqual(a.token, b.token)
  })

  for (const shell of ["/bin/sh", "/bin/bash"]) {
    describe(`with ${shell} as the login shell`, () => {
      it.live(
        "no process between the login shell and the program; exit codes; the token in its environment",
        () =>
          Effect.gen(function*() {
            for (const code of [0, 1, 42, 255]) {
              const withToken = shellLaunch(sh(
                `echo $$; tr '\\0' '\\n' </proc/$$/environ | grep -c "^RUNCMD_TOKEN=$RUNCMD_TOKEN\\$"; exit ${code}`
              ))
              const r = yield* runShell(withToken, shell)
              assert.deepStrictEqual(r.exit, Exit.succeed({ _tag: "Exited", code } as const), r.stderr.toString())
              const [pid, tokens] = r.stdout.toString().trim().split("\n")
              assert.strictEqual(Number(pid), r.pid, "the program replaced the login shell")
              assert.strictEqual(tokens, "1")
            }
          }),
        30_000
      )

      it.live("a signal death is a signal", () =>
        Effect.gen(function*() {
          const r = yield* runShell(shellLaunch(sh("kill -TERM $$")), shell)
          assert.deepStrictEqual(r.exit, Exit.succeed({ _tag: "Signaled", signal: "SIGTERM" } as const))
        }), 30_000)

      it.live("secrets, env and the job's stdin arrive; a multi-line script runs", () =>
        Effect.gen(function*() {
          const secret = "  s3cr3t \\n 'q' $(x) `y`  "
          const r = yield* runShell(
            shellLaunch(sh(`printf '%s|' "$S" "$MODE"\nif true; then\n  cat\nfi`, {
              env: { MODE: "it's\nfast" },
              secrets: { S: Redacted.make(secret) },
              stdin: new TextEncoder().encode("stdin\nafter")
            })),
            shell
          )
          assert.deepStrictEqual(r.exit, Exit.succeed({ _tag: "Exited", code: 0 } as const), r.stderr.toString())
          assert.strictEqual(r.stdout.toString(), `${secret}|it's\nfast|stdin\nafter`)
          assert.strictEqual(r.stderr.length, 0)
        }), 30_000)

      it.live(
        "cwd: changed into; a missing one is SpawnFailed and its marker never reaches stderr",
        () =>
          Effect.gen(function*() {
            const ok = yield* runShell(shellLaunch(sh("pwd; echo err >&2", { cwd: "/tmp" })), shell)
            assert.strictEqual(ok.stdout.toString(), "/tmp\n")
            assert.strictEqual(ok.stderr.toString(), "err\n")
            const missing = yield* runShell(shellLaunch(sh("echo ran", { cwd: "/nonexistent/runcmd" })), shell)
            assert.isTrue(Exit.isFailure(missing.exit))
            assert.include(String(Exit.isFailure(missing.exit) ? missing.exit.cause : ""), "SpawnFailed")
            assert.strictEqual(missing.stdout.length, 0)
            assert.strictEqual(missing.stderr.length, 0)
            // a program of the user's that writes something marker-like is left alone
            const alike = yield* runShell(shellLaunch(sh("printf 'runcmd-' >&2; exit 125", { cwd: "/tmp" })), shell)
            assert.deepStrictEqual(alike.exit, Exit.succeed({ _tag: "Exited", code: 125 } as const))
            assert.strictEqual(alike.stderr.toString(), "runcmd-")
          }),
        30_000
      )
    })
  }

  it.live(
    "argv, env and secret values round-trip byte for byte (property, dash and bash)",
    () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.array(fc.string({ unit: "binary", maxLength: 12 }), { maxLength: 6 }),
            fc.array(fc.string({ unit: "binary", maxLength: 12 }), { maxLength: 4 }),
            fc.array(fc.string({ unit: "binary", maxLength: 12 }), { maxLength: 3 }),
            fc.boolean(),
            async (rawArgs, rawEnv, rawSecrets, useBash) => {
              const clean = (s: string) => s.replace(/\0/g, "").replace(/[\uD800-\uDFFF]/g, "")
              const args = rawArgs.map(clean)
              const envValues = rawEnv.map(clean)
              const secretValues = rawSecrets.map(clean).map((s) => s.replace(/\n/g, ""))
              const env = Object.fromEntries(envValues.map((v, i) => [`V${i}`, v]))
              const secrets = Object.fromEntries(secretValues.map((v, i) => [`S${i}`, Redacted.make(v)]))
              const names = [...envValues.map((_, i) => `"$V${i}"`), ...secretValues.map((_, i) => `"$S${i}"`)]
              const script = `for a; do printf '%s\\0' "$a"; done; printf '\\001\\0'; ` +
                (names.length > 0 ? `printf '%s\\0' ${names.join(" ")}` : "true")
              const launch = shellLaunch(
                invocation(ScriptSource.command("/bin/sh", "-c", script, "sh"), { args, env, secrets })
              )
              const r = await Effect.runPromise(runShell(launch, useBash ? "/bin/bash" : "/bin/sh"))
              assert.deepStrictEqual(r.exit, Exit.succeed({ _tag: "Exited", code: 0 } as const), r.stderr.toString())
              const out = r.stdout.toString("utf8").split("\0").slice(0, -1)
              assert.deepStrictEqual(out, [...args, "\x01", ...envValues, ...secretValues])
            }
          ),
          { numRuns: process.env.CI ? 300 : 100 }
        )
      ),
    300_000
  )
})
