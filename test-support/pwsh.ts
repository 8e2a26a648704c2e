/**
 * Where the real PowerShell (`pwsh` 7.6, installed by `.ci/run` with
 * `dotnet tool install --global PowerShell --version 7.6.10`) is, for tests that execute PowerShell.
 *
 * Outside CI a missing `pwsh` skips those tests with one line; under `CI=true` it fails them
 * (`requirePwsh` throws), so CI can never pass without having run them.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const candidates = (): ReadonlyArray<string> => {
  const fromEnv = process.env.RUNCMD_PWSH
  const onPath = (process.env.PATH ?? "").split(path.delimiter).filter((d) => d !== "").map((d) => path.join(d, "pwsh"))
  return [
    ...(fromEnv !== undefined && fromEnv !== "" ? [fromEnv] : []),
    ...onPath,
    path.join(os.homedir(), ".dotnet", "tools", "pwsh")
  ]
}

let found: string | null | undefined

/** The absolute path of a working `pwsh`, or undefined when there is none. */
export const pwshPath = (): string | undefined => {
  if (found !== undefined) return found ?? undefined
  found = null
  for (const candidate of candidates()) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      execFileSync(candidate, ["-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "exit 0"], {
        stdio: "ignore",
        timeout: 30_000
      })
      found = candidate
      break
    } catch {
      // not this one
    }
  }
  return found ?? undefined
}

/** True under CI (`CI=true`), where a missing `pwsh` is a failure, not a skip. */
export const inCi = (): boolean => process.env.CI === "true" || process.env.CI === "1"

/**
 * Whether PowerShell tests should be skipped here: true only outside CI when `pwsh` is missing (and then it says so
 * once on stderr). Under CI a missing `pwsh` throws, failing the file that asked.
 */
export const skipWithoutPwsh = (suite: string): boolean => {
  if (pwshPath() !== undefined) return false
  if (inCi()) {
    throw new Error(
      `${suite}: pwsh not found (CI=true): install it with \`dotnet tool install --global PowerShell --version 7.6.10\``
    )
  }
  process.stderr.write(`${suite}: skipped, pwsh not found (set RUNCMD_PWSH or install PowerShell 7.6.10)\n`)
  return true
}

/** The path of `pwsh`, or a thrown error naming how to install it. */
export const requirePwsh = (): string => {
  const p = pwshPath()
  if (p === undefined) {
    throw new Error("pwsh not found: install it with `dotnet tool install --global PowerShell --version 7.6.10`")
  }
  return p
}
