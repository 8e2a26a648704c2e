/**
 * Runs the built `runcmd` binary as a user would (`node packages/cli/bin/runcmd.js ...`), in a scope that kills
 * it (and every process it left behind) when the test ends.
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type ChildProcess, spawn as nodeSpawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
export const ROOT = path.resolve(PACKAGE, "../..")
export const BIN = path.join(PACKAGE, "bin/runcmd.js")
export const EXAMPLES = path.join(ROOT, "examples")

/** Removes ANSI escape sequences. */
export const stripAnsi = (text: string): string => text.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "")

/** Fails clearly when the CLI has not been built. */
export const assertBuilt = () => {
  // bin/runcmd.js runs the bundle; the library build is beside it
  for (const built of ["dist/main.js", "dist/bundle/runcmd.cjs"]) {
    if (!fs.existsSync(path.join(PACKAGE, built))) {
      throw new Error(
        `packages/cli/${built} is missing: build first (\`npx turbo run build --filter=@runcmd/cli...\` or \`npm test\`)`
      )
    }
  }
}

/** A test-side failure (timeout waiting for the CLI). */
export class CliTestError extends Data.TaggedError("CliTestError")<{ readonly message: string }> {}

export interface Result {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface Proc {
  readonly child: ChildProcess
  readonly pid: number
  readonly stdout: () => string
  readonly stderr: () => string
  /** Waits until the output (stdout + stderr) matches. */
  readonly waitFor: (pattern: RegExp, timeout?: Duration.DurationInput) => Effect.Effect<void, CliTestError>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Writes to its stdin (with `keepStdin`). */
  readonly write: (text: string) => Effect.Effect<void>
  /** Resolves when the process has exited and its output is drained. */
  readonly result: (timeout?: Duration.DurationInput) => Effect.Effect<Result, CliTestError>
}

export interface SpawnOptions {
  readonly env?: Record<string, string | undefined> | undefined
  readonly cwd?: string | undefined
  readonly input?: string | undefined
  /** Leave stdin open for `write` (otherwise it is ended at once, after `input`). */
  readonly keepStdin?: boolean | undefined
}

/** The environment of a child: no terminal, no colors, no become password from the developer's shell. */
export const childEnv = (extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_COLOR: "1",
    RUNCMD_BECOME_PASS: undefined,
    FORCE_COLOR: undefined
  }
  for (const [k, v] of Object.entries(extra)) env[k] = v
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k]
  return env
}

/** Pids of the descendants of a process (from /proc). */
export const descendants = (pid: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
      const list = children.get(ppid) ?? []
      list.push(Number(entry))
      children.set(ppid, list)
    } catch {
      // gone
    }
  }
  const out: Array<number> = []
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c)
      walk(c)
    }
  }
  walk(pid)
  return out
}

/** Pids of live processes whose command line (arguments joined by spaces) is, or contains, the text. */
export const processesMatching = (text: string, exact = false): Array<number> => {
  const out: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ")
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3)
      const line = cmdline.trimEnd()
      if (state !== "Z" && (exact ? line === text : line.includes(text))) out.push(Number(entry))
    } catch {
      // gone
    }
  }
  return out
}

const killAll = (pids: ReadonlyArray<number>) => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
}

/** Starts a command; the scope kills it and its descendants if they are still running. */
export const spawnCommand = (
  command: string,
  args: ReadonlyArray<string>,
  options: SpawnOptions = {}
): Effect.Effect<Proc, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = nodeSpawn(command, args, {
        cwd: options.cwd ?? ROOT,
        env: childEnv(options.env),
        stdio: ["pipe", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      const listeners = new Set<() => void>()
      const notify = () => {
        for (const l of listeners) l()
      }
      child.stdout!.setEncoding("utf8").on("data", (d: string) => {
        stdout += d
        notify()
      })
      child.stderr!.setEncoding("utf8").on("data", (d: string) => {
        stderr += d
        notify()
      })
      child.stdin!.on("error", () => {})
      if (options.input !== undefined) child.stdin!.end(options.input)
      else if (options.keepStdin !== true) child.stdin!.end()
      const closed = new Promise<Result>((resolve) => {
        child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
      })
      const proc: Proc = {
        child,
        pid: child.pid!,
        stdout: () => stdout,
        stderr: () => stderr,
        waitFor: (pattern, timeout = Duration.seconds(15)) =>
          Effect.async<void>((resume) => {
            const check = () => {
              if (pattern.test(stdout + stderr)) {
                listeners.delete(check)
                resume(Effect.void)
              }
            }
            listeners.add(check)
            check()
            return Effect.sync(() => listeners.delete(check))
          }).pipe(
            Effect.timeoutFail({
              duration: timeout,
              onTimeout: () =>
                new CliTestError({
                  message: `timed out waiting for ${pattern}; stdout:\n${stdout}\nstderr:\n${stderr}`
                })
            })
          ),
        kill: (signal) =>
          Effect.sync(() => {
            child.kill(signal)
          }),
        write: (text) =>
          Effect.sync(() => {
            child.stdin!.write(text)
          }),
        result: (timeout = Duration.seconds(20)) =>
          Effect.promise(() => closed).pipe(
            Effect.timeoutFail({
              duration: timeout,
              onTimeout: () =>
                new CliTestError({ message: `runcmd did not exit in time; stdout:\n${stdout}\nstderr:\n${stderr}` })
            })
          )
      }
      return proc
    }),
    (proc) =>
      Effect.sync(() => {
        const tree = descendants(proc.pid)
        if (proc.child.exitCode === null && proc.child.signalCode === null) tree.unshift(proc.pid)
        killAll(tree)
      })
  )

/** Starts `runcmd` with these arguments. */
export const spawn = (args: ReadonlyArray<string>, options: SpawnOptions = {}) =>
  spawnCommand(process.execPath, [BIN, ...args], options)

/** Runs `runcmd` to completion (bounded in time). */
export const runcmd = (
  args: ReadonlyArray<string>,
  options: SpawnOptions & { readonly timeout?: Duration.DurationInput | undefined } = {}
): Effect.Effect<Result, CliTestError> =>
  Effect.scoped(Effect.flatMap(spawn(args, options), (p) => p.result(options.timeout)))

/** A fresh temporary directory, removed when the scope closes. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-cli-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Writes a file in a directory and returns its path. */
export const writeFile = (dir: string, name: string, text: string): string => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, text)
  return file
}

/** All regular files under a directory, with their contents. */
export const readTree = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name)
      if (entry.isDirectory()) walk(p)
      else out[path.relative(dir, p)] = fs.readFileSync(p, "utf8")
    }
  }
  if (fs.existsSync(dir)) walk(dir)
  return out
}

/** A unique, innocuous token for marker files and process command lines. */
export const unique = (): string =>
  `${process.pid}${Date.now().toString().slice(-6)}${Math.floor(Math.random() * 1000)}`
