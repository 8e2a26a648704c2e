import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import { assertBuilt, BIN, spawnCommand, stripAnsi, tempDir, unique, writeFile } from "./helpers.js"

beforeAll(assertBuilt)

const has = (cmd: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

describe("human output on a terminal", () => {
  it.scopedLive.skipIf(!has("tmux"))(
    "live view (tmux): in-flight targets with elapsed time, then the summary",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const socket = `runcmd-test-${unique()}`
        const inv = writeFile(
          dir,
          "inv.yaml",
          [
            "targets:",
            "  - { kind: local, id: alpha, env: { CODE: '0' } }",
            "  - { kind: local, id: beta, env: { CODE: '0' } }",
            "  - { kind: local, id: gamma, env: { CODE: '7' } }",
            ""
          ].join("\n")
        )
        const command = [
          process.execPath,
          BIN,
          "run",
          "-i",
          inv,
          "--command",
          "echo begin $CODE; sleep 2; echo end; exit $CODE"
        ]
          .map(quote)
          .join(" ")
        const tmux = (...args: Array<string>) =>
          execFileSync("tmux", ["-L", socket, "-f", "/dev/null", ...args], {
            encoding: "utf8",
            env: { ...process.env, NO_COLOR: "" }
          })
        yield* Effect.acquireRelease(
          Effect.sync(() =>
            tmux("new-session", "-d", "-x", "140", "-y", "40", "-s", "t", `${command}; echo EXIT=$?; sleep 60`)
          ),
          () =>
            Effect.sync(() => {
              try {
                tmux("kill-server")
              } catch {
                // already gone
              }
            })
        )
        const screen = () => tmux("capture-pane", "-p", "-t", "t")
        const waitScreen = (pattern: RegExp, what: string) =>
          Effect.gen(function*() {
            for (let i = 0; i < 150; i++) {
              const s = screen()
              if (pattern.test(s)) return s
              yield* Effect.sleep("100 millis")
            }
            return assert.fail(`screen never showed ${what}:\n${screen()}`)
          })
        const during = yield* waitScreen(/(?=[\s\S]*▸ gamma\s+\d)(?=[\s\S]*\[gamma\] begin 7)/, "the in-flight targets")
        assert.match(during, /3 running/)
        assert.match(during, /▸ alpha\s+[\d.]+(ms|s)/)
        assert.match(during, /▸ beta\s+[\d.]+(ms|s)/)
        assert.match(during, /^\[alpha\] begin 0$/m)
        const after = yield* waitScreen(/EXIT=\d+/, "the exit")
        assert.match(after, /EXIT=1/)
        assert.match(after, /TARGET\s+OUTCOME\s+EXIT\s+DURATION/)
        assert.match(after, /^gamma\s+Failed\s+7/m)
        assert.match(after, /✗ gamma Failed \(exit 7\)/)
        assert.match(after, /^\[beta\] end$/m)
        // the status block is gone once the run is over
        assert.notMatch(after, /▸ /)
        assert.notMatch(after, /running ·/)
      }),
    { timeout: 30_000 }
  )

  it.scopedLive.skipIf(!has("script"))(
    "a pseudo-terminal (script) gets the live view; TERM=dumb gets plain lines",
    () =>
      Effect.gen(function*() {
        const command = [process.execPath, BIN, "run", "-t", "a", "-t", "b", "--command", "echo hi; sleep 0.5"].map(
          quote
        ).join(" ")
        const live = yield* spawnCommand("script", ["-qfec", command, "/dev/null"], {
          env: { NO_COLOR: undefined, TERM: "xterm" }
        })
        const r = yield* live.result("20 seconds")
        assert.strictEqual(r.code, 0, r.stdout)
        assert.include(r.stdout, "\u001b[", "ANSI redraws")
        const text = stripAnsi(r.stdout)
        assert.match(text, /▸ a\s+[\d.]+(ms|s)/)
        assert.match(text, /2 targets: [^\n]*2 succeeded/)

        const dumb = yield* spawnCommand("script", ["-qfec", command, "/dev/null"], {
          env: { NO_COLOR: undefined, TERM: "dumb" }
        })
        const d = yield* dumb.result("20 seconds")
        assert.strictEqual(d.code, 0, d.stdout)
        assert.notInclude(d.stdout, "\u001b[")
        assert.match(d.stdout, /^\[a\] hi\r?$/m)
        assert.match(d.stdout, /^\[b\] hi\r?$/m)
      }),
    { timeout: 30_000 }
  )
})
