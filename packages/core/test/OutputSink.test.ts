import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { characterStart, completePrefixLength, makeUtf8Decoder } from "../src/internal/utf8.js"
import * as Outcome from "../src/Outcome.js"
import type { StreamName } from "../src/OutputChunk.js"
import * as OutputSink from "../src/OutputSink.js"
import * as RunEvent from "../src/RunEvent.js"
import * as Target from "../src/Target.js"

// ---------------------------------------------------------------------------------------------------------------
// helpers

const enc = new TextEncoder()
const bytes = (
  input: string | ReadonlyArray<number>
) => (typeof input === "string" ? enc.encode(input) : Uint8Array.from(input))

const run: OutputSink.RunInfo = { runId: "run-1", targets: [Target.local("a"), Target.local("b")] }

/** Builds events by hand, numbering chunks per target and stream. */
const events = () => {
  const seqs = new Map<string, number>()
  let now = 1_700_000_000_000
  return {
    output: (targetId: string, stream: StreamName, data: string | Uint8Array | ReadonlyArray<number>) => {
      const key = `${targetId}/${stream}`
      const seq = seqs.get(key) ?? 0
      seqs.set(key, seq + 1)
      const chunk = { targetId, stream, seq, at: ++now, bytes: data instanceof Uint8Array ? data : bytes(data) }
      return new RunEvent.Output({ chunk })
    },
    finished: (targetId: string, outcome: Outcome.Outcome = succeeded(targetId)) =>
      new RunEvent.Finished({ targetId, at: ++now, outcome }),
    retrying: (targetId: string, attempt: number) =>
      new RunEvent.Retrying({
        targetId,
        attempt,
        at: ++now,
        error: { reason: "ConnectionLost", transport: "ssh", phase: "execution", message: "connection reset" }
      }),
    runFinished: () => new RunEvent.RunFinished({ runId: "run-1", at: ++now, interrupted: false })
  }
}

const common = (targetId: string) => ({
  targetId,
  kind: "local",
  attempts: 1,
  durationMs: 1234,
  stdout: Outcome.emptyCapture,
  stderr: Outcome.emptyCapture
})
const succeeded = (targetId: string) => new Outcome.Succeeded(common(targetId))

/** Opens a sink, writes the events, closes the sink's scope. */
const through = (sink: OutputSink.OutputSink, list: ReadonlyArray<RunEvent.RunEvent>, info = run) =>
  Effect.scoped(
    Effect.gen(function*() {
      const handle = yield* sink.open(info)
      for (const event of list) yield* handle.write(event)
    })
  )

const withTempDir = <A, E, R>(f: (dir: string) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-sink-"))),
    f,
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

const collector = () => {
  const writes: Array<string> = []
  return { writes, write: (s: string) => void writes.push(s), text: () => writes.join("") }
}

// every byte value, and UTF-8 split in every way
const binary = Uint8Array.from({ length: 256 }, (_, i) => i)
const euro = [0xe2, 0x82, 0xac] // €
const smile = [0xf0, 0x9f, 0x98, 0x80] // 😀

// ---------------------------------------------------------------------------------------------------------------

describe("utf8 decoder", () => {
  it("keeps a character split across chunks whole, at every split point", () => {
    const text = "aé€😀z"
    const all = enc.encode(text)
    for (let i = 0; i <= all.length; i++) {
      for (let j = i; j <= all.length; j++) {
        const d = makeUtf8Decoder()
        const out = d.decode(all.subarray(0, i)) + d.decode(all.subarray(i, j)) + d.decode(all.subarray(j)) + d.end()
        assert.strictEqual(out, text, `split at ${i}, ${j}`)
      }
    }
  })

  it("invalid bytes become U+FFFD; an incomplete character at the end too; a BOM is kept", () => {
    const d = makeUtf8Decoder()
    assert.strictEqual(d.decode(bytes([0x61, 0xff, 0x62])), "a\uFFFDb")
    assert.strictEqual(d.decode(bytes([0xe2, 0x82])), "")
    assert.strictEqual(d.end(), "\uFFFD")
    assert.strictEqual(d.decode(bytes([0xef, 0xbb, 0xbf, 0x61])), "\uFEFFa")
    assert.strictEqual(d.end(), "")
  })

  it("decoding in chunks equals decoding the whole (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(64), { maxLength: 6 }), (data, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((x, y) => x - y)
        const d = makeUtf8Decoder()
        let out = ""
        let from = 0
        for (const p of [...points, data.length]) {
          out += d.decode(data.subarray(from, p))
          from = p
        }
        out += d.end()
        assert.strictEqual(out, new TextDecoder("utf-8", { ignoreBOM: true }).decode(data))
      }),
      { numRuns: 1000, seed: 5 }
    )
  })

  it("finds character boundaries for head and tail captures", () => {
    const all = bytes([0x61, ...euro, ...smile])
    assert.strictEqual(completePrefixLength(all, 1), 1)
    assert.strictEqual(completePrefixLength(all, 2), 1)
    assert.strictEqual(completePrefixLength(all, 3), 1)
    assert.strictEqual(completePrefixLength(all, 4), 4)
    assert.strictEqual(completePrefixLength(all, 7), 4)
    assert.strictEqual(completePrefixLength(all), 8)
    assert.strictEqual(completePrefixLength(bytes([0x61, 0xff])), 2)
    assert.strictEqual(characterStart(all, 2), 4)
    assert.strictEqual(characterStart(all, 5), 8)
    assert.strictEqual(characterStart(all, 4), 4)
  })
})

describe("OutputSink.file per-target", () => {
  it.live("writes each target's streams byte for byte, creating files on first output and on Finished", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        const e = events()
        const sink = OutputSink.file({ dir: path.join(dir, "out"), layout: "per-target" })
        assert.strictEqual(sink.name, `file:${path.join(dir, "out")}`)
        yield* through(sink, [
          e.output("a", "stdout", binary.subarray(0, 100)),
          e.output("b", "stdout", [...euro.slice(0, 1)]),
          e.output("a", "stderr", "warn\n"),
          e.output("b", "stdout", [...euro.slice(1), 0x0a]),
          e.output("a", "stdout", binary.subarray(100)),
          e.finished("a"),
          e.finished("b"),
          e.finished("silent"),
          e.runFinished()
        ])
        const read = (name: string) => fs.readFileSync(path.join(dir, "out", name))
        assert.deepStrictEqual(new Uint8Array(read("a.stdout")), binary)
        assert.strictEqual(read("a.stderr").toString(), "warn\n")
        assert.deepStrictEqual([...read("b.stdout")], [...euro, 0x0a])
        assert.strictEqual(read("b.stderr").length, 0)
        assert.strictEqual(read("silent.stdout").length, 0)
        assert.strictEqual(read("silent.stderr").length, 0)
      })
    ))

  it.live("flushes on scope close without Finished; encodes unsafe ids; appends output after Finished", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        const e = events()
        yield* through(OutputSink.file({ dir, layout: "per-target" }), [
          e.output("vmss/0", "stdout", "x"),
          e.output("..", "stdout", "dots"),
          e.output("late", "stdout", "one "),
          e.finished("late"),
          e.output("late", "stdout", "two")
        ])
        assert.strictEqual(fs.readFileSync(path.join(dir, "vmss%2F0.stdout"), "utf8"), "x")
        assert.strictEqual(fs.readFileSync(path.join(dir, "%2E%2E.stdout"), "utf8"), "dots")
        assert.strictEqual(fs.readFileSync(path.join(dir, "late.stdout"), "utf8"), "one two")
        assert.deepStrictEqual(fs.readdirSync(dir).sort(), [
          "%2E%2E.stdout",
          "late.stderr",
          "late.stdout",
          "vmss%2F0.stdout"
        ])
      })
    ))

  it.live("keeps memory bounded for 50 MiB of output", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        v8.setFlagsFromString("--expose-gc")
        const gc = vm.runInNewContext("gc") as () => void
        const used = () => {
          gc()
          const m = process.memoryUsage()
          return m.heapUsed + m.arrayBuffers
        }
        const total = 50 * 1024 * 1024
        const sink = OutputSink.file({ dir, layout: "per-target" })
        const inHash = crypto.createHash("sha256")
        let peak = 0
        let sampled = 0
        const baseline = used()
        yield* Effect.scoped(Effect.gen(function*() {
          const handle = yield* sink.open(run)
          let written = 0
          let seq = 0
          let x = 12345
          while (written < total) {
            // sizes from 1 byte to 128 KiB: through the buffer and around it
            x = (x * 1103515245 + 12345) & 0x7fffffff
            const size = Math.min(total - written, 1 + (x % (128 * 1024)))
            const chunk = new Uint8Array(size)
            for (let i = 0; i < size; i += 4096) chunk[i] = (x + i) & 0xff
            inHash.update(chunk)
            yield* handle.write(
              new RunEvent.Output({ chunk: { targetId: "big", stream: "stdout", seq: seq++, at: 0, bytes: chunk } })
            )
            written += size
            if (written > sampled + 5 * 1024 * 1024) {
              sampled = written
              peak = Math.max(peak, used() - baseline)
            }
          }
        }))
        const file = path.join(dir, "big.stdout")
        assert.strictEqual(fs.statSync(file).size, total)
        const outHash = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex")
        assert.strictEqual(outHash, inHash.digest("hex"))
        assert.isBelow(peak, 16 * 1024 * 1024, `memory grew by ${peak} bytes`)
      })
    ), 60_000)

  it.live("a directory that cannot be created is OpenFailed naming it", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        const notADir = path.join(dir, "file")
        fs.writeFileSync(notADir, "")
        for (const layout of ["per-target", "jsonl"] as const) {
          const error = yield* Effect.flip(through(OutputSink.file({ dir: notADir, layout }), []))
          assert.strictEqual(error._tag, "OutputSinkError")
          assert.strictEqual(error.reason, "OpenFailed")
          assert.include(error.description, notADir)
        }
      })
    ))

  it.live("a file that cannot be written is WriteFailed naming it, reported once; other targets go on", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        const e = events()
        fs.mkdirSync(path.join(dir, "a.stdout"))
        const errors: Array<OutputSink.OutputSinkError> = []
        yield* Effect.scoped(Effect.gen(function*() {
          const handle = yield* OutputSink.file({ dir, layout: "per-target" }).open(run)
          for (
            const event of [
              e.output("a", "stdout", "x"),
              e.output("a", "stdout", "y"),
              e.output("b", "stdout", "z"),
              e.finished("a"),
              e.finished("b")
            ]
          ) {
            yield* handle.write(event).pipe(Effect.catchAll((error) => Effect.sync(() => errors.push(error))))
          }
        }))
        assert.strictEqual(errors.length, 1)
        assert.strictEqual(errors[0]!.reason, "WriteFailed")
        assert.include(errors[0]!.description, path.join(dir, "a.stdout"))
        assert.match(errors[0]!.message, /^file:.*: WriteFailed: cannot open .*a\.stdout: EISDIR/)
        assert.strictEqual(fs.readFileSync(path.join(dir, "b.stdout"), "utf8"), "z")
        assert.strictEqual(fs.readFileSync(path.join(dir, "a.stderr"), "utf8"), "")
      })
    ))

  it.live.skipIf(!fs.existsSync("/dev/full"))(
    "a large file's write failing in the background is WriteFailed at the next write, reported once",
    () =>
      withTempDir((dir) =>
        Effect.gen(function*() {
          const e = events()
          // a.stdout is /dev/full: opening works, every write fails (ENOSPC)
          fs.symlinkSync("/dev/full", path.join(dir, "a.stdout"))
          const errors: Array<OutputSink.OutputSinkError> = []
          const chunk = new Uint8Array(64 * 1024).fill(7)
          yield* Effect.scoped(Effect.gen(function*() {
            const handle = yield* OutputSink.file({ dir, layout: "per-target" }).open(run)
            // 8 MiB: the file takes the large buffers, so its writes run in the background
            for (let i = 0; i < 128; i++) {
              yield* handle.write(e.output("a", "stdout", chunk)).pipe(
                Effect.catchAll((error) => Effect.sync(() => errors.push(error)))
              )
              yield* handle.write(e.output("b", "stdout", chunk))
            }
            for (const event of [e.finished("a"), e.finished("b")]) {
              yield* handle.write(event).pipe(Effect.catchAll((error) => Effect.sync(() => errors.push(error))))
            }
          }))
          assert.strictEqual(errors.length, 1)
          assert.strictEqual(errors[0]!.reason, "WriteFailed")
          assert.match(errors[0]!.message, /cannot write .*a\.stdout: ENOSPC/)
          assert.strictEqual(fs.statSync(path.join(dir, "b.stdout")).size, 128 * chunk.length)
        })
      )
  )
})

describe("OutputSink.file jsonl", () => {
  it.live("writes one line per chunk, decoding UTF-8 incrementally per target and stream", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        const e = events()
        yield* through(OutputSink.file({ dir, layout: "jsonl" }), [
          e.output("a", "stdout", [0x68, ...smile.slice(0, 2)]),
          e.output("b", "stdout", [...euro.slice(0, 1)]),
          e.output("a", "stderr", "err"),
          e.output("a", "stdout", [...smile.slice(2), 0x0a]),
          e.output("b", "stdout", [...euro.slice(1), 0xff]),
          e.output("b", "stderr", [0xe2, 0x82]),
          e.finished("a"),
          e.finished("b"),
          e.runFinished()
        ])
        const lines = fs.readFileSync(path.join(dir, "output.jsonl"), "utf8").trimEnd().split("\n").map((l) =>
          JSON.parse(l)
        )
        assert.deepStrictEqual(lines.map(({ at: _at, ...rest }) => rest), [
          { targetId: "a", stream: "stdout", seq: 0, text: "h" },
          { targetId: "b", stream: "stdout", seq: 0, text: "" },
          { targetId: "a", stream: "stderr", seq: 0, text: "err" },
          { targetId: "a", stream: "stdout", seq: 1, text: "😀\n" },
          { targetId: "b", stream: "stdout", seq: 1, text: "€\uFFFD" },
          { targetId: "b", stream: "stderr", seq: 0, text: "" },
          // the incomplete character at the end of b's stderr, with the last chunk's seq
          { targetId: "b", stream: "stderr", seq: 0, text: "\uFFFD" }
        ])
        assert.strictEqual(typeof lines[0].at, "number")
      })
    ))

  it.live("output.jsonl that cannot be opened is OpenFailed naming it", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        fs.mkdirSync(path.join(dir, "output.jsonl"))
        const error = yield* Effect.flip(through(OutputSink.file({ dir, layout: "jsonl" }), []))
        assert.strictEqual(error.reason, "OpenFailed")
        assert.include(error.description, path.join(dir, "output.jsonl"))
      })
    ))
})

describe("OutputSink.console prefixed", () => {
  it.effect("prints complete lines only, never mixing two targets' partial lines", () =>
    Effect.gen(function*() {
      const e = events()
      const out = collector()
      yield* through(OutputSink.console({ mode: "prefixed", write: out.write }), [
        e.output("a", "stdout", "hello wo"),
        e.output("b", "stdout", "other "),
        e.output("a", "stdout", "rld\nsecond "),
        e.output("b", "stderr", "oops\r\n"),
        e.output("b", "stdout", [...euro.slice(0, 2)]),
        e.output("b", "stdout", [...euro.slice(2), 0x0a]),
        e.output("a", "stdout", "line\nno newline"),
        e.finished("a"),
        e.output("b", "stdout", "tail"),
        e.runFinished()
      ])
      assert.deepStrictEqual(out.writes, [
        "[a] hello world\n",
        "[b] ! oops\n",
        "[b] other €\n",
        "[a] second line\n",
        "[a] no newline\n",
        "[b] tail\n"
      ])
    }))

  it.effect("colors the prefix per target and stderr lines in red", () =>
    Effect.gen(function*() {
      const e = events()
      const out = collector()
      yield* through(OutputSink.console({ mode: "prefixed", write: out.write, color: true }), [
        e.output("a", "stdout", "x\n"),
        e.output("b", "stderr", "y\n")
      ])
      assert.deepStrictEqual(out.writes, [
        "\u001b[36m[a]\u001b[0m x\n",
        "\u001b[35m[b]\u001b[0m \u001b[31my\u001b[0m\n"
      ])
    }))

  it.effect("ends a failed attempt's partial lines before the retry marker; flushes at scope close", () =>
    Effect.gen(function*() {
      const e = events()
      const out = collector()
      yield* through(OutputSink.console({ mode: "prefixed", write: out.write }), [
        e.output("a", "stdout", "partial"),
        e.retrying("a", 1),
        e.output("a", "stdout", "again")
      ])
      assert.deepStrictEqual(
        out.text(),
        "[a] partial\n[a] ~ attempt 1 failed (ConnectionLost: connection reset); retrying\n[a] again\n"
      )
    }))

  it.effect("cuts an endless line into bounded pieces", () =>
    Effect.gen(function*() {
      const e = events()
      const out = collector()
      yield* through(OutputSink.console({ mode: "prefixed", write: out.write, maxLineLength: 4 }), [
        e.output("a", "stdout", "abcdef"),
        e.output("a", "stdout", "ghijklmnop\nq"),
        e.finished("a")
      ])
      assert.strictEqual(out.text(), "[a] abcd\n[a] efgh\n[a] ijkl\n[a] mnop\n[a] q\n")
    }))

  it.effect("a throwing writer is WriteFailed", () =>
    Effect.gen(function*() {
      const e = events()
      const error = yield* Effect.flip(through(
        OutputSink.console({
          mode: "prefixed",
          write: () => {
            throw new Error("EPIPE")
          }
        }),
        [e.output("a", "stdout", "x\n")]
      ))
      assert.strictEqual(error.reason, "WriteFailed")
      assert.match(error.description, /EPIPE/)
    }))
})

describe("OutputSink.console grouped", () => {
  it.effect("prints each target's block with a header when it finishes", () =>
    Effect.gen(function*() {
      const e = events()
      const out = collector()
      yield* through(OutputSink.console({ mode: "grouped", write: out.write }), [
        e.output("a", "stdout", "a1\na"),
        e.output("b", "stdout", "b1\n"),
        e.output("a", "stderr", "bad"),
        e.output("a", "stdout", [0x32, ...smile.slice(0, 1)]),
        e.output("a", "stdout", [...smile.slice(1), 0x0a]),
        e.finished("b"),
        e.finished("a", new Outcome.Failed({ ...common("a"), exitCode: 3, attempts: 2 })),
        e.output("c", "stdout", "never finished"),
        e.runFinished()
      ])
      assert.deepStrictEqual(out.writes, [
        "==> b: Succeeded in 1.2s\nb1\n",
        "==> a: Failed (exit 3) in 1.2s, 2 attempts\na1\na2😀\n! bad\n",
        "==> c: unfinished\nnever finished\n"
      ])
    }))

  it.effect("keeps a bounded head and tail and says how much was dropped", () =>
    Effect.gen(function*() {
      const e = events()
      const out = collector()
      const lines = Array.from({ length: 1000 }, (_, i) => `line ${String(i).padStart(3, "0")}`)
      const sink = OutputSink.console({ mode: "grouped", write: out.write, maxGroupLength: 200 })
      yield* through(sink, [
        ...lines.map((l) => e.output("a", "stdout", `${l}\n`)),
        e.finished("a", new Outcome.Skipped({ ...common("a"), why: "Deadline" }))
      ])
      const printed = out.text().trimEnd().split("\n")
      // 100 characters each for head and tail: 11 lines of 9 characters each
      assert.deepStrictEqual(printed, [
        "==> a: Skipped (Deadline)",
        ...lines.slice(0, 11),
        "[... 978 lines (8802 characters) dropped ...]",
        ...lines.slice(989)
      ])
    }))
})

describe("OutputSink.events", () => {
  const all = (): Array<RunEvent.RunEvent> => {
    const e = events()
    return [
      new RunEvent.RunStarted({ runId: "run-1", at: 1, targets: [{ id: "a", kind: "local" }] }),
      new RunEvent.Started({ targetId: "a", attempt: 1, at: 2 }),
      e.output("a", "stdout", binary),
      e.output("a", "stderr", [...smile.slice(0, 3)]),
      e.retrying("a", 1),
      e.finished(
        "a",
        new Outcome.Unreachable({
          ...common("a"),
          error: { reason: "ConnectRefused", transport: "ssh", phase: "delivery", message: "refused" }
        })
      ),
      new RunEvent.RunFinished({ runId: "run-1", at: 9, interrupted: true })
    ]
  }

  const decodeLine = Schema.decodeUnknownSync(RunEvent.RunEventJson)

  const assertRoundTrip = (lines: ReadonlyArray<string>, original: ReadonlyArray<RunEvent.RunEvent>) => {
    assert.strictEqual(lines.length, original.length)
    lines.forEach((line, i) => {
      const decoded = decodeLine(JSON.parse(line))
      const want = original[i]!
      if (want._tag === "Output") {
        assert.strictEqual(decoded._tag, "Output")
        assert.deepStrictEqual({ ...(decoded as { chunk: object }).chunk }, { ...want.chunk })
      } else {
        assert.deepStrictEqual(decoded, want)
      }
    })
  }

  it.effect("writes one JSON line per event that decodes back with RunEventJson", () =>
    Effect.gen(function*() {
      const out = collector()
      const list = all()
      yield* through(OutputSink.events({ write: out.write }), list)
      assert.isTrue(out.writes.every((w) => w.endsWith("\n") && w.indexOf("\n") === w.length - 1))
      assertRoundTrip(out.writes.map((w) => w.trimEnd()), list)
      assert.include(out.writes[2], Buffer.from(binary).toString("base64"))
    }))

  it.live("writes a file (creating its directory) that decodes back", () =>
    withTempDir((dir) =>
      Effect.gen(function*() {
        const file = path.join(dir, "logs", "events.jsonl")
        const list = all()
        yield* through(OutputSink.events({ path: file }), list)
        assertRoundTrip(fs.readFileSync(file, "utf8").trimEnd().split("\n"), list)
      })
    ))

  it.live.skipIf(!fs.existsSync("/dev/full"))(
    "a failing write is WriteFailed naming the file",
    () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(through(OutputSink.events({ path: "/dev/full" }), all()))
        assert.strictEqual(error.reason, "WriteFailed")
        assert.strictEqual(error.sink, "events:/dev/full")
        assert.match(error.description, /cannot write \/dev\/full: .*ENOSPC/)
      })
  )
})
