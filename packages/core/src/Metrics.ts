/**
 * Metrics the Runner records: executions by outcome, execution durations, output bytes. Exporter-agnostic:
 * wire `@effect/opentelemetry` (or read them with `Metric.value`) to see them.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/**
 * Finished target executions, tagged `outcome`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const executions = Metric.counter("runcmd_executions_total", {
  description: "target executions finished, by outcome",
  incremental: true
})

/**
 * Duration of target executions in milliseconds, tagged `outcome`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const executionDuration = Metric.histogram(
  "runcmd_execution_duration_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 24 }),
  "duration of target executions in milliseconds"
)

/**
 * Output bytes received from targets, tagged `stream`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const outputBytes = Metric.counter("runcmd_output_bytes_total", {
  description: "output bytes received, by stream",
  incremental: true
})

/**
 * Retries started.
 *
 * @since 0.1.0
 * @category metrics
 */
export const retries = Metric.counter("runcmd_retries_total", { description: "retries started", incremental: true })
