import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { InvalidPlan } from "../src/InvalidPlan.js"
import * as Runner from "../src/Runner.js"
import * as RunPlan from "../src/RunPlan.js"
import * as ScriptSource from "../src/ScriptSource.js"
import * as ScriptSources from "../src/ScriptSources.js"
import { FixedSources, InMemory, InMemoryTransport, memoryTarget } from "../src/testing.js"

const sha = (text: string) => crypto.createHash("sha256").update(text).digest("hex")
const file = (p: string) => new ScriptSource.File({ path: p })
const url = (u: string, text: string) => new ScriptSource.Url({ url: u, sha256: sha(text) })

/** An object storage a cloud transport package would serve, as a layer needing its client. */
const bucket = { "s3://ops/deploy.sh": "#!/bin/bash\necho deploy\n" } as Record<string, string>
const s3 = ScriptSources.layer({
  scheme: "s3",
  fetch: ({ field, location }) =>
    location in bucket
      ? Effect.succeed(bucket[location]!)
      : Effect.fail(new InvalidPlan({ reason: "FetchFailed", path: field, description: `no object at ${location}` }))
})

describe("ScriptSources", () => {
  it.effect("Command, Script and Native pass through; a file path and a file:// url are read", () =>
    Effect.gen(function*() {
      const command = ScriptSource.command("true")
      assert.strictEqual(yield* ScriptSources.resolve(command), command)
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-sources-"))
      try {
        const p = path.join(dir, "s.py")
        fs.writeFileSync(p, "#!/usr/bin/env python3\nprint(1)\n")
        const plain = yield* ScriptSources.resolve(file(p))
        assert.deepStrictEqual(plain, ScriptSource.script("#!/usr/bin/env python3\nprint(1)\n", "python"))
        const viaUrl = yield* ScriptSources.resolve(file(pathToFileURL(p).href))
        assert.deepStrictEqual(viaUrl, plain)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("a scheme provided by a layer (a transport's object storage) resolves; its failures are typed", () =>
    Effect.gen(function*() {
      const resolved = yield* ScriptSources.resolve(file("s3://ops/deploy.sh"))
      assert.deepStrictEqual(resolved, ScriptSource.script("#!/bin/bash\necho deploy\n", "bash"))
      const missing = yield* Effect.flip(ScriptSources.resolve(file("s3://ops/nope.sh")))
      assert.strictEqual(missing.reason, "FetchFailed")
      assert.strictEqual(missing.path, "job.source.path")
      const service = yield* ScriptSources.ScriptSources
      assert.deepStrictEqual(service.schemes(), ["file", "http", "https", "s3"])
    }).pipe(Effect.provide(s3)))

  it.effect("an unknown scheme is an InvalidPlan naming the field, the scheme, the known ones and the fix", () =>
    Effect.gen(function*() {
      for (const layer of [Layer.empty, ScriptSources.layerEmpty, s3]) {
        const error = yield* Effect.flip(ScriptSources.resolve(file("gs://bucket/x.sh")).pipe(Effect.provide(layer)))
        assert.strictEqual(error.reason, "InvalidValue")
        assert.strictEqual(error.path, "job.source.path")
        assert.match(error.description, /no script source serves the scheme "gs" of gs:\/\/bucket\/x\.sh/)
        assert.match(error.description, /known: file, http, https/)
        assert.match(error.description, /provide the layer of the package that serves it \(ScriptSources\.layer\)/)
      }
    }))

  it.effect("an unknown scheme refuses the run before anything starts", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const error = yield* Effect.flip(Runner.run(RunPlan.make({
        targets: [memoryTarget("a")],
        job: ScriptSource.job(file("gs://bucket/x.sh"))
      })))
      assert.strictEqual(error.reason, "InvalidValue")
      assert.strictEqual(error.path, "job.source.path")
      assert.deepStrictEqual(yield* memory.starts, [])
      // validate says the same
      const validated = yield* Effect.flip(Runner.validate(RunPlan.make({
        targets: [memoryTarget("a")],
        job: ScriptSource.job(file("gs://bucket/x.sh"))
      })))
      assert.strictEqual(validated.path, "job.source.path")
    }).pipe(Effect.provide(InMemoryTransport.layer())))

  it.effect("a Url is checked against its sha256 whatever serves its scheme (fixed sources, no network)", () =>
    Effect.gen(function*() {
      const ok = yield* ScriptSources.resolve(url("https://example.com/deploy.sh", "echo hi\n"))
      assert.deepStrictEqual(ok, ScriptSource.script("echo hi\n", "sh"))
      const bad = yield* Effect.flip(
        ScriptSources.resolve(new ScriptSource.Url({ url: "https://example.com/deploy.sh", sha256: "0".repeat(64) }))
      )
      assert.strictEqual(bad.reason, "ChecksumMismatch")
      assert.strictEqual(bad.path, "job.source.sha256")
      const unknown = yield* Effect.flip(ScriptSources.resolve(url("https://example.com/other.sh", "x")))
      assert.strictEqual(unknown.reason, "FetchFailed")
      assert.strictEqual(unknown.path, "job.source.url")
    }).pipe(Effect.provide(FixedSources.layer({ "https://example.com/deploy.sh": "echo hi\n" }))))

  it.effect("the Runner hands the transport what the ScriptSources in scope resolved", () =>
    Effect.gen(function*() {
      const memory = yield* InMemory
      const report = yield* Runner.run(RunPlan.make({
        targets: [memoryTarget("a")],
        job: ScriptSource.job(file("s3://ops/deploy.sh"))
      }))
      assert.strictEqual(report.outcomes[0]!._tag, "Succeeded")
      const starts = yield* memory.starts
      assert.deepStrictEqual(starts[0]!.invocation.source, ScriptSource.script("#!/bin/bash\necho deploy\n", "bash"))
    }).pipe(Effect.provide(Layer.merge(InMemoryTransport.layer(), s3))))

  it.effect("a File given an http(s) location is refused: a fetched script runs only checked (Url with sha256)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ScriptSources.resolve(file("https://example.com/deploy.sh")))
      assert.strictEqual(error.reason, "InvalidValue")
      assert.strictEqual(error.path, "job.source.path")
      assert.match(error.description, /as a Url source with its sha256/)
    }).pipe(Effect.provide(FixedSources.layer({ "https://example.com/deploy.sh": "echo hi\n" }))))

  it.effect("a resolver nearer the program replaces an enclosing one for its scheme", () =>
    Effect.gen(function*() {
      const resolved = yield* ScriptSources.resolve(file("s3://ops/deploy.sh")).pipe(
        Effect.provide(FixedSources.layer({ "s3://ops/deploy.sh": "echo fixed\n" })),
        Effect.provide(s3)
      )
      assert.deepStrictEqual(resolved, ScriptSource.script("echo fixed\n", "sh"))
    }))
})
