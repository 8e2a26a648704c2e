/**
 * SSH executions and PowerShell, both ways round:
 * - a PowerShell script (`interpreter: "powershell"`) runs the PowerShell twin (`ScriptRender.powershellProcess`):
 *   under a PowerShell login shell its constant bootstrap is the command line itself (sshd runs `pwsh -c <it>`, as
 *   Windows OpenSSH does with `DefaultShell`); under a POSIX login shell the login shell `exec`s `pwsh` (from the
 *   user's PATH) with the same bootstrap, so `pwsh` leads the session sshd made, as a login shell would;
 * - under a PowerShell login shell on Linux, everything else runs the POSIX wrapper through `/bin/sh` explicitly:
 *   its command line and its kill script become a PowerShell call of `/bin/sh -c`. On Windows only PowerShell runs:
 *   a `Command` takes the twin, a sh/bash/python script is refused before anything starts.
 *
 * @internal
 */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { Invocation } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import type * as Duration from "effect/Duration"
import * as Errors from "./errors.js"
import type * as LoginShell from "./loginShell.js"

/** What start.ts needs of a launch (the same shape as `Launch.Launch`, declared here to avoid an import cycle). */
interface Launch
  extends
    Pick<ScriptRender.WrapperLaunch, "commandLine" | "drive" | "pgidNow" | "killScript" | "interpretExit">,
    Partial<Pick<ScriptRender.WrapperLaunch, "token" | "pgid">>
{
  readonly lifelineKill?: ScriptRender.WrapperLaunch["killScript"] | undefined
}

/** A PowerShell single-quoted string (every quote character PowerShell knows doubled). */
const psQuote = (s: string): string => `'${s.replace(/['\u2018\u2019\u201A\u201B]/g, (q) => q + q)}'`

/** @internal */
export const isPowerShell = (invocation: Invocation): boolean =>
  invocation.source._tag === "Script" && invocation.source.interpreter === "powershell"

/** @internal */
export const isPowerShellShell = (login: LoginShell.Answer): boolean =>
  login.shell === "pwsh" || login.shell === "powershell"

/**
 * PowerShell text that runs a POSIX sh script with `/bin/sh -c` and exits with its status. The arguments are passed
 * as they are (`Standard` argument passing, PowerShell 7.3 and later: the scripts carry double quotes).
 *
 * @internal
 */
export const posixCommand = (script: string, args: ReadonlyArray<string> = []): string =>
  `$PSNativeCommandArgumentPassing = 'Standard'; & '/bin/sh' '-c' ${
    [script, ...args].map(psQuote).join(" ")
  }; exit $LASTEXITCODE`

/**
 * PowerShell text (single quotes only) that replaces the pwsh process by a program, as a POSIX shell's `exec` does:
 * libc's `execv` called through a P/Invoke method emitted at run time (no compiler: milliseconds once pwsh runs).
 * The program keeps pwsh's process id, session, environment and its stdin, stdout and stderr (the channel's pipes);
 * no pwsh is left holding them. If the call fails (no libc, a constrained language mode), it prints `failure` and
 * exits 1. `tail` (a word) ends the text as a comment, so the process table shows it while pwsh starts.
 *
 * @internal
 */
export const execCommand = (argv: ReadonlyArray<string>, failure: string, tail: string): string =>
  [
    `$a = [string[]]::new(${argv.length + 1})`,
    ...argv.map((arg, i) => `$a[${i}] = ${psQuote(arg)}`),
    `try { $b = [Reflection.Emit.AssemblyBuilder]::DefineDynamicAssembly([Reflection.AssemblyName]::new('runcmd'), 'Run')`,
    `$t = $b.DefineDynamicModule('runcmd').DefineType('RuncmdExec', 'Public,Class')`,
    `$m = $t.DefinePInvokeMethod('execv', 'libc', [Reflection.MethodAttributes]'Public,Static,PinvokeImpl', ` +
    `[Reflection.CallingConventions]::Standard, [int], [type[]]@([string], [string[]]), ` +
    `[Runtime.InteropServices.CallingConvention]::Cdecl, [Runtime.InteropServices.CharSet]::Ansi)`,
    // the int is execv's result, not an HRESULT
    `$m.SetImplementationFlags('PreserveSig')`,
    `[void]$t.CreateType()::execv($a[0], $a) } catch { }`,
    `Write-Output ${psQuote(failure)}`,
    `exit 1 # ${tail}`
  ].join("; ")

/**
 * A kill on Windows: the process tree of the reported PID ended with `taskkill /T /F`, then checked. (No token
 * sweep: Windows has no `/proc`; what left the tree is not found.)
 */
const windowsKillScript = (pid: number | undefined): string =>
  pid === undefined || !Number.isSafeInteger(pid)
    ? `Write-Output 'runcmd-kill:alive 1'`
    : `& taskkill.exe /T /F /PID ${pid} 2>&1 | Out-Null; Start-Sleep -Milliseconds 500; ` +
      `if (Get-Process -Id ${pid} -ErrorAction SilentlyContinue) { Write-Output 'runcmd-kill:alive 1' } ` +
      `else { Write-Output 'runcmd-kill:gone' }`

/** Prefixes the token in the comment on pwsh's command line. */
const CMDLINE_MARK = "runcmd-pstoken:"

/**
 * POSIX sh setting `__rc_pg` to the process group of the process whose command line carries the token (pwsh, or
 * the launcher it runs below). The needle is assembled at run time and handed to grep on its stdin: the command
 * lines of the kill script's own processes never contain it.
 */
const findGroup = (token: string): string =>
  `__rc_pg=; for __rc_f in $(printf '%s%s\\n' '${CMDLINE_MARK}' ${
    shQuote(token)
  } | grep -lsF -f - /proc/[0-9]*/cmdline 2>/dev/null); do ` +
  `__rc_q=\${__rc_f#/proc/}; __rc_q=\${__rc_q%/cmdline}; __rc_l=; read -r __rc_l 2>/dev/null < "/proc/$__rc_q/stat" || continue; ` +
  `__rc_l=\${__rc_l##*) }; set -- $__rc_l; __rc_pg=$3; break; done`

/** A POSIX sh word (single quotes). */
const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * The PowerShell twin over SSH for a login shell: the bootstrap as the command line (PowerShell), or `exec pwsh`
 * with it (POSIX, or `/bin/sh -c` first for another shell).
 *
 * @internal
 */
export const launch = (invocation: Invocation, login: LoginShell.Answer): Launch => {
  const ps = ScriptRender.powershellProcess(invocation, { transport: Errors.TRANSPORT })
  // the token as a comment on pwsh's command line: a kill before pwsh reported its group finds pwsh by it
  const bootstrap = `${ps.commandLine} # ${CMDLINE_MARK}${ps.token}`
  const args = [...ps.args.slice(0, -1), bootstrap]
  const exec = `exec pwsh ${args.map(shQuote).join(" ")}`
  const commandLine = isPowerShellShell(login)
    ? bootstrap
    : login.shell === "posix"
    ? exec
    : `/bin/sh -c ${shQuote(exec)}`
  const posixKill = (pgid: number | undefined, grace: Duration.Duration) =>
    pgid === undefined
      ? ps.killScript(undefined, grace).replace(/^__rc_pg=$/m, findGroup(ps.token))
      : ps.killScript(pgid, grace)
  const killScript = (pgid: number | undefined, grace: Duration.Duration) =>
    login.windows
      ? windowsKillScript(pgid)
      : isPowerShellShell(login)
      ? posixCommand(posixKill(pgid, grace))
      : posixKill(pgid, grace)
  return {
    commandLine,
    drive: ps.drive,
    pgidNow: ps.pgidNow,
    pgid: ps.pgid,
    token: ps.token,
    killScript,
    lifelineKill: login.windows ? undefined : posixKill,
    interpretExit: ps.interpretExit
  }
}

/**
 * The POSIX wrapper under a PowerShell login shell on Linux: its command line and its kill script through
 * `/bin/sh` explicitly.
 *
 * @internal
 */
export const throughSh = (wrapper: ScriptRender.WrapperLaunch): Launch => ({
  commandLine: posixCommand(ScriptRender.BOOTSTRAP, ["runcmd"]),
  drive: wrapper.drive,
  pgidNow: wrapper.pgidNow,
  pgid: wrapper.pgid,
  token: wrapper.token,
  killScript: (pgid, grace) => posixCommand(wrapper.killScript(pgid, grace)),
  lifelineKill: wrapper.killScript,
  interpretExit: wrapper.interpretExit
})

/** A job a Windows PowerShell login shell cannot run, refused before anything starts. @internal */
export const refusedOnWindows = (invocation: Invocation, login: LoginShell.Answer): TransportError =>
  Errors.make(
    "Unsupported",
    "delivery",
    `the target's login shell is ${login.shell === "powershell" ? "Windows PowerShell" : "PowerShell on Windows"}: a ${
      invocation.source._tag === "Script" ? `${invocation.source.interpreter} script` : "native document"
    } cannot run there; give the job interpreter "powershell" (or a command)`,
    { detail: { shell: login.shell } }
  )
