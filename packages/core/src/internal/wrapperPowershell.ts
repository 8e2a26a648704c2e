/**
 * The PowerShell twin of the POSIX wrapper: UTF-8 output, an escaped env prelude, cwd, the user's script (or
 * command) with its arguments, the exit code propagated and an exit-status sentinel line on stdout.
 *
 * @internal
 */
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as ScriptRender from "../ScriptRender.js"
import type { Invocation } from "../Transport.js"
import { checkNonce, randomHex } from "./wrapperPosix.js"

/**
 * PowerShell single-quoted string: every single-quote character (ASCII and the typographic ones PowerShell also
 * accepts as delimiters) is doubled; nothing else is special.
 *
 * @internal
 */
export const quote = (s: string): string => `'${s.replace(/['\u2018\u2019\u201A\u201B]/g, (q) => q + q)}'`

const QUOTES = new Set(["'", "\u2018", "\u2019", "\u201A", "\u201B"])

/**
 * Parses one PowerShell single-quoted string starting at `from` (used by tests to check {@link quote}).
 *
 * @internal
 */
export const parseQuoted = (text: string, from: number): { readonly value: string; readonly end: number } => {
  if (!QUOTES.has(text[from]!)) throw new Error(`expected a single quote at ${from}`)
  let value = ""
  let i = from + 1
  for (;;) {
    if (i >= text.length) throw new Error("unterminated string")
    const c = text[i]!
    if (QUOTES.has(c)) {
      if (i + 1 < text.length && QUOTES.has(text[i + 1]!)) {
        value += text[i + 1]!
        i += 2
        continue
      }
      return { value, end: i + 1 }
    }
    value += c
    i++
  }
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** @internal */
export const render = (invocation: Invocation, nonce: string, secretsFromStdin: boolean) => {
  const sentinel = `runcmd-${nonce}:exit=`
  const lines: Array<string> = [
    `# runcmd wrapper (PowerShell)`,
    `$ErrorActionPreference = 'Continue'`,
    `$ProgressPreference = 'SilentlyContinue'`,
    `$__rc_utf8 = New-Object System.Text.UTF8Encoding $false`,
    `[Console]::OutputEncoding = $__rc_utf8`,
    `$OutputEncoding = $__rc_utf8`,
    `$PSNativeCommandArgumentPassing = 'Standard'`
  ]
  for (const [name, value] of Object.entries(invocation.env)) {
    if (!ENV_NAME.test(name)) throw new Error(`invalid environment variable name: ${name}`)
    if (Object.hasOwn(invocation.secrets, name)) continue
    lines.push(`[Environment]::SetEnvironmentVariable(${quote(name)}, ${quote(value)})`)
  }
  const secretNames = Object.keys(invocation.secrets).sort()
  if (secretsFromStdin) {
    for (const name of secretNames) {
      if (!ENV_NAME.test(name)) throw new Error(`invalid environment variable name: ${name}`)
      lines.push(
        `[Environment]::SetEnvironmentVariable(${
          quote(name)
        }, $__rc_utf8.GetString([Convert]::FromBase64String([Console]::In.ReadLine())))`
      )
    }
  } else if (secretNames.length > 0) {
    lines.push(`# secrets arrive as environment variables set by the transport: ${secretNames.join(", ")}`)
  }
  lines.push(`$env:RUNCMD_TOKEN = ${quote(nonce)}`)
  if (invocation.cwd !== undefined) {
    lines.push(
      `try { Set-Location -LiteralPath ${quote(invocation.cwd)} -ErrorAction Stop } catch {`,
      `  [Console]::Error.WriteLine('runcmd-${nonce}:fail cwd')`,
      `  [Console]::Out.WriteLine('${sentinel}125')`,
      `  exit 125`,
      `}`
    )
  }
  lines.push(`$__rc_args = @(${invocation.args.map(quote).join(", ")})`)
  const source = invocation.source
  let body: string
  switch (source._tag) {
    case "Command": {
      const [program, ...rest] = source.argv
      lines.push(`$__rc_argv = @(${rest.map(quote).join(", ")}) + $__rc_args`)
      body = `& ${quote(program)} @__rc_argv`
      break
    }
    case "Script": {
      lines.push(`$__rc_sb = [ScriptBlock]::Create(${quote(source.text)})`)
      body = `& $__rc_sb @__rc_args`
      break
    }
    case "Native":
      throw new Error("a Native source cannot be rendered as PowerShell")
  }
  lines.push(
    `$__rc_code = 0`,
    `$global:LASTEXITCODE = $null`,
    `try {`,
    `  ${body}`,
    `  if ($null -ne $global:LASTEXITCODE) { $__rc_code = $global:LASTEXITCODE } elseif (-not $?) { $__rc_code = 1 }`,
    `} catch {`,
    `  [Console]::Error.WriteLine($_.ToString())`,
    `  $__rc_code = 1`,
    `} finally {`,
    `  if ($__rc_code -eq 0 -and $null -ne $global:LASTEXITCODE) { $__rc_code = $global:LASTEXITCODE }`,
    `  [Console]::Out.WriteLine("${sentinel}$__rc_code")`,
    `}`,
    `exit $__rc_code`
  )
  const script = lines.join("\r\n") + "\r\n"
  const parseSentinel = (stdout: string): Option.Option<number> => {
    const at = stdout.lastIndexOf(sentinel)
    if (at < 0) return Option.none()
    const m = /^(-?\d+)/.exec(stdout.slice(at + sentinel.length))
    return m === null ? Option.none() : Option.some(Number(m[1]))
  }
  return {
    script,
    encodedCommand: Buffer.from(script, "utf16le").toString("base64"),
    sentinel,
    nonce,
    parseSentinel
  }
}

/** The secret lines for `secretsFromStdin` (base64 of UTF-8, one per line, sorted by name). @internal */
export const secretLines = (invocation: Invocation): string =>
  Object.keys(invocation.secrets).sort().map((name) =>
    Buffer.from(Redacted.value(invocation.secrets[name]!), "utf8").toString("base64") + "\n"
  ).join("")

/** @internal */
export const make = (
  invocation: Invocation,
  options?: ScriptRender.PowerShellOptions
): ScriptRender.PowerShellLaunch => {
  const secretsFromStdin = options?.secretsFromStdin ?? false
  return {
    ...render(invocation, checkNonce(options?.nonce ?? randomHex(12)), secretsFromStdin),
    secretInput: () => new TextEncoder().encode(secretLines(invocation))
  }
}
