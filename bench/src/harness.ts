// Shared helpers for benchmarks: medians, ratios, results files, the machine's load, alternating rounds, child
// processes with wall time and peak RSS, CPU profile summaries.
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const benchDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..")
export const repoRoot = path.join(benchDir, "..")
export const resultsDir = path.join(benchDir, "results")
export const cliBin = path.join(repoRoot, "packages", "cli", "bin", "runcmd.js")

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits

export const quantile = (xs: ReadonlyArray<number>, q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const i = Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))
  return s[i]!
}

export const mean = (xs: ReadonlyArray<number>): number => xs.reduce((a, b) => a + b, 0) / xs.length

export interface Stats {
  readonly n: number
  readonly median: number
  readonly mean: number
  readonly p5: number
  readonly p95: number
}

export const stats = (xs: ReadonlyArray<number>, digits = 3): Stats => ({
  n: xs.length,
  median: round(median(xs), digits),
  mean: round(mean(xs), digits),
  p5: round(quantile(xs, 0.05), digits),
  p95: round(quantile(xs, 0.95), digits)
})

export interface Result {
  readonly name: string
  readonly goal: string
  readonly met: boolean
  readonly [key: string]: unknown
}

export const writeResult = (result: Result): void => {
  fs.mkdirSync(resultsDir, { recursive: true })
  const file = path.join(resultsDir, `${result.name}.json`)
  fs.writeFileSync(
    file,
    JSON.stringify({ ...result, node: process.version, at: new Date().toISOString() }, null, 2) + "\n"
  )
  console.log(`${result.name}: ${result.met ? "goal met" : "GOAL MISSED"} (${result.goal})`)
  console.log(JSON.stringify(result, null, 2))
  console.log(`written ${path.relative(process.cwd(), file)}`)
}

export const gc = (): void => {
  const g = (globalThis as { gc?: () => void }).gc
  if (g === undefined) throw new Error("run with node --expose-gc")
  g()
  g()
}

// ---------------------------------------------------------------------------------------------------------------
// the machine

/** The load average and the machine, to record in every result (the benchmarks share 2 cores with other work). */
export const machine = () => {
  const cpus = os.cpus()
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "unknown",
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    loadavg: os.loadavg().map((x) => round(x, 2)),
    uptime: uptimeLine()
  }
}

export const uptimeLine = (): string => {
  try {
    return cp.execFileSync("uptime", { encoding: "utf8" }).trim()
  } catch {
    return `loadavg ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`
  }
}

/** Load at the start and at the end of a benchmark: `const load = loadTracker()` ... `machine: load.end()`. */
export const loadTracker = () => {
  const start = machine()
  return {
    end: () => {
      const { loadavg: _l, uptime: _u, ...rest } = start
      return { ...rest, loadAtStart: start.uptime, loadAtEnd: uptimeLine() }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// alternating rounds

export interface Variant {
  readonly name: string
  /** Operations of this variant per round (fewer for slow ones). */
  readonly perRound: number
  /** One operation; resolves when it is complete. */
  readonly op: () => Promise<void>
  readonly warmup?: number | undefined
}

export interface RoundsResult {
  /** Per-operation times (ms) of every variant, all rounds. */
  readonly samples: Record<string, Array<number>>
  /** Per-round median (ms) of every variant. */
  readonly roundMedians: Record<string, Array<number>>
}

/**
 * Runs the variants in `rounds` rounds, each variant `perRound` operations per round, the order rotated every
 * round, so that load changes hit every variant alike. Each operation is timed on its own.
 */
export const alternate = async (
  variants: ReadonlyArray<Variant>,
  rounds: number,
  options: { readonly log?: boolean; readonly betweenOps?: () => void } = {}
): Promise<RoundsResult> => {
  for (const v of variants) {
    for (let i = 0; i < (v.warmup ?? 3); i++) await v.op()
  }
  const samples: Record<string, Array<number>> = {}
  const roundMedians: Record<string, Array<number>> = {}
  for (const v of variants) {
    samples[v.name] = []
    roundMedians[v.name] = []
  }
  for (let r = 0; r < rounds; r++) {
    const order = variants.map((_, i) => variants[(i + r) % variants.length]!)
    const line: Array<string> = []
    for (const v of order) {
      const xs: Array<number> = []
      for (let i = 0; i < v.perRound; i++) {
        options.betweenOps?.()
        const t0 = performance.now()
        await v.op()
        xs.push(performance.now() - t0)
      }
      for (const x of xs) samples[v.name]!.push(x)
      roundMedians[v.name]!.push(median(xs))
      line.push(`${v.name} ${median(xs).toFixed(2)}`)
    }
    if (options.log !== false) {
      console.log(`  round ${r + 1}/${rounds} (load ${os.loadavg()[0]!.toFixed(2)}): ${line.join(", ")} ms`)
    }
  }
  return { samples, roundMedians }
}

/** Ratios a/b: of the overall medians, of the means, and the median of the per-round ratios (paired by round). */
export const ratios = (r: RoundsResult, a: string, b: string) => {
  const ra = r.roundMedians[a]!
  const rb = r.roundMedians[b]!
  return {
    ofMedians: round(median(r.samples[a]!) / median(r.samples[b]!)),
    ofMeans: round(mean(r.samples[a]!) / mean(r.samples[b]!)),
    medianOfRoundRatios: round(median(ra.map((x, i) => x / rb[i]!)))
  }
}

// ---------------------------------------------------------------------------------------------------------------
// child processes

export interface Ran {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly ms: number
  readonly stdout: string
  readonly stderr: string
  /** From /usr/bin/time -v when `timeV` was asked (kB), else undefined. */
  readonly maxRssKb?: number | undefined
  readonly timeV?: Record<string, string> | undefined
}

const TIME = "/usr/bin/time"

/**
 * Runs a command to completion (bounded by `timeoutMs`: then it is KILLed, its process group too), keeping the
 * last 64 KiB of each output stream. `timeV` runs it under GNU time -v for the peak RSS.
 */
export const run = (
  file: string,
  args: ReadonlyArray<string>,
  options: {
    readonly timeoutMs?: number
    readonly env?: NodeJS.ProcessEnv
    readonly cwd?: string
    readonly timeV?: boolean
    readonly stdout?: number | "pipe" | "ignore"
  } = {}
): Promise<Ran> =>
  new Promise((resolve, reject) => {
    const timeV = options.timeV === true && fs.existsSync(TIME)
    const timeFile = timeV
      ? path.join(os.tmpdir(), `runcmd-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`)
      : ""
    const [f, a] = timeV ? [TIME, ["-v", "-o", timeFile, file, ...args]] : [file, args]
    const t0 = performance.now()
    const child = cp.spawn(f, a as Array<string>, {
      stdio: ["ignore", options.stdout ?? "pipe", "pipe"],
      env: options.env ?? process.env,
      cwd: options.cwd ?? repoRoot,
      detached: true
    })
    const keep = (acc: { s: string }) => (d: Buffer) => {
      acc.s = (acc.s + d.toString()).slice(-65536)
    }
    const out = { s: "" }
    const err = { s: "" }
    child.stdout?.on("data", keep(out))
    child.stderr?.on("data", keep(err))
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        child.kill("SIGKILL")
      }
    }, options.timeoutMs ?? 120_000)
    child.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on("close", (code, signal) => {
      const ms = performance.now() - t0
      clearTimeout(timer)
      let maxRssKb: number | undefined
      let tv: Record<string, string> | undefined
      if (timeV) {
        try {
          tv = parseTimeV(fs.readFileSync(timeFile, "utf8"))
          maxRssKb = Number(tv["Maximum resident set size (kbytes)"])
        } catch {
          // no report (killed)
        }
        fs.rmSync(timeFile, { force: true })
      }
      resolve({ code, signal, ms, stdout: out.s, stderr: err.s, maxRssKb, timeV: tv })
    })
  })

const parseTimeV = (text: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const line of text.split("\n")) {
    const m = /^\s*(.+?):\s(.*)$/.exec(line)
    if (m !== null) out[m[1]!.trim()] = m[2]!.trim()
  }
  return out
}

/** `run`, failing on a non-zero exit. */
export const mustRun = async (file: string, args: ReadonlyArray<string>, options: Parameters<typeof run>[2] = {}) => {
  const r = await run(file, args, options)
  if (r.code !== 0) {
    throw new Error(
      `${file} ${args.join(" ")} exited ${r.code ?? r.signal}:\n${r.stderr.slice(-2000)}\n${r.stdout.slice(-1000)}`
    )
  }
  return r
}

export const which = (name: string): string | undefined => {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])) {
    const p = path.join(dir, name)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {
      // next
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------------------
// CPU profiles (node --cpu-prof)

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const shortUrl = (url: string): string =>
  url.replace(/^file:\/\//, "").replace(/.*\/node_modules\//, "").replace(new RegExp(`^${repoRoot}/`), "")

/** The package (or node-internal area) a frame belongs to. */
export const packageOf = (url: string, functionName: string): string => {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)"
  if (url.startsWith("node:")) {
    return url.startsWith("node:internal/modules")
      ? "node:module loading"
      : url.replace(/^node:(internal\/)?/, "node:").split("/")[0]!
  }
  const u = shortUrl(url)
  if (u.startsWith("packages/")) return `@runcmd/${u.split("/")[1]}`
  const parts = u.split("/")
  return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!
}

/** Self time per package (ms) and inclusive time of named functions (ms), from one .cpuprofile file. */
export const summarizeProfile = (file: string, functions: ReadonlyArray<string> = []) => {
  const p = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<number, number>()
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt)
    total += dt
  }
  const byPackage = new Map<string, number>()
  const bySelfFunction = new Map<string, number>()
  const inclusive = new Map<string, number>(functions.map((f) => [f, 0]))
  for (const [id, t] of self) {
    const n = byId.get(id)!
    const pkg = packageOf(n.callFrame.url, n.callFrame.functionName)
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + t)
    const fk = `${n.callFrame.functionName || "(anonymous)"} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`
    bySelfFunction.set(fk, (bySelfFunction.get(fk) ?? 0) + t)
    if (functions.length > 0) {
      const seen = new Set<string>()
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const fn = byId.get(cur)!.callFrame.functionName
        if (inclusive.has(fn) && !seen.has(fn)) {
          seen.add(fn)
          inclusive.set(fn, inclusive.get(fn)! + t)
        }
      }
    }
  }
  const ms = (m: Map<string, number>, top: number) =>
    Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k, round(v / 1000, 1)]))
  return {
    totalMs: round(total / 1000, 1),
    selfByPackageMs: ms(byPackage, 25),
    selfByFunctionMs: ms(bySelfFunction, 25),
    inclusiveMs: ms(inclusive, functions.length)
  }
}

export const tmpDir = (prefix: string): string => fs.mkdtempSync(path.join(os.tmpdir(), `runcmd-bench-${prefix}-`))

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Runs `node --cpu-prof <args>` once and summarizes the main thread's profile (self time by package/function). */
export const profileNode = async (
  args: ReadonlyArray<string>,
  options: { readonly timeoutMs?: number; readonly functions?: ReadonlyArray<string> } = {}
) => {
  const dir = tmpDir("prof")
  try {
    const r = await run(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${dir}`, ...args], {
      stdout: "ignore",
      timeV: true,
      timeoutMs: options.timeoutMs ?? 300_000
    })
    const file = fs.readdirSync(dir).find((f) => f.endsWith(".cpuprofile"))
    if (file === undefined) return { error: `no profile (exit ${r.code}): ${r.stderr.slice(-300)}` }
    const s = summarizeProfile(path.join(dir, file), options.functions ?? [])
    return {
      exit: r.code,
      wallMs: round(r.ms, 0),
      maxRssMb: r.maxRssKb === undefined ? undefined : round(r.maxRssKb / 1024, 1),
      cpuUserS: r.timeV?.["User time (seconds)"],
      cpuSysS: r.timeV?.["System time (seconds)"],
      mainThreadProfileMs: s.totalMs,
      selfByPackageMs: Object.fromEntries(Object.entries(s.selfByPackageMs).slice(0, 15)),
      topSelfFunctionsMs: Object.fromEntries(Object.entries(s.selfByFunctionMs).slice(0, 15)),
      ...(options.functions === undefined ? {} : { inclusiveMs: s.inclusiveMs })
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
