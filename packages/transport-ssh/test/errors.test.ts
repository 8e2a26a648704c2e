import { assert, describe, it } from "@effect/vitest"
import { classify, isTransient } from "@runcmd/core/TransportError"
import * as Errors from "../src/internal/errors.js"

const ctx = (extra: Partial<Errors.ConnectContext> = {}): Errors.ConnectContext => ({
  targetId: "web1",
  hop: "deploy@web1:22",
  hopIndex: 0,
  hops: 1,
  authMethodsTried: [],
  debug: [],
  ready: false,
  ...extra
})
const err = (message: string, props: Record<string, unknown> = {}) => Object.assign(new Error(message), props)

describe("ssh2 error mapping", () => {
  it("socket errors by code: refused, timeout, DNS", () => {
    const refused = Errors.fromConnect(
      err("connect ECONNREFUSED 127.0.0.1:2299", { level: "client-socket", code: "ECONNREFUSED" }),
      ctx()
    )
    assert.strictEqual(refused.reason, "ConnectRefused")
    assert.strictEqual(refused.phase, "delivery")
    assert.strictEqual(refused.targetId, "web1")
    assert.strictEqual(classify(refused.reason), "Unreachable")
    assert.strictEqual(
      Errors.fromConnect(err("connect ETIMEDOUT", { level: "tcp", code: "ETIMEDOUT" }), ctx()).reason,
      "ConnectTimeout"
    )
    assert.strictEqual(
      Errors.fromConnect(err("getaddrinfo ENOTFOUND x", { level: "tcp", code: "ENOTFOUND" }), ctx()).reason,
      "DnsFailed"
    )
    assert.strictEqual(Errors.fromConnect(err("lookup failed", { level: "client-dns" }), ctx()).reason, "DnsFailed")
    // a reset once the server identified itself: the connection was lost (before: ConnectRefused, below)
    const reset = Errors.fromConnect(
      err("read ECONNRESET", { level: "client-socket", code: "ECONNRESET" }),
      ctx({ identified: true })
    )
    assert.strictEqual(reset.reason, "ConnectionLost")
    assert.strictEqual(reset.phase, "delivery")
  })

  it("client-timeout before ready is HandshakeTimeout; after ready (keepalive) ConnectionLost", () => {
    const before = Errors.fromConnect(err("Timed out while waiting for handshake", { level: "client-timeout" }), ctx())
    assert.strictEqual(before.reason, "HandshakeTimeout")
    assert.strictEqual(classify(before.reason), "Unreachable")
    const after = Errors.fromConnect(err("Keepalive timeout", { level: "client-timeout" }), ctx({ ready: true }))
    assert.strictEqual(after.reason, "ConnectionLost")
  })

  it("client-authentication is AuthFailed with the methods tried and the server's", () => {
    const e = Errors.fromConnect(
      err("All configured authentication methods failed", { level: "client-authentication" }),
      ctx({ authMethodsTried: ["publickey"], authMethodsOffered: ["publickey", "password"] })
    )
    assert.strictEqual(e.reason, "AuthFailed")
    assert.deepStrictEqual(e.detail?.methods, ["publickey"])
    assert.deepStrictEqual(e.detail?.serverMethods, ["publickey", "password"])
    assert.strictEqual(classify(e.reason), "Rejected")
  })

  it("handshake: a host-key rejection wins over ssh2's bare message; algorithm mismatches carry both lists", () => {
    const hk = Errors.fromConnect(
      err("Host denied (verification failed)", { level: "handshake" }),
      ctx({
        hostKeyRejection: {
          description: "HOST KEY CHANGED",
          detail: { presentedFingerprint: "SHA256:x", expected: ["ssh-ed25519 SHA256:y"] }
        }
      })
    )
    assert.strictEqual(hk.reason, "HostKeyRejected")
    assert.strictEqual(hk.detail?.presentedFingerprint, "SHA256:x")
    const kex = Errors.fromConnect(
      err("Handshake failed: no matching key exchange algorithm", { level: "handshake" }),
      ctx({
        debug: [
          "Handshake: (local) KEX method: diffie-hellman-group1-sha1,ext-info-c,kex-strict-c-v00@openssh.com",
          "Handshake: (remote) KEX method: curve25519-sha256,ext-info-s"
        ]
      })
    )
    assert.strictEqual(kex.reason, "HandshakeFailed")
    assert.deepStrictEqual(kex.detail?.clientAlgorithms, ["diffie-hellman-group1-sha1"])
    assert.deepStrictEqual(kex.detail?.serverAlgorithms, ["curve25519-sha256"])
    assert.include(kex.description, "the server offers curve25519-sha256")
    const cipher = Errors.fromConnect(
      err("Handshake failed: no matching C->S cipher", { level: "handshake" }),
      ctx({
        debug: ["Handshake: (local) C->S cipher: aes128-cbc", "Handshake: (remote) C->S cipher: aes256-gcm@openssh.com"]
      })
    )
    assert.strictEqual(cipher.detail?.category, "cipher")
    assert.deepStrictEqual(cipher.detail?.serverAlgorithms, ["aes256-gcm@openssh.com"])
  })

  it("a connection dropped before the server's SSH identification is a retryable delivery ConnectRefused", () => {
    for (
      const e of [
        Errors.fromConnect(err("Connection lost before handshake", { level: "protocol", fatal: true }), ctx()),
        Errors.fromConnect(err("read ECONNRESET", { level: "client-socket", code: "ECONNRESET" }), ctx())
      ]
    ) {
      assert.strictEqual(e.reason, "ConnectRefused")
      assert.strictEqual(classify(e.reason), "Unreachable")
      assert.strictEqual(e.phase, "delivery")
      assert.isTrue(e.detail?.retryable)
      assert.isTrue(isTransient(e.reason))
    }
    // after it, the handshake was under way: the connection was lost
    const lost = Errors.fromConnect(
      err("Connection lost before handshake", { level: "protocol", fatal: true }),
      ctx({ identified: true })
    )
    assert.strictEqual(lost.reason, "ConnectionLost")
    assert.strictEqual(lost.phase, "delivery")
  })

  it("names the jump host that failed", () => {
    const e = Errors.fromConnect(
      err("connect ECONNREFUSED", { level: "client-socket", code: "ECONNREFUSED" }),
      ctx({ hop: "jump@bastion:22", hopIndex: 0, hops: 2 })
    )
    assert.include(e.description, "jump host 1: jump@bastion:22")
    assert.strictEqual(e.detail?.hopIndex, 0)
  })

  it("recognises channel open refusals (MaxSessions) and lost connections", () => {
    const refusal = err("(SSH) Channel open failure: open failed", { reason: 2 })
    assert.isTrue(Errors.isSessionLimit(refusal))
    assert.isFalse(Errors.isNotConnected(refusal))
    assert.isTrue(Errors.isNotConnected(err("Not connected")))
    assert.isTrue(Errors.isNotConnected(err("No response from server")))
  })
})
