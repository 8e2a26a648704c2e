/**
 * The core transport conformance suite against a real sshd on loopback. The suite shares its layer with `it.layer`;
 * the server's layer is part of it, so the server starts before the first case and stops after the last.
 */
import { afterEach, describe, it } from "@effect/vitest"
import { conformance } from "@runcmd/core/testing"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SshTransport from "../src/SshTransport.js"
import * as Sshd from "./harness/Sshd.js"

if (Sshd.enabled()) {
  // what `targets` needs, set when the suite's layer starts the server
  let sshd: Sshd.Sshd | undefined
  let closedPort = 1
  const server = Layer.scopedDiscard(
    Effect.gen(function*() {
      sshd = yield* Sshd.scoped({ addresses: 3, maxSessions: 10 })
      closedPort = yield* Effect.promise(() => Sshd.freePort())
    })
  )

  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  await conformance("ssh (OpenSSH on loopback)", Layer.merge(SshTransport.layer(), server), {
    targets: (n) =>
      Array.from(
        { length: n },
        (_, i) => sshd!.target({ address: sshd!.addresses[i % sshd!.addresses.length], id: `ssh-${i}` })
      ),
    unreachableTarget: () => sshd!.target({ id: "closed-port", overrides: { port: closedPort } })
  })
} else {
  describe("transport conformance: ssh", () => {
    it.skip("needs sshd (apt-get install -y openssh-server openssh-client sudo tini)", () => {})
  })
}
