import { assert, describe, it } from "@effect/vitest"
import * as ScriptSource from "@runcmd/core/ScriptSource"
import {
  drive,
  DriveError,
  InMemory,
  InMemoryTarget,
  InMemoryTransport,
  memoryTarget,
  Step
} from "@runcmd/core/testing"
import type * as Testing from "@runcmd/core/testing"
import * as Transport from "@runcmd/core/Transport"
import { TransportErrorReason } from "@runcmd/core/TransportError"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"

const text = (b: Uint8Array) => new TextDecoder().decode(b)

const invocation = (overrides: Partial<Transport.Invocation> = {}): Transport.Invocation => ({
  runId: "run-1",
  attempt: 1,
  source: ScriptSource.script("echo hi"),
  args: [],
  env: {},
  secrets: {},
  killGrace: Duration.seconds(5),
  ...overrides
})

const t1 = memoryTarget("t1")

/** Starts one execution in a fresh scope and reads its chunks (with their clock times) and exit. */
const collect = (mem: Testing.InMemoryTransport, target = t1, inv = invocation()) =>
  Effect.scoped(
    Effect.gen(function*() {
      const execution = yield* mem.transport.start(target, inv)
      const chunks = yield* Stream.runCollect(execution.output)
      const exit = yield* execution.exit
      return { chunks: Chunk.toReadonlyArray(chunks), exit }
    })
  )

describe("InMemoryTransport", () => {
  describe("targets and construction", () => {
    it("memoryTarget builds a target of kind memory that the schema accepts", () => {
      const t = memoryTarget("web-1", { role: "web" })
      assert.deepStrictEqual(t, { kind: "memory", id: "web-1", labels: { role: "web" }, os: "linux" })
      assert.deepStrictEqual(Schema.decodeUnknownSync(InMemoryTarget)({ kind: "memory", id: "a" }), {
        kind: "memory",
        id: "a",
        labels: {},
        os: "linux"
      })
    })

    it.effect("serves the memory kind with the default capabilities, configurable", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make()
        assert.strictEqual(mem.transport.name, "memory")
        assert.deepStrictEqual(mem.transport.kinds, ["memory"])
        assert.deepStrictEqual(mem.transport.capabilities, InMemoryTransport.defaultCapabilities)
        assert.strictEqual(mem.transport.capabilities.output, "live")
        assert.strictEqual(mem.transport.capabilities.cancel, "kills")
        const polled = yield* InMemoryTransport.make({
          name: "fake-cloud",
          kinds: ["memory", "fake"],
          capabilities: { output: "polled", cancel: "best-effort", secrets: false }
        })
        assert.strictEqual(polled.transport.name, "fake-cloud")
        assert.deepStrictEqual(polled.transport.kinds, ["memory", "fake"])
        assert.strictEqual(polled.transport.capabilities.output, "polled")
        assert.strictEqual(polled.transport.capabilities.cancel, "best-effort")
        assert.isFalse(polled.transport.capabilities.secrets)
        assert.isTrue(polled.transport.capabilities.stdin)
      }))

    it.effect("the layer registers the transport and provides the instance as InMemory", () =>
      Effect.gen(function*() {
        const registry = yield* Transport.Registry
        const mem = yield* InMemory
        const found = registry.get("memory")
        assert.isTrue(Option.isSome(found))
        assert.strictEqual(Option.getOrThrow(found), mem.transport)
        const r = yield* mem.transport.run(memoryTarget("x"), invocation())
        assert.strictEqual(text(r.stdout), "from layer\n")
      }).pipe(Effect.provide(InMemoryTransport.layer({ default: [Step.stdout("from layer\n"), Step.exit(0)] }))))
  })

  describe("behaviours", () => {
    it.effect("emits chunks in order on both streams, then exits with the code", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          behaviours: {
            t1: [Step.stdout("out 1\n"), Step.stderr("err 1\n"), Step.stdout(Uint8Array.from([0, 255])), Step.exit(3)]
          }
        })
        const r = yield* mem.transport.run(t1, invocation())
        assert.deepStrictEqual(r.exit, Transport.exited(3))
        assert.deepStrictEqual([...r.stdout], [...new TextEncoder().encode("out 1\n"), 0, 255])
        assert.strictEqual(text(r.stderr), "err 1\n")
      }))

    it.effect("without a behaviour a target exits 0 with no output; steps without an end exit 0", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ behaviours: { t2: [Step.stdout("no end")] } })
        const a = yield* mem.transport.run(t1, invocation())
        assert.deepStrictEqual(a, { exit: Transport.exited(0), stdout: new Uint8Array(0), stderr: new Uint8Array(0) })
        const b = yield* mem.transport.run(memoryTarget("t2"), invocation())
        assert.deepStrictEqual(b.exit, Transport.exited(0))
        assert.strictEqual(text(b.stdout), "no end")
      }))

    it.effect("dies by a signal", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: [Step.stdout("bye\n"), Step.signal("SIGKILL")] })
        const r = yield* mem.transport.run(t1, invocation())
        assert.deepStrictEqual(r.exit, Transport.signaled("SIGKILL"))
        assert.strictEqual(text(r.stdout), "bye\n")
      }))

    it.effect("steps may be plain data (durations as text)", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          default: [{ _tag: "Sleep", duration: "10 millis" }, { _tag: "Exit", code: 4 }]
        })
        const r = yield* drive(mem.transport.run(t1, invocation()))
        assert.deepStrictEqual(r.exit, Transport.exited(4))
        assert.strictEqual(yield* TestClock.currentTimeMillis, 10)
      }))

    it.effect("sees the invocation: args, env, cwd, stdin and secrets", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          default: [
            Step.emitWith((inv) => [
              { stream: "stdout", bytes: new TextEncoder().encode(`${inv.args.join(",")}|${inv.env.A}|${inv.cwd}|`) },
              { stream: "stderr", bytes: new TextEncoder().encode(Redacted.value(inv.secrets.S!)) }
            ]),
            Step.echoStdin("stdout"),
            Step.exit(0)
          ]
        })
        const r = yield* mem.transport.run(
          t1,
          invocation({
            args: ["a", "b c"],
            env: { A: "x$y" },
            cwd: "/srv/app",
            stdin: new TextEncoder().encode("input"),
            secrets: { S: Redacted.make("hush") }
          })
        )
        assert.strictEqual(text(r.stdout), "a,b c|x$y|/srv/app|input")
        assert.strictEqual(text(r.stderr), "hush")
      }))

    it.effect("a behaviour function can behave differently per attempt", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          default: (target, inv) =>
            inv.attempt === 1 ? [Step.refuse("ConnectRefused")] : [Step.stdout(`${target.id} attempt ${inv.attempt}\n`)]
        })
        const first = yield* Effect.either(mem.transport.run(t1, invocation({ attempt: 1 })))
        assert.isTrue(first._tag === "Left" && first.left.reason === "ConnectRefused")
        const second = yield* mem.transport.run(t1, invocation({ attempt: 2 }))
        assert.strictEqual(text(second.stdout), "t1 attempt 2\n")
        const starts = yield* mem.starts
        assert.deepStrictEqual(starts.map((s) => s.attempt), [1, 2])
      }))

    it.effect("setBehaviour, setDefault and reset", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: [Step.exit(1)] })
        yield* mem.setDefault([Step.exit(2)])
        yield* mem.setBehaviour("t1", [Step.exit(3)])
        assert.deepStrictEqual((yield* mem.transport.run(t1, invocation())).exit, Transport.exited(3))
        assert.deepStrictEqual((yield* mem.transport.run(memoryTarget("o"), invocation())).exit, Transport.exited(2))
        assert.strictEqual((yield* mem.starts).length, 2)
        assert.strictEqual((yield* mem.ends).length, 2)
        yield* mem.reset
        assert.strictEqual((yield* mem.starts).length, 0)
        assert.strictEqual((yield* mem.ends).length, 0)
        assert.strictEqual(yield* mem.maxConcurrent, 0)
        assert.deepStrictEqual((yield* mem.transport.run(t1, invocation())).exit, Transport.exited(1))
      }))
  })

  describe("time (TestClock)", () => {
    it.effect("sleeps, start delays and chunk delays are on the clock: nothing moves until it does", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          default: {
            steps: [Step.stdout("abc", { chunkSize: 1 }), Step.sleep("1 second"), Step.stdout("d"), Step.exit(0)],
            startDelay: "2 seconds",
            chunkDelay: "100 millis"
          }
        })
        const fiber = yield* Effect.fork(collect(mem))
        yield* TestClock.adjust("1999 millis")
        assert.strictEqual((yield* mem.starts).length, 1, "start was called at once")
        yield* TestClock.adjust("1 millis")
        yield* TestClock.adjust("1299 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)), "still sleeping")
        yield* TestClock.adjust("1 millis")
        const r = yield* Fiber.join(fiber)
        assert.deepStrictEqual(r.chunks.map((c) => [text(c.bytes), c.at]), [
          ["a", 2000],
          ["b", 2100],
          ["c", 2200],
          ["d", 3300]
        ])
        assert.deepStrictEqual(r.chunks.map((c) => c.seq), [0, 1, 2, 3])
        assert.deepStrictEqual(r.exit, Transport.exited(0))
        const ends = yield* mem.ends
        assert.strictEqual(ends[0]!.at, 3300)
      }))

    it.effect("is deterministic: the same behaviour gives the same chunks at the same times", () =>
      Effect.gen(function*() {
        const behaviour: Testing.Behaviour = {
          steps: [
            Step.stdout("x".repeat(100), { chunkSize: 7 }),
            Step.stderr("e", { chunkSize: 1 }),
            Step.sleep("250 millis"),
            Step.stdout("tail"),
            Step.exit(9)
          ],
          startDelay: "1 second",
          chunkDelay: "3 millis"
        }
        const once = Effect.gen(function*() {
          const mem = yield* InMemoryTransport.make({ default: behaviour })
          const t0 = yield* TestClock.currentTimeMillis
          const r = yield* drive(collect(mem))
          return { exit: r.exit, chunks: r.chunks.map((c) => `${c.stream}:${c.seq}:${c.at - t0}:${text(c.bytes)}`) }
        })
        const a = yield* once
        const b = yield* once
        assert.deepStrictEqual(a, b)
        assert.deepStrictEqual(a.exit, Transport.exited(9))
        assert.strictEqual(a.chunks.length, 15 + 1 + 1)
      }))

    it.effect("output: final holds every chunk until the exit", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          capabilities: { output: "final" },
          default: [Step.stdout("a"), Step.sleep("5 seconds"), Step.stdout("b"), Step.exit(0)]
        })
        const r = yield* drive(collect(mem))
        assert.deepStrictEqual(r.chunks.map((c) => [text(c.bytes), c.at]), [["a", 5000], ["b", 5000]])
      }))

    it.effect("output: polled delivers in batches every poll interval", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          capabilities: { output: "polled" },
          pollInterval: "1 second",
          default: [
            Step.stdout("a"),
            Step.sleep("300 millis"),
            Step.stdout("b"),
            Step.sleep("1 second"),
            Step.stdout("c"),
            Step.exit(0)
          ]
        })
        const r = yield* drive(collect(mem))
        assert.deepStrictEqual(r.chunks.map((c) => [text(c.bytes), c.at]), [["a", 1000], ["b", 1000], ["c", 2000]])
        assert.deepStrictEqual(r.exit, Transport.exited(0))
      }))

    it.effect("maxInlineOutputBytes caps each stream like a service would", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          capabilities: { maxInlineOutputBytes: 5 },
          default: [Step.stdout("0123456789", { chunkSize: 3 }), Step.stderr("abcdefgh"), Step.exit(0)]
        })
        const r = yield* mem.transport.run(t1, invocation())
        assert.strictEqual(text(r.stdout), "01234")
        assert.strictEqual(text(r.stderr), "abcde")
      }))

    it.effect("the pipe is bounded: a process whose output nobody reads blocks, and resumes when read", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          pipeCapacity: 2,
          default: [Step.stdout("z".repeat(10), { chunkSize: 1 }), Step.exit(0)]
        })
        const scope = yield* Scope.make()
        const execution = yield* Scope.extend(mem.transport.start(t1, invocation()), scope)
        yield* TestClock.adjust("1 hour")
        assert.strictEqual((yield* mem.ends).length, 0, "blocked writing")
        assert.strictEqual(yield* mem.running, 1)
        const out = yield* Stream.runCollect(execution.output)
        assert.strictEqual(Chunk.size(out), 10)
        assert.deepStrictEqual(yield* execution.exit, Transport.exited(0))
        assert.strictEqual((yield* mem.ends).length, 1)
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual((yield* mem.cancels).length, 0, "closing after the exit is not a cancel")
      }))
  })

  describe("errors", () => {
    const reasons = TransportErrorReason.literals

    it.effect("fail: every reason fails the output (after the output before it) and the exit, typed", () =>
      Effect.gen(function*() {
        for (const reason of reasons) {
          const mem = yield* InMemoryTransport.make({
            default: [Step.stdout("before\n"), Step.fail(reason, { detail: { n: 1 } })]
          })
          const seen: Array<string> = []
          const result = yield* Effect.scoped(
            Effect.gen(function*() {
              const execution = yield* mem.transport.start(t1, invocation())
              const streamed = yield* Effect.either(
                Stream.runForEach(execution.output, (c) => Effect.sync(() => seen.push(text(c.bytes))))
              )
              const exit = yield* Effect.either(execution.exit)
              return { streamed, exit }
            })
          )
          assert.deepStrictEqual(seen, ["before\n"], reason)
          assert.isTrue(result.streamed._tag === "Left", reason)
          assert.isTrue(result.exit._tag === "Left", reason)
          if (result.streamed._tag === "Left") {
            const e = result.streamed.left
            assert.strictEqual(e._tag, "TransportError")
            assert.strictEqual(e.reason, reason)
            assert.strictEqual(e.phase, "execution")
            assert.strictEqual(e.transport, "memory")
            assert.strictEqual(e.targetId, "t1")
            assert.deepStrictEqual(e.detail, { n: 1 })
          }
          const ends = yield* mem.ends
          assert.strictEqual(ends[0]!.error?.reason, reason)
        }
      }))

    it.effect("refuse: every reason fails start itself (delivery phase by default), typed", () =>
      Effect.gen(function*() {
        for (const reason of reasons) {
          const mem = yield* InMemoryTransport.make({
            default: [Step.refuse(reason, { description: `no: ${reason}` })]
          })
          const r = yield* Effect.either(Effect.scoped(mem.transport.start(t1, invocation())))
          assert.isTrue(r._tag === "Left", reason)
          if (r._tag === "Left") {
            assert.strictEqual(r.left.reason, reason)
            assert.strictEqual(r.left.phase, "delivery")
            assert.strictEqual(r.left.description, `no: ${reason}`)
            assert.include(r.left.message, reason)
          }
          assert.strictEqual(yield* mem.running, 0)
          assert.strictEqual((yield* mem.cancels).length, 0)
        }
      }))

    it.effect("refuse after a start delay fails after the delay", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          default: { steps: [Step.refuse("ConnectTimeout", { phase: "delivery" })], startDelay: "30 seconds" }
        })
        const r = yield* drive(Effect.either(mem.transport.run(t1, invocation())))
        assert.isTrue(r._tag === "Left" && r.left.reason === "ConnectTimeout")
        assert.strictEqual(yield* TestClock.currentTimeMillis, 30_000)
      }))

    it.effect("loseExitStatus: the output drains normally, the exit status is missing (never 0)", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: [Step.stdout("all of it\n"), Step.loseExitStatus()] })
        const r = yield* Effect.scoped(
          Effect.gen(function*() {
            const execution = yield* mem.transport.start(t1, invocation())
            const out = yield* Stream.runCollect(execution.output)
            const exit = yield* Effect.either(execution.exit)
            return { out: Chunk.toReadonlyArray(out).map((c) => text(c.bytes)), exit }
          })
        )
        assert.deepStrictEqual(r.out, ["all of it\n"])
        assert.isTrue(r.exit._tag === "Left" && r.exit.left.reason === "ProtocolError")
      }))
  })

  describe("cancellation and the log", () => {
    it.effect("hang until the scope closes: the cancel is recorded, TERM, confirmed", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: [Step.stdout("ready\n"), Step.hang] })
        const scope = yield* Scope.make()
        const execution = yield* Scope.extend(mem.transport.start(t1, invocation()), scope)
        const first = yield* Stream.runHead(execution.output)
        assert.strictEqual(text(Option.getOrThrow(first).bytes), "ready\n")
        yield* TestClock.adjust("5 seconds")
        assert.strictEqual(yield* mem.running, 1)
        yield* Scope.close(scope, Exit.void)
        assert.isTrue(yield* execution.killConfirmed)
        assert.strictEqual(yield* mem.running, 0)
        const cancels = yield* mem.cancels
        assert.deepStrictEqual(cancels, [{
          execution: 1,
          targetId: "t1",
          attempt: 1,
          at: 5000,
          endedAt: 5000,
          duringStart: false,
          signal: "SIGTERM",
          confirmed: true
        }])
        assert.strictEqual((yield* mem.ends).length, 0, "it did not end by itself")
      }))

    it.effect("ignoreTerm: the kill takes the invocation's kill grace, then KILL, confirmed", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: { steps: [Step.hang], ignoreTerm: true } })
        const scope = yield* Scope.make()
        const execution = yield* Scope.extend(
          mem.transport.start(t1, invocation({ killGrace: Duration.seconds(3) })),
          scope
        )
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("2999 millis")
        assert.isTrue(Option.isNone(yield* Fiber.poll(closing)), "still within the grace")
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(closing)
        assert.isTrue(yield* execution.killConfirmed)
        const [c] = yield* mem.cancels
        assert.strictEqual(c!.signal, "SIGKILL")
        assert.strictEqual(c!.endedAt - c!.at, 3000)
      }))

    it.effect("ignoreTerm: a process that exits by itself during the grace ends the kill early", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          default: { steps: [Step.sleep("1 second"), Step.exit(0)], ignoreTerm: true }
        })
        const scope = yield* Scope.make()
        yield* Scope.extend(mem.transport.start(t1, invocation({ killGrace: Duration.seconds(10) })), scope)
        yield* drive(Scope.close(scope, Exit.void))
        assert.strictEqual(yield* TestClock.currentTimeMillis, 1000)
        const [c] = yield* mem.cancels
        assert.strictEqual(c!.signal, "SIGTERM")
        assert.isTrue(c!.confirmed)
      }))

    it.effect("termDelay: a TERM-respecting process takes a while to die", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: { steps: [Step.hang], termDelay: "200 millis" } })
        const scope = yield* Scope.make()
        yield* Scope.extend(mem.transport.start(t1, invocation()), scope)
        yield* drive(Scope.close(scope, Exit.void))
        const [c] = yield* mem.cancels
        assert.strictEqual(c!.endedAt - c!.at, 200)
        assert.strictEqual(c!.signal, "SIGTERM")
      }))

    it.effect("confirmKill: false reports an unconfirmed kill (like a cloud service)", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: { steps: [Step.hang], confirmKill: false } })
        const scope = yield* Scope.make()
        const execution = yield* Scope.extend(mem.transport.start(t1, invocation()), scope)
        yield* Scope.close(scope, Exit.void)
        assert.isFalse(yield* execution.killConfirmed)
        const [c] = yield* mem.cancels
        assert.isFalse(c!.confirmed)
        assert.isUndefined(c!.signal)
      }))

    it.effect("a scope closed during the start delay is a cancel during start", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({ default: { steps: [Step.exit(0)], startDelay: "10 seconds" } })
        const fiber = yield* Effect.fork(Effect.scoped(mem.transport.start(t1, invocation())))
        yield* TestClock.adjust("1 second")
        yield* Fiber.interrupt(fiber)
        const [c] = yield* mem.cancels
        assert.isTrue(c!.duringStart)
        assert.strictEqual(c!.at, 1000)
        assert.strictEqual(yield* mem.running, 0)
      }))

    it.effect("the start log records target, attempt, run id, the invocation and the time", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make()
        yield* TestClock.adjust("42 millis")
        const inv = invocation({
          runId: "r-9",
          attempt: 2,
          args: ["--x"],
          env: { E: "1" },
          cwd: "/w",
          stdin: Uint8Array.of(1)
        })
        yield* mem.transport.run(memoryTarget("db", { role: "db" }), inv)
        const [s] = yield* mem.starts
        assert.strictEqual(s!.execution, 1)
        assert.strictEqual(s!.targetId, "db")
        assert.strictEqual(s!.kind, "memory")
        assert.strictEqual(s!.attempt, 2)
        assert.strictEqual(s!.runId, "r-9")
        assert.strictEqual(s!.at, 42)
        assert.strictEqual(s!.invocation, inv)
        const [e] = yield* mem.ends
        assert.deepStrictEqual(e!.status, Transport.exited(0))
      }))

    it.effect("maxConcurrent is the most executions running at once", () =>
      Effect.gen(function*() {
        const mem = yield* InMemoryTransport.make({
          default: (target) => [Step.sleep(Duration.seconds(Number(target.id.slice(1)))), Step.exit(0)]
        })
        const targets = ["s1", "s2", "s3"].map((id) => memoryTarget(id))
        yield* drive(Effect.forEach(targets, (t) => mem.transport.run(t, invocation()), { concurrency: 3 }))
        assert.strictEqual(yield* mem.maxConcurrent, 3)
        assert.strictEqual(yield* mem.running, 0)
        yield* mem.reset
        yield* drive(Effect.forEach(targets, (t) => mem.transport.run(t, invocation()), { concurrency: 1 }))
        assert.strictEqual(yield* mem.maxConcurrent, 1)
      }))
  })

  describe("drive", () => {
    it.effect("advances the clock sleep by sleep until the effect completes", () =>
      Effect.gen(function*() {
        const t0 = yield* TestClock.currentTimeMillis
        const r = yield* drive(Effect.as(Effect.zipRight(Effect.sleep("3 hours"), Effect.sleep("1 second")), "done"))
        assert.strictEqual(r, "done")
        assert.strictEqual((yield* TestClock.currentTimeMillis) - t0, 3 * 3_600_000 + 1000)
      }))

    it.effect("dies with a DriveError on a deadlock instead of hanging", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(drive(Effect.never))
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          const defect = exit.cause._tag === "Die" ? exit.cause.defect : undefined
          assert.instanceOf(defect, DriveError)
        }
      }))

    it.effect("dies with a DriveError past the horizon", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(drive(Effect.sleep("2 hours"), { horizon: "1 hour" }))
        assert.isTrue(Exit.isFailure(exit))
      }))
  })
})
