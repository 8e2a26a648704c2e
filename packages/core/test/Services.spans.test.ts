import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import * as ExecutionPolicy from "../src/ExecutionPolicy.js"
import * as Runner from "../src/Runner.js"
import * as ScriptSource from "../src/ScriptSource.js"
import { drive, testLayer } from "../src/testing.js"

interface Recorded {
  readonly name: string
  readonly parent: string | undefined
  readonly attributes: Map<string, unknown>
}

/** A tracer keeping every span it is given (what an exporter would see). */
const recording = () => {
  const spans: Array<Recorded> = []
  let id = 0
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const attributes = new Map<string, unknown>()
      const spanId = `s${++id}`
      spans.push({ name, parent: Option.isSome(parent) ? (parent.value as Tracer.Span).name : undefined, attributes })
      const span: Tracer.Span = {
        _tag: "Span",
        name,
        spanId,
        traceId: "t",
        parent,
        context,
        status: { _tag: "Started", startTime },
        attributes,
        links,
        sampled: true,
        kind,
        end: () => {},
        attribute: (key, value) => void attributes.set(key, value),
        event: () => {},
        addLinks: () => {}
      }
      return span
    },
    context: (f) => f()
  })
  return { spans, layer: Layer.setTracer(tracer) }
}

describe("spans of the services", () => {
  it.effect("Runner.runJob: the job, its plan, the targets read and selected, the policy, the run and each execution", () =>
    Effect.gen(function*() {
      const traced = recording()
      yield* drive(
        Runner.runJob(ScriptSource.job(ScriptSource.command("x")), { select: "role=web" }).pipe(
          Effect.provide(traced.layer)
        )
      )
      const names = traced.spans.map((s) => s.name)
      for (
        const name of [
          "Runner.runJob",
          "Runner.planJob",
          "Targets.list",
          "Targets.discover",
          "ExecutionPolicy.current",
          "ScriptSources.resolve",
          "Runner.run",
          "Runner.execute"
        ]
      ) assert.include(names, name)
      const discover = traced.spans.find((s) => s.name === "Targets.discover")!
      assert.strictEqual(discover.attributes.get("runcmd.targets.source"), "in-memory targets")
      assert.strictEqual(discover.attributes.get("runcmd.targets"), 3)
      assert.strictEqual(
        traced.spans.find((s) => s.name === "Runner.runJob")!.attributes.get("runcmd.selector"),
        "role=web"
      )
      assert.strictEqual(traced.spans.filter((s) => s.name === "Runner.execute").length, 2)
      assert.strictEqual(traced.spans.find((s) => s.name === "Runner.planJob")!.parent, "Runner.runJob")
    }).pipe(Effect.provide(testLayer({ targets: { a: { role: "web" }, b: { role: "web" }, c: { role: "db" } } }))))

  it.effect("ExecutionPolicy.current is one span", () =>
    Effect.gen(function*() {
      const traced = recording()
      yield* ExecutionPolicy.current().pipe(Effect.provide(traced.layer))
      assert.deepStrictEqual(traced.spans.map((s) => s.name), ["ExecutionPolicy.current"])
    }))
})
