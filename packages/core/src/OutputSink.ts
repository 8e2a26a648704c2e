/**
 * Output sinks: where a run's events (and so its output) go.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internalConsole from "./internal/sinkConsole.js"
import * as internalEvents from "./internal/sinkEvents.js"
import * as internalFile from "./internal/sinkFile.js"
import type { RunEvent } from "./RunEvent.js"
import type { Target } from "./Target.js"

/**
 * @since 0.1.0
 * @category errors
 */
export class OutputSinkError extends Schema.TaggedError<OutputSinkError>("@runcmd/core/OutputSinkError")(
  "OutputSinkError",
  {
    reason: Schema.Literal("OpenFailed", "WriteFailed"),
    sink: Schema.String,
    description: Schema.String,
    /**
     * The one file whose output was lost, when the sink writes several (`file`'s `per-target` layout): the sink's
     * other files go on, and the Runner keeps writing to it. Without it, the sink as a whole stopped.
     */
    file: Schema.optional(Schema.String),
    cause: Schema.optional(Schema.Defect)
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.sink}: ${this.reason}: ${this.description}`
  }
}

/**
 * What a sink sees of the run when it opens.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunInfo {
  readonly runId: string
  readonly targets: ReadonlyArray<Target>
}

/**
 * An open sink: receives every event, in order, output already redacted. The Runner calls `write` one event at a
 * time and waits for each write to end before the next: a handle does not serialize its own writes. A failed write
 * stops the sink for the rest of the run, unless its error names a `file` (only that file's output is lost); either
 * way the report's `warnings` say what was lost.
 *
 * @since 0.1.0
 * @category models
 */
export interface SinkHandle {
  readonly write: (event: RunEvent) => Effect.Effect<void, OutputSinkError>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface OutputSink {
  readonly name: string
  /** Opened once per run; the scope closes (flushing files) after the last event. */
  readonly open: (run: RunInfo) => Effect.Effect<SinkHandle, OutputSinkError, Scope.Scope>
}

/**
 * Options of the {@link file} sink.
 *
 * @since 0.1.0
 * @category models
 */
export interface FileOptions {
  /** Created (with its parents) when the sink opens. */
  readonly dir: string
  /**
   * - `per-target`: `<dir>/<targetId>.stdout` and `<dir>/<targetId>.stderr`, the raw bytes each target wrote
   *   (already redacted). A file is created on the target's first output on its stream, and empty when the
   *   target finishes without any, so every finished target has both files. Ids with characters outside
   *   `[A-Za-z0-9._@+=-]` are percent-encoded in file names (`a/b` is `a%2Fb`).
   * - `jsonl`: one file `<dir>/output.jsonl`, one line `{targetId, stream, seq, at, text}` per chunk, the text
   *   decoded as UTF-8 incrementally per target and stream (a character split across chunks is written whole,
   *   in the line of the chunk that completes it; invalid bytes become U+FFFD).
   */
  readonly layout: "per-target" | "jsonl"
  /**
   * Bytes buffered per open file before a write; default 64 KiB. A file that receives a lot of output (a chunk of
   * this size, or four buffers' worth) gets a 1 MiB buffer instead while there are fewer than 16 such files open.
   */
  readonly bufferBytes?: number | undefined
}

/**
 * Writes output to files. Writes are buffered (a fixed buffer per open file, so memory stays bounded whatever
 * the output size), flushed when a target finishes, when the run finishes and when the sink's scope closes; a
 * target's files are closed when it finishes. Failing to create the directory (or `output.jsonl`) is an
 * `OpenFailed` error; failing to write a file is a `WriteFailed` error naming the file, reported once per file
 * (later output for that file is dropped). With the `per-target` layout such an error carries the `file`: the
 * other targets' files go on (a full disk fails each file in turn, each reported); a directory deleted during the
 * run stops the sink.
 *
 * @since 0.1.0
 * @category constructors
 */
export const file = (options: FileOptions): OutputSink => internalFile.file(options)

/**
 * Options of the {@link console} sink.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConsoleOptions {
  /**
   * - `prefixed`: every complete line as `[targetId] line` as soon as it is complete; stderr lines are marked
   *   `[targetId] ! line` (or shown in red with `color`). A partial line is held until its newline, the end of
   *   its stream (the target's `Finished`, or a `Retrying` for the attempt) or the end of the run, so two
   *   targets' partial lines never mix.
   * - `grouped`: each target's lines (stdout and stderr interleaved as received, stderr marked) are kept and
   *   printed as one block under a header line (`==> web-1: Failed (exit 3) in 1.2s`) when the target
   *   finishes. The block is bounded: its head and tail are kept, and a marker says how many lines were
   *   dropped between them.
   */
  readonly mode: "prefixed" | "grouped"
  /** Where text goes; default: the process stream given by `stream`. Called with whole lines only. */
  readonly write?: ((text: string) => void) | undefined
  /** ANSI colors; default: on when writing to a TTY process stream and `NO_COLOR` is unset. */
  readonly color?: boolean | undefined
  /** The process stream written to when `write` is not given; default `stdout`. */
  readonly stream?: "stdout" | "stderr" | undefined
  /** Longer lines (and partial lines) are cut into pieces of this many characters; default 16 Ki. */
  readonly maxLineLength?: number | undefined
  /** Characters kept per target in `grouped` mode (half head, half tail); default 256 Ki. */
  readonly maxGroupLength?: number | undefined
}

/**
 * Writes output as text lines, decoded as UTF-8 incrementally per target and stream (a character split across
 * chunks stays whole; invalid bytes become U+FFFD).
 *
 * @since 0.1.0
 * @category constructors
 */
export const console = (options: ConsoleOptions): OutputSink => internalConsole.consoleSink(options)

/**
 * Options of the {@link events} sink: a file (created with its parent directories, truncated), or a function
 * called with each line (JSON and a trailing newline).
 *
 * @since 0.1.0
 * @category models
 */
export type EventsOptions =
  | { readonly path: string; readonly bufferBytes?: number | undefined }
  | { readonly write: (line: string) => void }

/**
 * Writes every run event as one JSON line, encoded with `RunEvent.RunEventJson` (chunk bytes as base64), so that
 * `Schema.decodeUnknown(RunEventJson)(JSON.parse(line))` reads it back. A file is flushed when a target finishes
 * and when the run finishes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const events = (options: EventsOptions): OutputSink => internalEvents.events(options)
