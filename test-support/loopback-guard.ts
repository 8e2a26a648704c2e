/**
 * Preloaded in every test process (vitest `setupFiles`): any TCP connection to a host other than the
 * loopback range (127.0.0.0/8, ::1, `localhost`) throws at the call site and fails the running test,
 * even when the library that made the call swallows the error.
 */
import * as net from "node:net"
import { afterEach } from "vitest"
import { checkLoopback, LoopbackViolation } from "./loopback.js"

const violations: Array<string> = []

const GUARDED = Symbol.for("runcmd/loopback-guard")
const proto = net.Socket.prototype as net.Socket & { [GUARDED]?: true }

if (proto[GUARDED] !== true) {
  const original = proto.connect
  proto.connect = function(this: net.Socket, ...args: Array<any>) {
    const first = args[0]
    const options = Array.isArray(first) ? first[0] : first
    let host: string | undefined
    let isPath = false
    if (typeof options === "object" && options !== null) {
      isPath = typeof options.path === "string"
      host = options.host
    } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
      host = typeof args[1] === "string" ? args[1] : undefined
    } else if (typeof first === "string") {
      isPath = true
    }
    if (!isPath) {
      const problem = checkLoopback(host ?? "localhost")
      if (problem !== undefined) {
        violations.push(problem)
        throw new LoopbackViolation(problem)
      }
    }
    return (original as (...a: Array<any>) => net.Socket).apply(this, args)
  } as typeof proto.connect
  proto[GUARDED] = true
}

afterEach(() => {
  if (violations.length > 0) {
    const seen = violations.splice(0)
    throw new LoopbackViolation(`the test tried to leave loopback: ${seen.join("; ")}`)
  }
})

/** Test hook: the violations recorded since the last check, cleared. */
export const takeViolations = (): Array<string> => violations.splice(0)
