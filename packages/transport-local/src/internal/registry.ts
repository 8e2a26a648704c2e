/**
 * The module-level registry of live executions (process groups + tokens). Finalised when the layer's scope
 * closes, on SIGINT/SIGTERM of the host (handlers installed once, lazily) and on the host's `exit`.
 *
 * @internal
 */
import type { Selector } from "./processes.js"
import { signalAll } from "./processes.js"

/** @internal */
export interface Entry {
  /** The groups and token of the execution, as known now (the user's PGID arrives later). */
  readonly selector: () => Selector
  /** The transport instance (layer) that started it. */
  readonly owner: symbol
  /** `onControllerLoss: "continue"`: left running when the host process is signalled or exits. */
  readonly continues: boolean
}

const live = new Set<Entry>()

/** @internal */
export const size = (): number => live.size

/** @internal */
export const register = (entry: Entry): () => void => {
  install()
  live.add(entry)
  return () => {
    live.delete(entry)
  }
}

/**
 * Signals every live execution (of one owner, or all) synchronously; without an owner (the host is going away),
 * those that must outlive it (`continues`) are left alone.
 *
 * @internal
 */
export const signalLive = (signal: NodeJS.Signals, owner?: symbol): number => {
  let n = 0
  for (const entry of live) {
    if (owner !== undefined ? entry.owner !== owner : entry.continues) continue
    signalAll(entry.selector(), signal)
    n++
  }
  return n
}

/** @internal */
export const entriesOf = (owner: symbol): Array<Entry> => [...live].filter((e) => e.owner === owner)

let installed = false

const onSignal = (signal: NodeJS.Signals) => {
  const handler = () => {
    const n = signalLive("SIGTERM")
    const others = process.listenerCount(signal) - 1
    const finish = () => {
      signalLive("SIGKILL")
      if (others === 0) {
        // nobody else handles it: restore the default behaviour and re-raise
        process.removeListener(signal, handler)
        process.kill(process.pid, signal)
      }
    }
    if (n === 0) finish()
    else if (others === 0) setTimeout(finish, 200)
    else {
      // another handler (e.g. the Effect runtime interrupting fibers) runs the graceful path; KILL what is left
      // a little later, or at exit at the latest
      setTimeout(() => signalLive("SIGKILL"), 10_000).unref()
    }
  }
  return handler
}

const install = () => {
  if (installed) return
  installed = true
  process.on("SIGINT", onSignal("SIGINT"))
  process.on("SIGTERM", onSignal("SIGTERM"))
  process.on("exit", () => {
    signalLive("SIGKILL")
  })
}
