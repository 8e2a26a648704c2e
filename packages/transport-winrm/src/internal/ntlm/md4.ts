/**
 * MD4 (RFC 1320): NTLM's password hash needs it and Node's OpenSSL 3 no longer offers it (legacy provider).
 * Checked against the RFC's test suite and MS-NLMP 4.2.2.1.2 in `test/ntlm.test.ts`.
 *
 * @internal
 */

const rotl = (x: number, n: number): number => (x << n) | (x >>> (32 - n))

/** @internal */
export const md4 = (input: Uint8Array): Uint8Array => {
  const bitLength = input.length * 8
  const padded = new Uint8Array(((input.length + 8) >> 6) * 64 + 64)
  padded.set(input)
  padded[input.length] = 0x80
  const view = new DataView(padded.buffer)
  view.setUint32(padded.length - 8, bitLength >>> 0, true)
  view.setUint32(padded.length - 4, Math.floor(bitLength / 0x100000000), true)
  let a = 0x67452301
  let b = 0xefcdab89
  let c = 0x98badcfe
  let d = 0x10325476
  const x = new Array<number>(16)
  const f = (x: number, y: number, z: number) => (x & y) | (~x & z)
  const g = (x: number, y: number, z: number) => (x & y) | (x & z) | (y & z)
  const h = (x: number, y: number, z: number) => x ^ y ^ z
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) x[i] = view.getUint32(block + i * 4, true)
    const [aa, bb, cc, dd] = [a, b, c, d]
    // round 1
    for (const i of [0, 4, 8, 12]) {
      a = rotl((a + f(b, c, d) + x[i]!) | 0, 3)
      d = rotl((d + f(a, b, c) + x[i + 1]!) | 0, 7)
      c = rotl((c + f(d, a, b) + x[i + 2]!) | 0, 11)
      b = rotl((b + f(c, d, a) + x[i + 3]!) | 0, 19)
    }
    // round 2
    for (const i of [0, 1, 2, 3]) {
      a = rotl((a + g(b, c, d) + x[i]! + 0x5a827999) | 0, 3)
      d = rotl((d + g(a, b, c) + x[i + 4]! + 0x5a827999) | 0, 5)
      c = rotl((c + g(d, a, b) + x[i + 8]! + 0x5a827999) | 0, 9)
      b = rotl((b + g(c, d, a) + x[i + 12]! + 0x5a827999) | 0, 13)
    }
    // round 3
    for (const i of [0, 2, 1, 3]) {
      a = rotl((a + h(b, c, d) + x[i]! + 0x6ed9eba1) | 0, 3)
      d = rotl((d + h(a, b, c) + x[i + 8]! + 0x6ed9eba1) | 0, 9)
      c = rotl((c + h(d, a, b) + x[i + 4]! + 0x6ed9eba1) | 0, 11)
      b = rotl((b + h(c, d, a) + x[i + 12]! + 0x6ed9eba1) | 0, 15)
    }
    a = (a + aa) | 0
    b = (b + bb) | 0
    c = (c + cc) | 0
    d = (d + dd) | 0
  }
  const out = new Uint8Array(16)
  const outView = new DataView(out.buffer)
  outView.setUint32(0, a >>> 0, true)
  outView.setUint32(4, b >>> 0, true)
  outView.setUint32(8, c >>> 0, true)
  outView.setUint32(12, d >>> 0, true)
  return out
}
