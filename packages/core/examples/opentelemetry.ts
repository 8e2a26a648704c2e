/**
 * Observability as a layer: the Runner's spans and metrics exported through OpenTelemetry with
 * `@effect/opentelemetry`. Core depends on `effect` only; the embedding program picks the exporters.
 *
 * Spans: `Runner.run` (attribute `runcmd.targets`), under it one `Runner.execute` per target (`runcmd.target.id`,
 * `runcmd.target.kind`, `runcmd.transport`), under that one `Runner.attempt` per attempt (`runcmd.attempt`).
 * Metrics (`Metrics` module): `runcmd_executions_total{outcome}`, `runcmd_execution_duration_ms{outcome}`,
 * `runcmd_output_bytes_total{stream}`, `runcmd_retries_total`. Spans are only made when a tracer like this one is
 * installed, so a run without one pays nothing for them.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type { MetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base"

export interface ObservabilityOptions {
  readonly serviceName?: string | undefined
  /** Where spans go (an OTLP exporter in production, `InMemorySpanExporter` in tests). */
  readonly spans: SpanExporter
  /** Export spans in batches (default) or one by one as they end (tests). */
  readonly batch?: boolean | undefined
  /** Reads the metrics (a `PeriodicExportingMetricReader` in production). */
  readonly metrics?: MetricReader | undefined
}

export const observability = (options: ObservabilityOptions) =>
  NodeSdk.layer(() => ({
    resource: { serviceName: options.serviceName ?? "runcmd" },
    spanProcessor: options.batch === false
      ? new SimpleSpanProcessor(options.spans)
      : new BatchSpanProcessor(options.spans),
    ...(options.metrics === undefined ? {} : { metricReader: options.metrics })
  }))
