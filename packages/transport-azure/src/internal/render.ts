/**
 * What a run command runs: core's self-contained `sh` launch on Linux (its protocol line on stderr says how the
 * program ended), core's PowerShell launch on Windows (its sentinel line on stdout), and the filters that take
 * those lines out of the output while it streams. Secrets are never in the text: they travel as protected
 * parameters (environment variables of the script on the VM) and the launch exports them under their names.
 *
 * @internal
 */
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type { ExitStatus, Invocation } from "@runcmd/core/Transport"
import type { TransportError } from "@runcmd/core/TransportError"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import { error } from "./arm.js"

/** @internal */
export interface Parameter {
  readonly name: string
  readonly value: string
}

/** @internal */
export interface Rendered {
  readonly script: string
  readonly nonce: string
  /** The secrets as protected parameters: revealed only when the request body is built. */
  readonly protectedParameters: () => ReadonlyArray<Parameter>
  /** Which stream carries the launch's protocol lines. */
  readonly protocolStream: "stdout" | "stderr"
  /** How the program ended, from the service's exit code and the protocol lines held back from the output. */
  readonly interpret: (
    code: number | undefined,
    held: Uint8Array
  ) => { readonly status: Either.Either<ExitStatus, string>; readonly rest: Uint8Array }
}

const SECRET_PREFIX = "RUNCMD_SECRET_"

/** @internal */
export const render = (
  os: "linux" | "windows",
  invocation: Invocation,
  options: {
    readonly maxInlineBytes: number
    readonly secretChannel: boolean
    /** The service reports no exit code (action run commands): PowerShell runs the launch as a child and prints it. */
    readonly exitFromChild?: boolean | undefined
  }
): Either.Either<Rendered, TransportError> => {
  const secretNames = Object.keys(invocation.secrets).sort()
  if (secretNames.length > 0 && !options.secretChannel) {
    return Either.left(
      error(
        "Unsupported",
        "delivery",
        "action run commands have no channel for secrets (parameters are stored and returned by the service); " +
          "use managed run commands (the default mode), which carry them as protected parameters"
      )
    )
  }
  const tooLarge = (failure: ScriptRender.SelfContainedFailure) =>
    error(
      "Unsupported",
      "delivery",
      failure.reason === "FilesTooLarge"
        ? `the job's files and stdin are ${failure.bytes} bytes, over the ${failure.limit} bytes sent inline in a run ` +
          "command's script; give the transport a storage container (storage.containerUrl, managed run commands) to " +
          "send them through a blob"
        : failure.message,
      { detail: { reason: failure.reason } }
    )
  if (os === "windows") {
    const rendered = ScriptRender.powershellSelfContained(invocation, { maxInlineBytes: options.maxInlineBytes })
    if (Either.isLeft(rendered)) return Either.left(tooLarge(rendered.left))
    const launch = rendered.right
    return Either.right({
      script: options.exitFromChild === true ? childLaunch(launch.script, launch.nonce) : launch.script,
      nonce: launch.nonce,
      protectedParameters: () =>
        secretNames.map((name) => ({ name, value: Redacted.value(invocation.secrets[name]!) })),
      protocolStream: "stdout",
      interpret: (code, held) => {
        const text = new TextDecoder().decode(held)
        const sentinel = launch.parseSentinel(text)
        const rest = held.subarray(0, 0)
        if (sentinel._tag === "Some") return { status: Either.right({ _tag: "Exited", code: sentinel.value }), rest }
        return {
          status: code === undefined
            ? Either.left("the script reported no exit status and the service gave no exit code")
            : Either.right({ _tag: "Exited", code }),
          rest: held
        }
      }
    })
  }
  const snippet = secretNames.map((name, i) =>
    `${name}="$${SECRET_PREFIX}${i}"; export ${name}; unset ${SECRET_PREFIX}${i}`
  )
    .join("\n")
  const launch = ScriptRender.selfContained(invocation, {
    maxInlineBytes: options.maxInlineBytes,
    ...(secretNames.length > 0 ? { secretsSnippet: snippet } : {})
  })
  if (Either.isLeft(launch)) return Either.left(tooLarge(launch.left))
  const l = launch.right
  return Either.right({
    script: l.script,
    nonce: l.nonce,
    protectedParameters: () =>
      secretNames.map((name, i) => ({
        name: `${SECRET_PREFIX}${i}`,
        value: Redacted.value(invocation.secrets[name]!)
      })),
    protocolStream: "stderr",
    interpret: (code, held) => {
      const r = l.interpret(code, held)
      return { status: r.status, rest: r.stderr }
    }
  })
}

/**
 * The PowerShell launch run as a script file of its own (`& file`), then its exit code printed as the launch's
 * sentinel: the launch prints it only when it knows the code, and a script ending in `exit N` ends the host first.
 */
const childLaunch = (script: string, nonce: string) =>
  [
    `$__rc_file = Join-Path ([IO.Path]::GetTempPath()) 'runcmd-${nonce}.ps1'`,
    `[IO.File]::WriteAllText($__rc_file, [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('${
      Buffer.from(script).toString("base64")
    }')))`,
    "try {",
    // a script file called with & ends with `exit N` into $LASTEXITCODE, not the host
    "  & $__rc_file",
    "  $__rc_code = $LASTEXITCODE",
    "} finally { Remove-Item -LiteralPath $__rc_file -Force -ErrorAction SilentlyContinue }",
    `[Console]::Out.WriteLine('runcmd-${nonce}:exit=' + $__rc_code)`,
    "exit $__rc_code"
  ].join("\n")

const NL = 10

/**
 * Takes the launch's protocol lines (`runcmd-<nonce>:...\n`) out of a stream while it flows: everything else is
 * passed on at once, except a tail that could be the start of one.
 *
 * @internal
 */
export const makeProtocolFilter = (nonce: string) => {
  const needle = Buffer.from(`runcmd-${nonce}:`)
  let pending = Buffer.alloc(0)
  const held: Array<Buffer> = []
  /** How many bytes at the end of `buf` (from `from`) could begin the needle. */
  const partial = (buf: Buffer, from: number) => {
    const max = Math.min(needle.length - 1, buf.length - from)
    for (let k = max; k > 0; k--) {
      if (buf.subarray(buf.length - k).equals(needle.subarray(0, k))) return k
    }
    return 0
  }
  return {
    push: (chunk: Uint8Array): Uint8Array => {
      const buf = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk])
      const out: Array<Buffer> = []
      let i = 0
      for (;;) {
        const at = buf.indexOf(needle, i)
        if (at < 0) {
          const keep = partial(buf, i)
          out.push(buf.subarray(i, buf.length - keep))
          pending = buf.subarray(buf.length - keep)
          break
        }
        out.push(buf.subarray(i, at))
        const nl = buf.indexOf(NL, at + needle.length)
        if (nl < 0) {
          pending = buf.subarray(at)
          break
        }
        held.push(buf.subarray(at, nl + 1))
        i = nl + 1
      }
      return Buffer.concat(out)
    },
    /** The protocol lines held back, and what was pending at the end (a line without its newline). */
    end: (): Uint8Array => {
      const all = Buffer.concat([...held, pending])
      pending = Buffer.alloc(0)
      return all
    }
  }
}
