/**
 * The summary table printed at the end of a run (and by `runcmd report`): one row per target with its outcome,
 * exit code and duration, the counts, and the ids of the targets that did not succeed.
 *
 * @since 0.1.0
 * @internal
 */
import type * as Outcome from "@runcmd/core/Outcome"
import * as RunReport from "@runcmd/core/RunReport"
import { ExitCode } from "./exitCode.js"
import { paint, type Style } from "./style.js"

/**
 * The exit code a finished run maps to.
 *
 * @internal
 */
export const fromReport = (report: RunReport.RunReport, signal?: string | undefined): ExitCode =>
  report.interrupted
    ? signal === "SIGTERM" ? ExitCode.Terminated : ExitCode.Interrupted
    : RunReport.isSuccess(report)
    ? ExitCode.Success
    : ExitCode.TargetsFailed

/**
 * `850ms`, `2.3s`, `1m05s`, `1h02m`.
 *
 * @internal
 */
export const formatDuration = (ms: number): string => {
  if (!Number.isFinite(ms) || ms < 0) return "-"
  if (ms < 1000) return `${Math.round(ms)}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.floor(ms / 1000)
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
}

/**
 * The exit column: the code when there is one, the signal for a signal death, `-` otherwise.
 *
 * @internal
 */
export const exitColumn = (o: Outcome.Outcome): string => {
  switch (o._tag) {
    case "Succeeded":
      return "0"
    case "Failed":
      return String(o.exitCode)
    case "Signaled":
      return o.signal
    default:
      return "-"
  }
}

/**
 * What else there is to say about an outcome, in a few words.
 *
 * @internal
 */
export const detail = (o: Outcome.Outcome): string => {
  const parts: Array<string> = []
  switch (o._tag) {
    case "TimedOut":
      parts.push(`${o.limit} during ${o.phase}${o.killConfirmed ? ", killed" : ", kill not confirmed"}`)
      break
    case "Cancelled":
      parts.push(o.confirmed ? "killed" : "kill not confirmed")
      break
    case "Unreachable":
    case "Rejected":
    case "TransportFailed":
      parts.push(`${o.error.reason}: ${o.error.message}`)
      break
    case "Skipped":
      parts.push(
        o.why === "BudgetExhausted"
          ? "error budget exhausted"
          : o.why === "Deadline"
          ? "deadline reached"
          : "run cancelled"
      )
      break
    default:
      break
  }
  if (o.attempts > 1) parts.push(`${o.attempts} attempts`)
  const cutBy = o.stdout.truncatedBy ?? o.stderr.truncatedBy
  if (cutBy !== undefined) parts.push(`output cut by the service (${cutBy})`)
  else if (o.stderr.truncated || o.stdout.truncated) parts.push("output truncated in report")
  return parts.join("; ").replace(/\s+/g, " ")
}

/**
 * The style of an outcome tag.
 *
 * @internal
 */
export const outcomeStyle = (tag: Outcome.OutcomeTag): PaintCode =>
  tag === "Succeeded" ? "green" : tag === "Skipped" || tag === "Cancelled" ? "yellow" : "red"

type PaintCode = "green" | "yellow" | "red" | "dim" | "bold"

const pad = (text: string, width: number) => text + " ".repeat(Math.max(0, width - [...text].length))

const truncate = (text: string, width: number) => {
  const chars = [...text]
  return chars.length <= width ? text : chars.slice(0, Math.max(0, width - 1)).join("") + "…"
}

/**
 * The counts line: `5 targets: 3 succeeded, 1 failed, 1 timed out`.
 *
 * @internal
 */
export const countsLine = (byOutcome: Record<string, number>, total: number, style: Style): string => {
  const parts: Array<string> = []
  for (const [tag, n] of Object.entries(byOutcome)) {
    if (n === 0) continue
    parts.push(paint(style, outcomeStyle(tag as Outcome.OutcomeTag), `${n} ${words(tag)}`))
  }
  return `${total} target${total === 1 ? "" : "s"}: ${parts.length === 0 ? "none finished" : parts.join(", ")}`
}

const words = (tag: string) => tag.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase()

/**
 * The table, the counts and the failed ids.
 *
 * @internal
 */
export const render = (report: RunReport.RunReport, style: Style): string => {
  const header = ["TARGET", "OUTCOME", "EXIT", "DURATION", "DETAIL"]
  const rows = report.outcomes.map((
    o
  ) => [o.targetId, o._tag, exitColumn(o), o._tag === "Skipped" ? "-" : formatDuration(o.durationMs), detail(o)])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]!].length)))
  const columns = style.columns
  const lines: Array<string> = []
  const fixed = widths.slice(0, 4).reduce((a, b) => a + b + 2, 0)
  const detailWidth = columns === undefined ? Infinity : Math.max(10, columns - fixed)
  const line = (cells: ReadonlyArray<string>, styles: ReadonlyArray<PaintCode | undefined>) =>
    cells.map((c, i) => {
      const text = i === 4 ? truncate(c, detailWidth) : pad(c, widths[i]!)
      const s = styles[i]
      return s === undefined ? text : paint(style, s, text)
    }).join("  ").trimEnd()
  lines.push(line(header, header.map(() => "bold" as const)))
  for (let i = 0; i < rows.length; i++) {
    const o = report.outcomes[i]!
    lines.push(line(rows[i]!, [undefined, outcomeStyle(o._tag), undefined, undefined, "dim"]))
  }
  lines.push("")
  lines.push(
    `${countsLine(report.summary.byOutcome, report.summary.total, style)} in ${formatDuration(report.durationMs)}`
  )
  if (report.interrupted) {
    lines.push(paint(style, "yellow", "interrupted: running targets were cancelled, the rest skipped"))
  }
  const failed = RunReport.failedTargets(report)
  if (failed.length > 0) lines.push(`${paint(style, "red", "not succeeded:")} ${failed.join(" ")}`)
  for (const w of report.warnings) lines.push(paint(style, "yellow", `warning: ${w}`))
  return lines.join("\n") + "\n"
}
