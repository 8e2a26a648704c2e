/**
 * The wrapper's protocol on stderr: lines `runcmd-<nonce>:<message>\n`, found anywhere in the byte stream (a
 * line may follow user output that did not end with a newline) and removed; everything else passes through,
 * holding back only the bytes that could begin a marker.
 *
 * @internal
 */

/** @internal */
export interface Parser {
  /** Returns the bytes to pass through and the protocol messages found. */
  readonly push: (chunk: Uint8Array) => { readonly bytes: Uint8Array; readonly messages: ReadonlyArray<string> }
  /** The bytes held back at the end of the stream (an unfinished marker or message, passed through as is). */
  readonly end: () => Uint8Array
}

const MAX_MESSAGE = 4096
const NL = 0x0a
const decoder = new TextDecoder()

const indexOf = (haystack: Uint8Array, needle: Uint8Array, from: number): number => {
  const first = needle[0]!
  const last = haystack.length - needle.length
  outer: for (let i = from; i <= last; i++) {
    if (haystack[i] !== first) continue
    for (let j = 1; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer
    }
    return i
  }
  return -1
}

/** Length of the longest suffix of `buf[from..]` that is a proper prefix of `needle`. */
const partialSuffix = (buf: Uint8Array, from: number, needle: Uint8Array): number => {
  const max = Math.min(needle.length - 1, buf.length - from)
  for (let k = max; k > 0; k--) {
    let ok = true
    for (let j = 0; j < k; j++) {
      if (buf[buf.length - k + j] !== needle[j]) {
        ok = false
        break
      }
    }
    if (ok) return k
  }
  return 0
}

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  if (a.length === 0) return b
  if (b.length === 0) return a
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

const concatAll = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  if (parts.length === 1) return parts[0]!
  let size = 0
  for (const p of parts) size += p.length
  const out = new Uint8Array(size)
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

/** @internal */
export const makeParser = (markerText: string): Parser => {
  const needle = new TextEncoder().encode(markerText + ":")
  let pending: Uint8Array = new Uint8Array(0)
  return {
    push: (chunk) => {
      const buf = concat(pending, chunk)
      const out: Array<Uint8Array> = []
      const messages: Array<string> = []
      let i = 0
      for (;;) {
        const at = indexOf(buf, needle, i)
        if (at < 0) {
          const keep = partialSuffix(buf, i, needle)
          out.push(buf.subarray(i, buf.length - keep))
          pending = buf.slice(buf.length - keep)
          break
        }
        out.push(buf.subarray(i, at))
        const nl = buf.indexOf(NL, at + needle.length)
        if (nl < 0) {
          if (buf.length - at > MAX_MESSAGE) {
            // not one of ours (too long): pass it through
            out.push(buf.subarray(at, at + needle.length))
            i = at + needle.length
            continue
          }
          pending = buf.slice(at)
          break
        }
        messages.push(decoder.decode(buf.subarray(at + needle.length, nl)))
        i = nl + 1
      }
      return { bytes: concatAll(out), messages }
    },
    end: () => {
      const rest = pending
      pending = new Uint8Array(0)
      return rest
    }
  }
}
