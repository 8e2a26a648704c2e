import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Invocation } from "../src/Transport.js"
import { TransportError } from "../src/TransportError.js"

const invocation = (over: Partial<Invocation> = {}): Invocation => ({
  runId: "p",
  attempt: 1,
  source: ScriptSource.command("true"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(1),
  ...over
})

const enc = (s: string) => new TextEncoder().encode(s)
const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** A fake process: stderr fed by the test, stdin recorded. */
const fakeIo = Effect.gen(function*() {
  const stderr = yield* Queue.unbounded<Uint8Array | null>()
  const written: Array<Uint8Array> = []
  let ended = false
  const io: ScriptRender.WrapperIo = {
    writeStdin: (bytes) =>
      Effect.suspend(() =>
        ended
          ? Effect.fail(
            new TransportError({ reason: "ConnectionLost", transport: "t", phase: "execution", description: "closed" })
          )
          : Effect.sync(() => void written.push(bytes))
      ),
    endStdin: Effect.sync(() => {
      ended = true
    }),
    stderr: Stream.fromQueue(stderr).pipe(Stream.takeWhile((c): c is Uint8Array => c !== null))
  }
  return {
    io,
    emit: (s: string | Uint8Array) => Queue.offer(stderr, typeof s === "string" ? enc(s) : s),
    close: Queue.offer(stderr, null),
    stdin: () => dec(Buffer.concat(written.map((b) => Buffer.from(b)))),
    ended: () => ended
  }
})

describe("ScriptRender protocol (no processes)", () => {
  it.scoped("removes protocol lines split at any byte, keeps everything else, reads pgid and status", () =>
    Effect.gen(function*() {
      const launch = ScriptRender.wrapper(invocation(), { nonce: "N0nce" })
      const fake = yield* fakeIo
      const out = yield* launch.drive(fake.io)
      const text = "user err 1\npartial-line" + "runcmd-N0nce:ready\n" + "runcmd-N0nce:pgid 4242\n" +
        "runcmd-N0\n" + "more runcmd-N0nce:exit 7\n" + "tail runcmd-"
      // one byte at a time
      for (const b of enc(text)) yield* fake.emit(new Uint8Array([b]))
      yield* fake.close
      const chunks = yield* Stream.runCollect(out)
      const passed = dec(Buffer.concat(Chunk.toArray(chunks).map((c) => Buffer.from(c))))
      assert.strictEqual(passed, "user err 1\npartial-line" + "runcmd-N0\n" + "more " + "tail runcmd-")
      assert.strictEqual(yield* launch.pgid, 4242)
      assert.deepStrictEqual(yield* launch.pgidNow, Option.some(4242))
      assert.deepStrictEqual(yield* launch.interpretExit({ _tag: "Exited", code: 7 }), { _tag: "Exited", code: 7 })
    }))

  it.scoped("writes the wrapper then the rest at once when no prompt can come; secrets only on stdin", () =>
    Effect.gen(function*() {
      const launch = ScriptRender.wrapper(
        invocation({ secrets: { K: Redacted.make("v\nw") }, stdin: enc("DATA"), env: { E: "e" } }),
        { nonce: "N1" }
      )
      const fake = yield* fakeIo
      yield* Effect.asVoid(launch.drive(fake.io))
      for (let i = 0; i < 100 && !fake.ended(); i++) yield* Effect.yieldNow()
      assert.isTrue(fake.ended())
      const stdin = fake.stdin()
      assert.match(stdin, /^\d+\n\{\n/)
      assert.isTrue(stdin.endsWith("v\\0012w\nDATA"))
      assert.notInclude(stdin.slice(0, stdin.length - 12), "v\nw")
    }))

  it.scoped("sudo with a password: waits for the prompt, answers once; a second prompt ends stdin", () =>
    Effect.gen(function*() {
      const launch = ScriptRender.wrapper(
        invocation({ runAs: { user: "bob", method: "sudo", password: Redacted.make("pa ss") }, stdin: enc("IN") }),
        { nonce: "N2" }
      )
      const fake = yield* fakeIo
      const out = yield* launch.drive(fake.io)
      const settle = Effect.repeatN(Effect.yieldNow(), 50)
      yield* settle
      const preamble = fake.stdin()
      assert.notInclude(preamble, "pa ss")
      yield* fake.emit("We trust you have received the usual lecture\nruncmd-N2:prompt\n")
      yield* settle
      assert.strictEqual(fake.stdin(), preamble + "pa ss\n")
      yield* fake.emit("Sorry, try again.\nruncmd-N2:prompt\n")
      yield* settle
      assert.isTrue(fake.ended())
      assert.strictEqual(fake.stdin(), preamble + "pa ss\n")
      yield* fake.emit("sudo: 1 incorrect password attempt\n")
      yield* fake.close
      const passed = dec(Buffer.concat(Chunk.toArray(yield* Stream.runCollect(out)).map((c) => Buffer.from(c))))
      assert.notInclude(passed, "runcmd-N2")
      const e = yield* Effect.flip(launch.interpretExit({ _tag: "Exited", code: 1 }))
      assert.strictEqual(e.reason, "EscalationFailed")
      assert.strictEqual(e.phase, "delivery")
      assert.notInclude(JSON.stringify(e.detail), "pa ss")
    }))

  it.scoped("sudo with a password and no prompt (cached or NOPASSWD): the password is never written", () =>
    Effect.gen(function*() {
      const launch = ScriptRender.wrapper(
        invocation({ runAs: { user: "bob", method: "sudo", password: Redacted.make("pw") }, stdin: enc("IN") }),
        { nonce: "N3" }
      )
      const fake = yield* fakeIo
      yield* Effect.asVoid(launch.drive(fake.io))
      yield* fake.emit("runcmd-N3:ready\n")
      for (let i = 0; i < 100 && !fake.ended(); i++) yield* Effect.yieldNow()
      assert.isTrue(fake.ended())
      assert.notInclude(fake.stdin(), "pw\n")
      assert.isTrue(fake.stdin().endsWith("IN"))
    }))

  it.effect("interprets statuses: signals, shell statuses, missing status, reserved failures", () =>
    Effect.gen(function*() {
      const check = (
        lines: string,
        status: { _tag: "Exited"; code: number } | { _tag: "Signaled"; signal: string },
        over: Partial<Invocation> = {}
      ) =>
        Effect.scoped(
          Effect.gen(function*() {
            const launch = ScriptRender.wrapper(invocation(over), { nonce: "S" })
            const fake = yield* fakeIo
            const out = yield* launch.drive(fake.io)
            yield* fake.emit(lines)
            yield* fake.close
            yield* Stream.runDrain(out)
            return yield* Effect.either(launch.interpretExit(status))
          })
        )
      const sig = yield* check("runcmd-S:ready\nruncmd-S:signal 9 KILL\n", { _tag: "Exited", code: 137 })
      assert.deepStrictEqual(sig._tag === "Right" && sig.right, { _tag: "Signaled", signal: "SIGKILL" })
      const core = yield* check("runcmd-S:ready\nruncmd-S:signal 11 SEGV core\n", { _tag: "Exited", code: 139 })
      assert.deepStrictEqual(core._tag === "Right" && core.right, { _tag: "Signaled", signal: "SIGSEGV" })
      const noName = yield* check("runcmd-S:ready\nruncmd-S:signal 15 \n", { _tag: "Exited", code: 143 })
      assert.deepStrictEqual(noName._tag === "Right" && noName.right, { _tag: "Signaled", signal: "SIGTERM" })
      const shs = yield* check("runcmd-S:ready\nruncmd-S:shstatus 130\n", { _tag: "Exited", code: 130 })
      assert.deepStrictEqual(shs._tag === "Right" && shs.right, { _tag: "Signaled", signal: "SIGINT" })
      const shx = yield* check("runcmd-S:ready\nruncmd-S:shstatus 3\n", { _tag: "Exited", code: 3 })
      assert.deepStrictEqual(shx._tag === "Right" && shx.right, { _tag: "Exited", code: 3 })
      const missing = yield* check("runcmd-S:ready\n", { _tag: "Exited", code: 0 })
      assert.isTrue(missing._tag === "Left" && missing.left.reason === "ProtocolError")
      const killed = yield* check("runcmd-S:ready\n", { _tag: "Signaled", signal: "SIGKILL" })
      assert.deepStrictEqual(killed._tag === "Right" && killed.right, { _tag: "Signaled", signal: "SIGKILL" })
      const notStarted = yield* check("sh: 1: head: not found\n", { _tag: "Exited", code: 125 })
      assert.isTrue(
        notStarted._tag === "Left" && notStarted.left.reason === "ProtocolError" && notStarted.left.phase === "delivery"
      )
      const cwd = yield* check("runcmd-S:ready\nruncmd-S:fail cwd\n", { _tag: "Exited", code: 125 }, { cwd: "/x" })
      assert.isTrue(cwd._tag === "Left" && cwd.left.reason === "SpawnFailed" && cwd.left.phase === "delivery")
      const esc = yield* check("sudo: unknown user\n", { _tag: "Exited", code: 1 }, {
        runAs: { user: "u", method: "sudo" }
      })
      assert.isTrue(esc._tag === "Left" && esc.left.reason === "EscalationFailed")
      if (esc._tag === "Left") assert.include(JSON.stringify(esc.left.detail), "unknown user")
      const tool = yield* check("runcmd-S:fail escalation doas-not-found\n", { _tag: "Exited", code: 125 }, {
        runAs: { user: "u", method: "doas" }
      })
      assert.isTrue(tool._tag === "Left" && tool.left.reason === "EscalationFailed")
    }))

  it("killScript names the group, the token and the grace, and nothing of the user's", () => {
    const launch = ScriptRender.wrapper(
      invocation({ env: { SECRETISH: "zzz-env" }, secrets: { K: Redacted.make("zzz-secret") } })
    )
    const text = launch.killScript(1234, Duration.millis(1500))
    assert.include(text, "__rc_pg=1234")
    assert.include(text, launch.token)
    assert.include(text, "-lt 15 ]")
    assert.notInclude(text, "zzz-")
    assert.include(launch.killScript(undefined, Duration.zero), "__rc_pg=\n")
  })
})
