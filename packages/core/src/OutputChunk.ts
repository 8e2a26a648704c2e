/**
 * Output as it leaves a transport: bytes, tagged with the target, the stream and a per-stream sequence number.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * @since 0.1.0
 * @category schemas
 */
export const StreamName = Schema.Literal("stdout", "stderr")

/**
 * @since 0.1.0
 * @category models
 */
export type StreamName = typeof StreamName.Type

/**
 * What a transport emits: which stream, which bytes. The Runner stamps the rest.
 *
 * @since 0.1.0
 * @category models
 */
export interface RawChunk {
  readonly stream: StreamName
  readonly bytes: Uint8Array
}

/**
 * @since 0.1.0
 * @category schemas
 */
export const OutputChunk = Schema.Struct({
  targetId: Schema.String,
  stream: StreamName,
  /** 0, 1, 2... per target and stream: a gap means lost output. */
  seq: Schema.Int,
  bytes: Schema.Uint8ArrayFromSelf,
  /** Epoch milliseconds when the chunk was received. */
  at: Schema.Number
})

/**
 * @since 0.1.0
 * @category models
 */
export type OutputChunk = typeof OutputChunk.Type

/**
 * The JSON form of a chunk (bytes as base64), for JSONL event logs.
 *
 * @since 0.1.0
 * @category schemas
 */
export const OutputChunkJson = Schema.Struct({
  ...OutputChunk.fields,
  bytes: Schema.Uint8ArrayFromBase64
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const stdout = (bytes: Uint8Array | string): RawChunk => ({ stream: "stdout", bytes: toBytes(bytes) })

/**
 * @since 0.1.0
 * @category constructors
 */
export const stderr = (bytes: Uint8Array | string): RawChunk => ({ stream: "stderr", bytes: toBytes(bytes) })

const encoder = new TextEncoder()

/**
 * @since 0.1.0
 * @category utils
 */
export const toBytes = (input: Uint8Array | string): Uint8Array =>
  typeof input === "string" ? encoder.encode(input) : input
