import type { Captured } from "../Outcome.js"

/** @internal */
export interface Capture {
  readonly push: (bytes: Uint8Array) => void
  readonly result: () => Captured
}

const EMPTY = new Uint8Array(0)

/**
 * Keeps the first `headBytes` and the last `tailBytes` of a stream; the middle is counted, not kept.
 *
 * The tail costs no copy per chunk: the latest chunk is kept by reference (only its end, and copied when it is a
 * view on a large buffer, so nothing large is retained), and of the chunk before it only what the latest one does
 * not push out of the tail is copied into a ring of `tailBytes` (allocated on the first byte past the head). With
 * bulk output that is a few hundred bytes per chunk instead of the whole chunk.
 * @internal
 */
export const makeCapture = (headBytes: number, tailBytes: number): Capture => {
  const head: Array<Uint8Array> = []
  let headLen = 0
  let ring: Uint8Array | undefined
  /** The bytes before `last`: `ringLen` of them, ending at `ringEnd` (exclusive), wrapping around. */
  let ringEnd = 0
  let ringLen = 0
  let last: Uint8Array | undefined
  let tailLen = 0
  let total = 0

  const ringAppend = (bytes: Uint8Array) => {
    ring ??= new Uint8Array(tailBytes)
    let rest = bytes
    while (rest.length > 0) {
      const n = Math.min(rest.length, tailBytes - ringEnd)
      ring.set(n === rest.length ? rest : rest.subarray(0, n), ringEnd)
      ringEnd = ringEnd + n === tailBytes ? 0 : ringEnd + n
      rest = rest.subarray(n)
    }
    ringLen = Math.min(tailBytes, ringLen + bytes.length)
  }

  const pushTail = (bytes: Uint8Array) => {
    // what of the stream before this chunk is still in the tail after it
    const keep = tailBytes - Math.min(bytes.length, tailBytes)
    if (last !== undefined) {
      if (keep === 0) {
        ringLen = 0
      } else if (last.length >= keep) {
        ringEnd = 0
        ringLen = 0
        ringAppend(last.subarray(last.length - keep))
      } else {
        ringAppend(last)
      }
    }
    const end = bytes.length > tailBytes ? bytes.subarray(bytes.length - tailBytes) : bytes
    last = end.buffer.byteLength > 4 * Math.max(tailBytes, 16 * 1024) ? end.slice() : end
    tailLen = Math.min(tailBytes, ringLen + last.length)
  }

  const tail = (): Uint8Array => {
    if (tailLen === 0 || last === undefined) return EMPTY
    const out = new Uint8Array(tailLen)
    const fromLast = Math.min(tailLen, last.length)
    const fromRing = tailLen - fromLast
    if (fromRing > 0) {
      const start = (ringEnd - fromRing + tailBytes) % tailBytes
      if (start + fromRing <= tailBytes) {
        out.set(ring!.subarray(start, start + fromRing), 0)
      } else {
        const first = tailBytes - start
        out.set(ring!.subarray(start), 0)
        out.set(ring!.subarray(0, fromRing - first), first)
      }
    }
    out.set(last.subarray(last.length - fromLast), fromRing)
    return out
  }

  return {
    push: (bytes) => {
      total += bytes.length
      let rest = bytes
      if (headLen < headBytes) {
        const take = Math.min(headBytes - headLen, rest.length)
        head.push(rest.slice(0, take))
        headLen += take
        if (take === rest.length) return
        rest = rest.subarray(take)
      }
      if (rest.length === 0 || tailBytes === 0) return
      pushTail(rest)
    },
    result: () => {
      const headText = decode(head, headLen, false)
      const dropped = total - headLen - tailLen
      const truncated = dropped > 0
      // the tail of a truncated stream may start inside a UTF-8 character: drop the broken lead
      const tailText = decode([tail()], tailLen, truncated)
      return { head: headText, tail: tailText, totalBytes: total, truncated, droppedBytes: dropped }
    }
  }
}

const decode = (parts: ReadonlyArray<Uint8Array>, len: number, trimLead: boolean): string => {
  if (len === 0) return ""
  const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts as Array<Uint8Array>, len)
  let start = 0
  if (trimLead) { while (start < all.length && start < 3 && (all[start]! & 0xc0) === 0x80) start++ }
  return new TextDecoder("utf-8").decode(start === 0 ? all : all.subarray(start))
}
