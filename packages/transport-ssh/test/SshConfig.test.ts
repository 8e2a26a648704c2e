import { assert, describe, it } from "@effect/vitest"
import * as Inventory from "@runcmd/core/Inventory"
import * as Target from "@runcmd/core/Target"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SshConfig from "../src/SshConfig.js"
import * as SshTarget from "../src/SshTarget.js"

const home = "/home/alice"
const text = `
# production
Host web1 web2
  HostName %h.prod.example.com
  User deploy
  IdentityFile ~/.ssh/deploy_ed25519

Host db1
  HostName 10.0.0.5
  Port 2200
  ProxyJump bastion
  StrictHostKeyChecking accept-new
  UserKnownHostsFile ~/.ssh/known_hosts_prod

Host deep
  HostName 10.9.9.9
  ProxyJump ops@jump1:2022,bastion

Host bastion
  HostName bastion.example.com
  User jump
  IdentityFile %d/.ssh/jump_key
  ConnectTimeout 7
  ServerAliveInterval 20
  ServerAliveCountMax 2

Host lab-*
  StrictHostKeyChecking no
  User root

Host loop1
  ProxyJump loop2
Host loop2
  ProxyJump loop1

Host *
  IdentitiesOnly yes
  IdentityFile ~/.ssh/id_default
`

const config = SshConfig.parse(text, "/home/alice/.ssh/config")
const get = (alias: string, options: SshConfig.ImportOptions = {}) => {
  const r = SshConfig.resolve(config, alias, { home, defaultUser: "alice", ...options })
  if (Either.isLeft(r)) throw r.left
  return r.right
}

describe("SshConfig", () => {
  it("lists the concrete aliases (no wildcard patterns)", () => {
    assert.deepStrictEqual(config.aliases, ["web1", "web2", "db1", "deep", "bastion", "loop1", "loop2"])
  })

  it("maps HostName (with %h), User, IdentityFile; the first obtained value wins as in OpenSSH", () => {
    const t = get("web2")
    assert.strictEqual(t.kind, "ssh")
    assert.strictEqual(t.id, "web2")
    assert.strictEqual(t.host, "web2.prod.example.com")
    assert.strictEqual(t.port, 22)
    assert.strictEqual(t.user, "deploy")
    assert.deepStrictEqual(t.auth, { type: "key", path: "/home/alice/.ssh/deploy_ed25519" })
    assert.deepStrictEqual(t.hostKey, {
      policy: "strict",
      knownHosts: ["/home/alice/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts"]
    })
    assert.deepStrictEqual(t.labels, { "ssh-config-host": "web2" })
    assert.deepStrictEqual(t.via, [])
  })

  it("maps Port, ProxyJump (resolved through the config), StrictHostKeyChecking accept-new", () => {
    const t = get("db1")
    assert.strictEqual(t.host, "10.0.0.5")
    assert.strictEqual(t.port, 2200)
    assert.strictEqual(t.user, "alice", "no User: the default user")
    assert.deepStrictEqual(t.hostKey, { policy: "accept-new", store: "/home/alice/.ssh/known_hosts_prod" })
    assert.strictEqual(t.via.length, 1)
    const jump = t.via[0]!
    assert.strictEqual(jump.host, "bastion.example.com")
    assert.strictEqual(jump.user, "jump")
    assert.deepStrictEqual(jump.auth, { type: "key", path: "/home/alice/.ssh/jump_key" })
    assert.strictEqual(Duration.toMillis(jump.connectTimeout!), 7000)
    assert.deepStrictEqual(jump.keepalive, { interval: Duration.seconds(20), countMax: 2 })
  })

  it("maps a ProxyJump chain of [user@]host[:port] entries, in order", () => {
    const t = get("deep")
    assert.deepStrictEqual(t.via.map((h) => `${h.user}@${h.host}:${h.port}`), [
      "ops@jump1:2022",
      "jump@bastion.example.com:22"
    ])
  })

  it("maps StrictHostKeyChecking no to the insecure policy, and applies Host patterns to any name", () => {
    const t = get("lab-7")
    assert.deepStrictEqual(t.hostKey, { policy: "insecure" })
    assert.strictEqual(t.user, "root")
    assert.strictEqual(t.host, "lab-7")
  })

  it("lets the caller override the host-key policy and add labels", () => {
    const t = get("web1", {
      hostKey: { policy: "pinned", fingerprints: [`SHA256:${"A".repeat(43)}`] },
      labels: { env: "prod" }
    })
    assert.strictEqual(t.hostKey.policy, "pinned")
    assert.deepStrictEqual(t.labels, { env: "prod", "ssh-config-host": "web1" })
  })

  it("refuses a ProxyJump loop with an InvalidPlan naming the file", () => {
    const r = SshConfig.resolve(config, "loop1", { home })
    assert.isTrue(Either.isLeft(r))
    if (Either.isLeft(r)) {
      assert.strictEqual(r.left.reason, "InvalidInventory")
      assert.include(r.left.path, "/home/alice/.ssh/config")
      assert.include(r.left.description, "loop1 -> loop2 -> loop1")
    }
  })

  it("imported targets are valid ssh targets: they encode and decode through the schema", () => {
    const r = SshConfig.targets(config, { home, hosts: ["web*", "db1", "bastion"] })
    assert.isTrue(Either.isRight(r))
    if (Either.isRight(r)) {
      assert.deepStrictEqual(r.right.map((t) => t.id), ["web1", "web2", "db1", "bastion"])
      const schema = Target.union([SshTarget.SshTarget])
      for (const t of r.right) {
        const encoded = Schema.encodeSync(SshTarget.SshTarget)(t)
        const decoded = Schema.decodeUnknownSync(schema)(JSON.parse(JSON.stringify(encoded)))
        assert.deepStrictEqual(decoded, t)
      }
    }
  })

  it.effect("reads a file; a missing file is an InvalidPlan FileUnreadable", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-sshcfg-"))
      try {
        const file = path.join(dir, "config")
        fs.writeFileSync(file, "Host a\n  HostName 127.0.0.1\n  Port 2222\n  User u\n")
        const ts = yield* SshConfig.fromFile(file, { home })
        assert.deepStrictEqual(ts.map((t) => [t.id, t.host, t.port, t.user]), [["a", "127.0.0.1", 2222, "u"]])
        const missing = yield* Effect.flip(SshConfig.fromFile(path.join(dir, "nope")))
        assert.strictEqual(missing.reason, "FileUnreadable")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("imports from an inventory: `imports: [{ sshConfig: FILE }]`, the path relative to the inventory", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-sshcfg-inv-"))
      try {
        fs.writeFileSync(
          path.join(dir, "ssh_config"),
          "Host web-1 web-2 db-1\n  HostName 127.0.0.1\n  Port 2222\n  User u\n  StrictHostKeyChecking no\n"
        )
        const file = path.join(dir, "inventory.yaml")
        const kinds = [Target.Local, SshTarget.SshTarget]
        const inv = yield* Inventory.parse(
          `targets:
  - { id: box, kind: local }
imports:
  - sshConfig: ./ssh_config
    hosts: ["web-*"]
    group: web
    labels: { tier: front }
  - sshConfig: ssh_config
    hosts: db-1
    hostKey: { policy: strict, knownHosts: [./known_hosts] }
`,
          file,
          kinds,
          { importers: [SshConfig.importer] }
        )
        assert.deepStrictEqual(inv.targets.map((t) => t.id), ["box", "web-1", "web-2", "db-1"])
        assert.deepStrictEqual(inv.groups, { web: ["web-1", "web-2"] })
        const web1 = inv.targets[1] as SshTarget.SshTarget
        assert.deepStrictEqual([web1.kind, web1.host, web1.port, web1.user], ["ssh", "127.0.0.1", 2222, "u"])
        assert.deepStrictEqual(web1.labels, { "ssh-config-host": "web-1", tier: "front", group: "web" })
        assert.strictEqual(web1.hostKey.policy, "insecure")
        assert.strictEqual((inv.targets[3] as SshTarget.SshTarget).hostKey.policy, "strict")

        const missing = yield* Effect.flip(
          Inventory.parse("imports:\n  - sshConfig: ./nope\n", file, kinds, { importers: [SshConfig.importer] })
        )
        assert.strictEqual(missing.reason, "InvalidInventory")
        assert.strictEqual(missing.path, `${file}: imports[0]`)
        assert.include(missing.description, path.join(dir, "nope"))
        const badOption = yield* Effect.flip(
          Inventory.parse("imports:\n  - { sshConfig: ./ssh_config, port: 22 }\n", file, kinds, {
            importers: [SshConfig.importer]
          })
        )
        assert.match(badOption.description, /port: unknown option \(known: hosts, user, hostKey, group, labels\)/)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})
