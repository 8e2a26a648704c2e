// A real OpenSSH sshd on loopback for the SSH benchmarks: the transport-ssh test harness
// (packages/transport-ssh/test/harness/Sshd.ts: keys and config in a temp dir, a free port, one sshd per 16 addresses,
// tini, a dedicated user with a clean shell when root, full teardown), plus an OpenSSH client config for the peers.
import * as fs from "node:fs"
import * as path from "node:path"
import { ensureTools } from "./setup.js"

type Harness = typeof import("../../packages/transport-ssh/test/harness/Sshd.js")
export type Sshd = Awaited<ReturnType<Harness["start"]>>

export interface Server {
  readonly sshd: Sshd
  /** `ssh -F <this>` reaches every address of the server as its user, key auth, strict host keys, batch mode. */
  readonly sshConfig: string
  readonly stop: () => Promise<void>
}

/** Tools every SSH benchmark needs; false (after printing what to install) when they cannot be had. */
export const sshAvailable = (extra: ReadonlyArray<string> = []): boolean =>
  ensureTools(["sshd", "ssh", "ssh-keygen", "tini", ...extra]).length === 0

export const startServer = async (
  options: { readonly addresses?: number; readonly maxSessions?: number } = {}
): Promise<Server> => {
  const harness: Harness = await import("../../packages/transport-ssh/test/harness/Sshd.js")
  const sshd = await harness.start({ addresses: options.addresses ?? 1, maxSessions: options.maxSessions ?? 10 })
  const sshConfig = path.join(sshd.dir, "bench_ssh_config")
  fs.writeFileSync(
    sshConfig,
    [
      "Host *",
      `  User ${sshd.user}`,
      `  Port ${sshd.port}`,
      `  IdentityFile ${sshd.clientKeyPath}`,
      "  IdentitiesOnly yes",
      `  UserKnownHostsFile ${sshd.knownHostsPath}`,
      "  GlobalKnownHostsFile /dev/null",
      "  StrictHostKeyChecking yes",
      "  BatchMode yes",
      "  LogLevel ERROR",
      ""
    ].join("\n")
  )
  return {
    sshd,
    sshConfig,
    stop: async () => {
      await sshd.killLeftovers().catch(() => {})
      await sshd.stop()
    }
  }
}
