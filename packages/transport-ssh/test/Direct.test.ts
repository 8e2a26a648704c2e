import { afterEach, assert, describe, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Transport from "@runcmd/core/Transport"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as cp from "node:child_process"
import * as LoginShell from "../src/internal/loginShell.js"
import * as SshTransport from "../src/SshTransport.js"
import { encoder, invocation, sh, text } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

const enabled = Sshd.enabled()

describe("the login-shell probe", () => {
  it("answers under POSIX shells only", () => {
    const runs = (file: string) => cp.spawnSync(file, ["-c", LoginShell.PROBE], { encoding: "utf8" })
    assert.strictEqual(runs("/bin/sh").stdout, "runcmd-posix\n")
    assert.strictEqual(runs("/bin/bash").stdout, "runcmd-posix\n")
    // a login shell that is not POSIX (python3 stands in for csh/fish, which are not installed here)
    const other = runs("python3")
    assert.notStrictEqual(other.stdout, "runcmd-posix\n")
    assert.notStrictEqual(other.status, 0)
  })
})

describe.skipIf(!enabled)("SshTransport direct launch (real sshd)", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer({ maxSessions: 10 }), Sshd.layerOptions)((it) => {
    it.scoped("without run-as the program is the login shell's exec: sshd is its parent, no wrapper process", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const direct = yield* SshTransport.make()
        const wrapped = yield* SshTransport.make({ direct: false })
        const target = sshd.target()
        const parent = `ps -o comm= -p $PPID; tr '\\0' '\\n' </proc/$$/environ | grep -c '^RUNCMD_TOKEN='`
        const d = yield* direct.run(target, sh(parent))
        assert.deepStrictEqual(d.exit, Transport.exited(0), text(d.stderr))
        assert.deepStrictEqual(text(d.stdout).trim().split("\n"), ["sshd", "1"])
        const w = yield* wrapped.run(target, sh(parent))
        assert.deepStrictEqual(w.exit, Transport.exited(0), text(w.stderr))
        assert.notStrictEqual(text(w.stdout).trim().split("\n")[0], "sshd")
      }))

    it.scoped("both launches agree: argv, env, secrets, stdin, cwd, exit codes, signals, a missing program", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const direct = yield* SshTransport.make()
        const wrapped = yield* SshTransport.make({ direct: false })
        const target = sshd.target()
        const cases: ReadonlyArray<Transport.Invocation> = [
          sh(`printf '%s|' "$@" "$GREETING" "$TOKEN" "$(pwd)"; cat; echo e >&2; exit 3`, {
            args: ["a b", "it's", "$HOME", "-n"],
            env: { GREETING: "hé\n'x'" },
            secrets: { TOKEN: Redacted.make(" s3cr3t \\ $x ") },
            stdin: encoder.encode("in\n"),
            cwd: "/tmp"
          }),
          invocation(ScriptSource.command("printf", "%s\n", "x y", "--z")),
          sh("kill -TERM $$"),
          invocation(ScriptSource.command("runcmd-no-such-program"))
        ]
        for (const inv of cases) {
          const d = yield* direct.run(target, inv)
          const w = yield* wrapped.run(target, inv)
          assert.deepStrictEqual(d.exit, w.exit)
          assert.strictEqual(text(d.stdout), text(w.stdout))
          if (d.exit._tag === "Exited" && d.exit.code === 127) assert.match(text(d.stderr), /not found/)
          else assert.strictEqual(text(d.stderr), text(w.stderr))
        }
        const missing = yield* Effect.flip(direct.run(target, sh("echo ran", { cwd: "/nonexistent/runcmd" })))
        assert.strictEqual(missing.reason, "SpawnFailed")
        assert.strictEqual(missing.detail?.wrapper, "CwdNotFound")
      }))
  })
})
