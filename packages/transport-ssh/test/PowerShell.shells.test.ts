/**
 * Shell detection: one run reaches users whose login shells differ (bash, and `pwsh` as Windows OpenSSH can be
 * configured), probed once or declared on the target (`shell`), and each gets the launch its shell runs: the POSIX
 * wrapper through `/bin/sh` explicitly under `pwsh`, the PowerShell twin for PowerShell jobs, a refusal where the
 * job cannot run (a sh job for Windows PowerShell).
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import { pwshPath, skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as LocalTransport from "../../transport-local/src/LocalTransport.js"
import * as LoginShell from "../src/internal/loginShell.js"
import * as PowerShell from "../src/internal/powershell.js"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, invocation, run, stderrOf, stdoutOf } from "./harness/helpers.js"
import { pwshLoginShell } from "./harness/pwsh.js"
import * as Sshd from "./harness/Sshd.js"

const runsHere = Sshd.enabled() && Sshd.isRoot() && !skipWithoutPwsh("transport-ssh PowerShell shells")

describe.skipIf(!runsHere)("the login-shell probes, by real shells", () => {
  it("sh answers the POSIX probe; pwsh fails it and answers the PowerShell probe with its edition and platform", () => {
    const runs = (file: string, command: string) => cp.spawnSync(file, ["-c", command], { encoding: "utf8" })
    assert.strictEqual(runs("/bin/sh", LoginShell.PROBE).stdout, "runcmd-posix\n")
    assert.notStrictEqual(runs("/bin/sh", LoginShell.POWERSHELL_PROBE).status, 0)
    const pwsh = pwshPath()!
    const posixInPwsh = runs(pwsh, LoginShell.PROBE)
    assert.notStrictEqual(posixInPwsh.stdout, "runcmd-posix\n")
    assert.notStrictEqual(posixInPwsh.status, 0)
    const answer = LoginShell.parsePowerShellAnswer(runs(pwsh, LoginShell.POWERSHELL_PROBE).stdout)
    assert.deepStrictEqual(answer, { shell: "pwsh", windows: false })
    assert.deepStrictEqual(LoginShell.parsePowerShellAnswer("runcmd-ps:Desktop:Win32NT\r\n"), {
      shell: "powershell",
      windows: true
    })
  }, 180_000)

  it(
    "pwsh execs a program (the lifeline's command): the program takes pwsh's process and its stdin; a failure is said",
    () => {
      const pwsh = pwshPath()!
      const become = (argv: ReadonlyArray<string>) =>
        cp.spawnSync(pwsh, ["-NoProfile", "-c", PowerShell.execCommand(argv, "runcmd-test: no exec", "tail")], {
          input: "from stdin\n",
          encoding: "utf8",
          timeout: 120_000
        })
      // PowerShell's pipeline thread in sh's parent (pwsh, or the launcher of a `dotnet tool` pwsh): none once pwsh
      // has become sh (a child of pwsh would see it)
      const ran = become(["/bin/sh", "-c", `cat /proc/$PPID/task/*/comm | grep -c '^Pipeline Execut'; cat`, "name"])
      assert.strictEqual(ran.stdout, "0\nfrom stdin\n", ran.stderr)
      // the same check from a child of pwsh sees the thread; then a program pwsh cannot exec is said, exit 1
      const child = cp.spawnSync(pwsh, [
        "-NoProfile",
        "-c",
        `& /bin/sh -c 'cat /proc/$PPID/task/*/comm | grep -c "^Pipeline Execut"'; ` +
        PowerShell.execCommand(["/nonexistent/runcmd-program"], "runcmd-test: no exec", "tail")
      ], { encoding: "utf8", timeout: 120_000 })
      assert.match(child.stdout, /^[1-9]\d*\nruncmd-test: no exec\n$/, child.stderr)
      assert.strictEqual(child.status, 1)
    },
    180_000
  )
})

class PwshUser extends Context.Tag("PowerShell/PwshUser")<PwshUser, Sshd.TestUser>() {}

describe.skipIf(!runsHere)("one run over users with different login shells (real sshd)", () => {
  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  const layer = Layer.mergeAll(
    Sshd.layer({ maxSessions: 10 }),
    Sshd.userLayer(PwshUser, { shell: pwshLoginShell() ?? "/bin/false" })
  )

  it.layer(layer, Sshd.layerOptions)((it) => {
    it.scoped(
      "one sh job: the bash user by the direct launch, the pwsh user (probed, and declared) by the wrapper through /bin/sh",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const pwshUser = yield* PwshUser
          const targets = [
            sshd.target({ id: "bash-user" }),
            sshd.target({ id: "pwsh-probed", user: pwshUser.name }),
            sshd.target({ id: "pwsh-declared", user: pwshUser.name, overrides: { shell: "pwsh" } })
          ]
          const script = `login=$(getent passwd "$(id -un)" | cut -d: -f7)
printf 'shell=%s args=%s|%s\\n' "\${login##*/}" "$1" "$2"
test "$TOKEN" = 's3cr3t $x' && echo secret-ok
cat
echo to-stderr >&2
exit 3
`
          const job = ScriptSource.job(ScriptSource.script(script), {
            args: ["it's", "$HOME `x`"],
            secrets: { TOKEN: Redacted.make("s3cr3t $x") },
            stdin: "stdin ✓\n"
          })
          const report = yield* run(targets, job).pipe(Effect.provide(SshTransport.layer()))
          const [bash, probed, declared] = report.outcomes
          for (const [o, shell] of [[bash, "bash"], [probed, "pwsh"], [declared, "pwsh"]] as const) {
            assert.strictEqual(o!._tag, "Failed", describeReport(report))
            assert.strictEqual((o as Outcome.Failed).exitCode, 3)
            assert.strictEqual(stdoutOf(o!), `shell=${shell} args=it's|$HOME \`x\`\nsecret-ok\nstdin ✓\n`)
            assert.strictEqual(stderrOf(o!), "to-stderr\n")
          }
        }),
      240_000
    )

    it.scoped(
      "one PowerShell job: the pwsh user over SSH and local pwsh in one run; a sh job for Windows PowerShell is refused",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const pwshUser = yield* PwshUser
          const transports = Layer.merge(SshTransport.layer(), LocalTransport.layer({ powershell: pwshPath()! }))
          const job = ScriptSource.job(
            ScriptSource.script(
              "Write-Output ('edition=' + $PSVersionTable.PSEdition + ' platform=' + [Environment]::OSVersion.Platform + ' greeting=' + $env:GREETING)\nexit 5\n",
              "powershell"
            ),
            { env: { GREETING: "hé 'there'" } }
          )
          const report = yield* run([sshd.target({ id: "pwsh-ssh", user: pwshUser.name }), Target.local("local")], job)
            .pipe(Effect.provide(transports))
          for (const o of report.outcomes) {
            assert.strictEqual(o._tag, "Failed", describeReport(report))
            assert.strictEqual((o as Outcome.Failed).exitCode, 5)
            assert.strictEqual(stdoutOf(o), "edition=Core platform=Unix greeting=hé 'there'\n")
          }
          const windows = sshd.target({ id: "declared-windows-powershell", overrides: { shell: "powershell" } })
          const refused = yield* run([windows], "echo never").pipe(Effect.provide(SshTransport.layer()))
          const o = refused.outcomes[0]!
          assert.strictEqual(o._tag, "Rejected", describeReport(refused))
          const error = (o as Outcome.Rejected).error
          assert.strictEqual(error.reason, "Unsupported")
          assert.include(error.message, `interpreter "powershell"`)
          assert.strictEqual(stdoutOf(o), "")
        }),
      240_000
    )
  })
})

describe("the PowerShell launch's kill before pwsh reported its group", () => {
  it("finds the process group by the token on pwsh's command line, ends it, and says so", () => {
    const launch = PowerShell.launch(
      invocation(ScriptSource.script("Start-Sleep 60", "powershell")),
      { shell: "posix", windows: false }
    )
    const token = /runcmd-pstoken:([0-9a-f]+)/.exec(launch.commandLine)?.[1]
    assert.isDefined(token, launch.commandLine)
    // stands in for pwsh: a session leader whose command line carries the mark, with a child in its group
    const stand = cp.spawn("/bin/sh", ["-c", `sleep 60; : runcmd-pstoken:${token}`], {
      detached: true,
      stdio: "ignore"
    })
    try {
      const script = launch.killScript(undefined, Duration.millis(300))
      assert.notInclude(script, `runcmd-pstoken:${token}`, "the needle is assembled at run time")
      const out = cp.execFileSync("/bin/sh", ["-c", script], { encoding: "utf8", timeout: 60_000 })
      assert.include(out, "runcmd-kill:gone")
      // live (non-zombie) members of the group: none
      const alive = fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).filter((pid) => {
        try {
          const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
          const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
          return fields[2] === String(stand.pid) && fields[0] !== "Z"
        } catch {
          return false
        }
      })
      assert.deepStrictEqual(alive, [], "the group is gone")
    } finally {
      try {
        process.kill(-stand.pid!, "SIGKILL")
      } catch {
        // gone
      }
    }
  }, 120_000)
})
