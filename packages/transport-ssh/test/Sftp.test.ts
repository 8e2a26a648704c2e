import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Outcome from "@runcmd/core/Outcome"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Sftp from "../src/Sftp.js"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run } from "./harness/helpers.js"
import * as Sshd from "./harness/Sshd.js"

/** The server, a directory its login user owns (its home when the harness created it) and a local one. */
const server = Effect.map(Sshd.Server, (sshd) => {
  const dir = (name: string) => {
    const d = path.join(sshd.dir, name)
    fs.mkdirSync(d, { recursive: true })
    return d
  }
  return { sshd, remoteDir: sshd.testUser?.home ?? dir("remote"), localDir: dir("local") }
})

describe.skipIf(!Sshd.enabled())("SFTP over the pooled connections", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  const layer = Layer.fresh(SshTransport.layerConnections())

  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped("uploads bytes and a file, downloads and reads them back, on one pooled connection", () =>
      Effect.gen(function*() {
        const { localDir, remoteDir, sshd } = yield* server
        const target = sshd.target()
        const bytes = crypto.randomBytes(3 * 1024 * 1024 + 17)
        yield* Sftp.upload(target, bytes, `${remoteDir}/blob.bin`, { mode: 0o600 })
        const stat = fs.statSync(`${remoteDir}/blob.bin`)
        assert.strictEqual(stat.size, bytes.length)
        assert.strictEqual(stat.mode & 0o777, 0o600)
        if (sshd.testUser !== undefined) assert.strictEqual(stat.uid, sshd.testUser.uid, "written as the login user")

        const local = path.join(localDir, "up.txt")
        fs.writeFileSync(local, "hello from a file\n")
        yield* Sftp.upload(target, local, `${remoteDir}/up.txt`)
        const back = yield* Sftp.read(target, `${remoteDir}/up.txt`)
        assert.strictEqual(new TextDecoder().decode(back), "hello from a file\n")

        const down = path.join(localDir, "down.bin")
        yield* Sftp.download(target, `${remoteDir}/blob.bin`, down)
        assert.isTrue(fs.readFileSync(down).equals(bytes))

        const { stats } = yield* SshTransport.SshConnections
        assert.strictEqual(stats().connections, 1)
        assert.strictEqual(stats().channels, 0, "every SFTP session released its channel")
      }).pipe(Effect.provide(layer)))

    it.scoped("a job's files: shipped into a private directory, removed after a timeout kill", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const target = sshd.target()
        const report = yield* run(
          [target],
          ScriptSource.job(
            ScriptSource.script(`printf '%s\\n' "$RUNCMD_FILES"; cat "$RUNCMD_FILES/a/b.txt"; sleep 30\n`),
            {
              files: [{ name: "a/b.txt", content: "shipped\n" }]
            }
          ),
          { timeout: Duration.millis(1500), killGrace: Duration.millis(500) }
        ).pipe(Effect.provide(SshTransport.layer()))
        const o = report.outcomes[0]!
        assert.strictEqual(o._tag, "TimedOut", describeReport(report))
        const [dir, content] = Outcome.capturedText(o.stdout).split("\n")
        assert.match(dir!, /^\/tmp\/runcmd-files-[0-9a-f]{24}$/)
        assert.strictEqual(content, "shipped")
        assert.isFalse(fs.existsSync(dir!), "the directory is removed once the killed execution has ended")
      }))

    it.scoped("a missing remote file is SftpError NotFound; a missing local file is LocalIo/NotFound", () =>
      Effect.gen(function*() {
        const { localDir, remoteDir, sshd } = yield* server
        const target = sshd.target()
        const missing = yield* Effect.flip(Sftp.read(target, `${remoteDir}/does-not-exist`))
        assert.strictEqual(missing._tag, "SftpError")
        if (missing._tag === "SftpError") assert.strictEqual(missing.reason, "NotFound")
        const noLocal = yield* Effect.flip(Sftp.upload(target, path.join(localDir, "nope"), `${remoteDir}/x`))
        assert.strictEqual(noLocal._tag, "SftpError")
        if (noLocal._tag === "SftpError") assert.strictEqual(noLocal.reason, "NotFound")
        const denied = yield* Effect.flip(Sftp.upload(target, new Uint8Array([1]), "/root/not-yours"))
        assert.strictEqual(denied._tag, "SftpError")
        if (denied._tag === "SftpError" && Sshd.isRoot()) assert.strictEqual(denied.reason, "PermissionDenied")
      }).pipe(Effect.provide(layer)))

    it.scoped("connection failures are TransportErrors", () =>
      Effect.gen(function*() {
        const sshd = yield* Sshd.Server
        const port = yield* Effect.promise(() => Sshd.freePort())
        const error = yield* Effect.flip(Sftp.read(sshd.target({ overrides: { port } }), "/etc/hostname"))
        assert.strictEqual(error._tag, "TransportError")
        if (error._tag === "TransportError") assert.strictEqual(error.reason, "ConnectRefused")
      }).pipe(Effect.provide(layer)))
  })
})
