/**
 * Incremental UTF-8 decoding for text sinks and the Runner's capture.
 *
 * @since 0.1.0
 * @internal
 */

/**
 * A stateful decoder for one byte stream: a multi-byte character split across two chunks is decoded whole,
 * invalid bytes become U+FFFD, and a byte order mark is kept (it is part of what the target wrote).
 *
 * @since 0.1.0
 * @internal
 */
export interface Utf8Decoder {
  /** Decodes the next chunk; bytes of an incomplete trailing character are held for the next call. */
  readonly decode: (bytes: Uint8Array) => string
  /** Ends the stream: an incomplete held character becomes U+FFFD. The decoder can then be reused. */
  readonly end: () => string
}

/**
 * @since 0.1.0
 * @internal
 */
export const makeUtf8Decoder = (): Utf8Decoder => {
  const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true })
  return {
    decode: (bytes) => (bytes.length === 0 ? "" : decoder.decode(bytes, { stream: true })),
    end: () => decoder.decode()
  }
}

/**
 * The length of the longest prefix of `bytes` that does not end inside a multi-byte character, so that a head
 * capture cut at a byte budget does not end with a broken character.
 *
 * @since 0.1.0
 * @internal
 */
export const completePrefixLength = (bytes: Uint8Array, length: number = bytes.length): number => {
  const end = Math.min(length, bytes.length)
  // walk back over at most 3 continuation bytes to the lead byte of the last character
  let i = end - 1
  let continuation = 0
  while (i >= 0 && continuation < 3 && (bytes[i]! & 0xc0) === 0x80) {
    i--
    continuation++
  }
  if (i < 0) return end
  const lead = bytes[i]!
  const needed = lead >= 0xf0 && lead <= 0xf4
    ? 3
    : lead >= 0xe0 && lead <= 0xef
    ? 2
    : lead >= 0xc2 && lead <= 0xdf
    ? 1
    : 0
  // an ASCII or invalid lead byte is complete on its own; a valid lead byte needs its continuation bytes
  return needed > continuation ? i : end
}

/**
 * The offset of the first byte of `bytes` (from `start`) that is not a continuation byte, so that a tail
 * capture cut at a byte budget does not start in the middle of a character (at most 3 bytes are skipped).
 *
 * @since 0.1.0
 * @internal
 */
export const characterStart = (bytes: Uint8Array, start = 0): number => {
  let i = start
  while (i < bytes.length && i - start < 3 && (bytes[i]! & 0xc0) === 0x80) i++
  return i
}
