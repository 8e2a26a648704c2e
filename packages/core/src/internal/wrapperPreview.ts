/**
 * The text of a launch as `--dry-run` shows it.
 *
 * @internal
 */
import { REPLACEMENT } from "../Redactor.js"
import type { Invocation } from "../Transport.js"
import * as directInternal from "./directLaunch.js"
import * as posixInternal from "./wrapperPosix.js"
import * as powershellInternal from "./wrapperPowershell.js"

/**
 * What would run, for --dry-run, with secrets as [REDACTED].
 *
 * @internal
 */
export const preview = (invocation: Invocation): string => {
  if (invocation.source._tag === "Script" && invocation.source.interpreter === "powershell") {
    return powershellInternal.render(invocation, { nonce: "preview", secretsFromStdin: false }).script
  }
  const nonce = "preview"
  const token = "preview-token"
  const secrets = posixInternal.secretNames(invocation)
  const run = directInternal.eligible(invocation) ? directInternal.program(invocation) : undefined
  if (run !== undefined) {
    const added = [
      ...Object.entries(invocation.env).filter(([name]) => !Object.hasOwn(invocation.secrets, name)).map((
        [name, value]
      ) => `${name}=${posixInternal.quote(value)}`),
      ...secrets.map((name) => `${name}=${REPLACEMENT}`),
      `${posixInternal.TOKEN_VAR}=<per execution>`
    ]
    const lines = [
      `# launch: direct (no run-as, nothing for a wrapper stage to do): the program is started in a new session`,
      `${invocation.cwd === undefined ? "" : `cd ${posixInternal.quote(invocation.cwd)} && `}exec ${
        [run.file, ...run.args].map(posixInternal.quote).join(" ")
      }`,
      `# environment added: ${added.join(" ")}`,
      `# (local: spawned as is; SSH: a one-line stage read by the login shell from stdin, secrets on the next lines)`
    ]
    if (invocation.stdin !== undefined) lines.push(`# then the job's stdin (${invocation.stdin.length} bytes)`)
    return lines.join("\n")
  }
  const parts = [
    `# bootstrap: /bin/sh -c ${posixInternal.quote(posixInternal.BOOTSTRAP)} runcmd`,
    `# stage 1 (transport user)`,
    posixInternal.outer(invocation, nonce),
    `# stage 2 (${invocation.runAs === undefined ? "same user" : `as ${invocation.runAs.user}`})`,
    posixInternal.inner(invocation, nonce, token),
    `# stage 3 (new session)`,
    posixInternal.launch(invocation, nonce, token)
  ]
  if (secrets.length > 0) {
    parts.push(`# then on stdin, one line each: ${secrets.map((s) => `${s}=${REPLACEMENT}`).join(" ")}`)
  }
  if (invocation.stdin !== undefined) parts.push(`# then the job's stdin (${invocation.stdin.length} bytes)`)
  return parts.join("\n")
}
