import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as fc from "fast-check"
import * as ScriptRender from "../src/ScriptRender.js"
import * as ScriptSource from "../src/ScriptSource.js"
import type { Invocation } from "../src/Transport.js"
import { run } from "./fixtures/wrapper/run.js"

/** No lone surrogates (they cannot be encoded as UTF-8). */
const isWellFormed = (s: string): boolean =>
  !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)

const NUM_RUNS = process.env.CI ? 1000 : 200

/** Pieces that break naive quoting, mixed with arbitrary code points. */
const tricky = fc.constantFrom(
  "'",
  "\"",
  "\n",
  "\r\n",
  "$(",
  ")",
  "`",
  "\\",
  "\\'",
  "'\\''",
  "-",
  "--",
  "-n",
  "-e",
  "$",
  "${",
  "}",
  "$1",
  "$@",
  "*",
  "?",
  "~",
  " ",
  "\t",
  "%s",
  "%b",
  "\\0101",
  "ü",
  "🎉",
  "\u2019",
  "#",
  ";",
  "&",
  "|",
  "<",
  ">",
  "!",
  "\u00a0",
  "\u202e",
  "\x7f",
  "\x01"
)

/** Any string without NUL that is valid Unicode (lone surrogates cannot be UTF-8). */
const value = fc
  .array(
    fc.oneof({ weight: 2, arbitrary: tricky }, { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 6 }) }),
    {
      maxLength: 10
    }
  )
  .map((parts) => parts.join(""))
  .filter((s) => !s.includes("\0") && isWellFormed(s))

const decodeNul = (bytes: Buffer): Array<string> => {
  const parts = bytes.toString("utf8").split("\0")
  return parts.slice(0, -1)
}

describe("ScriptRender.wrapper: values round-trip byte for byte (property)", () => {
  it.live(
    `argv, env and secret values (${NUM_RUNS} runs, many values per process, dash and bash)`,
    () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.array(value, { minLength: 1, maxLength: 16 }),
            fc.array(value, { maxLength: 16 }),
            fc.array(value, { maxLength: 4 }),
            fc.boolean(),
            async (args, envValues, secretValues, useBash) => {
              const env = Object.fromEntries(envValues.map((v, i) => [`V${i}`, v]))
              const secrets = Object.fromEntries(secretValues.map((v, i) => [`S${i}`, Redacted.make(v)]))
              const names = [...envValues.map((_, i) => `"$V${i}"`), ...secretValues.map((_, i) => `"$S${i}"`)]
              const script = `for a; do printf '%s\\0' "$a"; done; printf '\\001\\0'; ` +
                (names.length > 0 ? `printf '%s\\0' ${names.join(" ")}` : "true")
              const invocation: Invocation = {
                runId: "property",
                attempt: 1,
                source: ScriptSource.command("/bin/sh", "-c", script, "sh"),
                args,
                env,
                secrets,
                killGrace: Duration.seconds(1)
              }
              const launch = ScriptRender.wrapper(invocation)
              const r = await Effect.runPromise(run(launch, useBash ? { shell: "/bin/bash" } : {}))
              assert.isTrue(Either.isRight(r.result), r.stderr.toString())
              assert.deepStrictEqual(Either.getOrThrow(r.result), { _tag: "Exited", code: 0 }, r.stderr.toString())
              const out = decodeNul(r.stdout)
              assert.deepStrictEqual(out.slice(0, args.length), [...args])
              assert.strictEqual(out[args.length], "\x01")
              assert.deepStrictEqual(out.slice(args.length + 1), [...envValues, ...secretValues])
              assert.strictEqual(r.stderr.length, 0, r.stderr.toString())
              // secrets never in argv
              for (const s of secretValues) {
                if (s.length >= 4) assert.notInclude(launch.argv.join("\0"), s)
              }
            }
          ),
          { numRuns: NUM_RUNS }
        )
      ),
    600_000
  )
})

describe("ScriptRender.wrapper: large inputs", () => {
  it.live(
    "a script beyond the argv limit runs from a here-document; big env values and big stdin",
    () =>
      Effect.gen(function*() {
        const filler = "# " + "x".repeat(200) + "\n"
        const text = filler.repeat(1000) + `printf '%s|%s|' "$1" "\${#BIG}"; wc -c`
        const big = "y".repeat(200_000)
        const stdin = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251)
        const r = yield* run(
          ScriptRender.wrapper({
            runId: "large",
            attempt: 1,
            source: ScriptSource.script(text, "sh"),
            args: ["arg"],
            env: { BIG: big.slice(0, 100_000) },
            secrets: {},
            stdin,
            killGrace: Duration.seconds(1)
          })
        )
        assert.deepStrictEqual(Either.getOrThrow(r.result), { _tag: "Exited", code: 0 }, r.stderr.toString())
        assert.strictEqual(r.stdout.toString().trim(), `arg|100000|${stdin.length}`)
      }),
    60_000
  )
})
