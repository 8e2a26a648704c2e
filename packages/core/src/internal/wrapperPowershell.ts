/**
 * The PowerShell twin of the POSIX wrapper: UTF-8 output, an escaped env prelude, secrets read from stdin (or set
 * by the transport), cwd, the user's script (or command) with its arguments, the exit code propagated and, for
 * services that cannot report it otherwise, an exit-status sentinel line on stdout.
 *
 * Written for Windows PowerShell 5.1 and PowerShell 7 alike (no `&&`/`||` chains, `??`, `?.`, ternaries,
 * `clean {}` or `-Parallel`); `ScriptRender.powershell.parse.test.ts` checks that with both parsers.
 *
 * Two ways to run it:
 * - `make` (`ScriptRender.powershell`): the whole text, for a service that takes a command line
 *   (`powershell -EncodedCommand`, WinRM);
 * - `makeProcess` (`ScriptRender.powershellProcess`): a PowerShell process the transport starts itself (local
 *   `pwsh`, or the `pwsh` login shell of an SSH user) runs a constant bootstrap that reads the twin from stdin, then
 *   the secrets and the job's stdin follow on the same pipe: nothing of the job is on a command line.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import type * as ScriptRender from "../ScriptRender.js"
import * as ScriptSource from "../ScriptSource.js"
import type { ExitStatus, Invocation } from "../Transport.js"
import { TransportError } from "../TransportError.js"
import { checkNonce, killScript, marker, randomHex, TOKEN_VAR } from "./wrapperPosix.js"
import { makeParser } from "./wrapperProtocol.js"

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

const checkName = (name: string): string => {
  if (!ENV_NAME.test(name)) throw new Error(`invalid environment variable name: ${name}`)
  return name
}

/** How the twin is rendered. @internal */
export interface RenderOptions {
  readonly nonce: string
  readonly secretsFromStdin: boolean
  /** The value of `RUNCMD_TOKEN` in everything the twin starts (default: the nonce). */
  readonly token?: string | undefined
  /** Print the exit-status sentinel on stdout (default true). */
  readonly sentinel?: boolean | undefined
  /**
   * Report the process group on stderr as a protocol line (`runcmd-<nonce>:pgid <pgid>`), for kills from a second
   * channel: read from `/proc`, else (Windows) the PID.
   */
  readonly reportPid?: boolean | undefined
  /** Lines run right after the output encoding is set, before the environment (the self-contained launch's files). */
  readonly setup?: ReadonlyArray<string> | undefined
  /** Lines run whenever the twin ends by itself (its `finally`, and before a cwd failure's exit). */
  readonly cleanup?: ReadonlyArray<string> | undefined
  /** Lines that replace the user's program (the self-contained launch's child process); they set `$__rc_code`. */
  readonly body?: ReadonlyArray<string> | undefined
}

/**
 * Reads one line from the raw standard input, byte by byte: `[Console]::In` is a buffered reader that would take
 * the job's stdin along with the line, so that the user's program could not read it any more.
 */
const READ_LINE = [
  `function __rc_ReadLine {`,
  `  $__rc_s = [Console]::OpenStandardInput()`,
  `  $__rc_m = New-Object System.IO.MemoryStream`,
  `  while ($true) {`,
  `    $__rc_c = $__rc_s.ReadByte()`,
  `    if ($__rc_c -lt 0 -or $__rc_c -eq 10) { break }`,
  `    $__rc_m.WriteByte([byte]$__rc_c)`,
  `  }`,
  `  [Text.Encoding]::ASCII.GetString($__rc_m.ToArray())`,
  `}`
]

/**
 * A script for another interpreter than PowerShell runs as `<interpreter> -c <text>` (the interpreter must be on
 * the host's PATH: Git for Windows' `sh`/`bash`, `python`).
 *
 * @internal
 */
export const forPowerShell = (source: Invocation["source"]): Invocation["source"] => {
  if (source._tag !== "Script" || source.interpreter === "powershell") return source
  const argv: [string, ...Array<string>] = source.interpreter === "python"
    ? ["python", "-c", source.text]
    : [source.interpreter, "-c", source.text, source.interpreter]
  return ScriptSource.command(...argv)
}

/** @internal */
export const render = (invocation: Invocation, options: RenderOptions) => {
  const { nonce, secretsFromStdin } = options
  const withSentinel = options.sentinel ?? true
  const sentinel = `runcmd-${nonce}:exit=`
  const lines: Array<string> = [
    `# runcmd wrapper (PowerShell)`,
    `$ErrorActionPreference = 'Continue'`,
    `$ProgressPreference = 'SilentlyContinue'`,
    `$__rc_utf8 = New-Object System.Text.UTF8Encoding $false`,
    // without a console (a WinRM shell) Windows PowerShell 5.1 refuses to set it
    `try { [Console]::OutputEncoding = $__rc_utf8 } catch { }`,
    `$OutputEncoding = $__rc_utf8`,
    `$PSNativeCommandArgumentPassing = 'Standard'`
  ]
  const cleanup = options.cleanup ?? []
  for (const line of options.setup ?? []) lines.push(line)
  if (options.reportPid === true) {
    // the process group from /proc (pwsh may run below a launcher, e.g. the dotnet tool shim, that leads the
    // group); where there is no /proc (Windows), the PID itself
    lines.push(
      `$__rc_pg = $PID`,
      `try { $__rc_st = [IO.File]::ReadAllText('/proc/' + $PID + '/stat'); $__rc_pg = $__rc_st.Substring($__rc_st.LastIndexOf(')') + 2).Split(' ')[2] } catch { }`,
      `[Console]::Error.WriteLine('${marker(nonce)}:pgid ' + $__rc_pg)`
    )
  }
  for (const [name, value] of Object.entries(invocation.env)) {
    checkName(name)
    if (Object.hasOwn(invocation.secrets, name)) continue
    lines.push(`[Environment]::SetEnvironmentVariable(${quote(name)}, ${quote(value)})`)
  }
  const secretNames = Object.keys(invocation.secrets).sort()
  if (secretsFromStdin) {
    if (secretNames.length > 0) { for (const line of READ_LINE) lines.push(line) }
    for (const name of secretNames) {
      lines.push(
        `[Environment]::SetEnvironmentVariable(${
          quote(checkName(name))
        }, $__rc_utf8.GetString([Convert]::FromBase64String((__rc_ReadLine))))`
      )
    }
  } else if (secretNames.length > 0) {
    lines.push(`# secrets arrive as environment variables set by the transport: ${secretNames.join(", ")}`)
  }
  lines.push(`$env:${TOKEN_VAR} = ${quote(options.token ?? nonce)}`)
  if (invocation.cwd !== undefined) {
    lines.push(
      `try { Set-Location -LiteralPath ${quote(invocation.cwd)} -ErrorAction Stop } catch {`,
      `  [Console]::Error.WriteLine('${marker(nonce)}:fail cwd')`
    )
    for (const line of cleanup) lines.push(`  ${line}`)
    if (withSentinel) lines.push(`  [Console]::Out.WriteLine('${sentinel}125')`)
    lines.push(`  exit 125`, `}`)
  }
  lines.push(`$__rc_args = @(${invocation.args.map(quote).join(", ")})`)
  const source = forPowerShell(invocation.source)
  let body: ReadonlyArray<string>
  if (options.body !== undefined) body = options.body
  else {
    switch (source._tag) {
      case "Command": {
        const [program, ...rest] = source.argv
        lines.push(`$__rc_argv = @(${rest.map(quote).join(", ")}) + $__rc_args`)
        body = [`& ${quote(program)} @__rc_argv`]
        break
      }
      case "Script": {
        // created inside the try: a syntax error is the script's failure, reported like any other
        body = [`$__rc_sb = [ScriptBlock]::Create(${quote(source.text)})`, `& $__rc_sb @__rc_args`]
        break
      }
      case "Native":
        throw new Error("a Native source cannot be rendered as PowerShell")
    }
  }
  lines.push(
    `$__rc_code = 0`,
    // false while the body runs: still false in the finally when the script left with `exit` (its code is then
    // the process's, and no sentinel is printed)
    `$__rc_done = $false`,
    `$global:LASTEXITCODE = $null`,
    `try {`
  )
  for (const line of body) lines.push(`  ${line}`)
  if (options.body === undefined) {
    lines.push(
      `  $__rc_ok = $?`,
      `  if ($null -ne $global:LASTEXITCODE) { $__rc_code = $global:LASTEXITCODE } elseif (-not $__rc_ok) { $__rc_code = 1 }`
    )
  }
  lines.push(
    `  $__rc_done = $true`,
    `} catch {`,
    `  [Console]::Error.WriteLine($_.ToString())`,
    `  if ($_.Exception -is [System.Management.Automation.CommandNotFoundException]) { $__rc_code = 127 } else { $__rc_code = 1 }`,
    `  $__rc_done = $true`,
    `} finally {`
  )
  for (const line of cleanup) lines.push(`  ${line}`)
  lines.push(
    withSentinel ? `  if ($__rc_done) { [Console]::Out.WriteLine("${sentinel}$__rc_code") }` : `  # no sentinel`,
    `  [Console]::Out.Flush()`,
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
    ...render(invocation, { nonce: checkNonce(options?.nonce ?? randomHex(12)), secretsFromStdin }),
    secretInput: () => new TextEncoder().encode(secretLines(invocation))
  }
}

// ---------------------------------------------------------------------------------------------------------------
// a PowerShell process started by the transport: a constant bootstrap, the twin on stdin
// ---------------------------------------------------------------------------------------------------------------

/**
 * The constant bootstrap: reads `<byte length>\n` and then exactly that many bytes from the raw stdin (never more:
 * the secrets and the job's stdin follow on the same pipe), and runs them as a script block. Exits 125 on a
 * malformed or short stage. No double quotes, so that it survives any command-line quoting (Windows OpenSSH hands
 * it to `pwsh -c`).
 *
 * @internal
 */
export const BOOTSTRAP = [
  `$__rc_in = [Console]::OpenStandardInput()`,
  `$__rc_n = 0`,
  `while ($true) { $__rc_b = $__rc_in.ReadByte(); if ($__rc_b -eq 10) { break }; ` +
  `if ($__rc_b -lt 48 -or $__rc_b -gt 57) { exit 125 }; $__rc_n = $__rc_n * 10 + $__rc_b - 48 }`,
  `$__rc_buf = New-Object byte[] $__rc_n`,
  `$__rc_o = 0`,
  `while ($__rc_o -lt $__rc_n) { $__rc_r = $__rc_in.Read($__rc_buf, $__rc_o, $__rc_n - $__rc_o); ` +
  `if ($__rc_r -le 0) { exit 125 }; $__rc_o += $__rc_r }`,
  `& ([ScriptBlock]::Create((New-Object System.Text.UTF8Encoding $false).GetString($__rc_buf)))`
].join("; ")

/** The arguments of `pwsh`/`powershell` that run {@link BOOTSTRAP}. @internal */
export const PROCESS_ARGS: ReadonlyArray<string> = ["-NoLogo", "-NoProfile", "-NonInteractive", "-Command", BOOTSTRAP]

const encoder = new TextEncoder()

/** @internal */
export const makeProcess = (
  invocation: Invocation,
  options?: ScriptRender.PowerShellProcessOptions
): ScriptRender.PowerShellProcessLaunch => {
  const nonce = checkNonce(options?.nonce ?? randomHex(12))
  const token = randomHex(16)
  const transport = options?.transport ?? "wrapper"
  const rendered = render(invocation, {
    nonce,
    secretsFromStdin: true,
    token,
    sentinel: false,
    reportPid: true
  })
  const stage = encoder.encode(rendered.script)
  const input = (): Uint8Array => {
    const parts = [
      encoder.encode(`${stage.length}\n`),
      stage,
      encoder.encode(secretLines(invocation)),
      invocation.stdin ?? new Uint8Array(0)
    ]
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
    let offset = 0
    for (const p of parts) {
      out.set(p, offset)
      offset += p.length
    }
    return out
  }
  const pgid = Deferred.unsafeMake<number>(FiberId.none)
  let cwdFailed = false
  const onMessage = (message: string) => {
    const m = /^pgid (\d+)$/.exec(message)
    if (m !== null) Deferred.unsafeDone(pgid, Exit.succeed(Number(m[1])))
    else if (message === "fail cwd") cwdFailed = true
  }
  const drive = (io: ScriptRender.WrapperIo) =>
    Effect.gen(function*() {
      // forked: a program that writes before it reads must not wait for us
      yield* Effect.forkScoped(
        Effect.zipRight(io.writeStdin(input()), io.endStdin).pipe(
          Effect.catchAllCause(() => Effect.ignore(io.endStdin))
        )
      )
      const parser = makeParser(marker(nonce))
      const clean = (chunk: Uint8Array) => {
        const { bytes, messages } = parser.push(chunk)
        for (const m of messages) onMessage(m)
        return bytes
      }
      return io.stderr.pipe(
        Stream.map(clean),
        Stream.concat(Stream.sync(parser.end)),
        Stream.filter((bytes) => bytes.length > 0)
      )
    })
  const interpretExit = (status: ExitStatus): Effect.Effect<ExitStatus, TransportError> =>
    cwdFailed && status._tag === "Exited" && status.code === 125
      ? Effect.fail(
        new TransportError({
          reason: "SpawnFailed",
          transport,
          phase: "delivery",
          description: `the working directory ${JSON.stringify(invocation.cwd)} does not exist or is not accessible`,
          detail: { wrapper: "CwdNotFound", cwd: invocation.cwd }
        })
      )
      : Effect.succeed(status)
  return {
    args: PROCESS_ARGS,
    commandLine: BOOTSTRAP,
    script: rendered.script,
    nonce,
    token,
    tokenVariable: TOKEN_VAR,
    input,
    drive,
    pgid: Deferred.await(pgid),
    pgidNow: Deferred.poll(pgid).pipe(
      Effect.flatMap(Option.match({ onNone: () => Effect.succeedNone, onSome: (e) => Effect.asSome(e) }))
    ),
    interpretExit,
    killScript: (group: number | undefined, grace: Duration.Duration) =>
      killScript({ token, nonce, pgid: group, wrapperPid: undefined, grace })
  }
}
