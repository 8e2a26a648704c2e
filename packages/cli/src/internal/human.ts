/**
 * Human output of a run, as an output sink fed by the Runner's events (the same events `Runner.stream` gives):
 *
 * - plain (no TTY, `NO_COLOR`, `TERM=dumb`): target output as `[target] line` (or grouped per target when it
 *   finishes), and a line per finished target;
 * - live (a TTY): the same lines scroll above a status block that is redrawn in place (throttled): one line per
 *   in-flight target with its elapsed time, and the counts by outcome.
 *
 * @since 0.1.0
 * @internal
 */
import type * as Outcome from "@runcmd/core/Outcome"
import * as OutputSink from "@runcmd/core/OutputSink"
import type { RunEvent } from "@runcmd/core/RunEvent"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { paint, stripAnsi, type Style } from "./style.js"
import { countsLine, exitColumn, formatDuration, outcomeStyle } from "./summary.js"

/**
 * Shared with the interrupt handler: the live view says when the run is being cancelled.
 *
 * @internal
 */
export interface RunState {
  cancelling: boolean
}

/** @internal */
export interface HumanOptions {
  readonly mode: "prefixed" | "grouped"
  readonly live: boolean
  readonly style: Style
  readonly write: (text: string) => void
  readonly state: RunState
  /** The terminal size now (it may change during the run), to fit the status block. */
  readonly size?: (() => { readonly columns: number | undefined; readonly rows: number | undefined }) | undefined
  /** Redraw period of the live view. */
  readonly refresh?: Duration.DurationInput | undefined
}

interface InFlight {
  readonly since: number
  readonly attempt: number
  retrying: boolean
}

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]

/**
 * One line for a finished target: `✓ web-1 Succeeded in 1.2s` / `✗ web-2 Failed (exit 3) in 1.0s`.
 *
 * @internal
 */
export const finishLine = (o: Outcome.Outcome, style: Style): string => {
  const ok = o._tag === "Succeeded"
  const mark = paint(style, outcomeStyle(o._tag), ok ? "✓" : o._tag === "Skipped" || o._tag === "Cancelled" ? "-" : "✗")
  const exit = o._tag === "Failed" ? ` (exit ${exitColumn(o)})` : o._tag === "Signaled" ? ` (${o.signal})` : ""
  const time = o._tag === "Skipped" ? ` (${o.why})` : ` in ${formatDuration(o.durationMs)}`
  return `${mark} ${paint(style, "bold", o.targetId)} ${paint(style, outcomeStyle(o._tag), o._tag)}${exit}${time}`
}

/**
 * The sink.
 *
 * @internal
 */
export const sink = (options: HumanOptions): OutputSink.OutputSink => ({
  name: "human",
  open: (run) =>
    Effect.gen(function*() {
      const { style } = options
      let above = ""
      let finished = false
      const console = OutputSink.console({
        mode: options.mode,
        color: style.color,
        write: (text) => {
          // above the status block while it is drawn, straight out otherwise
          if (options.live && !finished) above += text
          else options.write(text)
        }
      })
      const inner = yield* console.open(run)

      const total = run.targets.length
      const idWidth = Math.min(24, Math.max(0, ...run.targets.map((t) => [...t.id].length)))
      const running = new Map<string, InFlight>()
      const counts: Record<string, number> = {}
      let done = 0
      let drawn = 0
      let frame = 0
      const startedAt = Date.now()

      const statusLines = (): Array<string> => {
        const now = Date.now()
        const size = options.size?.()
        const width = Math.max(20, (size?.columns ?? style.columns ?? 80) - 1)
        const spin = SPINNER[frame++ % SPINNER.length]!
        const waiting = total - done - running.size
        const head = [
          options.state.cancelling
            ? paint(style, "yellow", "cancelling (Ctrl-C): killing running targets…")
            : `${paint(style, "cyan", spin)} ${running.size} running`,
          `${done}/${total} done`,
          ...(waiting > 0 ? [`${waiting} waiting`] : []),
          countsLine(counts, total, style).replace(/^\d+ targets?: /, ""),
          formatDuration(now - startedAt)
        ].join(" · ")
        const lines = [head]
        const maxRows = Math.max(1, Math.min(20, (size?.rows ?? 24) - 3))
        const list = [...running.entries()].sort((a, b) => a[1].since - b[1].since)
        for (const [id, f] of list.slice(0, maxRows)) {
          const extra = f.retrying ? " (retrying)" : f.attempt > 1 ? ` (attempt ${f.attempt})` : ""
          lines.push(`  ${paint(style, "cyan", "▸")} ${id.padEnd(idWidth)}  ${formatDuration(now - f.since)}${extra}`)
        }
        if (list.length > maxRows) lines.push(paint(style, "dim", `  … and ${list.length - maxRows} more running`))
        return lines.map((l) => fit(l, width))
      }

      const redraw = (final: boolean) =>
        Effect.sync(() => {
          if (!options.live || (finished && !final)) return
          let out = ""
          if (drawn > 0) out += `\r\u001b[${drawn}A\u001b[J`
          out += above
          above = ""
          if (final) {
            drawn = 0
            out += "\u001b[?25h"
          } else {
            const lines = statusLines()
            out += lines.map((l) => `${l}\n`).join("")
            drawn = lines.length
          }
          options.write(out)
        })

      if (options.live) {
        options.write("\u001b[?25l")
        const restore = () => process.stdout.write("\u001b[?25h")
        process.once("exit", restore)
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            process.removeListener("exit", restore)
            finished = true
            return redraw(true)
          })
        )
        yield* redraw(false).pipe(
          Effect.repeat(Schedule.spaced(options.refresh ?? Duration.millis(100))),
          Effect.interruptible,
          Effect.forkScoped
        )
      }

      const track = (event: RunEvent) => {
        switch (event._tag) {
          case "Started":
            running.set(event.targetId, { since: event.at, attempt: event.attempt, retrying: false })
            break
          case "Retrying": {
            const f = running.get(event.targetId)
            if (f !== undefined) f.retrying = true
            break
          }
          case "Finished": {
            running.delete(event.targetId)
            done++
            counts[event.outcome._tag] = (counts[event.outcome._tag] ?? 0) + 1
            if (options.mode === "prefixed") {
              const line = `${finishLine(event.outcome, style)}\n`
              if (options.live) above += line
              else options.write(line)
            }
            break
          }
          default:
            break
        }
      }

      return {
        write: (event: RunEvent) =>
          Effect.zipRight(
            inner.write(event),
            Effect.suspend(() => {
              track(event)
              // a flood of output between two redraws is written at once, to bound what is held
              return options.live && !finished && above.length > 64 * 1024 ? redraw(false) : Effect.void
            })
          )
      }
    })
})

/** Cuts a line (with ANSI codes) to a visible width. */
const fit = (line: string, width: number): string => {
  if ([...stripAnsi(line)].length <= width) return line
  let visible = 0
  let out = ""
  for (let i = 0; i < line.length;) {
    const m = /^\u001b\[[0-9;?]*[A-Za-z]/.exec(line.slice(i))
    if (m !== null) {
      out += m[0]
      i += m[0].length
      continue
    }
    const ch = String.fromCodePoint(line.codePointAt(i)!)
    if (visible >= width - 1) {
      out += "…"
      break
    }
    out += ch
    visible++
    i += ch.length
  }
  return out + "\u001b[0m"
}
