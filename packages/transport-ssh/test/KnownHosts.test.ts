import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as cp from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as KnownHosts from "../src/KnownHosts.js"

/** A syntactically valid ed25519 public key blob (random key material). */
const blob = (seed: string) => {
  const type = Buffer.from("ssh-ed25519")
  const key = crypto.createHash("sha256").update(seed).digest()
  const out = Buffer.alloc(4 + type.length + 4 + key.length)
  out.writeUInt32BE(type.length, 0)
  type.copy(out, 4)
  out.writeUInt32BE(key.length, 4 + type.length)
  key.copy(out, 8 + type.length)
  return out
}
const b64 = (b: Buffer) => b.toString("base64")
const A = blob("a")
const B = blob("b")
const C = blob("c")

const hasKeygen = fs.existsSync("/usr/bin/ssh-keygen")

describe("KnownHosts", () => {
  it("parses plain entries, several names, comments and blank lines", () => {
    const kh = KnownHosts.parse(
      [
        "# a comment",
        "",
        `web1,10.0.0.1 ssh-ed25519 ${b64(A)} a comment here`,
        `[web2]:2222 ssh-ed25519 ${b64(B)}`
      ].join("\n")
    )
    assert.strictEqual(kh.entries.length, 2)
    assert.strictEqual(kh.invalid.length, 0)
    assert.strictEqual(kh.entries[0]!.comment, "a comment here")
    assert.strictEqual(KnownHosts.verify(kh, "web1", 22, A)._tag, "Known")
    assert.strictEqual(KnownHosts.verify(kh, "10.0.0.1", 22, A)._tag, "Known")
    assert.strictEqual(KnownHosts.verify(kh, "WEB1", 22, A)._tag, "Known", "host names are case-insensitive")
    assert.strictEqual(KnownHosts.verify(kh, "web2", 2222, B)._tag, "Known")
    // [host]:port entries do not match port 22, and plain names do not match other ports
    assert.strictEqual(KnownHosts.verify(kh, "web2", 22, B)._tag, "Unknown")
    assert.strictEqual(KnownHosts.verify(kh, "web1", 2222, A)._tag, "Unknown")
  })

  it("reports a changed key as a mismatch with the expected fingerprints", () => {
    const kh = KnownHosts.parse(`web1 ssh-ed25519 ${b64(A)}\n`)
    const v = KnownHosts.verify(kh, "web1", 22, B)
    assert.strictEqual(v._tag, "Mismatch")
    if (v._tag === "Mismatch") assert.deepStrictEqual(v.expected, [`ssh-ed25519 ${KnownHosts.fingerprint(A)}`])
  })

  it("matches hashed |1| entries (HMAC-SHA1 of the name, as OpenSSH writes them)", () => {
    const text = [
      KnownHosts.formatLine("web1", 22, A, { hashed: true }),
      KnownHosts.formatLine("10.1.1.1", 2222, B, { hashed: true })
    ]
      .join("\n")
    assert.match(text, /^\|1\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+ ssh-ed25519 /)
    const kh = KnownHosts.parse(text)
    assert.strictEqual(KnownHosts.verify(kh, "web1", 22, A)._tag, "Known")
    assert.strictEqual(KnownHosts.verify(kh, "10.1.1.1", 2222, B)._tag, "Known")
    assert.strictEqual(KnownHosts.verify(kh, "10.1.1.1", 22, B)._tag, "Unknown")
    assert.strictEqual(KnownHosts.verify(kh, "web2", 22, A)._tag, "Unknown")
    assert.strictEqual(KnownHosts.verify(kh, "web1", 22, C)._tag, "Mismatch")
  })

  it.skipIf(!hasKeygen)("agrees with ssh-keygen -H (hashing) and ssh-keygen -F (lookup)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-kh-"))
    try {
      const file = path.join(dir, "known_hosts")
      fs.writeFileSync(file, `web1 ssh-ed25519 ${b64(A)}\n[10.0.0.5]:2200 ssh-ed25519 ${b64(B)}\n`)
      cp.execFileSync("ssh-keygen", ["-q", "-H", "-f", file], { stdio: "ignore" })
      const hashed = fs.readFileSync(file, "utf8")
      assert.notInclude(hashed, "web1")
      const kh = KnownHosts.parse(hashed)
      assert.strictEqual(KnownHosts.verify(kh, "web1", 22, A)._tag, "Known")
      assert.strictEqual(KnownHosts.verify(kh, "10.0.0.5", 2200, B)._tag, "Known")
      // and ssh-keygen finds the lines we hash
      fs.writeFileSync(file, KnownHosts.formatLine("db1", 2222, C, { hashed: true }) + "\n")
      const found = cp.execFileSync("ssh-keygen", ["-F", "[db1]:2222", "-f", file]).toString()
      assert.include(found, b64(C))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("supports wildcard patterns and negation", () => {
    const kh = KnownHosts.parse(
      `*.example.com,!bad.example.com ssh-ed25519 ${b64(A)}\n10.0.0.? ssh-ed25519 ${b64(B)}\n`
    )
    assert.strictEqual(KnownHosts.verify(kh, "web.example.com", 22, A)._tag, "Known")
    assert.strictEqual(KnownHosts.verify(kh, "bad.example.com", 22, A)._tag, "Unknown")
    assert.strictEqual(KnownHosts.verify(kh, "10.0.0.7", 22, B)._tag, "Known")
    assert.strictEqual(KnownHosts.verify(kh, "10.0.0.17", 22, B)._tag, "Unknown")
  })

  it("rejects @revoked keys wherever they are listed, even when another line accepts them", () => {
    const kh = KnownHosts.parse(`web1 ssh-ed25519 ${b64(A)}\n@revoked * ssh-ed25519 ${b64(A)}\n`)
    const v = KnownHosts.verify(kh, "web1", 22, A)
    assert.strictEqual(v._tag, "Revoked")
    if (v._tag === "Revoked") assert.strictEqual(v.entry.line, 2)
  })

  it("reports @cert-authority-only hosts as unsupported (host certificates are not verified)", () => {
    const kh = KnownHosts.parse(`@cert-authority *.corp ssh-ed25519 ${b64(C)}\n`)
    assert.strictEqual(KnownHosts.verify(kh, "web.corp", 22, A)._tag, "CertAuthorityUnsupported")
    // a plain entry for the host still works alongside the CA line
    const both = KnownHosts.parse(`@cert-authority *.corp ssh-ed25519 ${b64(C)}\nweb.corp ssh-ed25519 ${b64(A)}\n`)
    assert.strictEqual(KnownHosts.verify(both, "web.corp", 22, A)._tag, "Known")
  })

  it("reports malformed lines and ignores them", () => {
    const kh = KnownHosts.parse(
      [
        `@bogus web1 ssh-ed25519 ${b64(A)}`,
        "web2 ssh-ed25519",
        "web3 ssh-ed25519 !!!notbase64",
        `|1|x web4 ssh-ed25519 ${b64(A)}`,
        `web5 ssh-rsa ${b64(A)}`
      ]
        .join("\n")
    )
    assert.strictEqual(kh.entries.length, 0)
    assert.strictEqual(kh.invalid.length, 5)
    assert.include(kh.invalid[4]!.problem, "does not match")
  })

  it.skipIf(!hasKeygen)("fingerprints match ssh-keygen -lf", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-kh-"))
    try {
      const key = path.join(dir, "k")
      cp.execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key], { stdio: "ignore" })
      const pub = fs.readFileSync(`${key}.pub`, "utf8").split(" ")[1]!
      const expected = cp.execFileSync("ssh-keygen", ["-lf", `${key}.pub`]).toString().split(" ")[1]
      assert.strictEqual(KnownHosts.fingerprint(Buffer.from(pub, "base64")), expected)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it.effect("reads several files, a missing one counting as empty", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-kh-"))
      try {
        fs.writeFileSync(path.join(dir, "a"), `web1 ssh-ed25519 ${b64(A)}\n`)
        const kh = yield* KnownHosts.readFiles([path.join(dir, "a"), path.join(dir, "missing")])
        assert.strictEqual(kh.entries.length, 1)
        assert.strictEqual(kh.entries[0]!.file, path.join(dir, "a"))
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("accept-new records an unknown host once, even under concurrent first connections", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-kh-"))
      try {
        const store = path.join(dir, "sub", "known_hosts")
        const verdicts = yield* Effect.promise(() =>
          Promise.all(Array.from({ length: 10 }, () => KnownHosts.acceptNew(store, "127.0.0.1", 2222, A)))
        )
        assert.isTrue(verdicts.every((v) => v._tag === "Known"))
        const lines = fs.readFileSync(store, "utf8").trim().split("\n")
        assert.deepStrictEqual(lines, [`[127.0.0.1]:2222 ssh-ed25519 ${b64(A)}`])
        const changed = yield* Effect.promise(() => KnownHosts.acceptNew(store, "127.0.0.1", 2222, B))
        assert.strictEqual(changed._tag, "Mismatch")
        assert.strictEqual(fs.readFileSync(store, "utf8").trim().split("\n").length, 1, "a changed key is not recorded")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})
