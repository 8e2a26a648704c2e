import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as Connection from "../src/internal/connection.js"
import * as Sshd from "./harness/Sshd.js"

describe.skipIf(!Sshd.enabled())("the sshd test harness", () => {
  it.live(
    "its layer starts sshd on a free port, catches a leaked remote process, and its release removes everything",
    () =>
      Effect.gen(function*() {
        // the layer the suites share with it.layer, built and released here by hand
        const scope = yield* Scope.make()
        const sshd = yield* Layer.buildWithScope(Sshd.layer({ addresses: 17 }), scope).pipe(
          Effect.map(Context.get(Sshd.Server)),
          Effect.onError(() => Scope.close(scope, Exit.void))
        )
        const pids = sshd.pids()
        yield* Effect.gen(function*() {
          assert.strictEqual(sshd.pids().length, 2, "17 addresses need 2 daemons (16 listen sockets each)")
          const c = yield* Connection.connect(sshd.target({ address: sshd.addresses[16] }), {
            hopIndex: 0,
            hops: 1,
            defaults: { connectTimeout: Duration.seconds(5), readyTimeout: Duration.seconds(10), keepalive: false }
          })
          // a raw exec (no wrapper, no kill): the background process escapes and outlives the connection
          yield* Effect.async<void>((resume) => {
            c.client.exec("setsid sleep 317 </dev/null >/dev/null 2>&1 & echo started", (err, ch) => {
              if (err) return resume(Effect.die(err))
              ch.on("data", () => {})
              ch.stderr.resume()
              ch.on("close", () => resume(Effect.void))
            })
          })
          c.end()
          // the shell has exited; its background child may still be between setsid's fork and the exec of sleep
          let visible = false
          for (let i = 0; i < 100 && !visible; i++) {
            visible = sshd.leftovers().some((p) => p.cmd === "sleep 317")
            if (!visible) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 20)))
          }
          assert.isTrue(visible, "the leak is visible")
          const error = yield* Effect.promise(() =>
            sshd.assertNoLeftovers({ waitMs: 200 }).then(() => undefined, (e: Error) => e)
          )
          assert.instanceOf(error, Error)
          assert.include(error!.message, "sleep 317")
          assert.deepStrictEqual(sshd.leftovers(), [], "assertNoLeftovers killed them")
        }).pipe(Effect.ensuring(Scope.close(scope, Exit.void)))
        for (const pid of pids) assert.isUndefined(Sshd.processes().find((p) => p.pid === pid), `daemon ${pid} stopped`)
        assert.isFalse(fs.existsSync(sshd.dir), "state dir removed")
        if (sshd.testUser !== undefined) {
          assert.notInclude(fs.readFileSync("/etc/passwd", "utf8"), `${sshd.testUser.name}:`, "test user removed")
        }
      }),
    { timeout: 30_000 }
  )
})
