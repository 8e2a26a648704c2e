import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Inventory from "../src/Inventory.js"
import * as Target from "../src/Target.js"
import * as Targets from "../src/Targets.js"

const ids = (targets: ReadonlyArray<Target.Target>) => targets.map((t) => t.id)

/** A discovery as a transport package would write one: calls a service (here: counts its calls). */
const discovery = (name: string, targets: ReadonlyArray<Target.Target>, cache?: Targets.Source["cache"]) => {
  const calls = { count: 0, fail: false }
  const layer = Targets.layerSource({
    name,
    discover: Effect.suspend(() => {
      calls.count++
      return calls.fail
        ? Effect.fail(new Targets.TargetsError({ reason: "DiscoveryFailed", source: name, description: "throttled" }))
        : Effect.succeed(targets)
    }),
    cache
  })
  return { calls, layer }
}

describe("Targets", () => {
  it.effect("a static list: listed and selected", () =>
    Effect.gen(function*() {
      const all = yield* Targets.select()
      assert.deepStrictEqual(ids(all), ["a", "b"])
      assert.deepStrictEqual(ids(yield* Targets.select("role=web")), ["b"])
      const nothing = yield* Effect.flip(Targets.select("role=db"))
      assert.strictEqual(nothing._tag, "InvalidPlan")
      if (nothing._tag === "InvalidPlan") assert.strictEqual(nothing.reason, "SelectorMatchedNothing")
    }).pipe(Effect.provide(Targets.layer([Target.local("a"), Target.local("b", { role: "web" })]))))

  it.effect("sources merged in one layer or by nested provides: in order, one selector over all of them", () =>
    Effect.gen(function*() {
      const web = discovery("discovery", [Target.local("web-1", { role: "web" }), Target.local("db-1", { role: "db" })])
      const merged = Layer.mergeAll(
        Targets.layer([Target.local("box", { role: "web" })], { name: "static" }),
        web.layer
      )
      const first = yield* Targets.select("role=web").pipe(Effect.provide(merged))
      assert.deepStrictEqual(ids(first), ["box", "web-1"])
      const nested = yield* Targets.select(["role=db", "id=box"]).pipe(
        Effect.provide(web.layer),
        Effect.provide(Targets.layer([Target.local("box", { role: "web" })]))
      )
      assert.deepStrictEqual(ids(nested), ["box", "db-1"]) // the enclosing layer's source first
    }))

  it.effect("a target id given by two sources is a DuplicateTargetId naming both", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Targets.list.pipe(Effect.provide(Layer.mergeAll(
        Targets.layer([Target.local("a"), Target.local("web-1")], { name: "inventory.yaml" }),
        discovery("ssh_config ~/.ssh/config", [Target.local("web-1")]).layer
      ))))
      assert.strictEqual(error._tag, "TargetsError")
      if (error._tag !== "TargetsError") return
      assert.strictEqual(error.reason, "DuplicateTargetId")
      assert.strictEqual(error.source, "ssh_config ~/.ssh/config")
      assert.match(error.description, /"web-1" is given by inventory\.yaml and by ssh_config ~\/\.ssh\/config/)
      const twice = yield* Effect.flip(Targets.list.pipe(
        Effect.provide(Targets.layer([Target.local("x"), Target.local("x")], { name: "list" }))
      ))
      assert.match(twice.message, /given by list twice/)
    }))

  it.effect("a discovery is read once for the layer's life and says when it was read (TestClock)", () =>
    Effect.gen(function*() {
      const d = discovery("tags", [Target.local("t")])
      yield* Effect.gen(function*() {
        yield* TestClock.adjust("5 seconds")
        const first = yield* Targets.list
        assert.strictEqual(first.sources[0]!.readAt, 5000)
        assert.isTrue(first.sources[0]!.cached)
        yield* TestClock.adjust("1 hour")
        const second = yield* Targets.list
        assert.strictEqual(second.sources[0]!.readAt, 5000) // from the cache
        assert.strictEqual(d.calls.count, 1)
        const targets = yield* Targets.Targets
        yield* targets.refresh
        const third = yield* Targets.list
        assert.strictEqual(third.sources[0]!.readAt, 5000 + 3600_000)
        assert.strictEqual(d.calls.count, 2)
      }).pipe(Effect.provide(d.layer))
      // a new layer (a new run) reads again
      yield* Targets.list.pipe(Effect.provide(d.layer))
      assert.strictEqual(d.calls.count, 3)
    }))

  it.effect("a cache with a time to live reads again once the listing is that old; failures are not cached", () =>
    Effect.gen(function*() {
      const d = discovery("tags", [Target.local("t")], "1 minute")
      yield* Effect.gen(function*() {
        yield* Targets.list
        yield* TestClock.adjust("59 seconds")
        yield* Targets.list
        assert.strictEqual(d.calls.count, 1)
        yield* TestClock.adjust("1 second")
        d.calls.fail = true
        const error = yield* Effect.flip(Targets.list)
        assert.strictEqual(error.message, "DiscoveryFailed (tags): throttled")
        d.calls.fail = false
        const again = yield* Targets.list
        assert.strictEqual(again.sources[0]!.readAt, 60_000)
        assert.strictEqual(d.calls.count, 3)
      }).pipe(Effect.provide(d.layer))
    }))

  it.effect("concurrent listings share one discovery", () =>
    Effect.gen(function*() {
      const d = discovery("tags", [Target.local("t")])
      yield* Effect.all([Targets.list, Targets.list, Targets.list], { concurrency: "unbounded" }).pipe(
        Effect.provide(d.layer)
      )
      assert.strictEqual(d.calls.count, 1)
    }))

  it.effect("Targets.make: a service from sources, without layers", () =>
    Effect.gen(function*() {
      const service = yield* Targets.make([{ name: "s", discover: Effect.succeed([Target.local("m")]) }])
      assert.deepStrictEqual(ids(yield* service.select("id=m")), ["m"])
      assert.deepStrictEqual(service.sources().map((s) => s.name), ["s"])
    }).pipe(Effect.scoped))
})

describe("Targets.layerInventory", () => {
  // an importer as a transport package provides one, by a layer: `fake: N` imports N targets
  const fake: Inventory.Importer = {
    key: "fake",
    import: ({ value }) =>
      Effect.succeed(Array.from({ length: Number(value) }, (_, i) => Target.local(`imp-${i}`, { imported: "yes" })))
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-targets-"))
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, "inventory.yaml")
  fs.writeFileSync(
    file,
    "targets:\n  - { id: own, kind: local, labels: { role: web } }\nimports:\n  - fake: 2\n    labels: { role: web }\n"
  )

  it.effect("reads the file, its imports run by the importers provided as layers; the same selector", () =>
    Effect.gen(function*() {
      const listing = yield* Targets.list
      assert.deepStrictEqual(ids(listing.targets), ["own", "imp-0", "imp-1", "extra"])
      assert.deepStrictEqual(listing.sources.map((s) => s.name), [file, "static targets"])
      assert.deepStrictEqual(ids(yield* Targets.select("imported=yes")), ["imp-0", "imp-1"])
    }).pipe(Effect.provide(
      Layer.mergeAll(
        Targets.layerInventory(file, [Target.Local]),
        Inventory.layerImporter(fake),
        Targets.layer([Target.local("extra")])
      ).pipe(Layer.provide(NodeFileSystem.layer))
    )))

  it.effect("without the importer in scope, the import is an InvalidPlan naming the entry", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Targets.list)
      assert.strictEqual(error._tag, "InvalidPlan")
      assert.include(error.message, `${file}: imports[0]`)
    }).pipe(Effect.provide(Targets.layerInventory(file, [Target.Local]).pipe(Layer.provide(NodeFileSystem.layer)))))

  it.effect("an importer provided by an enclosing layer is used too", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(ids((yield* Targets.list).targets), ["own", "imp-0", "imp-1"])
    }).pipe(
      Effect.provide(Targets.layerInventory(file, [Target.Local]).pipe(Layer.provide(NodeFileSystem.layer))),
      Effect.provide(Inventory.layerImporter(fake))
    ))
})

describe("Targets.layerConfig", () => {
  it.effect("RUNCMD_INVENTORY names the inventory; unset, a ConfigError naming the key", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-targets-config-"))
      try {
        const file = path.join(dir, "inv.yaml")
        fs.writeFileSync(file, "targets: [{ id: c, kind: local }]\n")
        const layer = (env: Record<string, string>) =>
          Targets.layerConfig([Target.Local]).pipe(
            Layer.provide(
              Layer.merge(
                NodeFileSystem.layer,
                Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
              )
            )
          )
        assert.deepStrictEqual(ids(yield* Targets.select().pipe(Effect.provide(layer({ RUNCMD_INVENTORY: file })))), [
          "c"
        ])
        const error = yield* Effect.flip(Targets.select().pipe(Effect.provide(layer({}))))
        assert.include(String(error), "RUNCMD_INVENTORY")
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})
