/**
 * The PowerShell cases of the transport conformance suite: the same promises as the POSIX cases (exit codes, the
 * whole process tree killed and the kill told truthfully, secrets delivered but never on a command line nor in the
 * report, env, cwd, args and stdin byte for byte, UTF-8 output) for jobs with `interpreter: "powershell"`, which a
 * transport runs with PowerShell's own twin of the wrapper. Real transports only; the checks on the target's
 * process table are POSIX sh helper jobs, as in the POSIX suite (the targets need `/bin/sh`, `setsid` and `/proc`).
 *
 * @internal
 */
import { assert, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { REPLACEMENT } from "../Redactor.js"
import * as ScriptSource from "../ScriptSource.js"
import type { ConformanceOptions } from "../testing.js"
import type * as Transport from "../Transport.js"
import {
  andThenCleanup,
  type Ctx,
  expectConfirmation,
  expectGone,
  expectTag,
  killMarked,
  makeCtx,
  secretsIn,
  text
} from "./conformance.js"
import * as C from "./conformanceCases.js"
import { quote } from "./wrapperPowershell.js"

const ps = (text: string) => ScriptSource.script(text, "powershell")

/** PowerShell writes its own text with the platform's newline: compare lines, not line ends. */
const lf = (s: string) => s.replace(/\r\n/g, "\n")

/** PowerShell: write `$s` as UTF-8 bytes, then a NUL, to the raw stdout (no newline translation, no encoding). */
const WRITE_NUL_JOINED = `$__o = [Console]::OpenStandardOutput()
function Out-Nul([string]$s) { $b = (New-Object System.Text.UTF8Encoding $false).GetBytes($s + [char]0); $__o.Write($b, 0, $b.Length) }`

/** Values a PowerShell round trip must keep (the POSIX suite's, without NUL: PowerShell strings end nowhere). */
const values: ReadonlyArray<string> = [
  ...C.trickyValues,
  "`backtick` $(Get-Date) ${env:PATH} @args",
  "‘curly’ ‚quotes‛"
]

/** @internal */
export const conformancePowerShell = <E>(
  name: string,
  transportLayer: Layer.Layer<Transport.Registry, E>,
  options: ConformanceOptions
): void => {
  const testTimeout = options.testTimeout ?? 90_000
  layer(transportLayer, { excludeTestServices: true, timeout: options.layerTimeout ?? Duration.seconds(60) })(
    `transport conformance (PowerShell): ${name}`,
    (it) => {
      // the layer provides the registry (as in `conformance`)
      const withCtx = <A>(f: (ctx: Ctx) => Effect.Effect<A, unknown, Transport.Registry>) => () =>
        Effect.flatMap(makeCtx(options), f)
      const test = (title: string, f: (ctx: Ctx) => Effect.Effect<unknown, unknown, Transport.Registry>) =>
        it.effect(title, withCtx(f) as () => Effect.Effect<unknown, unknown, never>, testTimeout)

      for (const code of [0, 1, 255]) {
        test(`exit ${code} is ${code === 0 ? "Succeeded" : `Failed{exitCode: ${code}}`}`, (ctx) =>
          Effect.gen(function*() {
            const r = yield* ctx.exec({
              job: ScriptSource.job(ps(`Write-Output 'exiting ${code}'\nexit ${code}\n`)),
              behaviour: []
            })
            if (code === 0) expectTag(r.outcome, "Succeeded")
            else assert.strictEqual(expectTag(r.outcome, "Failed").exitCode, code)
            assert.strictEqual(lf(text(r.outcome.stdout)), `exiting ${code}\n`)
            assert.strictEqual(text(r.outcome.stderr), "", "no protocol line is left on stderr")
          }))
      }

      test("without `exit`: the last native command's exit code; a thrown error is Failed{1} with its message on stderr", (ctx) =>
        Effect.gen(function*() {
          const native = yield* ctx.exec({
            job: ScriptSource.job(ps(`Write-Output before\n/bin/sh -c 'exit 7'\n`)),
            behaviour: []
          })
          assert.strictEqual(expectTag(native.outcome, "Failed").exitCode, 7)
          assert.strictEqual(lf(text(native.outcome.stdout)), "before\n")
          const thrown = yield* ctx.exec({ job: ScriptSource.job(ps(`throw 'runcmd-boom'\n`)), behaviour: [] })
          assert.strictEqual(expectTag(thrown.outcome, "Failed").exitCode, 1)
          assert.include(text(thrown.outcome.stderr), "runcmd-boom")
          const missing = yield* ctx.exec({
            job: ScriptSource.job(ScriptSource.command("runcmd-conformance-no-such-program", "--version")),
            behaviour: []
          })
          assert.notStrictEqual(missing.outcome._tag, "Succeeded")
        }))

      test("UTF-8 output on both streams, byte for byte", (ctx) =>
        Effect.gen(function*() {
          const s = "ünïcødé ✓ 日本語 🚀"
          const r = yield* ctx.exec({
            job: ScriptSource.job(ps(`Write-Output ${quote(s)}\n[Console]::Error.WriteLine(${quote(`err ${s}`)})\n`)),
            behaviour: []
          })
          expectTag(r.outcome, "Succeeded")
          assert.strictEqual(lf(r.text(r.outcome.targetId, "stdout")), `${s}\n`)
          assert.strictEqual(lf(r.text(r.outcome.targetId, "stderr")), `err ${s}\n`)
        }))

      test("args round-trip byte for byte as the script's $args, and as a command's argv", (ctx) =>
        Effect.gen(function*() {
          const script = yield* ctx.exec({
            job: ScriptSource.job(ps(`${WRITE_NUL_JOINED}\nforeach ($a in $args) { Out-Nul $a }\n`), { args: values }),
            behaviour: []
          })
          expectTag(script.outcome, "Succeeded")
          const got = script.bytes(script.outcome.targetId, "stdout")
          assert.isTrue(C.sameBytes(got, C.nulJoined(values)), `$args: ${C.firstDifference(got, C.nulJoined(values))}`)
          const command = yield* ctx.exec({
            job: ScriptSource.job(ScriptSource.command("printf", "%s\\0", ...values.slice(0, 10)), {
              args: values.slice(10)
            }),
            behaviour: []
          })
          expectTag(command.outcome, "Succeeded")
          const argv = command.bytes(command.outcome.targetId, "stdout")
          assert.isTrue(C.sameBytes(argv, C.nulJoined(values)), `argv: ${C.firstDifference(argv, C.nulJoined(values))}`)
        }))

      test("environment values round-trip byte for byte", (ctx) =>
        Effect.gen(function*() {
          const env: Record<string, string> = {}
          values.forEach((v, i) => (env[`RUNCMD_CONFORMANCE_${i}`] = v))
          const reads = Object.keys(env).map((n) =>
            `$v = [Environment]::GetEnvironmentVariable(${quote(n)}); if ($null -eq $v) { $v = '' }; Out-Nul $v`
          )
          const r = yield* ctx.exec({
            job: ScriptSource.job(ps(`${WRITE_NUL_JOINED}\n${reads.join("\n")}\n`), { env }),
            behaviour: []
          })
          expectTag(r.outcome, "Succeeded")
          const got = r.bytes(r.outcome.targetId, "stdout")
          assert.isTrue(C.sameBytes(got, C.nulJoined(values)), `env: ${C.firstDifference(got, C.nulJoined(values))}`)
        }))

      test("the working directory is honoured, whatever its name; a missing one is SpawnFailed", (ctx) =>
        Effect.gen(function*() {
          const target = ctx.targets(1)[0]!
          const top = `runcmd-conformance-${C.randomHex(6)}`
          const relative = `${top}/it's a "dir" with $dollar, \`tick, ünï and spaces/-dash`
          const setup = yield* ctx.helper(
            target,
            `base=$(cd "\${TMPDIR:-/tmp}" && pwd -P) || exit 1\nmkdir -p -- "$base/$1" || exit 1\nprintf '%s' "$(cd -P -- "$base/$1" && pwd -P)"\n`,
            [relative]
          )
          assert.strictEqual(setup.outcome._tag, "Succeeded", `creating ${relative}: ${text(setup.outcome.stderr)}`)
          const cwd = setup.text(target.id, "stdout")
          yield* Effect.gen(function*() {
            const r = yield* ctx.exec({
              job: ScriptSource.job(ps(`${WRITE_NUL_JOINED}\nOut-Nul (Get-Location).ProviderPath\n`)),
              behaviour: [],
              targets: [target],
              policy: { cwd }
            })
            expectTag(r.outcome, "Succeeded")
            assert.strictEqual(r.text(target.id, "stdout"), `${cwd}\0`)
            const missing = yield* ctx.exec({
              job: ScriptSource.job(ps(`Write-Output never\n`)),
              behaviour: [],
              targets: [target],
              policy: { cwd: `${cwd}/does-not-exist` }
            })
            assert.notInclude(text(missing.outcome.stdout), "never")
            const o = missing.outcome
            assert.include(["Rejected", "TransportFailed"], o._tag, JSON.stringify(o))
            assert.strictEqual((o as { error: { reason: string } }).error.reason, "SpawnFailed")
          }).pipe(
            andThenCleanup(Effect.ignore(Effect.exit(ctx.helper(
              target,
              `base=$(cd "\${TMPDIR:-/tmp}" && pwd -P) && rm -rf -- "$base/$1"\n`,
              [top]
            ))))
          )
        }))

      test("stdin round-trips byte for byte (after the secrets, on the same pipe)", (ctx) =>
        Effect.gen(function*() {
          const input = C.concat([C.bytes("line 1\n'single' \"double\" $x `y` ünï\n"), C.allBytes, C.bytes("end")])
          const r = yield* ctx.exec({
            job: ScriptSource.job(
              ps(
                `$i = [Console]::OpenStandardInput()\n$o = [Console]::OpenStandardOutput()\n$i.CopyTo($o)\n$o.Flush()\n`
              ),
              { stdin: input, secrets: { RUNCMD_CONFORMANCE_SECRET: Redacted.make(`before-stdin-${C.randomHex(4)}`) } }
            ),
            behaviour: []
          })
          expectTag(r.outcome, "Succeeded")
          const got = r.bytes(r.outcome.targetId, "stdout")
          assert.isTrue(C.sameBytes(got, input), `stdin: ${C.firstDifference(got, input)}`)
          const native = yield* ctx.exec({
            job: ScriptSource.job(ps(`cat\n`), { stdin: "text stdin ✓\nsecond line" }),
            behaviour: []
          })
          assert.strictEqual(native.text(native.outcome.targetId, "stdout"), "text stdin ✓\nsecond line")
        }))

      test("a secret is delivered over stdin: in the environment, never on a command line, nowhere in the report", (ctx) =>
        Effect.gen(function*() {
          const secret = `RcSecret${C.randomHex(10)}Value`
          const name = "RUNCMD_CONFORMANCE_SECRET"
          const script = `$s = $env:${name}
Write-Output "secret=$s"
[Console]::Error.WriteLine("stderr:$s")
$cmd = [Environment]::GetCommandLineArgs() -join ' '
$seen = $cmd.Contains($s)
if (Test-Path -LiteralPath '/proc') {
  foreach ($f in Get-ChildItem -Path '/proc' -Directory -ErrorAction SilentlyContinue) {
    try { if ([IO.File]::ReadAllText((Join-Path $f.FullName 'cmdline')).Contains($s)) { $seen = $true } } catch { }
  }
}
Write-Output "on a command line: $seen"
[Console]::Out.Write("split=" + $s.Substring(0, 10))
[Console]::Out.Flush()
Start-Sleep -Seconds 1
[Console]::Out.WriteLine($s.Substring(10))
exit 3
`
          const r = yield* ctx.exec({
            job: ScriptSource.job(ps(script), { secrets: { [name]: Redacted.make(secret) } }),
            behaviour: []
          })
          assert.strictEqual(expectTag(r.outcome, "Failed").exitCode, 3)
          assert.deepStrictEqual(secretsIn(r, secret), [], "the secret value appears nowhere")
          const out = lf(r.text(r.outcome.targetId, "stdout"))
          assert.strictEqual(
            out,
            `secret=${REPLACEMENT}\non a command line: False\nsplit=${REPLACEMENT}\n`,
            "delivered, on no process's command line, then redacted"
          )
          assert.strictEqual(lf(r.text(r.outcome.targetId, "stderr")), `stderr:${REPLACEMENT}\n`)
        }))

      test("a cancel kills a PowerShell that started nothing (Start-Sleep): Cancelled, pwsh gone, confirmed told truthfully", (ctx) =>
        Effect.gen(function*() {
          const target = ctx.targets(1)[0]!
          const r = yield* ctx.exec({
            job: ScriptSource.job(ps(`Write-Output "pwsh $PID"\nStart-Sleep -Seconds 120\nWrite-Output never\n`)),
            behaviour: [],
            targets: [target],
            policy: { killGrace: ctx.killGrace },
            cancelWhen: (run) => run.waitForText(target.id, "stdout", "pwsh ")
          })
          const o = expectTag(r.outcome, "Cancelled")
          const pids = C.pidsAfter(r.text(target.id, "stdout"), "pwsh")
          assert.strictEqual(pids.length, 1, `pwsh printed its pid: ${r.text(target.id, "stdout")}`)
          assert.notInclude(text(o.stdout), "never")
          expectConfirmation(ctx, o.confirmed)
          if (o.confirmed) yield* expectGone(ctx, target, pids)
        }))

      test("a timeout early in pwsh's start is TimedOut, and a kill reported confirmed left nothing", (ctx) =>
        Effect.gen(function*() {
          const target = ctx.targets(1)[0]!
          const { hex, mark } = C.newMark()
          const r = yield* ctx.exec({
            job: ScriptSource.job(ps(`& /bin/sh -c ${quote(`exec sleep 120 ${mark}`)}\n`)),
            behaviour: [],
            targets: [target],
            policy: { timeout: Duration.millis(100), killGrace: ctx.killGrace }
          }).pipe(Effect.ensuring(killMarked(ctx, target, hex)))
          const o = expectTag(r.outcome, "TimedOut")
          if (o.killConfirmed) {
            const check = yield* ctx.helper(target, C.markedProcessesScript, [hex, "5", "check"])
            assert.strictEqual(check.outcome._tag, "Succeeded", `confirmed, yet left: ${text(check.outcome.stdout)}`)
          }
        }))

      for (const path of ["timeout", "cancel"] as const) {
        test(`${path} kills the whole tree (PowerShell, its child ignoring TERM, a setsid grandchild ignoring TERM and HUP): nothing left in the process table, ${path === "timeout" ? "killConfirmed" : "confirmed"} told truthfully`, (ctx) => {
          const target = ctx.targets(1)[0]!
          const { hex, mark } = C.newMark()
          let pids: ReadonlyArray<string> = []
          return Effect.gen(function*() {
            const child = C.setsidGrandchildScript(mark, true)
            const script = `Write-Output "pwsh $PID"\n& /bin/sh -c ${quote(child)}\nWrite-Output never\n`
            const r = yield* ctx.exec({
              job: ScriptSource.job(ps(script), { env: { [C.MARK_VARIABLE]: mark } }),
              behaviour: [],
              targets: [target],
              policy: path === "timeout"
                ? { timeout: ctx.timeout, killGrace: ctx.killGrace }
                : { killGrace: ctx.killGrace },
              ...(path === "cancel"
                ? {
                  // the grandchild may print before the child (it runs in the background): wait for both lines
                  cancelWhen: (run) =>
                    Effect.zipRight(
                      run.waitForText(target.id, "stdout", "grandchild "),
                      run.waitForText(target.id, "stdout", "\nchild ")
                    )
                }
                : {})
            })
            const stdout = r.text(target.id, "stdout")
            pids = [
              ...C.pidsAfter(stdout, "pwsh"),
              ...C.pidsAfter(stdout, "child"),
              ...C.pidsAfter(stdout, "grandchild")
            ]
            assert.strictEqual(pids.length, 3, `the script printed its pids: ${stdout}${r.text(target.id, "stderr")}`)
            assert.notInclude(stdout, "never")
            const confirmed = path === "timeout"
              ? expectTag(r.outcome, "TimedOut").killConfirmed
              : expectTag(r.outcome, "Cancelled").confirmed
            expectConfirmation(ctx, confirmed)
            if (ctx.declared.cancel !== "none") {
              const seconds = Math.max(1, Math.ceil((Duration.toMillis(ctx.killGrace) + ctx.margin) / 1000))
              const check = yield* ctx.helper(target, C.markedProcessesScript, [hex, String(seconds), "check"])
              if (check.outcome._tag !== "Succeeded" && (ctx.declared.cancel === "kills" || confirmed)) {
                assert.fail(
                  `confirmed: ${confirmed}, yet processes carrying the mark are still running:\n${
                    text(check.outcome.stdout)
                  }`
                )
              }
              if (ctx.declared.cancel === "kills" || confirmed) yield* expectGone(ctx, target, pids)
            }
          }).pipe(Effect.ensuring(killMarked(ctx, target, hex)))
        })
      }
    }
  )
}
