/**
 * `main(argv)`, the body of `runcmd emulate winrm`: usage errors, and a real process that prints one JSON line,
 * serves pywinrm-style requests and stops on SIGTERM.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Https from "node:https"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { main } from "../src/testing.js"

describe("runcmd emulate winrm", () => {
  it.effect("refuses bad arguments with exit code 2", () =>
    Effect.promise(async () => {
      const write = process.stderr.write
      process.stderr.write = () => true
      try {
        assert.strictEqual(await main(["--bogus"]), 2)
        assert.strictEqual(await main(["--user", "ops"]), 2)
        assert.strictEqual(await main(["--port", "70000"]), 2)
        assert.strictEqual(await main(["--user", "ops", "--password-env", "RUNCMD_TEST_UNSET_VARIABLE"]), 2)
      } finally {
        process.stderr.write = write
      }
    }))

  it.live(
    "prints one JSON line (endpoint, auth, CA file), serves, and stops on SIGTERM",
    () =>
      Effect.acquireUseRelease(
        Effect.sync(() =>
          ChildProcess.spawn(
            process.execPath,
            [
              "--import",
              "tsx",
              Path.join(__dirname, "fixtures", "emulate.ts"),
              "--https",
              "--user",
              "ops",
              "--password-env",
              "PW"
            ],
            { env: { ...process.env, PW: "s3cret" }, stdio: ["ignore", "pipe", "inherit"] }
          )
        ),
        (child) =>
          Effect.promise(async () => {
            const line = await new Promise<string>((resolve) =>
              Readline.createInterface({ input: child.stdout! }).once("line", resolve)
            )
            const info = JSON.parse(line)
            assert.strictEqual(info.auth, "basic")
            assert.strictEqual(info.user, "ops")
            assert.notProperty(info, "password", "a given password is not printed")
            assert.match(info.endpoint, /^https:\/\/127\.0\.0\.1:\d+\/wsman$/)
            const status = await new Promise<number>((resolve, reject) => {
              const req = Https.request(info.endpoint, { method: "POST", ca: Fs.readFileSync(info.caFile) }, (res) => {
                res.resume()
                resolve(res.statusCode ?? 0)
              })
              req.on("error", reject)
              req.end()
            })
            assert.strictEqual(status, 401, "served over TLS with the printed CA, credentials asked")
            const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
            child.kill("SIGTERM")
            assert.strictEqual(await exited, 0)
            assert.isFalse(Fs.existsSync(info.caFile), "its files removed")
          }),
        (child) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
      ),
    60_000
  )
})
