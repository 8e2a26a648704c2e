/**
 * Redaction of secret values (and their common encodings) from text and from byte streams, including values
 * split across two chunks.
 *
 * @since 0.1.0
 */
import * as Redacted from "effect/Redacted"

/**
 * @since 0.1.0
 * @category constants
 */
export const REPLACEMENT = "[REDACTED]"

/**
 * Redacts one byte stream: holds back only the bytes that could be the start of a secret.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamRedactor {
  readonly push: (bytes: Uint8Array) => Uint8Array
  /** The bytes held back at the end of the stream (they cannot contain a whole secret). */
  readonly end: () => Uint8Array
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Redactor {
  readonly isEmpty: boolean
  readonly text: (input: string) => string
  /** Redacts any string found inside a JSON-like value. */
  readonly value: <A>(input: A) => A
  readonly stream: () => StreamRedactor
}

const encoder = new TextEncoder()
const replacementBytes = encoder.encode(REPLACEMENT)

/** The forms a secret may be printed in: as is, base64, URL-encoded, JSON-escaped. */
const variants = (secret: string): Array<string> => {
  const forms = new Set<string>([secret])
  forms.add(Buffer.from(secret, "utf8").toString("base64").replace(/=+$/, ""))
  forms.add(encodeURIComponent(secret))
  forms.add(JSON.stringify(secret).slice(1, -1))
  return [...forms].filter((f) => f.length > 0)
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (secrets: Iterable<string | Redacted.Redacted<string>>): Redactor => {
  const texts = new Set<string>()
  for (const s of secrets) {
    const value = Redacted.isRedacted(s) ? Redacted.value(s) : s
    if (value.length > 0) { for (const v of variants(value)) texts.add(v) }
  }
  // longest first, so that a secret containing another is replaced whole
  const patterns = [...texts].sort((a, b) => b.length - a.length)
  const bytePatterns = patterns.map((p) => Buffer.from(p, "utf8"))
  const isEmpty = patterns.length === 0

  const text = (input: string): string => {
    if (isEmpty) return input
    let out = input
    for (const p of patterns) if (out.includes(p)) out = out.split(p).join(REPLACEMENT)
    return out
  }

  const value = <A>(input: A): A => {
    if (isEmpty) return input
    const walk = (v: unknown): unknown => {
      if (typeof v === "string") return text(v)
      if (Array.isArray(v)) return v.map(walk)
      if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
        const out: Record<string, unknown> = {}
        for (const [k, x] of Object.entries(v)) out[k] = walk(x)
        return out
      }
      return v
    }
    return walk(input) as A
  }

  const stream = (): StreamRedactor => {
    if (isEmpty) return { push: (b) => b, end: () => new Uint8Array(0) }
    let pending: Buffer = Buffer.alloc(0)
    return {
      push: (bytes) => {
        const buf = pending.length === 0
          ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
          : Buffer.concat([pending, bytes])
        const parts: Array<Uint8Array> = []
        let i = 0
        for (;;) {
          let best = -1
          let bestLen = 0
          for (const p of bytePatterns) {
            const at = buf.indexOf(p, i)
            if (at !== -1 && (best === -1 || at < best || (at === best && p.length > bestLen))) {
              best = at
              bestLen = p.length
            }
          }
          if (best === -1) break
          if (best > i) parts.push(buf.subarray(i, best))
          parts.push(replacementBytes)
          i = best + bestLen
        }
        const hold = heldSuffix(buf, i, bytePatterns)
        if (buf.length - hold > i) parts.push(buf.subarray(i, buf.length - hold))
        pending = Buffer.from(buf.subarray(buf.length - hold))
        return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
      },
      end: () => {
        const rest = pending
        pending = Buffer.alloc(0)
        return rest
      }
    }
  }

  return { isEmpty, text, value, stream }
}

/** Length of the longest suffix of buf[from..] that is a proper prefix of some pattern. */
const heldSuffix = (buf: Buffer, from: number, patterns: ReadonlyArray<Buffer>): number => {
  let hold = 0
  const available = buf.length - from
  for (const p of patterns) {
    for (let k = Math.min(p.length - 1, available); k > hold; k--) {
      if (buf.compare(p, 0, k, buf.length - k, buf.length) === 0) {
        hold = k
        break
      }
    }
  }
  return hold
}

/**
 * A redactor that redacts nothing.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty: Redactor = make([])
