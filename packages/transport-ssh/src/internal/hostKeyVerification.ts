/**
 * Host-key verification of one hop by its policy (`strict` known_hosts, `accept-new`, `pinned`, `insecure`), with
 * the explanation of a rejection (expected vs presented) that becomes the `HostKeyRejected` error.
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import * as KnownHosts from "../KnownHosts.js"
import type * as SshTarget from "../SshTarget.js"
import type * as Errors from "./errors.js"
import { hopLabel } from "./hop.js"

/** A host-key check: synchronous where possible; `accept-new` writes its store. @internal */
export type Verifier = (key: Buffer) => Promise<Errors.HostKeyRejection | undefined>

/**
 * The hop's verifier (reading its known_hosts once); `fail` builds the `HostKeyRejected` error.
 *
 * @internal
 */
export const make = (
  hop: SshTarget.Hop,
  fail: (description: string, cause?: unknown) => TransportError
): Effect.Effect<Verifier, TransportError> =>
  Effect.gen(function*() {
    const policy = hop.hostKey
    const presentedDetail = (key: Buffer) => ({
      policy: policy.policy,
      host: hop.host,
      port: hop.port,
      presented: `${KnownHosts.blobType(key) ?? "unknown"} ${KnownHosts.fingerprint(key)}`,
      presentedFingerprint: KnownHosts.fingerprint(key)
    })
    const explain = (verdict: KnownHosts.Verdict, key: Buffer, where: string): Errors.HostKeyRejection | undefined => {
      const name = KnownHosts.hostName(hop.host, hop.port)
      switch (verdict._tag) {
        case "Known":
          return undefined
        case "Unknown":
          return {
            description: `host key of ${name} is not in ${where} (presented ${KnownHosts.fingerprint(key)})`,
            detail: { ...presentedDetail(key), expected: [] }
          }
        case "Mismatch":
          return {
            description: `HOST KEY CHANGED for ${name}: presented ${KnownHosts.fingerprint(key)}, ${where} expects ${
              verdict.expected.join(" or ")
            } (possible man-in-the-middle; if the host was reinstalled, update ${where})`,
            detail: {
              ...presentedDetail(key),
              expected: verdict.expected,
              expectedFingerprints: verdict.entries.map((e) => KnownHosts.fingerprint(e.key)),
              entries: verdict.entries.map((e) => `${e.file ?? ""}:${e.line}`)
            }
          }
        case "Revoked":
          return {
            description: `host key of ${name} (${KnownHosts.fingerprint(key)}) is marked @revoked in ${
              verdict.entry.file ?? where
            }:${verdict.entry.line}`,
            detail: { ...presentedDetail(key), revoked: `${verdict.entry.file ?? ""}:${verdict.entry.line}` }
          }
        case "CertAuthorityUnsupported":
          return {
            description: `${where} lists only @cert-authority keys for ${name}: host certificates are not supported ` +
              `by runcmd's SSH transport; add the host's own key (ssh-keyscan) or pin its fingerprint`,
            detail: { ...presentedDetail(key), unsupported: "cert-authority" }
          }
      }
    }
    switch (policy.policy) {
      case "insecure": {
        yield* Effect.logWarning(
          `ssh: host key checking is OFF for ${hopLabel(hop)} (hostKey.policy "insecure"): any server is trusted`
        )
        const verifier: Verifier = () => Promise.resolve(undefined)
        return verifier
      }
      case "pinned": {
        const pins = new Set(policy.fingerprints.map((f) => f.replace(/=+$/, "")))
        const verifier: Verifier = (key) => {
          const fp = KnownHosts.fingerprint(key)
          return Promise.resolve(
            pins.has(fp) ? undefined : {
              description: `host key of ${KnownHosts.hostName(hop.host, hop.port)} is ${fp}, not a pinned one (${
                [...pins].join(", ")
              })`,
              detail: { ...presentedDetail(key), expected: [...pins], expectedFingerprints: [...pins] }
            }
          )
        }
        return verifier
      }
      case "strict": {
        const files = policy.knownHosts ?? KnownHosts.defaultFiles()
        const known = yield* KnownHosts.readFiles(files).pipe(
          Effect.mapError((e) => fail(`cannot read known_hosts (${files.join(", ")}): ${e.message}`, e))
        )
        const verifier: Verifier = (key) =>
          Promise.resolve(explain(KnownHosts.verify(known, hop.host, hop.port, key), key, files.join(", ")))
        return verifier
      }
      case "accept-new": {
        const verifier: Verifier = (key) =>
          KnownHosts.acceptNew(policy.store, hop.host, hop.port, key).then(
            (verdict) => explain(verdict, key, policy.store),
            (e: Error) => ({
              description: `cannot use the host key store ${policy.store}: ${e.message}`,
              detail: { ...presentedDetail(key), store: policy.store }
            })
          )
        return verifier
      }
    }
  })
