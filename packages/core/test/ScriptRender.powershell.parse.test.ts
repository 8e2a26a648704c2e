/**
 * Syntax-checked for Windows PowerShell 5.1, not executed: no Windows host runs in these tests, so every PowerShell
 * text runcmd generates (the twin for `-EncodedCommand`, decoded from its UTF-16LE payload; the twin and the
 * bootstrap of `powershellProcess`) is parsed by an independent grammar (tree-sitter-powershell, through
 * web-tree-sitter's WASM) with no error and the expected statements present, and by PowerShell's own parser (the
 * real `pwsh`), which must find no syntax that only PowerShell 7 has: `&&`/`||` pipeline chains, `??`, `??=`, `?.`,
 * `?[]`, the ternary `? :`, `clean {}` blocks, `ForEach-Object -Parallel`. (The texts are executed by pwsh 7 in the
 * conformance suites.) A control sample with each of those constructs proves the check sees them.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Redacted from "effect/Redacted"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { Language, type Node, Parser } from "web-tree-sitter"
import { pwshPath, skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Invocation } from "../src/Transport.js"

const invocation = (over: Partial<Invocation> = {}): Invocation => ({
  runId: "parse",
  attempt: 1,
  source: ScriptSource.script("Write-Output $args[0]\nexit 3", "powershell"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  ...over
})

const tricky = ["it's", "‘curly’", "$(Get-Date) `n @x", "line1\nline2", "ünï ✓", "", "-n", "--"]
const invocations: ReadonlyArray<readonly [string, Invocation]> = [
  ["a script", invocation()],
  [
    "a script with env, args, cwd and secrets",
    invocation({
      args: tricky,
      env: Object.fromEntries(tricky.map((v, i) => [`V${i}`, v])),
      cwd: "C:\\Users\\o'neil\\$x",
      secrets: { TOKEN: Redacted.make("s3cr3t"), OTHER: Redacted.make("x") }
    })
  ],
  ["a command", invocation({ source: ScriptSource.command("C:\\Program Files\\tool.exe", "--x", "it's"), args: ["y"] })]
]

/** Every text, by name: what `-EncodedCommand` carries (decoded), and what the process launch's bootstrap reads. */
const texts = (): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [name, inv] of invocations) {
    for (const secretsFromStdin of [false, true]) {
      const launch = ScriptRender.powershell(inv, { secretsFromStdin, nonce: "parse" })
      out[`powershell: ${name}${secretsFromStdin ? " (secrets from stdin)" : ""} (-EncodedCommand payload)`] = Buffer
        .from(launch.encodedCommand, "base64").toString("utf16le")
    }
    out[`powershellProcess: ${name}`] = ScriptRender.powershellProcess(inv, { nonce: "parse" }).script
  }
  // the self-contained launch with files (inline and fetched), a big one in a joined literal, and stdin (the child)
  const selfContained = ScriptRender.powershellSelfContained(
    invocation({
      cwd: "C:\\Users\\o'neil",
      stdin: new Uint8Array(10_000).fill(7),
      files: [
        { name: "dir/it's.txt", bytes: new TextEncoder().encode("x"), mode: 0o644 },
        { name: "big.bin", bytes: new Uint8Array(20_000).fill(1), mode: 0o755 },
        { name: "fetched.bin", bytes: new Uint8Array(1), mode: 0o600 }
      ]
    }),
    {
      nonce: "parse",
      fileCommands: { "fetched.bin": "Invoke-WebRequest -UseBasicParsing -Uri 'https://h/x?a=1' -OutFile $__rc_path" }
    }
  )
  if (selfContained._tag === "Left") throw new Error(selfContained.left.message)
  out["powershellSelfContained: files and stdin"] = selfContained.right.script
  out["powershellProcess: the bootstrap"] = ScriptRender.POWERSHELL_BOOTSTRAP
  return out
}

const descendants = (node: Node, type: string): Array<Node> => node.descendantsOfType(type).filter((n) => n !== null)

describe("PowerShell texts, syntax-checked for Windows PowerShell 5.1, not executed: tree-sitter-powershell", () => {
  let parser: Parser
  beforeAll(async () => {
    await Parser.init()
    const wasm = createRequire(import.meta.url).resolve("tree-sitter-powershell/tree-sitter-powershell.wasm")
    parser = new Parser()
    parser.setLanguage(await Language.load(wasm))
  })

  it("the grammar reports errors (control: a missing brace, an unterminated string)", () => {
    assert.isTrue(parser.parse("try { Write-Output 1\n")!.rootNode.hasError)
    assert.isTrue(parser.parse("Write-Output 'open\n")!.rootNode.hasError)
    assert.isFalse(parser.parse("try { Write-Output 1 } finally { exit 0 }\n")!.rootNode.hasError)
  })

  for (const [name, text] of Object.entries(texts())) {
    it(`${name}: parses without error, with its statements`, () => {
      const root = parser.parse(text)!.rootNode
      assert.isFalse(root.hasError, `${name} has a syntax error:\n${root.toString().slice(0, 2000)}`)
      if (name.endsWith("the bootstrap")) {
        assert.isAtLeast(descendants(root, "while_statement").length, 2, "reads the frame in two loops")
        assert.isAtLeast(descendants(root, "flow_control_statement").length, 2, "exits 125 on a bad frame")
        return
      }
      assert.strictEqual(descendants(root, "try_statement").length >= 1, true, "the body runs in a try")
      assert.strictEqual(descendants(root, "catch_clause").length >= 1, true)
      // the self-contained launch with stdin also closes the child's stdin in a finally
      assert.strictEqual(descendants(root, "finally_clause").length, name.startsWith("powershellSelfContained") ? 2 : 1)
      const exits = descendants(root, "flow_control_statement").map((n) => n.text)
      assert.include(exits, "exit $__rc_code", "the exit code is propagated")
      const readsSecrets = name.includes("and secrets") &&
        (name.includes("secrets from stdin") || name.startsWith("powershellProcess"))
      if (readsSecrets) {
        assert.strictEqual(descendants(root, "function_statement").length, 1, "the unbuffered line reader")
      }
    })
  }
})

/** Run by pwsh: parses each file with PowerShell's parser; prints one JSON line per file. */
const CHECKER = `
$ErrorActionPreference = 'Stop'
$seven = @('AndAnd', 'OrOr', 'QuestionQuestion', 'QuestionQuestionEquals', 'QuestionDot', 'QuestionLBracket')
foreach ($file in $args) {
  $tokens = $null
  $errors = $null
  $ast = [System.Management.Automation.Language.Parser]::ParseFile($file, [ref]$tokens, [ref]$errors)
  $found = New-Object System.Collections.Generic.List[string]
  foreach ($t in $tokens) { if ($seven -contains $t.Kind.ToString()) { $found.Add($t.Kind.ToString()) } }
  $nodes = $ast.FindAll({ param($n) $true }, $true)
  foreach ($n in $nodes) {
    $type = $n.GetType().Name
    if ($type -eq 'TernaryExpressionAst' -or $type -eq 'PipelineChainAst') { $found.Add($type) }
    if ($type -eq 'ScriptBlockAst' -and $null -ne $n.CleanBlock) { $found.Add('CleanBlock') }
    if ($type -eq 'CommandAst') {
      $name = $n.GetCommandName()
      if ($name -eq 'ForEach-Object' -or $name -eq 'foreach' -or $name -eq '%') {
        foreach ($e in $n.CommandElements) {
          if ($e.GetType().Name -eq 'CommandParameterAst' -and 'Parallel'.StartsWith($e.ParameterName, 'OrdinalIgnoreCase')) { $found.Add('ForEachObjectParallel') }
        }
      }
    }
  }
  $report = @{ file = [IO.Path]::GetFileName($file); errors = @($errors | ForEach-Object { $_.Message }); seven = @($found) }
  [Console]::Out.WriteLine(($report | ConvertTo-Json -Compress))
}
`

interface Checked {
  readonly file: string
  readonly errors: ReadonlyArray<string>
  readonly seven: ReadonlyArray<string>
}

/** Writes the texts to files (UTF-8 with BOM, as 5.1 reads non-ASCII scripts) and checks them with pwsh's parser. */
const checkWithPwsh = (named: Record<string, string>): Map<string, Checked> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-ps-parse-"))
  try {
    const files = Object.keys(named).map((_, i) => path.join(dir, `t${i}.ps1`))
    Object.values(named).forEach((text, i) => fs.writeFileSync(files[i]!, "\uFEFF" + text, "utf8"))
    const checker = path.join(dir, "check.ps1")
    fs.writeFileSync(checker, CHECKER, "utf8")
    const out = cp.execFileSync(pwshPath()!, ["-NoLogo", "-NoProfile", "-NonInteractive", "-File", checker, ...files], {
      encoding: "utf8",
      timeout: 120_000
    })
    const byFile = new Map(out.trim().split("\n").map((l) => JSON.parse(l) as Checked).map((c) => [c.file, c]))
    return new Map(Object.keys(named).map((name, i) => [name, byFile.get(`t${i}.ps1`)!]))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

describe.skipIf(skipWithoutPwsh("PowerShell 5.1 syntax check"))(
  "PowerShell texts, syntax-checked for Windows PowerShell 5.1, not executed: pwsh's own parser finds no PowerShell-7-only syntax",
  () => {
    it("the control sample: every PowerShell-7-only construct is found", () => {
      const control = {
        chain: "Write-Output a && Write-Output b\nWrite-Output c || Write-Output d\n",
        coalesce: "$x = $null ?? 1\n$y ??= 2\n",
        // `$a?.b` would be a variable named `a?`: the braces make it null-conditional
        conditional: "$a = $null\n${a}?.Length\n${a}?[0]\n",
        ternary: "$z = $true ? 1 : 2\n",
        clean: "function f { process { 1 } clean { 2 } }\n",
        parallel: "1..2 | ForEach-Object -Parallel { $_ }\n"
      }
      const checked = checkWithPwsh(control)
      assert.sameMembers([...checked.get("chain")!.seven], ["AndAnd", "OrOr", "PipelineChainAst", "PipelineChainAst"])
      assert.includeMembers([...checked.get("coalesce")!.seven], ["QuestionQuestion", "QuestionQuestionEquals"])
      assert.includeMembers([...checked.get("conditional")!.seven], ["QuestionDot", "QuestionLBracket"])
      assert.include([...checked.get("ternary")!.seven], "TernaryExpressionAst")
      assert.include([...checked.get("clean")!.seven], "CleanBlock")
      assert.include([...checked.get("parallel")!.seven], "ForEachObjectParallel")
      for (const c of checked.values()) assert.deepStrictEqual(c.errors, [])
    }, 180_000)

    it("every generated text parses without error and uses none of them", () => {
      const named = texts()
      const checked = checkWithPwsh(named)
      assert.strictEqual(checked.size, Object.keys(named).length)
      for (const [name, c] of checked) {
        assert.isDefined(c, name)
        assert.deepStrictEqual(c.errors, [], `${name}: parse errors`)
        assert.deepStrictEqual(c.seven, [], `${name}: PowerShell-7-only syntax`)
      }
    }, 180_000)
  }
)
