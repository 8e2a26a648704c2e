import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { afterAll, beforeAll } from "vitest"
import type { RunAs } from "../src/ExecutionPolicy.js"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { ExitStatus, Invocation } from "../src/Transport.js"
import type { TransportError } from "../src/TransportError.js"
import { killCarriers, run, tokenCarriers } from "./fixtures/wrapper/run.js"
import { createUser, hasCommand, isRoot, sudoRule, suffix, type TestUser } from "./fixtures/wrapper/users.js"

const sh = (text: string, runAs: RunAs, over: Partial<Invocation> = {}): Invocation => ({
  runId: "test",
  attempt: 1,
  source: ScriptSource.script(text, "sh"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  runAs,
  ...over
})

const exitOf = (r: { readonly result: Either.Either<ExitStatus, TransportError> }): ExitStatus =>
  Either.getOrThrowWith(
    r.result,
    (e) => new Error(`expected an exit status, got ${e.message} ${JSON.stringify(e.detail)}`)
  )

const errorOf = (r: { readonly result: Either.Either<ExitStatus, TransportError> }): TransportError =>
  Option.getOrThrowWith(Either.getLeft(r.result), () => new Error(`expected an error, got ${JSON.stringify(r.result)}`))

const PASSWORD = `pw 'with' "quotes" $x \\ ${suffix()}`

/** What the escalated script prints: who it is, env, secret, args, stdin. */
const probe = `printf '%s|' "$(id -un)" "$PLAIN" "$SECRET_V" "$1" "$(pwd)"; cat`

const checkProbe = (
  r: { readonly stdout: Buffer; readonly stderr: Buffer; readonly result: Either.Either<ExitStatus, TransportError> },
  user: string,
  cwd: string
) => {
  assert.deepStrictEqual(exitOf(r), { _tag: "Exited", code: 0 }, r.stderr.toString())
  assert.strictEqual(
    r.stdout.toString(),
    `${user}|plain 'v'|secret\nvalue\n|arg one|${cwd}|stdin\x00\xff`.replace("\xff", "\ufffd")
  )
}

const probeOptions = (cwd: string): Partial<Invocation> => ({
  env: { PLAIN: "plain 'v'" },
  secrets: { SECRET_V: Redacted.make("secret\nvalue\n") },
  args: ["arg one"],
  cwd,
  stdin: new Uint8Array([...new TextEncoder().encode("stdin"), 0, 0xff])
})

describe.skipIf(!isRoot)("ScriptRender.wrapper run-as, started as root", () => {
  let target: TestUser
  beforeAll(() => {
    target = createUser(`rct${suffix()}`)
  })
  afterAll(() => target?.remove())

  const methods: ReadonlyArray<RunAs["method"]> = ["runuser", "su", ...(hasCommand("sudo") ? ["sudo" as const] : [])]
  for (const method of methods) {
    it.live(
      `${method} switches user; env, secrets, args, cwd and stdin survive the switch`,
      () =>
        Effect.gen(function*() {
          const r = yield* run(
            ScriptRender.wrapper(sh(probe, { user: target.name, method }, probeOptions(target.home)))
          )
          checkProbe(r, target.name, target.home)
        }),
      30_000
    )
  }

  it.live(
    "sudo with a password from root: no prompt, the password is not consumed as data",
    () =>
      Effect.gen(function*() {
        if (!hasCommand("sudo")) return
        const r = yield* run(
          ScriptRender.wrapper(
            sh(
              probe,
              { user: target.name, method: "sudo", password: Redacted.make("unused") },
              probeOptions(target.home)
            )
          )
        )
        checkProbe(r, target.name, target.home)
      }),
    30_000
  )

  it.live("signal deaths and exit codes are faithful across the switch", () =>
    Effect.gen(function*() {
      const r1 = yield* run(ScriptRender.wrapper(sh("kill -KILL $$", { user: target.name, method: "runuser" })))
      assert.deepStrictEqual(exitOf(r1), { _tag: "Signaled", signal: "SIGKILL" })
      const r2 = yield* run(ScriptRender.wrapper(sh("exit 42", { user: target.name, method: "su" })))
      assert.deepStrictEqual(exitOf(r2), { _tag: "Exited", code: 42 })
    }), 30_000)

  it.live("an unknown user or a missing tool is EscalationFailed", () =>
    Effect.gen(function*() {
      const r = yield* run(ScriptRender.wrapper(sh("echo never", { user: `nouser${suffix()}`, method: "runuser" })))
      const e = errorOf(r)
      assert.strictEqual(e.reason, "EscalationFailed")
      assert.strictEqual(e.phase, "delivery")
      assert.strictEqual(r.stdout.length, 0)
      if (!hasCommand("doas")) {
        const d = yield* run(ScriptRender.wrapper(sh("echo never", { user: target.name, method: "doas" })))
        assert.strictEqual(errorOf(d).reason, "EscalationFailed")
        assert.include(errorOf(d).description, "doas-not-found")
      }
    }), 30_000)

  it.live(
    "TERM reaches the escalated script's tree; nothing carrying the token survives",
    () =>
      Effect.gen(function*() {
        const launch = ScriptRender.wrapper(
          sh(`trap '' TERM; (trap '' TERM; sleep 300) & setsid sleep 300 & echo up; wait`, {
            user: target.name,
            method: "sudo"
          }, {
            killGrace: Duration.millis(500)
          })
        )
        if (!hasCommand("sudo")) return
        try {
          const r = yield* run(launch, {
            onStart: (child) =>
              Effect.gen(function*() {
                yield* launch.pgid
                for (let i = 0; i < 100 && tokenCarriers(launch.token).length < 3; i++) yield* Effect.sleep(50)
                child.kill("SIGTERM")
              })
          })
          assert.isBelow(r.ms, 15_000)
          assert.deepStrictEqual(tokenCarriers(launch.token), [])
        } finally {
          killCarriers(launch.token)
        }
      }),
    30_000
  )
})

describe.skipIf(!isRoot || !hasCommand("sudo"))("ScriptRender.wrapper sudo, started as an unprivileged user", () => {
  let caller: TestUser
  let target: TestUser
  let other: TestUser
  let removeRule: () => void = () => {}
  beforeAll(() => {
    const s = suffix()
    caller = createUser(`rcc${s}`, PASSWORD)
    target = createUser(`rct${s}`)
    other = createUser(`rco${s}`)
    // the caller may become target (with its password), never other
    removeRule = sudoRule(`runcmd_test_${s}`, `${caller.name} ALL=(${target.name}) ALL`)
  })
  afterAll(() => {
    removeRule()
    caller?.remove()
    target?.remove()
    other?.remove()
  })

  it.live(
    "the right password: answered on the prompt, then everything reaches the script",
    () =>
      Effect.gen(function*() {
        const inv = sh(
          probe,
          { user: target.name, method: "sudo", password: Redacted.make(PASSWORD) },
          probeOptions("/tmp")
        )
        const launch = ScriptRender.wrapper(inv)
        const r = yield* run(launch, { asUser: caller.name })
        checkProbe(r, target.name, "/tmp")
        // the prompt is gone from stderr; the password was never in any text
        assert.notInclude(r.stderr.toString(), "prompt")
        assert.notInclude(launch.argv.join(" "), PASSWORD)
        assert.notInclude(ScriptRender.preview(inv), PASSWORD)
      }),
    30_000
  )

  it.live("a wrong password is EscalationFailed within seconds, never a hang", () =>
    Effect.gen(function*() {
      const r = yield* run(
        ScriptRender.wrapper(sh("echo never", { user: target.name, method: "sudo", password: Redacted.make("wrong") })),
        { asUser: caller.name }
      )
      const e = errorOf(r)
      assert.strictEqual(e.reason, "EscalationFailed")
      assert.strictEqual(e.phase, "delivery")
      assert.strictEqual(r.stdout.length, 0)
      assert.isBelow(r.ms, 10_000)
      assert.notInclude(e.message, "wrong")
    }), 30_000)

  it.live("no sudo rule for the requested user is EscalationFailed", () =>
    Effect.gen(function*() {
      const r = yield* run(
        ScriptRender.wrapper(sh("echo never", { user: other.name, method: "sudo", password: Redacted.make(PASSWORD) })),
        { asUser: caller.name }
      )
      assert.strictEqual(errorOf(r).reason, "EscalationFailed")
      assert.strictEqual(r.stdout.length, 0)
      assert.isBelow(r.ms, 10_000)
    }), 30_000)

  it.live("sudo -n where the rule needs a password is EscalationFailed at once", () =>
    Effect.gen(function*() {
      const r = yield* run(ScriptRender.wrapper(sh("echo never", { user: target.name, method: "sudo" })), {
        asUser: caller.name
      })
      assert.strictEqual(errorOf(r).reason, "EscalationFailed")
      assert.isBelow(r.ms, 5_000)
    }), 30_000)

  it.live("runuser as a non-root caller is EscalationFailed", () =>
    Effect.gen(function*() {
      const r = yield* run(ScriptRender.wrapper(sh("echo never", { user: target.name, method: "runuser" })), {
        asUser: caller.name
      })
      assert.strictEqual(errorOf(r).reason, "EscalationFailed")
      assert.isBelow(r.ms, 5_000)
    }), 30_000)
})
