// The peers and tools the benchmarks need: installed with apt-get when missing and running as root (Debian),
// otherwise the benchmark is told what to install and skips that part.
import * as cp from "node:child_process"
import { which } from "./harness.js"

/** Tool (binary name) → Debian package. */
export const packages: Record<string, string> = {
  hyperfine: "hyperfine",
  "parallel-ssh": "pssh",
  sshd: "openssh-server",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  tini: "tini",
  strace: "strace",
  time: "time"
}

let updated = false

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0

/**
 * Makes sure the tools are installed. Returns the ones still missing (empty: all there); prints what to install
 * for those.
 */
export const ensureTools = (tools: ReadonlyArray<string>): Array<string> => {
  const missing = tools.filter((t) => which(t) === undefined)
  if (missing.length === 0) return []
  const pkgs = [...new Set(missing.map((t) => packages[t] ?? t))]
  if (isRoot() && which("apt-get") !== undefined) {
    console.log(`installing ${pkgs.join(" ")} (missing: ${missing.join(", ")})`)
    try {
      if (!updated) {
        cp.execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", timeout: 300_000 })
        updated = true
      }
      cp.execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...pkgs], {
        stdio: "inherit",
        timeout: 600_000,
        env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
      })
    } catch (e) {
      console.log(`apt-get failed: ${(e as Error).message}`)
    }
  }
  const still = tools.filter((t) => which(t) === undefined)
  if (still.length > 0) {
    console.log(
      `missing: ${still.join(", ")}; install with: apt-get install -y ${
        [...new Set(still.map((t) => packages[t] ?? t))].join(" ")
      }`
    )
  }
  return still
}
