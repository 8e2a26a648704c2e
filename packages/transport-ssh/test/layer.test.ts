import { assert, describe, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import * as Target from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as SshTarget from "../src/SshTarget.js"
import * as SshTransport from "../src/SshTransport.js"

describe("SshTransport layers and the target schema", () => {
  it.scoped("layer registers the transport for kind ssh, with its capabilities", () =>
    Effect.gen(function*() {
      const registry = yield* Transport.Registry
      const ssh = registry.get("ssh")
      assert.isTrue(Option.isSome(ssh))
      if (Option.isSome(ssh)) {
        assert.strictEqual(ssh.value.name, "ssh")
        assert.deepStrictEqual(ssh.value.capabilities, SshTransport.capabilities)
        assert.strictEqual(ssh.value.capabilities.output, "live")
        assert.strictEqual(ssh.value.capabilities.cancel, "kills")
      }
      const { stats } = yield* SshTransport.SshConnections
      assert.deepStrictEqual(stats(), { connections: 0, channels: 0, hosts: 0 })
    }).pipe(Effect.provide(SshTransport.layer())))

  it.scoped("layerConfig reads its options from Config", () =>
    Effect.gen(function*() {
      const registry = yield* Transport.Registry
      assert.deepStrictEqual(registry.kinds(), ["ssh"])
    }).pipe(
      Effect.provide(
        SshTransport.layerConfig(SshTransport.configFromEnv).pipe(
          Layer.provide(
            Layer.setConfigProvider(
              ConfigProvider.fromMap(new Map([["RUNCMD_SSH_MAX_CHANNELS", "4"], ["RUNCMD_SSH_IDLE_TTL", "5 seconds"]]))
            )
          )
        )
      )
    ))

  it.scoped("a target of another kind or a native source is refused as Unsupported, before any connection", () =>
    Effect.gen(function*() {
      const transport = yield* SshTransport.make()
      const invocation: Transport.Invocation = {
        runId: "r",
        attempt: 1,
        source: new ScriptSource.Native({ transport: "ssm", document: {} }),
        args: [],
        env: {},
        secrets: {},
        killGrace: Duration.seconds(1)
      }
      const notSsh = yield* Effect.flip(transport.run(Target.local("box"), invocation))
      assert.strictEqual(notSsh.reason, "Unsupported")
      const target = SshTarget.make({
        host: "127.0.0.1",
        user: "u",
        auth: SshTarget.agent("/nonexistent"),
        hostKey: { policy: "insecure" }
      })
      const native = yield* Effect.flip(transport.run(target, invocation))
      assert.strictEqual(native.reason, "Unsupported")
      assert.strictEqual(native.phase, "delivery")
    }))

  it("the schema requires a host-key policy and valid auth, and decodes inventory-style input", () => {
    const decode = Schema.decodeUnknownEither(SshTarget.SshTarget)
    const base = { kind: "ssh", id: "a", host: "h", user: "u", auth: { type: "agent" } }
    assert.isTrue(decode(base)._tag === "Left", "hostKey is required")
    assert.isTrue(decode({ ...base, hostKey: { policy: "pinned", fingerprints: ["md5:xx"] } })._tag === "Left")
    assert.isTrue(
      decode({ ...base, hostKey: { policy: "insecure" }, auth: { type: "key" } })._tag === "Left",
      "key needs key or path"
    )
    assert.isTrue(
      decode({ ...base, hostKey: { policy: "insecure" }, auth: { type: "key", path: "/k", key: "x" } })._tag === "Left",
      "not both"
    )
    const ok = decode({
      ...base,
      hostKey: { policy: "strict" },
      auth: { type: "password", password: "pw" },
      keepalive: { interval: "10s" },
      readyTimeout: "3s",
      via: [{ host: "j", user: "x", auth: { type: "agent" }, hostKey: { policy: "accept-new", store: "/tmp/kh" } }]
    })
    assert.strictEqual(ok._tag, "Right")
    if (ok._tag === "Right") {
      assert.strictEqual(ok.right.port, 22)
      assert.strictEqual(ok.right.via[0]!.port, 22)
      assert.strictEqual(String(ok.right.auth.type === "password" && ok.right.auth.password), "<redacted>")
    }
  })
})
