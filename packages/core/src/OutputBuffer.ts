/**
 * The coalescing output buffer a transport puts between the process's output and `RawExecution.pump`. The
 * transport's callbacks push bytes as they arrive (ssh2 `data` events, pipe reads, polled batches...); the Runner
 * pumps them at its own pace. What arrived while it was busy is handed on in batches (one `emit` for many small
 * chunks: the per-chunk costs downstream are paid once per batch), and the producers are paused while too much
 * is buffered, so a fast process costs bounded memory.
 *
 * @example
 * ```ts
 * import * as OutputBuffer from "@runcmd/core/OutputBuffer"
 * import * as Transport from "@runcmd/core/Transport"
 *
 * // inside `start`: feed the buffer from the service's callbacks, hand `pump` to core
 * const output = OutputBuffer.make<TransportError>()
 * output.addProducer({ pause: () => poller.pause(), resume: () => poller.resume() })
 * poller.onStdout((bytes) => output.push("stdout", bytes))
 * poller.onStderr((bytes) => output.push("stderr", bytes))
 * poller.onDone(() => { output.end("stdout"); output.end("stderr") })
 * poller.onError((cause) => output.fail(toTransportError(cause)))
 * const execution: Transport.RawExecution = { pump: output.pump, exit }
 * ```
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/outputBuffer.js"
import type { RawChunk } from "./OutputChunk.js"

/**
 * One execution's output in flight: push side for the transport, `pump` for core. Not safe for two consumers:
 * use one of `pump`, `take` or {@link toStream}, from one fiber.
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputBuffer<E> {
  /**
   * Adds bytes that arrived on `stream` (kept by reference, not copied). Ignored when empty, after `end(stream)`
   * and after `discard()`. Never blocks: above the high-water mark the producers are paused instead.
   */
  readonly push: (stream: RawChunk["stream"], bytes: Uint8Array) => void
  /** Nothing more will arrive on `stream`. The output ends once both streams ended and everything was taken. */
  readonly end: (stream: RawChunk["stream"]) => void
  /** Fails the output with `error` once what was pushed before has been taken (the first failure wins). */
  readonly fail: (error: E) => void
  /** The contract's `RawExecution.pump`: emits every batch, awaiting `emit`; completes when the output ended. */
  readonly pump: (emit: (chunk: RawChunk) => Effect.Effect<void>) => Effect.Effect<void, E>
  /** The next batch, waiting for one; `undefined` once the output ended (the pull form of `pump`). */
  readonly take: Effect.Effect<RawChunk | undefined, E>
  /**
   * Registers something to pause above the high-water mark and resume below the low-water mark (paused at once
   * when the buffer is above it now). Returns a function that unregisters it.
   */
  readonly addProducer: (producer: Producer) => () => void
  /**
   * Nobody will consume any more (the execution's scope is closing): drops what is buffered and every later push,
   * and resumes the producers for good, so the source drains into nothing rather than blocking.
   */
  readonly discard: () => void
  /** Bytes pushed and not taken yet. */
  readonly buffered: () => number
  /** Whether both streams ended (what they pushed may not all be taken yet). */
  readonly ended: () => boolean
}

/**
 * A source of output that can be told to stop and go on: a Node stream, an SSH channel, a polling loop.
 *
 * @since 0.1.0
 * @category models
 */
export interface Producer {
  readonly pause: () => void
  readonly resume: () => void
}

/**
 * The buffer's constants; the defaults suit live output from pipes and SSH channels.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Buffered bytes (both streams) above which the producers are paused. Default 1 MiB. */
  readonly highWaterMark?: number | undefined
  /** Buffered bytes at or below which paused producers are resumed. Default 256 KiB. */
  readonly lowWaterMark?: number | undefined
  /** The largest batch made by joining chunks. Default 256 KiB. */
  readonly maxBatch?: number | undefined
  /**
   * Chunks smaller than this are joined with the small chunks of the same stream queued right behind them (up to
   * `maxBatch`); a larger chunk goes on as it is, uncopied: copying it would cost more than the `emit` it saves.
   * Default 16 KiB (ssh2 delivers bulk output in 32 KiB packets, pipes in 64 KiB reads).
   */
  readonly joinBelow?: number | undefined
  /**
   * Wake a waiting consumer after the current I/O phase (`setImmediate`) rather than at once, so that what
   * arrives in one phase is taken as one batch. Ends and failures wake it at once. Default `true`.
   */
  readonly deferWake?: boolean | undefined
}

/**
 * The part of a Node `Readable` that {@link attachReadable} uses.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReadableLike {
  readonly destroyed: boolean
  on(event: "data", listener: (chunk: Uint8Array) => void): unknown
  once(event: "end" | "close", listener: () => void): unknown
  once(event: "error", listener: (error: Error) => void): unknown
  pause(): unknown
  resume(): unknown
}

/**
 * An empty buffer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <E>(options?: Options) => OutputBuffer<E> = internal.make

/**
 * Feeds a Node `Readable` (a pipe, an ssh2 channel) into `stream` of the buffer and registers it as a producer:
 * its `data` is pushed, its `end` (or a `close` without one: what was read is all there is) ends the stream, an
 * `error` fails the output with `onError(error)` and ends the stream.
 *
 * @since 0.1.0
 * @category utils
 */
export const attachReadable: <E>(
  buffer: OutputBuffer<E>,
  stream: RawChunk["stream"],
  readable: ReadableLike,
  onError: (error: Error) => E
) => void = internal.attachReadable

/**
 * The batches as a `Stream` (for a consumer that composes streams, e.g. a protocol parser on stderr).
 *
 * @since 0.1.0
 * @category conversions
 */
export const toStream: <E>(buffer: OutputBuffer<E>) => Stream.Stream<RawChunk, E> = internal.toStream
