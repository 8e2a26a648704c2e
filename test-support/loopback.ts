import * as net from "node:net"

export class LoopbackViolation extends Error {
  override readonly name = "LoopbackViolation"
}

/** Returns why `host` is not a loopback destination, or undefined when it is. */
export const checkLoopback = (host: string): string | undefined => {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  if (h === "localhost" || h === "") return undefined
  if (net.isIPv4(h)) return h.startsWith("127.") ? undefined : `connection to ${h} refused: not loopback`
  if (net.isIPv6(h)) {
    const lower = h.toLowerCase()
    if (lower === "::1" || lower === "0:0:0:0:0:0:0:1") return undefined
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower)
    if (mapped !== null && mapped[1]!.startsWith("127.")) return undefined
    return `connection to ${h} refused: not loopback`
  }
  return `connection to host name ${h} refused: tests may only reach 127.0.0.0/8, ::1 or localhost`
}
