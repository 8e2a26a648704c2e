/**
 * The self-contained PowerShell launch: one PowerShell script text for services that run a script and nothing else
 * on Windows (AWS SSM `AWS-RunPowerShellScript`, Azure `RunPowerShellScript`): no stdin, no second channel. The
 * PowerShell twin of {@link import("./selfContained.js")}: it carries the job's files (inline, base64) into a
 * private directory named by `RUNCMD_FILES` (an ACL for the running account alone on Windows, 0700 elsewhere),
 * removed when the script ends; and the job's stdin, given to the user's program by running it in a child
 * PowerShell (the constant bootstrap of `powershellProcess`, its stdin a pipe the launch writes the twin and the
 * bytes to, its stdout and stderr the launch's own, so output still streams), the only way a PowerShell script can
 * give a program a standard input that is not the service's. The exit status is the sentinel line on stdout, also
 * when the user's program ends with `exit N` in the child.
 *
 * Secrets are never in the text: the transport sets them as environment variables before this script runs (a
 * prelude fetching them at run time, or the service's protected parameters).
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as ScriptRender from "../ScriptRender.js"
import type { ExitStatus, Invocation } from "../Transport.js"
import { FILES_ENV } from "../Transport.js"
import { checkEnvNames, DEFAULT_MAX_INLINE_BYTES, type Failure, inlineBytesOf } from "./selfContained.js"
import { checkNonce, marker, randomHex, TOKEN_VAR } from "./wrapperPosix.js"
import { BOOTSTRAP, quote, render } from "./wrapperPowershell.js"
import { makeParser } from "./wrapperProtocol.js"

/** A single-quoted base64 literal, in lines PowerShell joins (a one-line literal of megabytes is slow to parse). */
const base64Literal = (bytes: Uint8Array): string => {
  const text = Buffer.from(bytes).toString("base64")
  if (text.length <= 4096) return `'${text}'`
  const parts: Array<string> = []
  for (let i = 0; i < text.length; i += 4096) parts.push(`'${text.slice(i, i + 4096)}'`)
  return `(-join @(\r\n${parts.join(",\r\n")}\r\n))`
}

/** The private directory: created for the running account alone, then the files written into it. */
const filesSetup = (
  invocation: Invocation,
  fetched: { readonly [name: string]: string },
  failed: ReadonlyArray<string>
): Array<string> => {
  const lines = [
    `$__rc_win = [Environment]::OSVersion.Platform -eq [PlatformID]::Win32NT`,
    `$__rc_d = Join-Path ([IO.Path]::GetTempPath()) ('runcmd.' + [Guid]::NewGuid().ToString('N'))`,
    `try {`,
    `  if ($__rc_win) {`,
    `    $null = [IO.Directory]::CreateDirectory($__rc_d)`,
    // no inherited entries: the account running the script (SYSTEM under the services) alone
    `    $__rc_acl = New-Object System.Security.AccessControl.DirectorySecurity`,
    `    $__rc_acl.SetAccessRuleProtection($true, $false)`,
    `    $__rc_acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule(` +
    `[Security.Principal.WindowsIdentity]::GetCurrent().User, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow')))`,
    `    Set-Acl -LiteralPath $__rc_d -AclObject $__rc_acl`,
    `  } else {`,
    `    $null = [IO.Directory]::CreateDirectory($__rc_d, [IO.UnixFileMode]448)`,
    `  }`,
    `  $__rc_f = Join-Path $__rc_d 'files'`,
    `  $null = [IO.Directory]::CreateDirectory($__rc_f)`
  ]
  for (const file of invocation.files ?? []) {
    lines.push(
      `  $__rc_path = [IO.Path]::Combine($__rc_f, ${quote(file.name)})`,
      `  $null = [IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($__rc_path))`
    )
    const command = fetched[file.name]
    if (command !== undefined) { for (const l of command.split(/\r?\n/)) lines.push(`  ${l}`) }
    else lines.push(`  [IO.File]::WriteAllBytes($__rc_path, [Convert]::FromBase64String(${base64Literal(file.bytes)}))`)
    lines.push(
      `  if (-not $__rc_win) { [IO.File]::SetUnixFileMode($__rc_path, [IO.UnixFileMode]${file.mode & 0o777}) }`
    )
  }
  lines.push(`} catch {`, `  [Console]::Error.WriteLine($_.ToString())`)
  for (const l of failed) lines.push(`  ${l}`)
  lines.push(`}`, `[Environment]::SetEnvironmentVariable('${FILES_ENV}', $__rc_f)`)
  return lines
}

/** @internal */
export const make = (
  invocation: Invocation,
  options: ScriptRender.PowerShellSelfContainedOptions = {}
): Either.Either<ScriptRender.PowerShellSelfContainedLaunch, Failure> => {
  const nonce = options.nonce === undefined ? randomHex(12) : checkNonce(options.nonce)
  const token = randomHex(16)
  const m = marker(nonce)
  const limit = options.maxInlineBytes ?? DEFAULT_MAX_INLINE_BYTES
  const env = checkEnvNames(invocation)
  if (env !== undefined) return Either.left(env)
  if (invocation.source._tag === "Native") {
    return Either.left({
      reason: "Unsupported",
      message: "a Native source is sent by the transport itself, not through the self-contained launch"
    })
  }
  if (invocation.runAs !== undefined) {
    return Either.left({
      reason: "Unsupported",
      message: "run-as is not carried by the PowerShell launch: a Windows account needs its password to start a " +
        "process (no sudo); run the job as the service's account, or on a Linux target"
    })
  }
  const files = invocation.files ?? []
  const fetched = options.fileCommands ?? {}
  const inline = inlineBytesOf(invocation, fetched, limit)
  if (Either.isLeft(inline)) return Either.left(inline.left)
  const sentinel = `runcmd-${nonce}:exit=`
  const hasDir = files.length > 0
  const cleanup = hasDir
    ? [`if ($__rc_d) { Remove-Item -LiteralPath $__rc_d -Recurse -Force -ErrorAction SilentlyContinue }`]
    : []
  const setup = hasDir
    ? filesSetup(invocation, fetched, [
      `[Console]::Error.WriteLine('${m}:fail files')`,
      ...cleanup,
      `[Console]::Out.WriteLine('${sentinel}125')`,
      `exit 125`
    ])
    : []
  let body: Array<string> | undefined
  if (invocation.stdin !== undefined) {
    // the user's program in a child PowerShell whose stdin is ours to write: the framed twin, then the bytes
    const child = render({ ...invocation, stdin: undefined, files: undefined }, {
      nonce,
      secretsFromStdin: false,
      token,
      sentinel: false
    })
    const stage = Buffer.from(child.script, "utf8")
    const framed = Buffer.concat([Buffer.from(`${stage.length}\n`), stage])
    body = [
      `$__rc_exe = $null`,
      `foreach ($__rc_n in @('pwsh.exe', 'powershell.exe', 'pwsh')) {`,
      `  $__rc_c = Join-Path $PSHOME $__rc_n`,
      `  if (Test-Path -LiteralPath $__rc_c -PathType Leaf) { $__rc_exe = $__rc_c; break }`,
      `}`,
      `if (-not $__rc_exe) { $__rc_exe = (Get-Process -Id $PID).Path }`,
      `$__rc_si = New-Object System.Diagnostics.ProcessStartInfo`,
      `$__rc_si.FileName = $__rc_exe`,
      `$__rc_si.Arguments = '-NoLogo -NoProfile -NonInteractive -Command "${BOOTSTRAP}"'`,
      `$__rc_si.UseShellExecute = $false`,
      `$__rc_si.RedirectStandardInput = $true`,
      `$__rc_p = [Diagnostics.Process]::Start($__rc_si)`,
      `$__rc_w = $__rc_p.StandardInput.BaseStream`,
      `try {`,
      `  $__rc_b = [Convert]::FromBase64String(${base64Literal(framed)})`,
      `  $__rc_w.Write($__rc_b, 0, $__rc_b.Length)`,
      `  $__rc_b = [Convert]::FromBase64String(${base64Literal(invocation.stdin)})`,
      // a program that does not read all of its stdin ends the pipe: what it did not read is not ours to report
      `  $__rc_w.Write($__rc_b, 0, $__rc_b.Length)`,
      `} catch { } finally { try { $__rc_w.Close() } catch { } }`,
      `$__rc_p.WaitForExit()`,
      `$__rc_code = $__rc_p.ExitCode`
    ]
  }
  const twin = render(invocation, {
    nonce,
    secretsFromStdin: false,
    token,
    sentinel: true,
    setup,
    cleanup,
    body
  })
  const parseSentinel = twin.parseSentinel
  const interpret = (code: number | undefined, stdout: Uint8Array, stderr: Uint8Array) => {
    const parser = makeParser(m)
    const { bytes, messages } = parser.push(stderr)
    const rest = parser.end()
    const cleaned = rest.length === 0 ? bytes : Buffer.concat([bytes, rest])
    const text = Buffer.from(stdout)
    const at = text.lastIndexOf(sentinel)
    const out = at < 0 ? stdout : stdout.subarray(0, at)
    const failed = messages.find((message) => message.startsWith("fail"))
    const parsed = parseSentinel(text.toString("utf8"))
    const exit = Option.isSome(parsed) ? parsed.value : code
    const status: Either.Either<ExitStatus, string> = failed !== undefined
      ? Either.left(failed)
      : exit === undefined || exit < 0
      ? Either.left("the script reported no exit status and the service gave no exit code")
      : Either.right({ _tag: "Exited", code: exit })
    return { status, stdout: out, stderr: cleaned }
  }
  return Either.right({
    script: twin.script,
    nonce,
    token,
    tokenVariable: TOKEN_VAR,
    sentinel,
    inlineBytes: inline.right,
    parseSentinel,
    interpret
  })
}
