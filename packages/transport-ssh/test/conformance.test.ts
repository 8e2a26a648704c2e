/**
 * The core transport conformance suite against a real sshd on loopback.
 */
import { conformance } from "@runcmd/core/testing"
import { afterAll, afterEach, beforeAll, describe, it } from "@effect/vitest"
import * as SshTransport from "../src/SshTransport.js"
import * as Sshd from "./harness/Sshd.js"

const enabled = Sshd.enabled()

let sshd: Sshd.Sshd | undefined
let closedPort = 1

if (enabled) {
  beforeAll(async () => {
    sshd = await Sshd.start({ addresses: 3, maxSessions: 10 })
    closedPort = await Sshd.freePort()
  })
  afterAll(async () => {
    await sshd?.stop()
  })
  afterEach(async () => {
    await sshd?.assertNoLeftovers({ waitMs: 5000 })
  })

  await conformance("ssh (OpenSSH on loopback)", SshTransport.layer(), {
    targets: (n) =>
      Array.from({ length: n }, (_, i) => sshd!.target({ address: sshd!.addresses[i % sshd!.addresses.length], id: `ssh-${i}` })),
    unreachableTarget: () => sshd!.target({ id: "closed-port", overrides: { port: closedPort } })
  })
} else {
  describe("transport conformance: ssh", () => {
    it.skip("needs sshd (apt-get install -y openssh-server openssh-client sudo tini)", () => {})
  })
}
