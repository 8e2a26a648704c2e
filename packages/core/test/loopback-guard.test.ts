import { assert, describe, it } from "@effect/vitest"
import * as http from "node:http"
import * as net from "node:net"
import { takeViolations } from "../../../test-support/loopback-guard.js"
import { checkLoopback } from "../../../test-support/loopback.js"

describe("loopback guard", () => {
  it("classifies destinations", () => {
    assert.isUndefined(checkLoopback("127.0.0.1"))
    assert.isUndefined(checkLoopback("127.0.1.42"))
    assert.isUndefined(checkLoopback("::1"))
    assert.isUndefined(checkLoopback("[::1]"))
    assert.isUndefined(checkLoopback("localhost"))
    assert.isDefined(checkLoopback("10.0.0.1"))
    assert.isDefined(checkLoopback("8.8.8.8"))
    assert.isDefined(checkLoopback("example.com"))
    assert.isDefined(checkLoopback("2001:db8::1"))
  })

  it("refuses a TCP connection off loopback at the call site and records it", () => {
    assert.throws(() => net.connect({ host: "192.0.2.1", port: 9 }), /not loopback/)
    assert.deepStrictEqual(takeViolations(), ["connection to 192.0.2.1 refused: not loopback"])
  })

  it("refuses an HTTP request to a public host name even when the library swallows the error", async () => {
    await new Promise<void>((resolve) => {
      try {
        const req = http.get("http://example.com/", () => resolve())
        req.on("error", () => resolve())
      } catch {
        resolve()
      }
    })
    const seen = takeViolations()
    assert.strictEqual(seen.length, 1)
    assert.match(seen[0]!, /example\.com/)
  })

  it("lets loopback connections through", async () => {
    const server = net.createServer((s) => s.end("hi"))
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as net.AddressInfo).port
    const data = await new Promise<string>((resolve, reject) => {
      const c = net.connect({ host: "127.0.0.1", port })
      let out = ""
      c.on("data", (d) => (out += d))
      c.on("end", () => resolve(out))
      c.on("error", reject)
    })
    server.close()
    assert.strictEqual(data, "hi")
  })
})
