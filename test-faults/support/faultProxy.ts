/**
 * A TCP fault proxy on loopback, in front of a server (sshd): it forwards both ways and injects faults on demand:
 * - `reset`: every connection is reset (RST) at once, or once `resetAfter` bytes went from the server to the client;
 * - `stall`: nothing is forwarded any more (both ways), the sockets stay open: a peer that vanished without a reset;
 * - `trickle`: a byte at a time, each in its own write;
 * - `refuse`: new connections are accepted and reset at once.
 * Closed (every socket destroyed, the listener closed) with its scope.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as net from "node:net"

export type Mode = "pass" | "stall" | "trickle" | "refuse"

export interface FaultProxy {
  readonly host: "127.0.0.1"
  readonly port: number
  /** How new and current connections are treated from now on. */
  readonly setMode: (mode: Mode) => void
  /** Resets every open connection now. */
  readonly resetAll: () => number
  /** Resets every open connection once this many more bytes went from the server to the clients (then passes). */
  readonly resetAfter: (bytes: number) => void
  /** Connections accepted so far, those reset (by any fault) and those open now. */
  readonly stats: () => { readonly accepted: number; readonly reset: number; readonly open: number }
  /** Bytes forwarded from the server to the clients so far. */
  readonly downstreamBytes: () => number
}

interface Pair {
  readonly client: net.Socket
  readonly server: net.Socket
  /** Writes waiting in trickle or stall mode, per direction. */
  readonly held: { toServer: Array<Buffer>; toClient: Array<Buffer> }
}

export const make = (upstream: { readonly host: string; readonly port: number }): Effect.Effect<
  FaultProxy,
  never,
  Scope.Scope
> =>
  Effect.acquireRelease(
    Effect.async<{ readonly proxy: FaultProxy; readonly close: () => Promise<void> }>((resume) => {
      let mode: Mode = "pass"
      let resetBudget: number | undefined
      let accepted = 0
      let reset = 0
      let downstream = 0
      const pairs = new Set<Pair>()

      const resetPair = (pair: Pair) => {
        if (!pairs.delete(pair)) return
        reset++
        pair.client.resetAndDestroy()
        pair.server.resetAndDestroy()
      }

      const resetAll = () => {
        const n = pairs.size
        for (const pair of [...pairs]) resetPair(pair)
        return n
      }

      /** Forwards what is held, one byte per write (no Nagle: a segment each), unless stalled. */
      const pump = (pair: Pair) => {
        if (mode === "stall") return
        for (const [queue, socket] of [[pair.held.toServer, pair.server], [pair.held.toClient, pair.client]] as const) {
          for (const chunk of queue.splice(0)) {
            for (let i = 0; i < chunk.length; i++) socket.write(chunk.subarray(i, i + 1))
          }
        }
      }

      const forward = (pair: Pair, data: Buffer, toClient: boolean) => {
        if (toClient) {
          downstream += data.length
          if (resetBudget !== undefined) {
            resetBudget -= data.length
            if (resetBudget <= 0) {
              resetBudget = undefined
              resetAll()
              return
            }
          }
        }
        if (mode === "pass" && pair.held.toServer.length === 0 && pair.held.toClient.length === 0) {
          ;(toClient ? pair.client : pair.server).write(data)
          return
        }
        ;(toClient ? pair.held.toClient : pair.held.toServer).push(data)
        if (mode === "trickle") pump(pair)
        else if (mode === "pass") flush(pair)
      }

      const flush = (pair: Pair) => {
        for (const b of pair.held.toServer.splice(0)) pair.server.write(b)
        for (const b of pair.held.toClient.splice(0)) pair.client.write(b)
      }

      const server = net.createServer((client) => {
        accepted++
        client.on("error", () => {})
        if (mode === "refuse") {
          reset++
          client.resetAndDestroy()
          return
        }
        const upstreamSocket = net.connect({ host: upstream.host, port: upstream.port, noDelay: true })
        client.setNoDelay(true)
        upstreamSocket.on("error", () => {})
        const pair: Pair = { client, server: upstreamSocket, held: { toServer: [], toClient: [] } }
        pairs.add(pair)
        client.on("data", (d: Buffer) => forward(pair, d, false))
        upstreamSocket.on("data", (d: Buffer) => forward(pair, d, true))
        const end = () => {
          if (!pairs.delete(pair)) return
          client.destroy()
          upstreamSocket.destroy()
        }
        client.on("close", end)
        upstreamSocket.on("close", end)
      })
      server.on("error", (e) => resume(Effect.die(e)))
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as net.AddressInfo).port
        const proxy: FaultProxy = {
          host: "127.0.0.1",
          port,
          setMode: (next) => {
            mode = next
            if (next === "pass") { for (const pair of pairs) flush(pair) }
            if (next === "trickle") { for (const pair of pairs) pump(pair) }
          },
          resetAll,
          resetAfter: (bytes) => {
            resetBudget = bytes
          },
          stats: () => ({ accepted, reset, open: pairs.size }),
          downstreamBytes: () => downstream
        }
        resume(Effect.succeed({
          proxy,
          close: () =>
            new Promise<void>((resolve) => {
              for (const pair of [...pairs]) {
                pairs.delete(pair)
                pair.client.destroy()
                pair.server.destroy()
              }
              server.close(() => resolve())
            })
        }))
      })
    }),
    ({ close }) => Effect.promise(close).pipe(Effect.timeout("10 seconds"), Effect.ignore)
  ).pipe(Effect.map(({ proxy }) => proxy))
