/**
 * `runcmd inventory check FILE` and `runcmd report FILE.json`.
 *
 * @since 0.1.0
 * @internal
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Outcome from "@runcmd/core/Outcome"
import * as RunReport from "@runcmd/core/RunReport"
import * as Selector from "@runcmd/core/Selector"
import type * as Target from "@runcmd/core/Target"
import * as Effect from "effect/Effect"
import { type CliError, fromInvalidPlan } from "./errors.js"
import { finishLine } from "./human.js"
import { loadInventory, readReport } from "./plan.js"
import { forStream, paint } from "./style.js"
import * as Summary from "./summary.js"

const write = (text: string) => {
  process.stdout.write(text)
}

/**
 * Where a target is, when it is elsewhere: `user@host:port` for SSH.
 *
 * @internal
 */
export const address = (t: Target.Target): string => {
  if (t.kind !== "ssh") return ""
  const s = t as unknown as { readonly host?: string; readonly port?: number; readonly user?: string }
  return `${s.user === undefined ? "" : `${s.user}@`}${s.host ?? "?"}${
    s.port === undefined || s.port === 22 ? "" : `:${s.port}`
  }`
}

const labelsText = (t: Target.Target) => Object.entries(t.labels).map(([k, v]) => `${k}=${v}`).join(" ")

const pad = (text: string, width: number) => text + " ".repeat(Math.max(0, width - [...text].length))

/**
 * Validates an inventory and lists its targets (optionally those a selector matches); exit 0, or 2 with the
 * problem.
 *
 * @internal
 */
export const inventoryCheck = (
  file: string,
  select: ReadonlyArray<string>,
  output: "human" | "json"
): Effect.Effect<number, CliError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const inventory = yield* loadInventory(file, "inventory check")
    const targets = select.length === 0
      ? inventory.targets
      : yield* Selector.select(inventory.targets, select).pipe(
        Effect.mapError((e) => fromInvalidPlan(e, { command: "inventory check" }))
      )
    if (output === "json") {
      // ids, kinds and labels only: an inventory may hold credentials, which are never printed
      write(
        JSON.stringify(
          {
            file: inventory.file,
            targets: targets.map((t) => ({ id: t.id, kind: t.kind, os: t.os, labels: t.labels })),
            groups: inventory.groups
          },
          null,
          2
        ) + "\n"
      )
      return 0
    }
    const style = forStream(process.stdout)
    const groupOf = new Map<string, string>()
    for (const [g, ids] of Object.entries(inventory.groups)) for (const id of ids) groupOf.set(id, g)
    const withAddress = targets.some((t) => address(t) !== "")
    const header = ["ID", "KIND", ...(withAddress ? ["ADDRESS"] : []), "GROUP", "LABELS"]
    const rows = targets.map((t) => [
      t.id,
      t.kind,
      ...(withAddress ? [address(t) || "-"] : []),
      groupOf.get(t.id) ?? "-",
      labelsText(t)
    ])
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]!].length)))
    const line = (cells: ReadonlyArray<string>) =>
      cells.map((c, i) => (i === cells.length - 1 ? c : pad(c, widths[i]!))).join("  ").trimEnd()
    const groups = Object.keys(inventory.groups)
    const out: Array<string> = []
    out.push(
      `${paint(style, "green", "ok")} ${inventory.file}: ${inventory.targets.length} target${
        inventory.targets.length === 1 ? "" : "s"
      }${
        groups.length === 0 ? "" : ` in ${groups.length} group${groups.length === 1 ? "" : "s"} (${groups.join(", ")})`
      }`
    )
    if (select.length > 0) out.push(`${targets.length} match ${select.map((s) => JSON.stringify(s)).join(" or ")}`)
    out.push("")
    out.push(paint(style, "bold", line(header)))
    for (const r of rows) out.push(line(r))
    const labelKeys = new Map<string, Set<string>>()
    for (const t of targets) {
      for (const [k, v] of Object.entries(t.labels)) {
        let values = labelKeys.get(k)
        if (values === undefined) labelKeys.set(k, values = new Set())
        values.add(v)
      }
    }
    if (labelKeys.size > 0) {
      out.push("")
      out.push(paint(style, "bold", "Labels:"))
      for (const [k, values] of [...labelKeys.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
        out.push(`  ${k}: ${[...values].sort().join(", ")}`)
      }
    }
    write(out.join("\n") + "\n")
    return 0
  })

/**
 * Renders a saved report (the summary table; the failed ids; the captured output); exits as that run did.
 *
 * @internal
 */
export const report = (
  file: string,
  options: { readonly failed: boolean; readonly showOutput: boolean }
): Effect.Effect<number, CliError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const report = yield* readReport(file, "", "report")
    if (options.failed) {
      const ids = RunReport.failedTargets(report)
      write(ids.length === 0 ? "" : ids.join("\n") + "\n")
      return Summary.fromReport(report)
    }
    const style = forStream(process.stdout)
    const out: Array<string> = []
    const started = new Date(report.startedAt).toISOString()
    out.push(`${paint(style, "bold", "Run")} ${report.runId} · started ${started}`)
    out.push("")
    if (options.showOutput) {
      for (const o of report.outcomes) {
        const stdout = Outcome.capturedText(o.stdout)
        const stderr = Outcome.capturedText(o.stderr)
        out.push(finishLine(o, style))
        if (stdout !== "") out.push(indent(stdout))
        if (stderr !== "") out.push(indent(stderr, paint(style, "red", "! ")))
      }
      out.push("")
    }
    write(out.join("\n") + "\n" + Summary.render(report, style))
    return Summary.fromReport(report)
  })

const indent = (text: string, mark = "") => text.replace(/\n$/, "").split("\n").map((l) => `    ${mark}${l}`).join("\n")
