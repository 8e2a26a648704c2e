/**
 * `pwsh` as the login shell of a test user (as Windows OpenSSH can be configured: sshd then runs `pwsh -c <command>`
 * for every exec channel). The `pwsh` the tests find (`test-support/pwsh.ts`) may live where other users cannot
 * read it (`dotnet tool install --global` puts it in `/root/.dotnet/tools`): then its tool directory is linked
 * (`cp -al`: hard links, no copy of the 200 MB) into a world-readable directory under the temp dir, once per
 * machine, reused by later runs (a cache, like the installed tool itself).
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pwshPath } from "../../../../test-support/pwsh.js"

/** Whether every directory above `file` lets other users through and the file is executable by them. */
const reachableByOthers = (file: string): boolean => {
  try {
    if ((fs.statSync(file).mode & 0o001) === 0) return false
    for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      if ((fs.statSync(dir).mode & 0o001) === 0) return false
    }
    return true
  } catch {
    return false
  }
}

let cached: string | undefined

/**
 * The path of a `pwsh` any local user can run as a login shell (root only: it may link the tool directory), or
 * undefined when there is no `pwsh`.
 */
export const pwshLoginShell = (): string | undefined => {
  if (cached !== undefined) return cached
  const found = pwshPath()
  if (found === undefined) return undefined
  const real = fs.realpathSync(found)
  if (reachableByOthers(real)) return (cached = real)
  const toolDir = path.dirname(real)
  const stamp = fs.statSync(real).mtimeMs.toFixed(0)
  const shared = path.join(os.tmpdir(), `runcmd-test-pwsh-${stamp}`)
  const shell = path.join(shared, path.basename(real))
  if (!fs.existsSync(path.join(shared, ".complete"))) {
    // linked into a private name, then renamed: concurrent test files never see half a directory
    const staging = `${shared}.${process.pid}.${Date.now()}`
    cp.execFileSync("cp", ["-al", toolDir, staging], { stdio: "ignore", timeout: 120_000 })
    fs.chmodSync(staging, 0o755)
    fs.writeFileSync(path.join(staging, ".complete"), "")
    try {
      fs.renameSync(staging, shared)
    } catch {
      // another test process was first
      fs.rmSync(staging, { recursive: true, force: true })
    }
  }
  return (cached = shell)
}
