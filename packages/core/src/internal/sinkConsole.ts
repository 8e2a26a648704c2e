/**
 * The console sink: line-prefixed output, or one block per target printed when it finishes.
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Outcome } from "../Outcome.js"
import type { StreamName } from "../OutputChunk.js"
import type { ConsoleOptions, OutputSink, OutputSinkError, RunInfo } from "../OutputSink.js"
import type { RunEvent } from "../RunEvent.js"
import { sinkError } from "./sinkWriter.js"
import { makeUtf8Decoder, type Utf8Decoder } from "./utf8.js"

/** @internal */
export const DEFAULT_MAX_LINE_LENGTH = 16 * 1024
/** @internal */
export const DEFAULT_MAX_GROUP_LENGTH = 256 * 1024

const ESC = "\u001b["
const RESET = `${ESC}0m`
const PALETTE = ["36", "35", "33", "34", "32", "96", "95", "93", "94", "92"]
const RED = "31"
const GREEN = "32"
const DIM = "2"
const BOLD = "1"

/**
 * Splits decoded text into lines (on `\n`, without a trailing `\r`), holding a partial line until its end; a
 * partial line longer than `max` is cut and emitted as a line, so memory stays bounded.
 */
class LineSplitter {
  private partial = ""
  constructor(private readonly max: number) {}
  push(text: string, out: Array<string>): void {
    let start = 0
    for (;;) {
      const nl = text.indexOf("\n", start)
      if (nl === -1) break
      this.line(stripCr(this.partial + text.slice(start, nl)), out)
      this.partial = ""
      start = nl + 1
    }
    this.partial += text.slice(start)
    while (this.partial.length > this.max) {
      const cut = cutAt(this.partial, this.max)
      out.push(this.partial.slice(0, cut))
      this.partial = this.partial.slice(cut)
    }
  }
  end(out: Array<string>): void {
    if (this.partial !== "") this.line(stripCr(this.partial), out)
    this.partial = ""
  }
  private line(line: string, out: Array<string>) {
    while (line.length > this.max) {
      const cut = cutAt(line, this.max)
      out.push(line.slice(0, cut))
      line = line.slice(cut)
    }
    out.push(line)
  }
}

/** A cut point at or before `max` that does not split a surrogate pair. */
const cutAt = (text: string, max: number): number => {
  const c = text.charCodeAt(max - 1)
  return max > 1 && c >= 0xd800 && c <= 0xdbff ? max - 1 : max
}

const stripCr = (line: string) => (line.endsWith("\r") ? line.slice(0, -1) : line)

/** Decoder and line splitter of one stream of one target. */
class StreamLines {
  private readonly decoder: Utf8Decoder = makeUtf8Decoder()
  private readonly splitter: LineSplitter
  constructor(max: number) {
    this.splitter = new LineSplitter(max)
  }
  push(bytes: Uint8Array, out: Array<string>) {
    this.splitter.push(this.decoder.decode(bytes), out)
  }
  end(out: Array<string>) {
    this.splitter.push(this.decoder.end(), out)
    this.splitter.end(out)
  }
}

/**
 * A bounded block of lines: the first half of the budget keeps the head, the second half a rolling tail; what
 * falls between is counted.
 */
class Block {
  private readonly head: Array<string> = []
  private headLength = 0
  private headFull = false
  private tail: Array<string> = []
  private tailStart = 0
  private tailLength = 0
  droppedLines = 0
  droppedChars = 0
  constructor(private readonly half: number) {}
  add(line: string) {
    const size = line.length + 1
    if (!this.headFull && this.headLength + size <= this.half) {
      this.head.push(line)
      this.headLength += size
      return
    }
    this.headFull = true
    this.tail.push(line)
    this.tailLength += size
    while (this.tailLength > this.half && this.tailStart < this.tail.length) {
      const dropped = this.tail[this.tailStart++]!
      this.tailLength -= dropped.length + 1
      this.droppedLines++
      this.droppedChars += dropped.length + 1
    }
    if (this.tailStart > 1024 && this.tailStart * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.tailStart)
      this.tailStart = 0
    }
  }
  lines(marker: (lines: number, chars: number) => string): Array<string> {
    const tail = this.tail.slice(this.tailStart)
    return this.droppedLines === 0
      ? [...this.head, ...tail]
      : [...this.head, marker(this.droppedLines, this.droppedChars), ...tail]
  }
}

interface TargetState {
  readonly streams: Record<StreamName, StreamLines>
  readonly block: Block | undefined
}

const seconds = (ms: number) => (ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`)

/**
 * A one-line summary of an outcome: `Failed (exit 3) in 1.2s`.
 *
 * @internal
 */
export const describeOutcome = (outcome: Outcome): string => {
  let what: string
  switch (outcome._tag) {
    case "Succeeded":
    case "Cancelled":
      what = outcome._tag
      break
    case "Failed":
      what = `Failed (exit ${outcome.exitCode})`
      break
    case "Signaled":
      what = `Signaled (${outcome.signal})`
      break
    case "TimedOut":
      what = `TimedOut (${outcome.limit}, ${outcome.phase})`
      break
    case "Unreachable":
    case "Rejected":
    case "TransportFailed":
      what = `${outcome._tag} (${outcome.error.reason}: ${outcome.error.message})`
      break
    case "Skipped":
      what = `Skipped (${outcome.why})`
      break
  }
  const attempts = outcome.attempts > 1 ? `, ${outcome.attempts} attempts` : ""
  return outcome._tag === "Skipped" ? what : `${what} in ${seconds(outcome.durationMs)}${attempts}`
}

const defaultWrite = (stream: "stdout" | "stderr") => (text: string) => {
  process[stream].write(text)
}

const defaultColor = (stream: "stdout" | "stderr") =>
  process[stream].isTTY === true && process.env.NO_COLOR === undefined && process.env.TERM !== "dumb"

/** @internal */
export const consoleSink = (options: ConsoleOptions): OutputSink => {
  const name = "console"
  const processStream = options.stream ?? "stdout"
  const writeText = options.write ?? defaultWrite(processStream)
  const color = options.color ?? (options.write === undefined && defaultColor(processStream))
  const maxGroup = Math.max(2, options.maxGroupLength ?? DEFAULT_MAX_GROUP_LENGTH)
  const maxLine = Math.max(1, Math.min(options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH, Math.floor(maxGroup / 2)))
  const paint = (code: string, text: string) => (color ? `${ESC}${code}m${text}${RESET}` : text)

  return {
    name,
    open: (run: RunInfo) =>
      Effect.gen(function*() {
        const colorOf = new Map<string, string>()
        run.targets.forEach((t, i) => colorOf.set(t.id, PALETTE[i % PALETTE.length]!))
        const prefix = (targetId: string) => {
          let code = colorOf.get(targetId)
          if (code === undefined) {
            code = PALETTE[colorOf.size % PALETTE.length]!
            colorOf.set(targetId, code)
          }
          return paint(code, `[${targetId}]`)
        }
        const targets = new Map<string, TargetState>()
        const stateOf = (targetId: string): TargetState => {
          let state = targets.get(targetId)
          if (state === undefined) {
            state = {
              streams: { stdout: new StreamLines(maxLine), stderr: new StreamLines(maxLine) },
              block: options.mode === "grouped" ? new Block(Math.floor(maxGroup / 2)) : undefined
            }
            targets.set(targetId, state)
          }
          return state
        }

        const emit = (text: string): Effect.Effect<void, OutputSinkError> =>
          text === ""
            ? Effect.void
            : Effect.try({
              try: () => writeText(text),
              catch: (cause) => sinkError(name, "WriteFailed", "cannot write to the console", cause)
            })

        const formatLine = (stream: StreamName, line: string) =>
          stream === "stderr" ? (color ? paint(RED, line) : `! ${line}`) : line

        /** Lines of a target's stream, formatted: prefixed now, or added to the target's block. */
        const take = (targetId: string, state: TargetState, stream: StreamName, lines: Array<string>): string => {
          if (lines.length === 0) return ""
          if (state.block !== undefined) {
            for (const line of lines) state.block.add(formatLine(stream, line))
            return ""
          }
          const p = prefix(targetId)
          let text = ""
          for (const line of lines) text += `${p} ${formatLine(stream, line)}\n`
          return text
        }

        /** Ends both streams of a target (held partial lines included). */
        const endStreams = (targetId: string, state: TargetState): string => {
          let text = ""
          for (const stream of ["stdout", "stderr"] as const) {
            const lines: Array<string> = []
            state.streams[stream].end(lines)
            text += take(targetId, state, stream, lines)
          }
          return text
        }

        const blockText = (targetId: string, state: TargetState, status: string, ok: boolean): string => {
          const header = `${paint(ok ? GREEN : RED, "==>")} ${paint(BOLD, targetId)}: ${status}`
          const lines = state.block!.lines((n, chars) =>
            paint(DIM, `[... ${n} line${n === 1 ? "" : "s"} (${chars} characters) dropped ...]`)
          )
          return [header, ...lines].map((l) => `${l}\n`).join("")
        }

        const finishAll = (): string => {
          let text = ""
          for (const [targetId, state] of targets) {
            text += endStreams(targetId, state)
            if (state.block !== undefined) text += blockText(targetId, state, "unfinished", false)
          }
          targets.clear()
          return text
        }

        yield* Effect.addFinalizer(() => Effect.ignore(Effect.suspend(() => emit(finishAll()))))

        const handle = (event: RunEvent): Effect.Effect<void, OutputSinkError> =>
          Effect.suspend(() => {
            switch (event._tag) {
              case "Output": {
                const { bytes, stream, targetId } = event.chunk
                const state = stateOf(targetId)
                const lines: Array<string> = []
                state.streams[stream].push(bytes, lines)
                return emit(take(targetId, state, stream, lines))
              }
              case "Retrying": {
                // the failed attempt's streams have ended
                const state = stateOf(event.targetId)
                let text = endStreams(event.targetId, state)
                const marker =
                  `~ attempt ${event.attempt} failed (${event.error.reason}: ${event.error.message}); retrying`
                if (state.block !== undefined) state.block.add(paint(DIM, marker))
                else text += `${prefix(event.targetId)} ${paint(DIM, marker)}\n`
                return emit(text)
              }
              case "Finished": {
                const state = stateOf(event.targetId)
                targets.delete(event.targetId)
                const text = endStreams(event.targetId, state)
                if (state.block === undefined) return emit(text)
                const ok = event.outcome._tag === "Succeeded"
                return emit(blockText(event.targetId, state, describeOutcome(event.outcome), ok))
              }
              case "RunFinished":
                return emit(finishAll())
              default:
                return Effect.void
            }
          })

        return { write: handle }
      })
  }
}
