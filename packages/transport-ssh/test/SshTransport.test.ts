import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Inventory from "@runcmd/core/Inventory"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Transport from "@runcmd/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as SshConfig from "../src/SshConfig.js"
import * as SshTarget from "../src/SshTarget.js"
import * as SshTransport from "../src/SshTransport.js"
import {
  blackHole,
  describeReport,
  encoder,
  fakeServer,
  invocation,
  run,
  sh,
  stdoutOf,
  text
} from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

const enabled = Sshd.enabled()

describe.skipIf(!enabled)("SshTransport against a real sshd", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer({ maxSessions: 10 }), Sshd.layerOptions)((it) => {
    const layer = (options: SshTransport.Options = {}) => SshTransport.layer(options)

    it.scoped("runs a command: exit codes, both streams, stdin, env and args byte for byte", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const transport = yield* SshTransport.make()
        const target = sshd.target()
        const r = yield* transport.run(
          target,
          sh(`printf '%s|' "$@" "$GREETING"; id -un; cat; echo oops >&2; exit 7`, {
            args: ["a b", "it's", "$HOME", "-n", "ünï"],
            env: { GREETING: "hé \"there\"\n$x" },
            stdin: encoder.encode("from stdin\n")
          })
        )
        assert.deepStrictEqual(r.exit, Transport.exited(7))
        assert.strictEqual(text(r.stdout), `a b|it's|$HOME|-n|ünï|hé "there"\n$x|${sshd.user}\nfrom stdin\n`)
        assert.strictEqual(text(r.stderr), "oops\n")
        const argv = yield* transport.run(target, invocation(ScriptSource.command("printf", "%s\\n", "x y", "--z")))
        assert.strictEqual(text(argv.stdout), "x y\n--z\n")
        const signaled = yield* transport.run(target, sh("kill -KILL $$"))
        assert.deepStrictEqual(signaled.exit, Transport.signaled("SIGKILL"))
      }))

    it.scoped("reuses one connection for sequential executions and closes it with the scope", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const connections = yield* SshTransport.makeConnections()
        const target = sshd.target()
        for (let i = 0; i < 5; i++) {
          const r = yield* connections.transport.run(target, sh("true"))
          assert.deepStrictEqual(r.exit, Transport.exited(0))
        }
        assert.deepStrictEqual(connections.stats(), { connections: 1, channels: 0, hosts: 1 })
      }))

    it.scoped("a target's connection is not shared with another user or other credentials", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const connections = yield* SshTransport.makeConnections()
        const a = sshd.target()
        const b = sshd.target({ auth: SshTarget.keyFile(sshd.clientKeyPath), id: "by-path" })
        yield* connections.transport.run(a, sh("true"))
        yield* connections.transport.run(b, sh("true"))
        assert.strictEqual(connections.stats().connections, 2)
      }))

    it.scoped("streams output live, before the process exits", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const transport = yield* SshTransport.make()
        const execution = yield* transport.start(sshd.target(), sh("echo first; sleep 30; echo never"))
        const first = yield* execution.output.pipe(Stream.take(1), Stream.runCollect, Effect.timeout("10 seconds"))
        assert.strictEqual(text([...first][0]!.bytes), "first\n")
        // closing the scope (end of test) kills it: the leak check after the test verifies
      }))

    it.scoped("a connection refused is Unreachable/ConnectRefused, phase delivery", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const port = yield* Effect.promise(() => Sshd.freePort())
        const report = yield* run([sshd.target({ overrides: { port, id: "closed" } })], "true").pipe(
          Effect.provide(layer())
        )
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Unreachable", describeReport(report))
        if (o._tag === "Unreachable") {
          assert.strictEqual(o.error.reason, "ConnectRefused")
          assert.strictEqual(o.error.phase, "delivery")
        }
      }))

    it.scoped("a wrong key is Rejected/AuthFailed with the methods tried", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const dir = fs.mkdtempSync(path.join(sshd.dir, "k-"))
        const key = path.join(dir, "other")
        yield* Effect.promise(() =>
          new Promise<void>((resolve, reject) =>
            cp.execFile("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key], (e) => (e ? reject(e) : resolve()))
          )
        )
        const report = yield* run(
          [
            sshd.target({ auth: SshTarget.keyFile(key), id: "wrong-key" }),
            sshd.target({ auth: SshTarget.password("nope"), id: "password" })
          ],
          "true"
        ).pipe(Effect.provide(layer()))
        const [byKey, byPassword] = report.outcomes
        assert.strictEqual(byKey!._tag, "Rejected", describeReport(report))
        if (byKey!._tag === "Rejected") {
          assert.strictEqual(byKey!.error.reason, "AuthFailed")
          assert.deepStrictEqual(byKey!.error.detail?.methods, ["publickey"])
        }
        assert.strictEqual(byPassword!._tag, "Rejected", describeReport(report))
        if (byPassword!._tag === "Rejected") {
          assert.strictEqual(byPassword!.error.reason, "AuthFailed")
          assert.deepStrictEqual(byPassword!.error.detail?.methods, ["password"])
          assert.deepStrictEqual(byPassword!.error.detail?.serverMethods, ["publickey"])
          assert.notInclude(JSON.stringify(report), "nope", "the password appears nowhere")
        }
      }))

    it.scoped.skipIf(!fs.existsSync("/usr/bin/ssh-agent"))(
      "agent and encrypted-key authentication",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          // an ssh-agent of our own, holding the client key; killed with the scope
          const socket = path.join(sshd.dir, `agent-${Date.now()}.sock`)
          const agent = yield* Effect.acquireRelease(
            Effect.sync(() => cp.spawn("/usr/bin/ssh-agent", ["-D", "-a", socket], { stdio: "ignore" })),
            (child) => Effect.sync(() => child.kill("SIGKILL"))
          )
          yield* Effect.promise(async () => {
            for (let i = 0; i < 100 && !fs.existsSync(socket); i++) await Sshd.sleep(20)
          })
          yield* Effect.promise(() =>
            new Promise<void>((resolve, reject) =>
              cp.execFile(
                "ssh-add",
                ["-q", sshd.clientKeyPath],
                { env: { SSH_AUTH_SOCK: socket } },
                (e) => (e ? reject(e) : resolve())
              )
            )
          )
          assert.isDefined(agent.pid)
          const transport = yield* SshTransport.make()
          const viaAgent = yield* transport.run(
            sshd.target({ auth: SshTarget.agent(socket), id: "agent" }),
            sh("echo agent")
          )
          assert.strictEqual(text(viaAgent.stdout), "agent\n")

          // the same key, encrypted with a passphrase, given inline
          const encrypted = path.join(sshd.dir, `enc-${Date.now()}`)
          fs.copyFileSync(sshd.clientKeyPath, encrypted)
          fs.chmodSync(encrypted, 0o600)
          yield* Effect.promise(() =>
            new Promise<void>((resolve, reject) =>
              cp.execFile(
                "ssh-keygen",
                ["-q", "-p", "-P", "", "-N", "pass phrase", "-f", encrypted],
                (e) => (e ? reject(e) : resolve())
              )
            )
          )
          const keyText = fs.readFileSync(encrypted, "utf8")
          const withPassphrase = yield* transport.run(
            sshd.target({ auth: SshTarget.key(keyText, "pass phrase"), id: "encrypted" }),
            sh("echo encrypted")
          )
          assert.strictEqual(text(withPassphrase.stdout), "encrypted\n")
          const wrong = yield* Effect.flip(
            transport.run(sshd.target({ auth: SshTarget.key(keyText, "wrong") }), sh("true"))
          )
          assert.strictEqual(wrong.reason, "AuthFailed")
          assert.notInclude(wrong.message, "wrong")
        })
    )

    it.scoped("a key with a bad passphrase fails fast as AuthFailed, without dialling", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const transport = yield* SshTransport.make()
        const error = yield* Effect.flip(
          transport.run(
            sshd.target({ auth: SshTarget.key("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n") }),
            sh("true")
          )
        )
        assert.strictEqual(error.reason, "AuthFailed")
        assert.strictEqual(error.phase, "delivery")
      }))

    it.scoped("host keys: strict with the right key, pinned fingerprints, insecure (with a warning)", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const transport = yield* SshTransport.make()
        const ok = (t: SshTarget.SshTarget) => Effect.map(transport.run(t, sh("echo ok")), (r) => text(r.stdout))
        assert.strictEqual(yield* ok(sshd.target()), "ok\n")
        assert.strictEqual(
          yield* ok(sshd.target({ hostKey: { policy: "pinned", fingerprints: [sshd.hostFingerprint] } })),
          "ok\n"
        )
        assert.strictEqual(yield* ok(sshd.target({ hostKey: { policy: "insecure" } })), "ok\n")
        const pinnedWrong = yield* Effect.flip(
          transport.run(
            sshd.target({ hostKey: { policy: "pinned", fingerprints: [`SHA256:${"A".repeat(43)}`] } }),
            sh("true")
          )
        )
        assert.strictEqual(pinnedWrong.reason, "HostKeyRejected")
        assert.strictEqual(pinnedWrong.detail?.presentedFingerprint, sshd.hostFingerprint)
        const unknown = yield* Effect.flip(
          transport.run(
            sshd.target({ hostKey: { policy: "strict", knownHosts: [path.join(sshd.dir, "empty")] } }),
            sh("true")
          )
        )
        assert.strictEqual(unknown.reason, "HostKeyRejected")
        assert.include(unknown.description, "not in")
      }))

    it.scoped("accept-new records the key on first use and accepts it afterwards", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const store = path.join(sshd.dir, `tofu-${Date.now()}`, "known_hosts")
        const transport = yield* SshTransport.make({ idleTimeToLive: 0 })
        const target = sshd.target({ hostKey: { policy: "accept-new", store } })
        yield* transport.run(target, sh("true"))
        const line = fs.readFileSync(store, "utf8")
        assert.strictEqual(line, `[127.0.0.1]:${sshd.port} ssh-ed25519 ${sshd.hostKey.toString("base64")}\n`)
        yield* Effect.sleep("50 millis")
        yield* transport.run(target, sh("true"))
        assert.strictEqual(fs.readFileSync(store, "utf8"), line, "recorded once")
      }))

    it.scoped("a silent server is Unreachable/HandshakeTimeout within the ready timeout", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const silent = yield* fakeServer(() => {})
        const started = Date.now()
        const report = yield* run(
          [sshd.target({ overrides: { port: silent.port, readyTimeout: Duration.millis(500), id: "silent" } })],
          "true"
        ).pipe(Effect.provide(layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Unreachable", describeReport(report))
        if (o._tag === "Unreachable") assert.strictEqual(o.error.reason, "HandshakeTimeout")
        assert.isBelow(Date.now() - started, 5000)
      }))

    it.scoped("a port that never answers is Unreachable/ConnectTimeout within the connect timeout", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const hole = yield* blackHole
        const started = Date.now()
        const report = yield* run(
          [sshd.target({ overrides: { port: hole.port, connectTimeout: Duration.millis(500), id: "hole" } })],
          "true"
        ).pipe(Effect.provide(layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Unreachable", describeReport(report))
        if (o._tag === "Unreachable") {
          assert.strictEqual(o.error.reason, "ConnectTimeout")
          assert.include(o.error.message, `127.0.0.1:${hole.port}`)
        }
        assert.isBelow(Date.now() - started, 5000)
      }))

    it.scoped("a server closing before the handshake is a delivery ConnectRefused (Unreachable, retryable)", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const rude = yield* fakeServer((s) => s.destroy())
        const transport = yield* SshTransport.make()
        const error = yield* Effect.flip(transport.run(sshd.target({ overrides: { port: rude.port } }), sh("true")))
        assert.strictEqual(error.reason, "ConnectRefused")
        assert.strictEqual(error.phase, "delivery")
      }))

    it.scoped("a server that drops the first connections before the handshake (MaxStartups) is retried", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        let seen = 0
        const flaky = yield* fakeServer((s) => {
          if (++seen <= 2) return s.destroy()
          const upstream = net.connect({ host: "127.0.0.1", port: sshd.port })
          upstream.on("error", () => s.destroy())
          s.on("close", () => upstream.destroy())
          s.pipe(upstream).pipe(s)
        })
        const transport = yield* SshTransport.make()
        const r = yield* transport.run(
          sshd.target({
            hostKey: { policy: "pinned", fingerprints: [sshd.hostFingerprint] },
            overrides: { port: flaky.port }
          }),
          sh("echo through")
        )
        assert.strictEqual(text(r.stdout), "through\n")
        assert.strictEqual(seen, 3)
      }))

    it.scoped("no common algorithm is Rejected/HandshakeFailed with both algorithm lists", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const report = yield* run(
          [sshd.target({ overrides: { algorithms: { kex: ["diffie-hellman-group1-sha1"] }, id: "legacy" } })],
          "true"
        ).pipe(Effect.provide(layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Rejected", describeReport(report))
        if (o._tag === "Rejected") {
          assert.strictEqual(o.error.reason, "HandshakeFailed")
          assert.deepStrictEqual(o.error.detail?.clientAlgorithms, ["diffie-hellman-group1-sha1"])
          const server = o.error.detail?.serverAlgorithms as Array<string>
          assert.isTrue(Array.isArray(server) && server.includes("curve25519-sha256"), JSON.stringify(o.error.detail))
          assert.strictEqual(o.error.detail?.category, "kex")
        }
      }))

    it.scoped("a target imported from ssh_config runs", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const file = path.join(sshd.dir, "ssh_config")
        fs.writeFileSync(
          file,
          [
            "Host box",
            "  HostName 127.0.0.1",
            `  Port ${sshd.port}`,
            `  User ${sshd.user}`,
            `  IdentityFile ${sshd.clientKeyPath}`,
            `  UserKnownHostsFile ${sshd.knownHostsPath}`,
            ""
          ].join("\n")
        )
        const [target] = yield* SshConfig.fromFile(file)
        const report = yield* run([target!], "echo from-config").pipe(Effect.provide(layer()))
        assert.strictEqual(report.outcomes[0]!._tag, "Succeeded", describeReport(report))
        assert.strictEqual(stdoutOf(report.outcomes[0]!), "from-config\n")
      }))

    it.scoped("targets from a YAML inventory (defaults deep-merged, durations as text, a jump host) run", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const yaml = [
          "defaults:",
          "  kind: ssh",
          `  user: ${sshd.user}`,
          `  port: ${sshd.port}`,
          `  auth: { type: key, path: ${sshd.clientKeyPath} }`,
          `  hostKey: { policy: strict, knownHosts: [${sshd.knownHostsPath}] }`,
          "  connectTimeout: 5s",
          "groups:",
          "  web:",
          "    defaults: { labels: { role: web } }",
          "    targets:",
          "      - { id: web-1, host: 127.0.0.1 }",
          "  db:",
          "    targets:",
          "      - id: db-1",
          "        host: 127.0.0.1",
          "        via:",
          `          - { host: 127.0.0.1, port: ${sshd.port}, user: ${sshd.user}, auth: { type: key, path: ${sshd.clientKeyPath} }, hostKey: { policy: pinned, fingerprints: ["${sshd.hostFingerprint}"] } }`,
          ""
        ].join("\n")
        const inventory = yield* Inventory.parse(yaml, "inventory.yaml", [SshTarget.SshTarget])
        const web = yield* Inventory.select(inventory, "role=web")
        assert.deepStrictEqual(web.map((t) => t.id), ["web-1"])
        const db = inventory.targets.find((t) => t.id === "db-1") as SshTarget.SshTarget
        assert.strictEqual(db.via.length, 1)
        assert.strictEqual(Duration.toMillis(db.connectTimeout!), 5000)
        const report = yield* run(inventory.targets, "echo hi").pipe(Effect.provide(layer()))
        assert.deepStrictEqual(report.outcomes.map((o) => o._tag), ["Succeeded", "Succeeded"], describeReport(report))
      }))

    it.scoped("secrets reach the script over stdin and never the command line or the report", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const secret = "s3cr3t-'\"$(value)"
        const report = yield* run(
          [sshd.target()],
          ScriptSource.job(
            ScriptSource.script(
              `[ "$TOKEN" = ${JSON.stringify(secret).replace(/\$/g, "\\$")} ] && echo match; echo "$TOKEN"`
            ),
            { secrets: { TOKEN: Redacted.make(secret) } }
          )
        ).pipe(Effect.provide(layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "Succeeded", describeReport(report))
        assert.strictEqual(stdoutOf(o), "match\n[REDACTED]\n")
        assert.notInclude(sshd.log(), "s3cr3t")
      }))
  })
})
