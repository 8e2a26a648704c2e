/**
 * The SSH lifeline and keepalive against a real sshd, through a TCP relay on loopback that can stop forwarding
 * without closing (a half-open connection: the peer vanished) and then drop (the network is gone for sshd too);
 * the lifeline of a run-as job (sudo to root) and of a user whose login shell is PowerShell (pwsh `exec`s the loop).
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import type * as SshTarget from "../src/SshTarget.js"
import * as SshTransport from "../src/SshTransport.js"
import { describeReport, run } from "./harness/helpers.js"
import { pwshLoginShell } from "./harness/pwsh.js"
import * as Sshd from "./harness/Sshd.js"

/** A relay from a loopback port to sshd; `freeze` stops forwarding (nothing closes), `drop` closes everything. */
const relay = (port: number) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; freeze: () => void; drop: () => void }>((resume) => {
      const sockets = new Set<net.Socket>()
      let frozen = false
      const server = net.createServer((client) => {
        const upstream = net.connect({ host: "127.0.0.1", port })
        for (const s of [client, upstream]) {
          sockets.add(s)
          s.on("error", () => {})
          s.on("close", () => sockets.delete(s))
        }
        client.on("data", (d: Buffer) => void (frozen || upstream.write(d)))
        upstream.on("data", (d: Buffer) => void (frozen || client.write(d)))
        // a frozen relay is a vanished network: neither side learns of the other's close
        client.on("close", () => frozen || upstream.destroy())
        upstream.on("close", () => frozen || client.destroy())
      })
      const drop = () => {
        for (const s of sockets) s.destroy()
        server.close()
      }
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          port: (server.address() as net.AddressInfo).port,
          freeze: () => void (frozen = true),
          drop
        })))
    }),
    (r) => Effect.sync(r.drop)
  )

/** Through the relay: the host key is pinned (the relay's port is not in known_hosts). */
const viaRelay = (sshd: Sshd.Sshd, port: number, id: string, overrides: Partial<SshTarget.SshTarget> = {}) =>
  sshd.target({
    id,
    hostKey: { policy: "pinned", fingerprints: [sshd.hostFingerprint] },
    overrides: { port, keepalive: { interval: Duration.millis(300), countMax: 3 }, ...overrides }
  })

const marked = (sshd: Sshd.Sshd, marker: string) => sshd.leftovers().filter((p) => p.cmd.includes(marker))

const until = (what: string, done: () => boolean, ms = 20_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + ms
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
      await Sshd.sleep(50)
    }
  })

/** The transport's lifelines (the layer's), for their counts and a round trip through every loop. */
const lifelines = Effect.map(SshTransport.SshConnections, (c) => c.lifelines!)

/**
 * Until every loop has read what was written to it so far (the ends and spares are deferred up to half a second):
 * a round trip through each, bounded.
 */
const synced = Effect.flatMap(lifelines, (l) =>
  l.sync.pipe(
    Effect.timeoutFail({
      duration: Duration.seconds(60),
      onTimeout: () => new Error("timed out waiting for the lifelines' answer")
    }),
    Effect.orDie
  ))

describe.skipIf(!Sshd.enabled())("the lifeline and keepalive", () => {
  afterEach(() => Sshd.assertNoLeftovers())

  it.layer(Sshd.layer(), Sshd.layerOptions)((it) => {
    it.scoped(
      "a half-open connection is detected by keepalive (TransportFailed, no hang); when sshd loses it, the lifeline ends the job",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const r = yield* relay(sshd.port)
          const marker = `rcll${Date.now()}`
          const fiber = yield* run(
            [
              viaRelay(sshd, r.port, "half-open", { env: { ROLE: "half-open" } }),
              viaRelay(sshd, r.port, "kept", { env: { ROLE: "kept" }, onControllerLoss: "continue" })
            ],
            `trap '' TERM HUP; exec bash -c "exec -a ${marker}-$ROLE sleep 300"`,
            { killGrace: Duration.millis(500) }
          ).pipe(Effect.provide(SshTransport.layer()), Effect.fork)
          yield* until("both jobs run", () => marked(sshd, marker).length === 2)
          const frozenAt = Date.now()
          r.freeze()
          const report = yield* Fiber.join(fiber)
          // 3 unanswered keepalives 300 ms apart, far below the 300 s of the job
          assert.isBelow(Date.now() - frozenAt, 15_000)
          for (const o of report.outcomes) {
            assert.strictEqual(o._tag, "TransportFailed", describeReport(report))
            if (o._tag === "TransportFailed") assert.strictEqual(o.remoteState, "unknown")
          }
          // sshd still believes in the connection: both jobs run on
          assert.strictEqual(marked(sshd, marker).length, 2)
          // the network is gone for sshd too: the lifeline ends the `terminate` job, the `continue` one stays
          r.drop()
          yield* until("the terminate job is gone", () => marked(sshd, `${marker}-half-open`).length === 0)
          assert.strictEqual(marked(sshd, `${marker}-kept`).length, 1)
          yield* Effect.promise(() => sshd.killLeftovers())
        }),
      { timeout: 60_000 }
    )

    it.scoped(
      "the loop discovers the connection's executions: a job it was never told of ends with the connection; a daemon an ended job left lives on",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const r = yield* relay(sshd.port)
          const marker = `rclld${Date.now()}`
          const target = viaRelay(sshd, r.port, "discovered")
          // the first execution opens the lifeline, which answers that it discovers
          const first = yield* run([target], "true")
          assert.strictEqual(first.outcomes[0]!._tag, "Succeeded", describeReport(first))
          // an execution that ends at once, leaving a daemon on purpose: spared once its end is told
          const daemon = yield* run(
            [target],
            `setsid bash -c 'trap "" TERM HUP; exec -a ${marker}-daemon sleep 300' </dev/null >/dev/null 2>&1 &`
          )
          assert.strictEqual(daemon.outcomes[0]!._tag, "Succeeded", describeReport(daemon))
          const fiber = yield* Effect.fork(run(
            [target],
            `trap '' TERM HUP; setsid bash -c "trap '' TERM HUP; exec -a ${marker}-escaped sleep 300" & ` +
              `exec bash -c "exec -a ${marker}-job sleep 300"`,
            { killGrace: Duration.millis(300) }
          ))
          yield* until("the job and its escaped child run", () => marked(sshd, marker).length === 3)
          // the ends (and so the spare of the daemon) have reached the loop
          yield* synced
          r.drop()
          yield* Fiber.join(fiber)
          yield* until(
            "the job and its escaped child are gone",
            () => marked(sshd, `${marker}-job`).length + marked(sshd, `${marker}-escaped`).length === 0
          )
          assert.strictEqual(marked(sshd, `${marker}-daemon`).length, 1, "the spared daemon lives on")
          yield* Effect.promise(() => sshd.killLeftovers())
        }).pipe(Effect.provide(SshTransport.layer())),
      { timeout: 60_000 }
    )
  })
})

class Nopasswd extends Context.Tag("Lifeline/Nopasswd")<Nopasswd, Sshd.TestUser>() {}
class PwshUser extends Context.Tag("Lifeline/PwshUser")<PwshUser, Sshd.TestUser>() {}

const usersHere = Sshd.enabled() && Sshd.isRoot() && fs.existsSync("/usr/bin/sudo") &&
  !skipWithoutPwsh("transport-ssh lifeline of a pwsh login user")

describe.skipIf(!usersHere)("the lifeline of run-as jobs and of PowerShell login users", () => {
  afterEach(() => Sshd.assertNoLeftovers({ waitMs: 5000 }))

  const layer = Layer.mergeAll(
    Sshd.layer(),
    // without a pty, sudo's command is not hung up when the connection goes: only the lifeline ends it
    Sshd.userLayer(Nopasswd, { sudo: "nopasswd", sudoWithoutPty: true }),
    // sshd runs `pwsh -c <command>` for every channel of this user
    Sshd.userLayer(PwshUser, { shell: pwshLoginShell() ?? "/bin/false" })
  )

  it.layer(layer, Sshd.layerOptions)((it) => {
    it.scoped(
      "when the connection is gone, the lifeline ends a job run as root through sudo (its own kill, kept for EOF) and the sh and PowerShell jobs of a pwsh login user",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const nopasswd = yield* Nopasswd
          const pwshUser = yield* PwshUser
          const r = yield* relay(sshd.port)
          const marker = `rcllu${Date.now()}`
          const job =
            `trap '' TERM HUP; setsid bash -c "trap '' TERM HUP; exec -a ${marker}-$ROLE-escaped sleep 300" & ` +
            `exec bash -c "exec -a ${marker}-$ROLE sleep 300"`
          const pwshTarget = (role: string) =>
            viaRelay(sshd, r.port, role, { user: pwshUser.name, shell: "pwsh", env: { ROLE: role } })
          const fiber = yield* Effect.all([
            // the loop runs as the login user: root's processes are out of its sweep, the job's own kill reaches them
            run([viaRelay(sshd, r.port, "run-as", { user: nopasswd.name, env: { ROLE: "run-as" } })], job, {
              killGrace: Duration.millis(500),
              runAs: { user: "root", method: "sudo" }
            }),
            // pwsh execs the loop; the sh job runs through /bin/sh, the PowerShell one in pwsh (its group reported)
            run([pwshTarget("pwsh-sh")], job, { killGrace: Duration.millis(500) }),
            run(
              [pwshTarget("pwsh-ps")],
              ScriptSource.job(
                ScriptSource.script(`& bash -c 'trap "" TERM HUP; exec -a ${marker}-pwsh-ps sleep 300'`, "powershell")
              ),
              { killGrace: Duration.millis(500) }
            )
          ], { concurrency: "unbounded" }).pipe(Effect.fork)
          // pwsh takes seconds to start on a loaded machine
          yield* until("the jobs run", () => marked(sshd, marker).length === 5, 90_000)
          assert.deepStrictEqual(
            marked(sshd, `${marker}-run-as`).map((p) => p.uid),
            [0, 0],
            "the run-as job runs as root"
          )
          // the run-as job's kill is kept by its lifeline once the wrapper has reported the job
          const l = yield* lifelines
          yield* until("the run-as job's kill is kept", () => l.stats().recipes === 1)
          yield* synced
          // every loop runs (one per connection: the two users', maybe more under load)
          const stats = l.stats()
          assert.isAtLeast(stats.open, 2)
          assert.strictEqual(stats.running, stats.open)
          assert.isTrue(
            Sshd.processes().some((p) =>
              p.uid === pwshUser.uid && p.comm === "sh" && p.cmd.endsWith(` ${Sshd.LIFELINE}`)
            ),
            "the pwsh user's loop is pwsh become /bin/sh"
          )
          // the connections are gone (runcmd died, the network dropped): sshd closes the lifelines' stdin
          r.drop()
          yield* Fiber.join(fiber)
          yield* until("the jobs are gone", () => marked(sshd, marker).length === 0, 30_000)
        }).pipe(Effect.provide(SshTransport.layer())),
      { timeout: 180_000 }
    )

    it.scoped(
      "a connection closed while its pwsh lifeline is still starting (idle, or the transport closing) leaves no pwsh behind (sshd kills the session)",
      () =>
        Effect.gen(function*() {
          const sshd = yield* Sshd.Server
          const pwshUser = yield* PwshUser
          const target = sshd.target({ id: "starting", user: pwshUser.name, overrides: { shell: "pwsh" } })
          const users = () => Sshd.processes().filter((p) => p.uid === pwshUser.uid && p.comm !== "sshd")
          // the user's profile makes a lifeline's pwsh take 30 s to start (as a loaded host can), the rest as usual
          const profile = path.join(pwshUser.home, ".config", "powershell", "profile.ps1")
          yield* Effect.acquireRelease(
            Effect.sync(() => {
              fs.mkdirSync(path.dirname(profile), { recursive: true, mode: 0o755 })
              fs.writeFileSync(
                profile,
                `if ([Environment]::CommandLine -match '${Sshd.LIFELINE}') { Start-Sleep -Seconds 30 }\n`,
                { mode: 0o644 }
              )
            }),
            () => Effect.sync(() => fs.rmSync(path.dirname(profile), { recursive: true, force: true }))
          )
          /** A lifeline opened on a fresh connection, its execution ended: its pwsh runs, far from the loop. */
          const starting = (idleTimeToLive: Duration.Duration) =>
            Effect.gen(function*() {
              const connections = yield* SshTransport.makeConnections({ idleTimeToLive })
              const { lease, value: pooled } = yield* connections.pool.withChannel(target, (p) => Effect.succeed(p))
              lease.release()
              const w = yield* connections.lifelines!.watch(pooled, "0123456789abcdef", Duration.millis(100), {
                shell: "pwsh",
                windows: false
              })
              w.forget()
              yield* until("the lifeline's pwsh runs", () => users().length > 0)
              assert.strictEqual(connections.lifelines!.stats().running, 0)
            })
          // the connection idles out (the transport lives on)
          yield* Effect.scoped(Effect.gen(function*() {
            yield* starting(Duration.millis(500))
            yield* until("the idle connection's pwsh is gone", () => users().length === 0, 5000)
          }))
          // the transport closes
          yield* Effect.scoped(starting(Duration.minutes(1)))
          yield* until("the closed transport's pwsh is gone", () => users().length === 0, 500)
        }),
      { timeout: 60_000 }
    )
  })
})
