/**
 * The PowerShell cases of the core conformance suite over a real sshd on loopback, to a user whose login shell is
 * `pwsh` (as Windows OpenSSH can be configured): sshd runs `pwsh -c <bootstrap>`; the suite's POSIX helper jobs
 * (process-table checks, directories) go through `/bin/sh` explicitly under that login shell.
 */
import { afterEach, describe, it } from "@effect/vitest"
import { conformancePowerShell } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as SshTransport from "../src/SshTransport.js"
import { pwshLoginShell } from "./harness/pwsh.js"
import * as Sshd from "./harness/Sshd.js"

if (Sshd.enabled() && Sshd.isRoot() && !skipWithoutPwsh("transport-ssh PowerShell conformance")) {
  let sshd: Sshd.Sshd | undefined
  const server = Layer.scopedDiscard(
    Effect.gen(function*() {
      sshd = yield* Sshd.scoped({ addresses: 1, maxSessions: 10, userOptions: { shell: pwshLoginShell()! } })
    })
  )

  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  await conformancePowerShell(
    "ssh to a pwsh login shell (OpenSSH on loopback)",
    Layer.merge(SshTransport.layer({ killTimeout: "60 seconds" }), server),
    {
      targets: (n) => Array.from({ length: n }, (_, i) => sshd!.target({ id: `pwsh-${i}` })),
      timeout: "20 seconds",
      margin: "10 seconds",
      testTimeout: 180_000
    }
  )
} else {
  describe("transport conformance (PowerShell): ssh", () => {
    it.skip("needs sshd, root (a test user) and pwsh", () => {})
  })
}
