import { assert, describe, it } from "@effect/vitest"
import * as Runner from "@runcmd/core/Runner"
import * as RunPlan from "@runcmd/core/RunPlan"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import type * as Transport from "@runcmd/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import * as LocalTransport from "../src/LocalTransport.js"
import { createUser, hasCommand, isRoot, local, sh, target } from "./helpers.js"

const decode = (b: Uint8Array) => Buffer.from(b).toString("utf8")
const id = () => crypto.randomBytes(3).toString("hex")
const PASSWORD = `p4ss 'w' "d" $(x) ${id()}`

const probe = `printf '%s|' "$(id -un)" "$E" "$S" "$1"; cat`
const probeInvocation = (runAs: NonNullable<Transport.Invocation["runAs"]>) =>
  sh(probe, {
    runAs,
    args: ["a b"],
    env: { E: "e'v" },
    secrets: { S: Redacted.make("s\nv") },
    stdin: new TextEncoder().encode("in"),
    cwd: "/tmp"
  })

describe.skipIf(!isRoot)("LocalTransport run-as (host runs as root)", () => {
  const name = `rlt${id()}`
  let remove = () => {}
  beforeAll(() => {
    remove = createUser(name, PASSWORD)
  })
  afterAll(() => remove())

  const methods: ReadonlyArray<"runuser" | "su" | "sudo"> = [
    "runuser",
    "su",
    ...(hasCommand("sudo") ? ["sudo" as const] : [])
  ]
  it.layer(LocalTransport.layer())("methods", (it) => {
    for (const method of methods) {
      it.effect(
        `${method}: the script runs as the user with env, secrets, args and stdin`,
        () =>
          Effect.gen(function*() {
            const t = yield* local
            const r = yield* t.run(target, probeInvocation({ user: name, method }))
            assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 0 }, decode(r.stderr))
            assert.strictEqual(decode(r.stdout), `${name}|e'v|s\nv|a b|in`)
          }),
        30_000
      )
    }

    it.effect(
      "sudo with a password (root is not prompted: the password is never consumed)",
      () =>
        Effect.gen(function*() {
          if (!hasCommand("sudo")) return
          const t = yield* local
          const r = yield* t.run(
            target,
            probeInvocation({ user: name, method: "sudo", password: Redacted.make(PASSWORD) })
          )
          assert.strictEqual(decode(r.stdout), `${name}|e'v|s\nv|a b|in`)
        }),
      30_000
    )

    it.effect("an unknown user is EscalationFailed", () =>
      Effect.gen(function*() {
        const t = yield* local
        const e = yield* Effect.flip(
          t.run(target, sh("echo never", { runAs: { user: `nouser${id()}`, method: "runuser" } }))
        )
        assert.strictEqual(e.reason, "EscalationFailed")
        assert.strictEqual(e.transport, "local")
        assert.strictEqual(e.targetId, target.id)
      }), 30_000)
  })
})

describe.skipIf(!isRoot || !hasCommand("sudo"))(
  "LocalTransport sudo with a password (host runs as an unprivileged user)",
  () => {
    const s = id()
    const caller = `rlc${s}`
    const runAs = `rlt${s}`
    const rule = `/etc/sudoers.d/runcmd_local_test_${s}`
    // the bootstrap shell, started as the unprivileged caller (as a host process of that user would start it)
    const dir = path.join(os.tmpdir(), `runcmd-local-runas-${s}`)
    const shell = path.join(dir, "as-caller")
    const cleanups: Array<() => void> = []
    beforeAll(() => {
      fs.mkdirSync(dir, { recursive: true })
      cleanups.push(createUser(caller, PASSWORD), createUser(runAs))
      fs.writeFileSync(rule, `${caller} ALL=(${runAs}) ALL\n`, { mode: 0o440 })
      fs.writeFileSync(shell, `#!/bin/sh\nexec runuser -u ${caller} -- /bin/sh "$@"\n`, { mode: 0o755 })
    })
    afterAll(() => {
      fs.rmSync(rule, { force: true })
      for (const c of cleanups) c()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    it.live("the right password is answered on sudo's prompt", () =>
      Effect.gen(function*() {
        const t = yield* local
        const r = yield* t.run(
          target,
          probeInvocation({ user: runAs, method: "sudo", password: Redacted.make(PASSWORD) })
        )
        assert.deepStrictEqual(r.exit, { _tag: "Exited", code: 0 }, decode(r.stderr))
        assert.strictEqual(decode(r.stdout), `${runAs}|e'v|s\nv|a b|in`)
        assert.notInclude(decode(r.stderr), "runcmd-")
      }).pipe(Effect.provide(LocalTransport.layer({ shell }))), 30_000)

    it.live(
      "a wrong password or a missing rule: Rejected (EscalationFailed) within seconds",
      () =>
        Effect.gen(function*() {
          const started = Date.now()
          const report = yield* Runner.run(
            RunPlan.make({
              targets: [target],
              job: ScriptSource.job(ScriptSource.script("echo never")),
              policy: {
                runAs: { user: runAs, method: "sudo", password: Redacted.make("wrong") },
                timeout: Duration.seconds(20)
              }
            })
          )
          const outcome = report.outcomes[0]!
          assert.strictEqual(outcome._tag, "Rejected", JSON.stringify(outcome))
          assert.include(JSON.stringify(outcome), "EscalationFailed")
          assert.notInclude(JSON.stringify(outcome), "never")
          const t = yield* local
          const e = yield* Effect.flip(
            t.run(
              target,
              sh("echo never", { runAs: { user: "root", method: "sudo", password: Redacted.make(PASSWORD) } })
            )
          )
          assert.strictEqual(e.reason, "EscalationFailed")
          const n = yield* Effect.flip(t.run(target, sh("echo never", { runAs: { user: runAs, method: "sudo" } })))
          assert.strictEqual(n.reason, "EscalationFailed")
          assert.isBelow(Date.now() - started, 15_000)
        }).pipe(Effect.provide(LocalTransport.layer({ shell }))),
      30_000
    )
  }
)
