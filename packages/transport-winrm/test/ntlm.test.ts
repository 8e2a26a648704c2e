/**
 * MD4, RC4 and NTLMv2 against the published test vectors: RFC 1320 (MD4) and MS-NLMP section 4.2 (NTLM v1 hash,
 * NTLMv2 responses, key exchange, GSS_WrapEx sealing), then a client and server session that talk to each other.
 */
import { assert, describe, it } from "@effect/vitest"
import { md4 } from "../src/internal/ntlm/md4.js"
import * as Ntlm from "../src/internal/ntlm/ntlm.js"
import { rc4k } from "../src/internal/ntlm/rc4.js"

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex")

describe("MD4 (RFC 1320 A.5)", () => {
  const vectors: ReadonlyArray<readonly [string, string]> = [
    ["", "31d6cfe0d16ae931b73c59d7e0c089c0"],
    ["a", "bde52cb31de33e46245e05fbdbd6fb24"],
    ["abc", "a448017aaf21d8525fc10ae87aa6729d"],
    ["message digest", "d9130a8164549fe818874806e1c7014b"],
    ["abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"],
    ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "043f8582f241db351ce627e153e7f0e4"],
    ["1234567890".repeat(8), "e33b4ddc9c38f2199c3e7b164fcc0536"]
  ]
  for (const [input, digest] of vectors) {
    it(`MD4(${JSON.stringify(input.slice(0, 20))})`, () => {
      assert.strictEqual(toHex(md4(Buffer.from(input, "latin1"))), digest)
    })
  }
})

describe("MS-NLMP 4.2 test vectors", () => {
  const user = "User"
  const domain = "Domain"
  const serverChallenge = hex("0123456789abcdef")
  const clientChallenge = hex("aaaaaaaaaaaaaaaa")
  const randomSessionKey = hex("55555555555555555555555555555555")
  const time = Buffer.alloc(8)
  const targetInfo = hex("02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000")

  it("4.2.2.1.2 NTOWFv1(Password) (MD4 of the UTF-16LE password)", () => {
    assert.strictEqual(toHex(Ntlm.ntowfv1("Password")), "a4f49c406510bdcab6824ee7c30fd852")
  })

  it("4.2.4.1.1 NTOWFv2, 4.2.4.1.2 session base key, 4.2.4.2 LMv2 and NTLMv2 responses, 4.2.4.2.3 RC4 key exchange", () => {
    const key = Ntlm.ntowfv2(Ntlm.ntowfv1("Password"), user, domain)
    assert.strictEqual(toHex(key), "0c868a403bfd7a93a3001ef22ef02e3f")
    const temp = Ntlm.ntlmv2Temp(time, clientChallenge, targetInfo)
    const v2 = Ntlm.ntlmv2Response(key, serverChallenge, clientChallenge, temp)
    assert.strictEqual(toHex(v2.ntProofStr), "68cd0ab851e51c96aabc927bebef6a1c")
    assert.strictEqual(toHex(v2.sessionBaseKey), "8de40ccadbc14a82f15cb0ad0de95ca3")
    assert.strictEqual(toHex(v2.lmChallengeResponse), "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
    assert.strictEqual(toHex(rc4k(v2.sessionBaseKey, randomSessionKey)), "c5dad2544fc9799094ce1ce90bc9d03e")
  })

  it("4.2.4.4 GSS_WrapEx: seal key, sign key, sealed data and signature", () => {
    assert.strictEqual(toHex(Ntlm.sealKey(randomSessionKey, "client")), "59f600973cc4960a25480a7c196e4c58")
    assert.strictEqual(toHex(Ntlm.signKey(randomSessionKey, "client")), "4788dc861b4782f35d43fd98fe1a2d39")
    const client = Ntlm.makeSession(randomSessionKey, "client")
    const { sealed, signature } = client.seal(Buffer.from("Plaintext", "utf16le"))
    assert.strictEqual(toHex(sealed), "54e50165bf1936dc996020c1811b0f06fb5f")
    assert.strictEqual(toHex(signature), "010000007fb38ec5c55d497600000000")
    // the server's side unseals it and verifies the signature
    const server = Ntlm.makeSession(randomSessionKey, "server")
    assert.strictEqual(server.unseal(sealed, signature).toString("utf16le"), "Plaintext")
  })
})

describe("NTLMv2 between our client and our server", () => {
  const ntHash = Ntlm.ntowfv1("s3cret!")
  const handshake = (password: string) => {
    const negotiate = Ntlm.negotiate()
    const issued = Ntlm.challenge(negotiate, "EMULATOR", "WORKGROUP")
    const client = Ntlm.authenticate(negotiate, issued.message, {
      user: "alice",
      domain: "",
      ntHash: Ntlm.ntowfv1(password)
    })
    return { client, server: Ntlm.verify(negotiate, issued, client.authenticate, ntHash) }
  }

  it("the right password establishes a session both ways (MIC included, messages in sequence)", () => {
    const { client, server } = handshake("s3cret!")
    assert.isDefined(server)
    for (const text of ["<first/>", "<second>ünïcödé</second>", ""]) {
      const up = Ntlm.unwrap(server!, Ntlm.wrap(client.session, Buffer.from(text)))
      assert.strictEqual(up.toString(), text)
      const down = Ntlm.unwrap(client.session, Ntlm.wrap(server!, Buffer.from(text + "!")))
      assert.strictEqual(down.toString(), text + "!")
    }
    assert.strictEqual(Ntlm.readAuthenticate(client.authenticate).user, "alice")
  })

  it("a wrong password is refused", () => {
    assert.isUndefined(handshake("wrong").server)
  })

  it("a tampered message does not verify", () => {
    const { client, server } = handshake("s3cret!")
    const wrapped = Ntlm.wrap(client.session, Buffer.from("<Envelope/>"))
    wrapped[wrapped.length - 30] ^= 1
    assert.throws(() => Ntlm.unwrap(server!, wrapped), /does not verify/)
  })
})
