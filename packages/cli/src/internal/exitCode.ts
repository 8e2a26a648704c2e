/**
 * The exit codes of `runcmd`.
 *
 * @since 0.1.0
 * @internal
 */
import * as RunReport from "@runcmd/core/RunReport"

/**
 * - `0`: every target succeeded;
 * - `1`: some target did not succeed (failed, timed out, unreachable, skipped...);
 * - `2`: bad usage or an invalid plan: nothing was run;
 * - `70`: an internal error (a bug in runcmd);
 * - `130`: interrupted (SIGINT); `143`: terminated (SIGTERM).
 *
 * @internal
 */
export const ExitCode = {
  Success: 0,
  TargetsFailed: 1,
  Usage: 2,
  Internal: 70,
  Interrupted: 130,
  Terminated: 143
} as const

/** @internal */
export type ExitCode = number

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
 * The last termination signal received by the process (read by the teardown of an interrupted main fiber).
 *
 * @internal
 */
export const signals: { last: "SIGINT" | "SIGTERM" | undefined } = { last: undefined }
