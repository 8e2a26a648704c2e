/**
 * The packages as a registry user gets them: packed (`npm pack`), installed into a scratch package outside the
 * repository (support/consumer.ts), and used there through their public entry points only. Inside the repository
 * the tests resolve the TypeScript sources (the `@runcmd/source` condition) and would not see a broken bundle, a
 * lost declaration or a second copy of vitest in `@runcmd/core/testing`; this file does.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Consumer, expectSuccess, isBuiltin, layer as consumerLayer } from "./support/consumer.js"

/** Bare module specifiers of a built JS file: `from "x"`, `import("x")`, `import "x"`, `require("x")`. */
const bareImports = (code: string): ReadonlyArray<string> => {
  const found = new Set<string>()
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)["']([^"'./][^"']*)["']/g
  for (const m of code.matchAll(re)) found.add(m[1]!)
  return [...found]
}

const packageName = (specifier: string) =>
  specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!

const files = (dir: string): ReadonlyArray<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(path.join(dir, e.name)) : [path.join(dir, e.name)]
  )

layer(consumerLayer, { timeout: "3 minutes", excludeTestServices: true })(
  "packed packages in a consumer outside the repository",
  (it) => {
    it.effect("every bundle imports its dependencies and peers and carries no copy of any (vitest, effect...)", () =>
      Effect.gen(function*() {
        const consumer = yield* Consumer
        assert.includeMembers(
          consumer.packed.map((p) => p.name),
          ["@runcmd/core", "@runcmd/transport-local", "@runcmd/transport-ssh", "@runcmd/cli"]
        )
        const problems: Array<string> = []
        for (const p of consumer.packed) {
          const declared = new Set([
            p.name,
            ...Object.keys(p.json.dependencies ?? {}),
            ...Object.keys(p.json.peerDependencies ?? {})
          ])
          // the CLI's one-file command bundle (dist/bundle) carries its dependencies on purpose; the library does not
          const dist = files(path.join(p.dir, "dist")).filter((f) => !f.includes(`${path.sep}bundle${path.sep}`))
          for (const file of dist.filter((f) => /\.(c|m)?js$/.test(f))) {
            for (const specifier of bareImports(fs.readFileSync(file, "utf8"))) {
              if (!isBuiltin(specifier) && !declared.has(packageName(specifier))) {
                problems.push(`${p.name}/${path.relative(p.dir, file)} imports ${specifier}, not a dependency or peer`)
              }
            }
          }
          for (const file of dist.filter((f) => /\.(c|m)?js\.map$/.test(f))) {
            const sources: ReadonlyArray<string> = JSON.parse(fs.readFileSync(file, "utf8")).sources ?? []
            const bundled = sources.filter((s) => s.includes("node_modules/"))
            if (bundled.length > 0) {
              problems.push(`${p.name}/${path.relative(p.dir, file)} bundles ${bundled.join(", ")}`)
            }
          }
        }
        assert.deepStrictEqual(problems, [])
        // @runcmd/core/testing loads the consumer's vitest, declared as optional peers
        const core = consumer.packed.find((p) => p.name === "@runcmd/core")!
        for (const peer of ["vitest", "@effect/vitest"]) {
          assert.isDefined(core.json.peerDependencies?.[peer], `${peer} is a peer of @runcmd/core`)
          assert.isTrue(core.json.peerDependenciesMeta?.[peer]?.optional, `${peer} is an optional peer`)
        }
      }))

    it.effect(
      "every module loads through its own entry and the root entry, with import and require: one copy of each export",
      () =>
        Effect.gen(function*() {
          const consumer = yield* Consumer
          for (const script of ["runtime.mjs", "runtime.cjs"]) {
            const out = yield* consumer.node([script], "60 seconds").pipe(expectSuccess(script))
            const summary = JSON.parse(out.stdout) as { modules: number; values: number; problems: Array<string> }
            assert.deepStrictEqual(summary.problems, [], script)
            assert.isAbove(summary.modules, 20, `${script}: modules loaded`)
            assert.isAbove(summary.values, 100, `${script}: value exports checked`)
          }
        }),
      120_000
    )

    it.effect(
      "a transport written in the consumer (core's README) passes the conformance suite; Runner.run works with transport-local",
      () =>
        Effect.gen(function*() {
          const consumer = yield* Consumer
          assert.deepStrictEqual(
            [...consumer.readmeFiles].sort(),
            ["src/SubprocessTransport.ts", "test/SubprocessTransport.test.ts", "test/mixed.test.ts"]
          )
          const run = yield* consumer.node(
            [
              "node_modules/vitest/vitest.mjs",
              "run",
              "--reporter=default",
              "--reporter=json",
              "--outputFile.json=vitest.json"
            ],
            "240 seconds"
          )
          const resultFile = path.join(consumer.dir, "vitest.json")
          assert.isTrue(fs.existsSync(resultFile), `vitest wrote no report:\n${run.stdout}\n${run.stderr}`)
          const result = JSON.parse(fs.readFileSync(resultFile, "utf8")) as {
            numFailedTests: number
            numPassedTests: number
            testResults: Array<{
              name: string
              status: string
              message: string
              assertionResults: Array<{ fullName: string; status: string }>
            }>
          }
          const output = `${run.stdout}\n${run.stderr}`
          // a second copy of vitest in the bundle registers the suite elsewhere: "No test suite found in file"
          for (const file of result.testResults) {
            assert.strictEqual(file.status, "passed", `${path.basename(file.name)}: ${file.message}\n${output}`)
          }
          assert.strictEqual(result.numFailedTests, 0, output)
          assert.strictEqual(run.code, 0, output)
          const passed = result.testResults.flatMap((f) => f.assertionResults).filter((a) => a.status === "passed")
          const conformance = passed.filter((a) => a.fullName.startsWith("transport conformance: subprocess "))
          assert.isAtLeast(conformance.length, 25, `conformance cases passed:\n${output}`)
          const names = passed.map((a) => a.fullName)
          assert.include(names, "Runner.run with @runcmd/transport-local")
          assert.include(names, "one plan, two kinds of targets")
          console.log(
            `packed consumer: set up in ${consumer.setupMs} ms (npm pack, unpack, links, sources read); ` +
              `its vitest run (${passed.length} tests) took ${run.ms} ms`
          )
        }),
      260_000
    )

    it.effect(
      "types: every export of every module type-checks through every entry against the built .d.ts (ESM) and .d.cts (CommonJS)",
      () =>
        Effect.gen(function*() {
          const consumer = yield* Consumer
          assert.isAbove(consumer.typeReferences, 500, "references generated from the sources' exports")
          // nodenext: types/exports.ts is ESM (`import` conditions), types/exports.cts CommonJS (`require`
          // conditions); skipLibCheck off, so the packages' declaration files are checked themselves too
          const tsc = yield* consumer.typecheck.pipe(expectSuccess("tsc in the consumer"))
          console.log(`packed consumer: tsc over ${consumer.typeReferences} references per format took ${tsc.ms} ms`)
        }),
      260_000
    )

    it.effect("the runcmd command of the packed CLI starts", () =>
      Effect.gen(function*() {
        const consumer = yield* Consumer
        const out = yield* consumer.node(["node_modules/@runcmd/cli/bin/runcmd.js", "--version"], "60 seconds").pipe(
          expectSuccess("runcmd --version")
        )
        const cli = consumer.packed.find((p) => p.name === "@runcmd/cli")!
        assert.include(out.stdout, cli.json.version)
      }), 90_000)
  }
)
