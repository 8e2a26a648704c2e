import { assert, describe, it } from "@effect/vitest"
import { AggregationTemporality, MetricReader } from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { observability } from "../examples/opentelemetry.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as ScriptSource from "../src/ScriptSource.js"
import { InMemoryTransport, memoryTarget, Step } from "../src/testing.js"

/** A reader whose `collect()` the test calls itself. */
class TestMetricReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }
  protected override onForceFlush() {
    return Promise.resolve()
  }
  protected override onShutdown() {
    return Promise.resolve()
  }
}

const plan = RunPlan.make({
  targets: [memoryTarget("web-1"), memoryTarget("web-2")],
  job: ScriptSource.job(ScriptSource.script("deploy")),
  policy: { retry: { times: 1, backoff: Duration.millis(1), factor: 2 } }
})
const transport = InMemoryTransport.layer({
  behaviours: {
    "web-1": [Step.stdout("ok\n"), Step.exit(0)],
    // refused before delivery once, then fails: two attempts
    "web-2": [Step.refuse("ConnectRefused")]
  }
})

describe("observability through @effect/opentelemetry (examples/opentelemetry.ts)", () => {
  it.live("a span per run, per target and per attempt, with the documented attributes; metrics by outcome", () => {
    const spans = new InMemorySpanExporter()
    const metrics = new TestMetricReader()
    return Effect.gen(function*() {
      const report = yield* Runner.run(plan)
      assert.deepStrictEqual(report.outcomes.map((o) => o._tag), ["Succeeded", "Unreachable"])
      // read inside the layer's scope: closing it shuts the exporter down and clears it
      const collected = yield* Effect.promise(() => metrics.collect())
      yield* Effect.sync(() => {
        const finished = spans.getFinishedSpans()
        const byName = (name: string) => finished.filter((s) => s.name === name)
        const run = byName("Runner.run")
        assert.strictEqual(run.length, 1)
        assert.strictEqual(run[0]!.attributes["runcmd.targets"], 2)
        assert.strictEqual(run[0]!.resource.attributes["service.name"], "runcmd-test")
        const executes = byName("Runner.execute")
        assert.deepStrictEqual(executes.map((s) => s.attributes["runcmd.target.id"]).sort(), ["web-1", "web-2"])
        for (const span of executes) {
          assert.strictEqual(span.attributes["runcmd.target.kind"], "memory")
          assert.strictEqual(span.attributes["runcmd.transport"], "memory")
          assert.strictEqual(span.parentSpanContext?.spanId, run[0]!.spanContext().spanId)
        }
        const attempts = byName("Runner.attempt")
        const of = (id: string) => attempts.filter((s) => s.attributes["runcmd.target.id"] === id)
        assert.deepStrictEqual(of("web-1").map((s) => s.attributes["runcmd.attempt"]), [1])
        assert.deepStrictEqual(of("web-2").map((s) => s.attributes["runcmd.attempt"]).sort(), [1, 2])
        const web2 = executes.find((s) => s.attributes["runcmd.target.id"] === "web-2")!
        for (const a of of("web-2")) assert.strictEqual(a.parentSpanContext?.spanId, web2.spanContext().spanId)

        const all = collected.resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)
        const metric = (name: string) => all.find((m) => m.descriptor.name === name)
        const executions = metric("runcmd_executions_total")
        assert.isDefined(executions)
        const byOutcome = Object.fromEntries(
          executions!.dataPoints.map((p) => [String(p.attributes["outcome"]), Number(p.value)])
        )
        assert.strictEqual(byOutcome["Succeeded"], 1)
        assert.strictEqual(byOutcome["Unreachable"], 1)
        const retries = metric("runcmd_retries_total")
        assert.isDefined(retries)
        assert.isTrue(retries!.dataPoints.some((p) => Number(p.value) >= 1))
        const bytes = metric("runcmd_output_bytes_total")
        assert.isTrue(bytes!.dataPoints.some((p) => p.attributes["stream"] === "stdout" && Number(p.value) >= 3))
      })
    }).pipe(
      Effect.provide(
        Layer.merge(transport, observability({ serviceName: "runcmd-test", spans, batch: false, metrics }))
      )
    )
  })
})
