/**
 * The exit codes of `runcmd` (free of core's modules: `--help` loads this one; `fromReport` is in `summary.ts`).
 *
 * @since 0.1.0
 * @internal
 */

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
 * The last termination signal received by the process (read by the teardown of an interrupted main fiber).
 *
 * @internal
 */
export const signals: { last: "SIGINT" | "SIGTERM" | undefined } = { last: undefined }
