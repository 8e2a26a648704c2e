/**
 * `runcmd run`: builds the plan from the flags, then either shows it (`--dry-run`) or runs it with the human,
 * JSON or JSONL output, cancelling on Ctrl-C (the report is still printed and written).
 *
 * @since 0.1.0
 * @internal
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type * as ExecutionPolicy from "@runcmd/core/ExecutionPolicy"
import { InvalidPlan } from "@runcmd/core/InvalidPlan"
import * as OutputSink from "@runcmd/core/OutputSink"
import * as OutputSinks from "@runcmd/core/OutputSinks"
import * as Runner from "@runcmd/core/Runner"
import type * as RunPlan from "@runcmd/core/RunPlan"
import * as RunReport from "@runcmd/core/RunReport"
import * as ScriptRender from "@runcmd/core/ScriptRender"
import type * as Target from "@runcmd/core/Target"
import * as Transport from "@runcmd/core/Transport"
import * as ConfigError from "effect/ConfigError"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { CliError, fromInvalidPlan, usage } from "./errors.js"
import { ExitCode, signals } from "./exitCode.js"
import * as Human from "./human.js"
import { address } from "./inspect.js"
import * as Plan from "./plan.js"
import { forStream, isInteractive, paint, plain, type Style } from "./style.js"
import * as Summary from "./summary.js"
import * as Transports from "./transports.js"

const write = (text: string) => {
  process.stdout.write(text)
}

/**
 * Runs `runcmd run` with its flags; returns the exit code.
 *
 * @internal
 */
export const run = (
  flags: Plan.RunFlags
): Effect.Effect<number, CliError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    if (flags.dryRun && flags.output !== "human") {
      return yield* Effect.fail(usage("runcmd run: --dry-run shows a plan for people; drop --output. Nothing was run."))
    }
    yield* checkOutputPaths(flags)
    const { job, plan } = yield* Plan.makePlan(flags)
    if (flags.dryRun) return yield* dryRun(plan, job, plan.policy)
    return yield* execute(plan, flags)
  })

/** Where the report and output files go must be writable before anything runs. */
const checkOutputPaths = (flags: Plan.RunFlags) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    if (flags.report !== undefined) {
      const dir = path.dirname(path.resolve(flags.report))
      const info = yield* Effect.either(fs.stat(dir))
      if (info._tag === "Left" || info.right.type !== "Directory") {
        return yield* Effect.fail(usage(
          `runcmd run: --report ${flags.report}: the directory ${dir} does not exist. Fix: create it, or write the report elsewhere. Nothing was run.`
        ))
      }
      const existing = yield* Effect.either(fs.stat(flags.report))
      if (existing._tag === "Right" && existing.right.type === "Directory") {
        return yield* Effect.fail(usage(
          `runcmd run: --report ${flags.report} is a directory. Fix: give a file name, e.g. --report ${
            path.join(flags.report, "report.json")
          }. Nothing was run.`
        ))
      }
    }
    if (flags.outDir !== undefined) {
      const existing = yield* Effect.either(fs.stat(flags.outDir))
      if (existing._tag === "Right" && existing.right.type !== "Directory") {
        return yield* Effect.fail(usage(
          `runcmd run: --out-dir ${flags.outDir} exists and is not a directory. Fix: give a directory (it is created if missing). Nothing was run.`
        ))
      }
    }
  })

const describeTarget = (t: Target.Target): string => {
  const labels = Object.entries(t.labels).map(([k, v]) => `${k}=${v}`).join(" ")
  return [t.id, t.kind, address(t), labels].filter((s) => s !== "").join("  ")
}

const describePolicy = (p: ExecutionPolicy.ExecutionPolicy): string => {
  const d = (
    x: Duration.Duration | undefined
  ) => (x === undefined ? "none" : Summary.formatDuration(Duration.toMillis(x)))
  const parts = [
    `concurrency ${p.concurrency}`,
    `timeout ${d(p.timeout)}`,
    `deadline ${d(p.deadline)}`,
    `kill grace ${d(p.killGrace)}`,
    `max errors ${p.maxErrors ?? "unlimited"}`,
    ...(p.batchSize === undefined ? [] : [`batches of ${p.batchSize}`]),
    `retry ${p.retry.times}${p.idempotent ? " (idempotent)" : ""}`,
    ...(p.runAs === undefined
      ? []
      : [`run as ${p.runAs.user} via ${p.runAs.method}${p.runAs.password === undefined ? "" : " (password given)"}`]),
    ...(p.cwd === undefined ? [] : [`cwd ${p.cwd}`]),
    `on controller loss ${p.onControllerLoss}`
  ]
  return parts.join(" · ")
}

const idList = (ids: ReadonlyArray<string>): string =>
  ids.length <= 10 ? ids.join(", ") : `${ids.slice(0, 10).join(", ")}, ... and ${ids.length - 10} more`

/**
 * What happens to each target's job if runcmd dies without cancelling it: its `onControllerLoss` (the policy's or
 * its own) and whether its transport can terminate it then.
 */
const describeControllerLoss = (
  targets: ReadonlyArray<Runner.Preview["targets"][number]>,
  terminates: (target: Target.Target) => boolean
): Array<string> => {
  const terminate: Array<string> = []
  const keep: Array<string> = []
  const cannot = new Map<string, Array<string>>()
  for (const t of targets) {
    if (t.invocation.onControllerLoss === "continue") keep.push(t.target.id)
    else if (terminates(t.target)) terminate.push(t.target.id)
    else {
      const ids = cannot.get(t.transport) ?? []
      ids.push(t.target.id)
      cannot.set(t.transport, ids)
    }
  }
  const lines: Array<string> = []
  if (terminate.length > 0) {
    lines.push(`  terminate: ${idList(terminate)} (their jobs are ended: TERM, kill grace, KILL)`)
  }
  if (keep.length > 0) lines.push(`  continue: ${idList(keep)} (their jobs keep running)`)
  for (const [transport, ids] of cannot) {
    lines.push(
      `  cannot terminate: ${
        idList(ids)
      }: the ${transport} transport cannot end their jobs when runcmd is lost; they keep running`
    )
  }
  return lines
}

/**
 * `--dry-run`: validates the plan against the transports, prints the targets, the policy and the wrapper the
 * first target would run (secrets redacted), and runs nothing.
 */
const dryRun = (plan: RunPlan.RunPlan, job: Plan.ResolvedJob, policy: ExecutionPolicy.ExecutionPolicy) =>
  Effect.gen(function*() {
    const { preview, terminating } = yield* Effect.gen(function*() {
      const preview = yield* Runner.preview(plan)
      const registry = yield* Transport.Registry
      // asked while the transports are registered (the registry forgets them when this scope closes): per target,
      // as a transport's answer may depend on the target (an SSH host's operating system)
      const terminating = new Set(
        preview.targets.filter((t) =>
          Option.exists(
            registry.get(t.target.kind),
            (transport) => Transport.terminatesOnControllerLoss(transport, t.target)
          )
        ).map((t) => t.target)
      )
      return { preview, terminating }
    }).pipe(
      Effect.provide(Transports.layerFor(plan.targets)),
      Effect.catchAll((e) =>
        Effect.fail(
          e instanceof InvalidPlan
            ? fromInvalidPlan(e)
            : usage(`runcmd run: cannot set up the transports: ${e.message}. Nothing was run.`)
        )
      )
    )
    const style = forStream(process.stdout)
    const out: Array<string> = []
    out.push(paint(style, "bold", `Targets (${plan.targets.length}):`))
    for (const t of plan.targets) out.push(`  ${describeTarget(t)}`)
    out.push("")
    out.push(`${paint(style, "bold", "Policy:")} ${describePolicy(policy)}`)
    out.push(paint(style, "bold", "If runcmd dies (killed, crashed, connection lost) without cancelling:"))
    for (const line of describeControllerLoss(preview.targets, (target) => terminating.has(target))) out.push(line)
    const secrets = Object.keys(job.secrets)
    if (secrets.length > 0) {
      out.push(`${paint(style, "bold", "Secrets:")} ${secrets.join(", ")} (values redacted; delivered on stdin)`)
    }
    const files = job.files ?? []
    if (files.length > 0) {
      const list = files.map((f) =>
        `${f.name} (${f.content?.length ?? 0} bytes, mode ${(f.mode ?? 0o600).toString(8).padStart(4, "0")})`
      )
      out.push(`${paint(style, "bold", "Files:")} ${list.join(", ")} (in $RUNCMD_FILES, removed afterwards)`)
    }
    out.push("")
    const first = preview.targets[0]!
    const rendered = yield* Effect.try({
      try: () => ScriptRender.preview(first.invocation),
      catch: (e) =>
        usage(`runcmd run: cannot render the wrapper: ${e instanceof Error ? e.message : String(e)}. Nothing was run.`)
    })
    out.push(
      paint(
        style,
        "bold",
        `Wrapper (as ${first.target.id} would run it${
          plan.targets.length > 1 ? "; the same on every target but for target env" : ""
        }):`
      )
    )
    out.push(rendered.endsWith("\n") ? rendered.slice(0, -1) : rendered)
    out.push("")
    out.push(paint(style, "dim", "Nothing was run (--dry-run)."))
    write(out.join("\n") + "\n")
    return ExitCode.Success
  })

/**
 * Runs the plan. The run happens in its own fiber; this one waits for it without being interruptible, so that a
 * Ctrl-C (which the Node runtime turns into an interruption of the main fiber) first cancels the run through
 * `cancelWhen` and the report is still printed and written; the main fiber ends interrupted afterwards (130).
 */
const execute = (plan: RunPlan.RunPlan, flags: Plan.RunFlags) =>
  Effect.uninterruptibleMask(() =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const cancel = yield* Deferred.make<void>()
      const state: Human.RunState = { cancelling: false }
      const live = flags.output === "human" && isInteractive(process.stdout)
      const style: Style = flags.output === "human" ? forStream(process.stdout) : plain

      let signalsSeen = 0
      const onSignal = (signal: "SIGINT" | "SIGTERM") => () => {
        signalsSeen++
        if (signalsSeen > 1) {
          process.stderr.write(`\nruncmd: ${signal} again: exiting now; running targets may be left behind.\n`)
          process.exit(signal === "SIGTERM" ? ExitCode.Terminated : ExitCode.Interrupted)
        }
        signals.last = signal
        state.cancelling = true
        if (!live) {
          process.stderr.write(
            `runcmd: ${
              signal === "SIGINT" ? "interrupted" : "terminated"
            }: cancelling the running targets (again to exit at once)\n`
          )
        }
        Deferred.unsafeDone(cancel, Exit.void)
      }
      const onSigint = onSignal("SIGINT")
      const onSigterm = onSignal("SIGTERM")
      process.on("SIGINT", onSigint)
      process.on("SIGTERM", onSigterm)
      const removeListeners = Effect.sync(() => {
        process.removeListener("SIGINT", onSigint)
        process.removeListener("SIGTERM", onSigterm)
      })

      const sinks: Array<OutputSink.OutputSink> = []
      if (flags.output === "human") {
        sinks.push(Human.sink({
          mode: flags.group ? "grouped" : "prefixed",
          live,
          style,
          write,
          state,
          size: () => ({ columns: process.stdout.columns, rows: process.stdout.rows })
        }))
      } else if (flags.output === "jsonl") {
        sinks.push(OutputSink.events({ write }))
      }
      if (flags.outDir !== undefined) sinks.push(OutputSink.file({ dir: flags.outDir, layout: "per-target" }))

      const runFiber = yield* Runner.run({ ...plan, sinks }, { cancelWhen: Deferred.await(cancel) }).pipe(
        // the sinks of RUNCMD_EVENTS_FILE / RUNCMD_OUTPUT_DIR see the run too
        Effect.provide(Layer.merge(Transports.layerFor(plan.targets), OutputSinks.layerConfig())),
        Effect.interruptible,
        Effect.forkDaemon
      )
      const result = yield* Effect.either(Fiber.join(runFiber)).pipe(Effect.ensuring(removeListeners))
      if (result._tag === "Left") {
        const e = result.left
        return yield* Effect.fail(
          e instanceof InvalidPlan
            ? fromInvalidPlan(e)
            : ConfigError.isConfigError(e)
            ? Plan.fromConfigError(e)
            : new CliError({
              code: ExitCode.Internal,
              message: `runcmd run: cannot set up the transports: ${e.message}`
            })
        )
      }
      const report = result.right
      let reportLost = false
      if (flags.report !== undefined) {
        const target = flags.report
        const tmp = `${target}.${process.pid}.tmp`
        const written = yield* fs.writeFileString(tmp, RunReport.encodeJson(report) + "\n").pipe(
          Effect.zipRight(fs.rename(tmp, target)),
          Effect.either
        )
        if (written._tag === "Left") {
          reportLost = true
          process.stderr.write(`runcmd run: --report ${target}: cannot write the report: ${written.left.message}\n`)
        }
      }
      switch (flags.output) {
        case "json":
          write(RunReport.encodeJson(report) + "\n")
          break
        case "jsonl":
          break
        case "human":
          write("\n" + Summary.render(report, style))
          break
      }
      const code = Summary.fromReport(report, signals.last)
      // a run whose report was asked for and lost did not fully succeed
      return reportLost && code === ExitCode.Success ? ExitCode.TargetsFailed : code
    })
  )
