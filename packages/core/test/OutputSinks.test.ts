import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type OutputSink, OutputSinkError } from "../src/OutputSink.js"
import * as OutputSinks from "../src/OutputSinks.js"
import type * as RunEvent from "../src/RunEvent.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as ScriptSource from "../src/ScriptSource.js"
import { CapturedOutput, CaptureSink, InMemoryTransport, memoryTarget, Step } from "../src/testing.js"

const plan = (runId: string, sinks?: ReadonlyArray<OutputSink>) =>
  RunPlan.make({
    targets: [memoryTarget("a"), memoryTarget("b")],
    job: ScriptSource.job(ScriptSource.command("hi")),
    runId,
    ...(sinks === undefined ? {} : { sinks })
  })
const transport = InMemoryTransport.layer({ default: [Step.stdout("hi\n"), Step.exit(0)] })
const tagsOf = (events: ReadonlyArray<RunEvent.RunEvent>) => events.map((e) => e._tag)

describe("OutputSinks", () => {
  it.effect("a sink added by a layer sees every run in its scope", () =>
    Effect.gen(function*() {
      const captured = yield* CapturedOutput
      yield* Runner.run(plan("run-1"))
      yield* Runner.run(plan("run-2"))
      assert.deepStrictEqual(yield* captured.runIds, ["run-1", "run-2"])
      const events = yield* captured.events
      assert.strictEqual(events.filter((e) => e._tag === "RunStarted").length, 2)
      assert.strictEqual(yield* captured.output("a"), "hi\nhi\n")
    }).pipe(Effect.provide(Layer.merge(transport, CaptureSink.layer))))

  it.effect("merged with the plan's own sinks: the layer's first, each sink once", () =>
    Effect.gen(function*() {
      const order: Array<string> = []
      const named = (name: string): OutputSink => ({
        name,
        open: () =>
          Effect.sync(() => ({ write: (e) => Effect.sync(() => void (e._tag === "RunStarted" && order.push(name))) }))
      })
      const layered = named("layered")
      const own = named("own")
      yield* Runner.run(plan("r", [own, layered])).pipe(
        Effect.provide(OutputSinks.layer(layered))
      )
      assert.deepStrictEqual(order, ["layered", "own"])
    }).pipe(Effect.provide(transport)))

  it.effect("layers compose: merged into one layer or by nested provides, every sink sees the run", () =>
    Effect.gen(function*() {
      const one = CaptureSink.make("one")
      const two = CaptureSink.make("two")
      const three = CaptureSink.make("three")
      yield* Runner.run(plan("merged")).pipe(
        Effect.provide(Layer.merge(OutputSinks.layer(one.sink), OutputSinks.layer(two.sink)))
      )
      yield* Runner.run(plan("nested")).pipe(
        Effect.provide(OutputSinks.layer(three.sink)),
        Effect.provide(OutputSinks.layer(one.sink))
      )
      assert.deepStrictEqual(yield* one.runIds, ["merged", "nested"])
      assert.deepStrictEqual(yield* two.runIds, ["merged"])
      assert.deepStrictEqual(yield* three.runIds, ["nested"])
      const events = yield* two.events
      assert.deepStrictEqual(tagsOf(events).slice(0, 1), ["RunStarted"])
      assert.strictEqual(events.at(-1)!._tag, "RunFinished")
    }).pipe(Effect.provide(transport)))

  it.effect("without the service a run has its plan's sinks only, as before", () =>
    Effect.gen(function*() {
      const own = CaptureSink.make()
      const report = yield* Runner.run(plan("plain", [own.sink]))
      assert.strictEqual(report.outcomes.length, 2)
      assert.deepStrictEqual(yield* own.runIds, ["plain"])
      assert.strictEqual(yield* OutputSinks.forRun(undefined), undefined)
    }).pipe(Effect.provide(transport)))

  it.effect("a layer's sink that fails to open is a warning of the run, never a failure", () =>
    Effect.gen(function*() {
      const report = yield* Runner.run(plan("w"))
      assert.deepStrictEqual(report.outcomes.map((o) => o._tag), ["Succeeded", "Succeeded"])
      assert.strictEqual(report.warnings.length, 1)
      assert.match(report.warnings[0]!, /broken: OpenFailed: no disk/)
    }).pipe(Effect.provide(Layer.merge(
      transport,
      OutputSinks.layer({
        name: "broken",
        open: () => Effect.fail(new OutputSinkError({ reason: "OpenFailed", sink: "broken", description: "no disk" }))
      })
    ))))
})

describe("OutputSinks.layerConfig", () => {
  it.effect("RUNCMD_EVENTS_FILE and RUNCMD_OUTPUT_DIR add an events file and per-target files to every run", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-sinks-config-"))
      try {
        const env = ConfigProvider.fromMap(
          new Map([["RUNCMD_EVENTS_FILE", path.join(dir, "events.jsonl")], [
            "RUNCMD_OUTPUT_DIR",
            path.join(dir, "out")
          ]])
        )
        yield* Runner.run(plan("cfg")).pipe(
          Effect.provide(
            OutputSinks.layerConfig().pipe(Layer.provide(Layer.merge(Layer.setConfigProvider(env), NodeContext.layer)))
          )
        )
        const lines = fs.readFileSync(path.join(dir, "events.jsonl"), "utf8").trim().split("\n")
        assert.strictEqual(JSON.parse(lines[0]!)._tag, "RunStarted")
        assert.strictEqual(fs.readFileSync(path.join(dir, "out", "a.stdout"), "utf8"), "hi\n")
        // none set: no sink
        const service = yield* OutputSinks.OutputSinks.pipe(
          Effect.provide(
            OutputSinks.layerConfig().pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map()))))
          )
        )
        assert.deepStrictEqual(service.sinks(), [])
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }).pipe(Effect.provide(transport)))

  it.effect("an empty value is unset", () =>
    Effect.gen(function*() {
      const service = yield* OutputSinks.OutputSinks.pipe(Effect.provide(
        OutputSinks.layerConfig().pipe(
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["RUNCMD_OUTPUT_DIR", ""]]))))
        )
      ))
      assert.deepStrictEqual(service.sinks(), [])
    }))
})
