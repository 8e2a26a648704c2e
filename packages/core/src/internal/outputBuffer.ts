/** @internal */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as OutputBuffer from "../OutputBuffer.js"
import type { RawChunk } from "../OutputChunk.js"

type Name = RawChunk["stream"]

const HIGH_WATER = 1024 * 1024
const LOW_WATER = 256 * 1024
const MAX_BATCH = 256 * 1024
const JOIN_BELOW = 16 * 1024

const later: (f: () => void) => void = typeof setImmediate === "function"
  ? (f) => void setImmediate(f)
  : (f) => void setTimeout(f, 0)

/** @internal */
export const make = <E>(options: OutputBuffer.Options = {}): OutputBuffer.OutputBuffer<E> => {
  const highWater = options.highWaterMark ?? HIGH_WATER
  const lowWater = Math.min(options.lowWaterMark ?? LOW_WATER, highWater)
  const maxBatch = options.maxBatch ?? MAX_BATCH
  const joinBelow = options.joinBelow ?? JOIN_BELOW
  const deferWake = options.deferWake ?? true

  // chunks in arrival order (both streams), taken from `head`
  let queue: Array<RawChunk | undefined> = []
  let head = 0
  let bytes = 0
  let stdoutOpen = true
  let stderrOpen = true
  let failure: { readonly error: E } | undefined
  let discarded = false
  const producers: Array<OutputBuffer.Producer> = []
  let paused = false
  let waiter: (() => void) | undefined
  let wakeScheduled = false

  const wakeNow = () => {
    wakeScheduled = false
    const w = waiter
    waiter = undefined
    w?.()
  }
  const wake = (deferred: boolean) => {
    if (waiter === undefined) return
    if (!deferred) return wakeNow()
    if (wakeScheduled) return
    wakeScheduled = true
    later(wakeNow)
  }
  const pauseAll = () => {
    paused = true
    for (const p of producers) p.pause()
  }
  const resumeAll = () => {
    paused = false
    for (const p of producers) p.resume()
  }

  const push = (stream: Name, data: Uint8Array) => {
    if (discarded || data.length === 0 || !(stream === "stdout" ? stdoutOpen : stderrOpen)) return
    queue.push({ stream, bytes: data })
    bytes += data.length
    if (!paused && bytes > highWater) pauseAll()
    wake(deferWake)
  }

  const end = (stream: Name) => {
    if (stream === "stdout") stdoutOpen = false
    else stderrOpen = false
    wake(false)
  }

  /** Takes the first chunk as it is when it is large; else it and the small chunks of its stream behind it, joined. */
  const takeBatch = (): RawChunk => {
    const first = queue[head]!
    queue[head++] = undefined
    let size = first.bytes.length
    let chunk = first
    if (size < joinBelow) {
      let n = head
      while (n < queue.length) {
        const next = queue[n]!
        if (next.stream !== first.stream || next.bytes.length >= joinBelow || size + next.bytes.length > maxBatch) break
        size += next.bytes.length
        n++
      }
      if (n > head) {
        const joined = new Uint8Array(size)
        joined.set(first.bytes)
        let offset = first.bytes.length
        for (let i = head; i < n; i++) {
          const next = queue[i]!.bytes
          joined.set(next, offset)
          offset += next.length
          queue[i] = undefined
        }
        head = n
        chunk = { stream: first.stream, bytes: joined }
      }
    }
    if (head === queue.length) {
      queue.length = 0
      head = 0
    } else if (head >= 1024 && head * 2 >= queue.length) {
      queue = queue.slice(head)
      head = 0
    }
    bytes -= size
    if (paused && bytes <= lowWater) resumeAll()
    return chunk
  }

  const wait = Effect.async<void>((resume) => {
    waiter = () => resume(Effect.void)
    return Effect.sync(() => {
      waiter = undefined
    })
  })

  const take: Effect.Effect<RawChunk | undefined, E> = Effect.suspend(() => {
    if (head < queue.length) return Effect.succeed(takeBatch())
    if (failure !== undefined) return Effect.fail(failure.error)
    if (!stdoutOpen && !stderrOpen) return Effect.succeed(undefined)
    return Effect.zipRight(wait, take)
  })

  const pump = (emit: (chunk: RawChunk) => Effect.Effect<void>): Effect.Effect<void, E> => {
    const loop: Effect.Effect<void, E> = Effect.suspend(() => {
      if (head < queue.length) return Effect.zipRight(emit(takeBatch()), loop)
      if (failure !== undefined) return Effect.fail(failure.error)
      if (!stdoutOpen && !stderrOpen) return Effect.void
      return Effect.zipRight(wait, loop)
    })
    return loop
  }

  return {
    push,
    end,
    fail: (error) => {
      failure ??= { error }
      wake(false)
    },
    pump,
    take,
    addProducer: (producer) => {
      producers.push(producer)
      if (paused) producer.pause()
      return () => {
        const i = producers.indexOf(producer)
        if (i >= 0) producers.splice(i, 1)
      }
    },
    discard: () => {
      discarded = true
      queue = []
      head = 0
      bytes = 0
      if (paused) resumeAll()
    },
    buffered: () => bytes,
    ended: () => !stdoutOpen && !stderrOpen
  }
}

/** @internal */
export const attachReadable = <E>(
  buffer: OutputBuffer.OutputBuffer<E>,
  stream: Name,
  readable: OutputBuffer.ReadableLike,
  onError: (error: Error) => E
): void => {
  let open = true
  const finish = () => {
    if (!open) return
    open = false
    remove()
    buffer.end(stream)
  }
  const remove = buffer.addProducer({
    pause: () => void readable.pause(),
    resume: () => {
      if (!readable.destroyed) readable.resume()
    }
  })
  readable.on("data", (chunk) =>
    // a plain view: downstream gets Uint8Arrays, not Buffers
    buffer.push(stream, new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)))
  readable.once("end", finish)
  // destroyed without an end: what was read is all there is
  readable.once("close", finish)
  readable.once("error", (error) => {
    if (!open) return
    buffer.fail(onError(error))
    finish()
  })
}

/** @internal */
export const toStream = <E>(buffer: OutputBuffer.OutputBuffer<E>): Stream.Stream<RawChunk, E> =>
  Stream.repeatEffectOption(
    Effect.flatMap(
      Effect.mapError(buffer.take, Option.some),
      (chunk) => chunk === undefined ? Effect.fail(Option.none()) : Effect.succeed(chunk)
    )
  )
