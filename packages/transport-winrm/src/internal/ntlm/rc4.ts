/**
 * RC4, as NTLM session security uses it: a keystream handle kept across messages (MS-NLMP 3.4.3). Node's OpenSSL 3
 * no longer offers it. Checked against MS-NLMP 4.2.4.2.3 and 4.2.4.4 in `test/ntlm.test.ts`.
 *
 * @internal
 */

/** @internal */
export interface Rc4 {
  /** Encrypts (or decrypts: the same operation) the next bytes of the stream. */
  readonly update: (input: Uint8Array) => Uint8Array
}

/** @internal */
export const rc4 = (key: Uint8Array): Rc4 => {
  const s = new Uint8Array(256)
  for (let i = 0; i < 256; i++) s[i] = i
  for (let i = 0, j = 0; i < 256; i++) {
    j = (j + s[i]! + key[i % key.length]!) & 0xff
    const t = s[i]!
    s[i] = s[j]!
    s[j] = t
  }
  let i = 0
  let j = 0
  return {
    update: (input) => {
      const out = new Uint8Array(input.length)
      for (let k = 0; k < input.length; k++) {
        i = (i + 1) & 0xff
        j = (j + s[i]!) & 0xff
        const t = s[i]!
        s[i] = s[j]!
        s[j] = t
        out[k] = input[k]! ^ s[(s[i]! + s[j]!) & 0xff]!
      }
      return out
    }
  }
}

/** One-shot RC4K (MS-NLMP 6). @internal */
export const rc4k = (key: Uint8Array, input: Uint8Array): Uint8Array => rc4(key).update(input)
