import type { Captured } from "../Outcome.js"

/** @internal */
export interface Capture {
  readonly push: (bytes: Uint8Array) => void
  readonly result: () => Captured
}

const EMPTY = new Uint8Array(0)

/**
 * Keeps the first `headBytes` and the last `tailBytes` of a stream; the middle is counted, not kept.
 * @internal
 */
export const makeCapture = (headBytes: number, tailBytes: number): Capture => {
  let head: Array<Uint8Array> = []
  let headLen = 0
  let tail: Array<Uint8Array> = []
  let tailLen = 0
  let total = 0
  return {
    push: (bytes) => {
      total += bytes.length
      let rest = bytes
      if (headLen < headBytes) {
        const take = Math.min(headBytes - headLen, rest.length)
        head.push(rest.slice(0, take))
        headLen += take
        rest = take === rest.length ? EMPTY : rest.subarray(take)
      }
      if (rest.length === 0 || tailBytes === 0) return
      if (rest.length >= tailBytes) {
        tail = [rest.slice(rest.length - tailBytes)]
        tailLen = tailBytes
        return
      }
      tail.push(rest.slice())
      tailLen += rest.length
      while (tailLen - tail[0]!.length >= tailBytes) tailLen -= tail.shift()!.length
      if (tailLen > tailBytes) {
        const drop = tailLen - tailBytes
        tail[0] = tail[0]!.subarray(drop)
        tailLen -= drop
      }
    },
    result: () => {
      const headText = decode(head, headLen, false)
      const dropped = total - headLen - tailLen
      const truncated = dropped > 0
      // the tail of a truncated stream may start inside a UTF-8 character: drop the broken lead
      const tailText = decode(tail, tailLen, truncated)
      return { head: headText, tail: tailText, totalBytes: total, truncated, droppedBytes: dropped }
    }
  }
}

const decode = (parts: ReadonlyArray<Uint8Array>, len: number, trimLead: boolean): string => {
  if (len === 0) return ""
  const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts as Array<Uint8Array>, len)
  let start = 0
  if (trimLead) while (start < all.length && start < 3 && (all[start]! & 0xc0) === 0x80) start++
  return new TextDecoder("utf-8").decode(start === 0 ? all : all.subarray(start))
}
