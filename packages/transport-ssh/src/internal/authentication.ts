/**
 * Authentication of one hop: its credentials resolved and parsed before dialling (so a bad key fails fast and
 * clearly), and the order in which ssh2 tries them against the methods the server offers.
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
// ssh2 is CommonJS: Node's ESM loader only sees its default export reliably
import ssh2 from "ssh2"
import type { AnyAuthMethod, AuthenticationType, ParsedKey } from "ssh2"
import * as KnownHosts from "../KnownHosts.js"
import type * as SshTarget from "../SshTarget.js"

/** Credentials resolved and parsed before dialling, so a bad key fails fast and clearly. @internal */
export interface ResolvedAuth {
  readonly methods: ReadonlyArray<(username: string) => AnyAuthMethod>
  readonly names: ReadonlyArray<AuthenticationType>
}

/**
 * Reads and parses the hop's credentials; `fail` builds the `AuthFailed` error.
 *
 * @internal
 */
export const resolve = (
  hop: SshTarget.Hop,
  fail: (description: string, cause?: unknown) => TransportError
): Effect.Effect<ResolvedAuth, TransportError> =>
  Effect.gen(function*() {
    const auth = hop.auth
    switch (auth.type) {
      case "key": {
        const text = auth.key !== undefined
          ? Redacted.value(auth.key)
          : yield* Effect.tryPromise({
            try: () => fs.promises.readFile(KnownHosts.expandHome(auth.path!), "utf8"),
            catch: (e) => fail(`cannot read the private key file ${auth.path}: ${(e as Error).message}`, e)
          })
        const parsed = ssh2.utils.parseKey(
          text,
          auth.passphrase === undefined ? undefined : Redacted.value(auth.passphrase)
        )
        if (parsed instanceof Error) {
          // the ssh2 message never contains the key or the passphrase
          return yield* Effect.fail(
            fail(`cannot use the private key${auth.path === undefined ? "" : ` ${auth.path}`}: ${parsed.message}`)
          )
        }
        const key: ParsedKey = Array.isArray(parsed) ? parsed[0] : parsed
        return {
          methods: [(username: string): AnyAuthMethod => ({ type: "publickey", username, key })],
          names: ["publickey"]
        } satisfies ResolvedAuth
      }
      case "agent": {
        const socket = auth.socket ?? process.env.SSH_AUTH_SOCK
        if (socket === undefined || socket === "") {
          return yield* Effect.fail(fail("agent authentication: no agent socket (set `socket` or SSH_AUTH_SOCK)"))
        }
        return {
          methods: [(username: string): AnyAuthMethod => ({ type: "agent", username, agent: socket })],
          names: ["agent"]
        } satisfies ResolvedAuth
      }
      case "password": {
        const password = auth.password
        return {
          methods: [
            (username: string): AnyAuthMethod => ({ type: "password", username, password: Redacted.value(password) }),
            (username: string): AnyAuthMethod => ({
              type: "keyboard-interactive",
              username,
              prompt: (_name, _instructions, _lang, prompts, finish) =>
                finish(prompts.map(() => Redacted.value(password)))
            })
          ],
          names: ["password", "keyboard-interactive"]
        } satisfies ResolvedAuth
      }
    }
  })

/** What the server offered and what was tried, for the `AuthFailed` error. @internal */
export interface AuthProgress {
  readonly tried: ReadonlyArray<string>
  readonly offered: () => ReadonlyArray<string> | undefined
}

/**
 * ssh2's `authHandler`: each resolved method in order, skipping those the server does not offer, then `false`.
 *
 * @internal
 */
export const handler = (auth: ResolvedAuth, user: string) => {
  const tried: Array<string> = []
  let nextMethod = 0
  let offered: ReadonlyArray<string> | undefined
  const authHandler = (
    methodsLeft: ReadonlyArray<string> | null | undefined,
    _partial: boolean | null,
    next: (method: AnyAuthMethod | false) => void
  ) => {
    if (methodsLeft !== null && methodsLeft !== undefined) offered = methodsLeft
    while (nextMethod < auth.methods.length) {
      const i = nextMethod++
      const name = auth.names[i]!
      if (offered === undefined || offered.includes(name)) {
        tried.push(name)
        next(auth.methods[i]!(user))
        return
      }
    }
    next(false)
  }
  const progress: AuthProgress = { tried, offered: () => offered }
  return { authHandler, progress }
}
