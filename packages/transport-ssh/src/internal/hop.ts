/**
 * A hop of a route (a jump host or the target): how it is named in errors and logs, and the identity of its
 * credentials and trust settings that keys the connection pool.
 *
 * @internal
 */
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import type * as SshTarget from "../SshTarget.js"

/** @internal */
export const hopLabel = (hop: SshTarget.Hop): string => `${hop.user}@${hop.host}:${hop.port}`

const secret = crypto.randomBytes(32)

/** A stable, non-reversible identity of a hop's credentials and trust settings (for pool keys). @internal */
export const hopIdentity = (hop: SshTarget.Hop): string => {
  const h = crypto.createHmac("sha256", secret)
  const auth = hop.auth
  switch (auth.type) {
    case "key":
      h.update("key\0")
      if (auth.key !== undefined) h.update(Redacted.value(auth.key))
      else h.update("path\0" + auth.path)
      if (auth.passphrase !== undefined) h.update("\0pp\0" + Redacted.value(auth.passphrase))
      break
    case "agent":
      h.update("agent\0" + (auth.socket ?? process.env.SSH_AUTH_SOCK ?? ""))
      break
    case "password":
      h.update("password\0" + Redacted.value(auth.password))
      break
  }
  h.update("\0hostKey\0" + JSON.stringify(hop.hostKey))
  h.update("\0alg\0" + JSON.stringify(hop.algorithms ?? null))
  h.update("\0ka\0" + JSON.stringify(hop.keepalive ?? null))
  return `${hop.user}@${hop.host}:${hop.port}#${h.digest("base64url").slice(0, 22)}`
}
