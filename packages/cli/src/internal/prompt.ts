/**
 * Terminal input: a password prompt without echo (on the controlling terminal, as sudo and ssh do), and reading
 * all of stdin.
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as tty from "node:tty"
import { CliError, usage } from "./errors.js"
import { ExitCode } from "./exitCode.js"

/**
 * Asks for a password on the terminal, echoing nothing. Ctrl-C cancels (exit 130), Ctrl-D or Enter ends.
 *
 * @internal
 */
export const password = (prompt: string): Effect.Effect<Redacted.Redacted<string>, CliError> =>
  Effect.async<Redacted.Redacted<string>, CliError>((resume) => {
    let fd: number
    try {
      fd = fs.openSync("/dev/tty", "r+")
    } catch {
      if (process.stdin.isTTY !== true) {
        resume(Effect.fail(usage(
          "runcmd run: --ask-become-pass needs a terminal to ask on, and there is none. Fix: set the password in the RUNCMD_BECOME_PASS environment variable instead. Nothing was run."
        )))
        return
      }
      fd = -1
    }
    const input = fd === -1 ? process.stdin as tty.ReadStream : new tty.ReadStream(fd)
    const output = fd === -1 ? process.stderr : new tty.WriteStream(fd)
    const wasRaw = input.isRaw
    let value = ""
    let done = false
    const finish = (result: Effect.Effect<Redacted.Redacted<string>, CliError>) => {
      if (done) return
      done = true
      input.removeListener("data", onData)
      try {
        input.setRawMode(wasRaw)
      } catch {
        // the terminal went away
      }
      input.pause()
      output.write("\n")
      if (fd !== -1) {
        input.destroy()
        ;(output as tty.WriteStream).destroy()
      }
      resume(result)
    }
    const onData = (data: Buffer) => {
      for (const ch of data.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          const secret = Redacted.make(value)
          value = ""
          return finish(Effect.succeed(secret))
        }
        if (ch === "\u0003") {
          value = ""
          return finish(
            Effect.fail(
              new CliError({
                message: "runcmd run: interrupted at the password prompt. Nothing was run.",
                code: ExitCode.Interrupted
              })
            )
          )
        }
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1)
        else if (ch === "\u0015") value = ""
        else value += ch
      }
    }
    // echo off before the prompt shows: what is typed as soon as it appears must not be echoed
    input.setRawMode(true)
    output.write(prompt)
    input.on("data", onData)
    input.resume()
    return Effect.sync(() => finish(Effect.fail(usage("interrupted"))))
  })

/**
 * Reads all of stdin as bytes.
 *
 * @internal
 */
export const readStdin: Effect.Effect<Uint8Array, CliError> = Effect.async<Uint8Array, CliError>((resume) => {
  const chunks: Array<Buffer> = []
  const onData = (chunk: Buffer) => {
    chunks.push(chunk)
  }
  const cleanup = () => {
    process.stdin.removeListener("data", onData)
    process.stdin.removeListener("end", onEnd)
    process.stdin.removeListener("error", onError)
    process.stdin.pause()
  }
  const onEnd = () => {
    cleanup()
    resume(Effect.succeed(new Uint8Array(Buffer.concat(chunks))))
  }
  const onError = (error: Error) => {
    cleanup()
    resume(
      Effect.fail(
        usage(`runcmd run: --stdin -: cannot read runcmd's standard input: ${error.message}. Nothing was run.`)
      )
    )
  }
  process.stdin.on("data", onData)
  process.stdin.on("end", onEnd)
  process.stdin.on("error", onError)
  process.stdin.resume()
  return Effect.sync(cleanup)
})
