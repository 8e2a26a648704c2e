import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as fc from "fast-check"
import { parseQuoted, quote } from "../src/internal/wrapperPowershell.js"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Invocation } from "../src/Transport.js"

/** No lone surrogates (they cannot be encoded as UTF-8). */
const isWellFormed = (s: string): boolean =>
  !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)

const invocation = (over: Partial<Invocation> = {}): Invocation => ({
  runId: "ps",
  attempt: 1,
  source: ScriptSource.script("Write-Output $args[0]\nexit 3", "powershell"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  ...over
})

/** Every `[Environment]::SetEnvironmentVariable('N', 'V')` of the script, parsed with PowerShell's rules. */
const envOf = (script: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const call = "[Environment]::SetEnvironmentVariable("
  let at = script.indexOf(call)
  while (at >= 0) {
    const name = parseQuoted(script, at + call.length)
    assert.strictEqual(script.slice(name.end, name.end + 2), ", ")
    if (script[name.end + 2] === "$") {
      at = script.indexOf(call, name.end)
      continue
    }
    const value = parseQuoted(script, name.end + 2)
    assert.strictEqual(script[value.end], ")")
    out[name.value] = value.value
    at = script.indexOf(call, value.end)
  }
  return out
}

/** The elements of `$__rc_args = @(...)`. */
const argsOf = (script: string): Array<string> => {
  const start = script.indexOf("$__rc_args = @(") + "$__rc_args = @(".length
  const out: Array<string> = []
  let i = start
  while (script[i] !== ")") {
    const v = parseQuoted(script, i)
    out.push(v.value)
    i = v.end
    if (script.slice(i, i + 2) === ", ") i += 2
  }
  return out
}

const tricky = fc.constantFrom(
  "'",
  "''",
  "\u2018",
  "\u2019",
  "\u201a",
  "\u201b",
  "\"",
  "`",
  "$",
  "$(x)",
  "@",
  "\n",
  "\r\n",
  "ü",
  "🎉",
  "#",
  "-"
)
const value = fc
  .array(fc.oneof(tricky, fc.string({ unit: "binary", maxLength: 5 })), { maxLength: 10 })
  .map((p) => p.join(""))
  .filter((s) => !s.includes("\0") && isWellFormed(s))

describe("ScriptRender.powershell", () => {
  it("forces UTF-8 output, runs the script with its args, propagates the exit code, prints a sentinel", () => {
    const w = ScriptRender.powershell(invocation({ args: ["a'b"], cwd: "C:\\Users\\o'neil" }), { nonce: "n1" })
    assert.include(w.script, "[Console]::OutputEncoding = $__rc_utf8")
    assert.include(w.script, "$OutputEncoding = $__rc_utf8")
    assert.include(w.script, "Set-Location -LiteralPath 'C:\\Users\\o''neil'")
    assert.include(w.script, "& $__rc_sb @__rc_args")
    assert.include(w.script, "exit $__rc_code")
    assert.include(w.script, `[Console]::Out.WriteLine("${w.sentinel}$__rc_code")`)
    assert.deepStrictEqual(argsOf(w.script), ["a'b"])
    const sb = w.script.indexOf("[ScriptBlock]::Create(") + "[ScriptBlock]::Create(".length
    assert.strictEqual(parseQuoted(w.script, sb).value, "Write-Output $args[0]\nexit 3")
    assert.strictEqual(Buffer.from(w.encodedCommand, "base64").toString("utf16le"), w.script)
  })

  it("parses the sentinel from stdout", () => {
    const w = ScriptRender.powershell(invocation(), { nonce: "n2" })
    assert.deepStrictEqual(w.parseSentinel(`hello\r\n${w.sentinel}42\r\n`), Option.some(42))
    assert.deepStrictEqual(w.parseSentinel("no sentinel"), Option.none())
    assert.deepStrictEqual(w.parseSentinel(`${w.sentinel}-1`), Option.some(-1))
  })

  it("a Command is invoked with its argv and the args", () => {
    const w = ScriptRender.powershell(
      invocation({ source: ScriptSource.command("C:\\Program Files\\tool.exe", "--x", "it's"), args: ["y"] })
    )
    assert.include(w.script, "$__rc_argv = @('--x', 'it''s') + $__rc_args")
    assert.include(w.script, "& 'C:\\Program Files\\tool.exe' @__rc_argv")
  })

  it("secrets are never in the script text; from stdin they are base64 lines", () => {
    const inv = invocation({ secrets: { B: Redacted.make("s2\n"), A: Redacted.make("s3cr3t-ps") } })
    const w = ScriptRender.powershell(inv, { secretsFromStdin: true })
    assert.notInclude(w.script, "s3cr3t-ps")
    assert.notInclude(w.encodedCommand, Buffer.from("s3cr3t-ps", "utf16le").toString("base64").slice(0, 8))
    assert.include(w.script, "(__rc_ReadLine)")
    const lines = new TextDecoder().decode(w.secretInput()).split("\n")
    assert.deepStrictEqual(lines.slice(0, 2).map((l) => Buffer.from(l, "base64").toString("utf8")), [
      "s3cr3t-ps",
      "s2\n"
    ])
    const viaEnv = ScriptRender.powershell(inv)
    assert.notInclude(viaEnv.script, "s3cr3t-ps")
    assert.notInclude(viaEnv.script, "__rc_ReadLine")
    assert.notInclude(ScriptRender.preview(inv), "s3cr3t-ps")
  })

  it("quote doubles every single-quote character PowerShell knows", () => {
    assert.strictEqual(quote("it's"), "'it''s'")
    assert.strictEqual(quote("\u2019x\u2018"), "'\u2019\u2019x\u2018\u2018'")
    assert.strictEqual(parseQuoted(quote("a\u201b'b"), 0).value, "a\u201b'b")
  })

  it("env values and args round-trip through PowerShell quoting (property)", () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 8 }), fc.array(value, { maxLength: 8 }), (envValues, args) => {
        const env = Object.fromEntries(envValues.map((v, i) => [`V${i}`, v]))
        const w = ScriptRender.powershell(invocation({ env, args }))
        assert.deepStrictEqual(envOf(w.script), env)
        assert.deepStrictEqual(argsOf(w.script), args)
      }),
      { numRuns: process.env.CI ? 1000 : 300 }
    )
  })
})
