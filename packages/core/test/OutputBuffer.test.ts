import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { PassThrough } from "node:stream"
import * as OutputBuffer from "../src/OutputBuffer.js"
import type { RawChunk } from "../src/OutputChunk.js"

const bytes = (n: number, fill = 0) => new Uint8Array(n).fill(fill)
const text = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => new TextDecoder().decode(b)

const collect = (buffer: OutputBuffer.OutputBuffer<string>) =>
  Effect.gen(function*() {
    const chunks: Array<RawChunk> = []
    yield* buffer.pump((chunk) => Effect.sync(() => void chunks.push(chunk)))
    return chunks
  })

const joined = (chunks: ReadonlyArray<RawChunk>, stream: RawChunk["stream"]) =>
  chunks.filter((c) => c.stream === stream).map((c) => decode(c.bytes)).join("")

const counter = () => {
  const calls: Array<"pause" | "resume"> = []
  return { calls, producer: { pause: () => void calls.push("pause"), resume: () => void calls.push("resume") } }
}

describe("OutputBuffer", () => {
  it.effect("keeps the order within each stream and joins small chunks that arrived while the consumer was busy", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>()
      for (let i = 0; i < 100; i++) buffer.push("stdout", text(`o${i};`))
      for (let i = 0; i < 50; i++) buffer.push("stderr", text(`e${i};`))
      for (let i = 100; i < 200; i++) buffer.push("stdout", text(`o${i};`))
      buffer.end("stdout")
      buffer.end("stderr")
      const chunks = yield* collect(buffer)
      assert.strictEqual(joined(chunks, "stdout"), Array.from({ length: 200 }, (_, i) => `o${i};`).join(""))
      assert.strictEqual(joined(chunks, "stderr"), Array.from({ length: 50 }, (_, i) => `e${i};`).join(""))
      // one batch per run of a stream: the arrival order across streams is kept
      assert.deepStrictEqual(chunks.map((c) => c.stream), ["stdout", "stderr", "stdout"])
      assert.strictEqual(buffer.buffered(), 0)
    }))

  it.effect("hands on a large chunk as it is (no copy) and never makes a batch above maxBatch", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>({ maxBatch: 1000, joinBelow: 400 })
      const large = bytes(500, 7)
      for (let i = 0; i < 10; i++) buffer.push("stdout", bytes(300, i))
      buffer.push("stdout", large)
      buffer.push("stdout", bytes(10))
      buffer.end("stdout")
      buffer.end("stderr")
      const chunks = yield* collect(buffer)
      assert.deepStrictEqual(chunks.map((c) => c.bytes.length), [900, 900, 900, 300, 500, 10])
      assert.strictEqual(chunks[4]!.bytes, large)
      assert.deepStrictEqual([...chunks[0]!.bytes.subarray(295, 305)], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    }))

  it.effect("pauses its producers above the high-water mark and resumes them at the low-water mark", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>({ highWaterMark: 1000, lowWaterMark: 400, joinBelow: 0 })
      const first = counter()
      buffer.addProducer(first.producer)
      for (let i = 0; i < 10; i++) buffer.push("stdout", bytes(100))
      assert.deepStrictEqual(first.calls, [])
      buffer.push("stderr", bytes(100))
      assert.deepStrictEqual(first.calls, ["pause"])
      // registered while paused: paused at once
      const second = counter()
      const removeSecond = buffer.addProducer(second.producer)
      assert.deepStrictEqual(second.calls, ["pause"])
      buffer.push("stdout", bytes(100))
      assert.deepStrictEqual(first.calls, ["pause"])
      for (let i = 0; i < 7; i++) yield* buffer.take
      assert.strictEqual(buffer.buffered(), 500)
      assert.deepStrictEqual(first.calls, ["pause"])
      yield* buffer.take
      assert.strictEqual(buffer.buffered(), 400)
      assert.deepStrictEqual(first.calls, ["pause", "resume"])
      assert.deepStrictEqual(second.calls, ["pause", "resume"])
      removeSecond()
      for (let i = 0; i < 10; i++) buffer.push("stdout", bytes(100))
      assert.deepStrictEqual(first.calls, ["pause", "resume", "pause"])
      assert.deepStrictEqual(second.calls, ["pause", "resume"])
    }))

  it.effect("ends when both streams ended and everything was taken, not before", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>()
      const fiber = yield* Effect.fork(collect(buffer))
      buffer.push("stdout", text("a"))
      buffer.end("stdout")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 20)))
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      buffer.push("stderr", text("b"))
      buffer.push("stdout", text("ignored: stdout ended"))
      buffer.end("stderr")
      const chunks = yield* Fiber.join(fiber)
      assert.strictEqual(joined(chunks, "stdout"), "a")
      assert.strictEqual(joined(chunks, "stderr"), "b")
      assert.isTrue(buffer.ended())
      assert.isUndefined(yield* buffer.take)
    }))

  it.effect("fails after what was pushed before the failure was taken; the first failure wins", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>()
      const seen: Array<string> = []
      const fiber = yield* Effect.fork(
        buffer.pump((chunk) => Effect.sync(() => void seen.push(decode(chunk.bytes))))
      )
      buffer.push("stdout", text("before"))
      buffer.fail("lost")
      buffer.fail("second")
      const exit = yield* Fiber.await(fiber)
      assert.deepStrictEqual(exit, Exit.fail("lost"))
      assert.deepStrictEqual(seen, ["before"])
    }))

  it.effect("emits one batch at a time: the next waits for the consumer", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>({ joinBelow: 0 })
      let inEmit = 0
      let most = 0
      const fiber = yield* Effect.fork(buffer.pump(() =>
        Effect.gen(function*() {
          most = Math.max(most, ++inEmit)
          yield* Effect.promise(() => new Promise((r) => setTimeout(r, 1)))
          inEmit--
        })
      ))
      for (let i = 0; i < 20; i++) {
        buffer.push(i % 2 === 0 ? "stdout" : "stderr", bytes(10))
        yield* Effect.yieldNow()
      }
      buffer.end("stdout")
      buffer.end("stderr")
      yield* Fiber.join(fiber)
      assert.strictEqual(most, 1)
    }))

  it.effect("discard drops what is buffered and what comes later, and resumes the producers for good", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>({ highWaterMark: 10, lowWaterMark: 0 })
      const c = counter()
      buffer.addProducer(c.producer)
      buffer.push("stdout", bytes(20))
      buffer.discard()
      buffer.push("stdout", bytes(20))
      assert.strictEqual(buffer.buffered(), 0)
      assert.deepStrictEqual(c.calls, ["pause", "resume"])
      buffer.end("stdout")
      buffer.end("stderr")
      assert.deepStrictEqual(yield* collect(buffer), [])
    }))

  it.effect("attachReadable: data, end and backpressure of a Node stream; a close without end ends the stream", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>({ highWaterMark: 64, lowWaterMark: 0 })
      const out = new PassThrough()
      const err = new PassThrough()
      OutputBuffer.attachReadable(buffer, "stdout", out, (e) => e.message)
      OutputBuffer.attachReadable(buffer, "stderr", err, (e) => e.message)
      out.write(Buffer.alloc(100, 1))
      yield* Effect.promise(() => new Promise((r) => setImmediate(r)))
      assert.isTrue(out.isPaused())
      assert.isTrue(err.isPaused())
      const first = yield* buffer.take
      assert.strictEqual(first!.bytes.length, 100)
      assert.strictEqual(Object.getPrototypeOf(first!.bytes), Uint8Array.prototype)
      assert.isFalse(out.isPaused())
      out.end("tail")
      err.destroy()
      const rest = yield* collect(buffer)
      assert.strictEqual(joined(rest, "stdout"), "tail")
      assert.isTrue(buffer.ended())
    }))

  it.effect("attachReadable: an error fails the output with the mapped error", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>()
      const out = new PassThrough()
      OutputBuffer.attachReadable(buffer, "stdout", out, (e) => `mapped: ${e.message}`)
      buffer.end("stderr")
      out.write("x")
      out.destroy(new Error("EIO"))
      const exit = yield* Effect.exit(collect(buffer))
      assert.deepStrictEqual(exit, Exit.fail("mapped: EIO"))
    }))

  it.effect("toStream: the batches as a Stream", () =>
    Effect.gen(function*() {
      const buffer = OutputBuffer.make<string>()
      buffer.push("stderr", text("x"))
      buffer.push("stderr", text("y"))
      buffer.end("stdout")
      buffer.end("stderr")
      const chunks = yield* Stream.runCollect(OutputBuffer.toStream(buffer))
      assert.deepStrictEqual(Chunk.toReadonlyArray(chunks).map((c) => [c.stream, decode(c.bytes)]), [["stderr", "xy"]])
    }))
})
