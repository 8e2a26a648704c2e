/**
 * A WinRM client for one endpoint and identity: its connections (one request at a time each), its shells (reused
 * between commands, at most `maxShells` at once: MaxShellsPerUser), and the shell resource's operations with quota
 * faults retried.
 *
 * @internal
 */
import type { TransportError } from "@runcmd/core/TransportError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Errors from "./errors.js"
import * as Http from "./http.js"
import * as Wsman from "./wsman.js"
import type * as Xml from "./xml.js"

/** @internal */
export interface ClientOptions {
  readonly maxShells: number
  readonly operationTimeout: Duration.Duration
  /** Quota faults tolerated in a row before `Throttled`. */
  readonly quotaAttempts: number
}

/** @internal */
export interface Client {
  readonly settings: Http.Settings
  readonly options: ClientOptions
  /** Sends one request and returns the answer; faults fail with a `FaultError` carrying the parsed fault. */
  readonly call: (
    build: (header: { readonly to: string; readonly messageId: string }) => string,
    action: string,
    phase: "delivery" | "execution"
  ) => Effect.Effect<Xml.Element, TransportError | FaultError>
  /** A shell for one command, held until the scope closes (returned to the idle shells when `healthy`). */
  readonly shell: Effect.Effect<Lease, TransportError, Scope.Scope>
  /** Deletes the idle shells and closes the connections. */
  readonly close: Effect.Effect<void>
  readonly stats: () => { readonly idleShells: number; readonly leasedShells: number; readonly connections: number }
}

/** A shell held by one execution. @internal */
export interface Lease {
  readonly shellId: string
  /** Mark the shell as unusable: it is deleted rather than reused. */
  readonly discard: () => void
}

/** @internal */
export class FaultError {
  readonly _tag = "FaultError"
  constructor(readonly fault: Wsman.Fault, readonly action: string) {}
}

/** @internal */
export const make = (settings: Http.Settings, options: ClientOptions): Effect.Effect<Client> =>
  Effect.gen(function*() {
    const free: Array<Http.Connection> = []
    const all = new Set<Http.Connection>()
    const idle: Array<string> = []
    let leased = 0
    const permits = yield* Effect.makeSemaphore(options.maxShells)
    const operationSeconds = Math.max(1, Math.round(Duration.toSeconds(options.operationTimeout)))

    const connection = Effect.acquireRelease(
      Effect.sync(() => {
        const c = free.pop() ?? Http.makeConnection(settings)
        all.add(c)
        return c
      }),
      (c) =>
        Effect.sync(() => {
          if (c.broken) {
            all.delete(c)
            Http.closeConnection(c)
          } else free.push(c)
        })
    )

    const once = (
      build: (header: { readonly to: string; readonly messageId: string }) => string,
      action: string,
      phase: "delivery" | "execution"
    ): Effect.Effect<Xml.Element, TransportError | FaultError> =>
      Effect.scoped(
        Effect.gen(function*() {
          const c = yield* connection
          const messageId = Http.messageId()
          const root = yield* Http.post(settings, c, build({ to: settings.endpoint, messageId }), phase)
          const fault = Wsman.readFault(root)
          if (fault !== undefined) return yield* Effect.fail(new FaultError(fault, action))
          const relates = Wsman.relatesTo(root)
          if (relates !== undefined && relates !== messageId) {
            return yield* Effect.fail(
              Errors.make("ProtocolError", phase, `${action}: the answer relates to another request`)
            )
          }
          return root
        })
      )

    const call: Client["call"] = (build, action, phase) =>
      once(build, action, phase).pipe(
        Effect.retry({
          while: (e) => e instanceof FaultError && Errors.isQuota(e.fault),
          schedule: Schedule.exponential(Duration.millis(100), 2).pipe(
            Schedule.union(Schedule.spaced(Duration.seconds(3))),
            Schedule.jittered,
            Schedule.intersect(Schedule.recurs(options.quotaAttempts - 1))
          )
        }),
        Effect.catchIf(
          (e): e is FaultError => e instanceof FaultError && Errors.isQuota(e.fault),
          (e) => Effect.fail(Errors.fromFault(e.fault, action, "delivery"))
        )
      )

    const header = (h: { readonly to: string; readonly messageId: string }) => ({
      ...h,
      operationTimeoutSeconds: operationSeconds
    })

    const create = call((h) => Wsman.createShell(header(h)), "Create", "delivery").pipe(
      Effect.catchIf(
        (e): e is FaultError => e instanceof FaultError,
        (e) => Effect.fail(Errors.fromFault(e.fault, "Create", "delivery"))
      ),
      Effect.flatMap((root) => {
        const id = Wsman.readShellId(root)
        return id === undefined
          ? Effect.fail(Errors.make("ProtocolError", "delivery", "Create: the answer names no ShellId"))
          : Effect.succeed(id)
      })
    )

    const deleteShell = (shellId: string) =>
      call((h) => Wsman.deleteShell({ ...header(h), shellId }), "Delete", "execution").pipe(
        Effect.timeout(Duration.seconds(10)),
        Effect.ignore
      )

    const shell: Client["shell"] = Effect.gen(function*() {
      yield* Effect.acquireRelease(permits.take(1), () => permits.release(1))
      let discarded = false
      const shellId = yield* Effect.acquireRelease(
        Effect.suspend(() => {
          const reused = idle.pop()
          return reused !== undefined ? Effect.succeed(reused) : create
        }).pipe(Effect.tap(() => Effect.sync(() => leased++))),
        (id) =>
          Effect.suspend(() => {
            leased--
            if (!discarded) {
              idle.push(id)
              return Effect.void
            }
            return deleteShell(id)
          })
      )
      return {
        shellId,
        discard: () => {
          discarded = true
        }
      }
    })

    const close = Effect.gen(function*() {
      const shells = idle.splice(0)
      yield* Effect.forEach(shells, deleteShell, { concurrency: 8, discard: true })
      for (const c of all) Http.closeConnection(c)
      all.clear()
      free.length = 0
    })

    return {
      settings,
      options,
      call,
      shell,
      close,
      stats: () => ({ idleShells: idle.length, leasedShells: leased, connections: all.size })
    }
  })
