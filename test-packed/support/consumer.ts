/**
 * A scratch consumer package outside the repository, with the published packages installed from their packed
 * tarballs: `npm pack` of each package (what the registry would serve: `files` only), each tarball unpacked into
 * the consumer's `node_modules/@runcmd/<name>` as npm installs it. Third-party packages (the packages'
 * dependencies and peers, vitest, typescript) are links to the repository's `node_modules`, which `npm ci` filled
 * from the lockfile: no network, no registry, and well under a second. The consumer lives in the OS temp
 * directory, so nothing resolves through the repository's own `node_modules` by walking up.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { builtinModules } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type Package, readPackages, runtimeTest, typeTest } from "./exports.js"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

export interface Output {
  readonly code: number | null
  readonly signal: string | null
  readonly stdout: string
  readonly stderr: string
  readonly ms: number
}

export class ProcessFailed extends Error {
  override readonly name = "ProcessFailed"
}

/** The environment of the consumer's processes: ours, without what marks a vitest worker. */
const childEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(VITEST|TEST$|NODE_ENV$|NODE_OPTIONS$|npm_)/.test(k)) env[k] = v
  }
  return env
}

/**
 * Runs a program to its end in its own process group and collects its output; past `timeout` (or when
 * interrupted) the whole group is killed. Fails only when the program cannot be started or is killed that way.
 */
export const exec = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly timeout: Duration.DurationInput }
): Effect.Effect<Output, ProcessFailed> =>
  Effect.async<Output, ProcessFailed>((resume) => {
    const started = Date.now()
    const child = spawn(file, args, { cwd: options.cwd, env: childEnv(), detached: true, stdio: "pipe" })
    child.stdin.end()
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (b: Buffer) => out.push(b))
    child.stderr.on("data", (b: Buffer) => err.push(b))
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup()
    }, Duration.toMillis(Duration.decode(options.timeout)))
    child.on("error", (e) => {
      clearTimeout(timer)
      resume(Effect.fail(new ProcessFailed(`${file}: ${e.message}`)))
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      const result: Output = {
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        ms: Date.now() - started
      }
      if (timedOut) {
        const what = `${[file, ...args].join(" ")} did not end within ${Duration.format(options.timeout)}`
        resume(Effect.fail(new ProcessFailed(`${what}\n${result.stdout}\n${result.stderr}`)))
      } else {
        resume(Effect.succeed(result))
      }
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      killGroup()
    })
  })

/** Fails unless the program exited 0; the failure shows its output. */
export const expectSuccess = (what: string) => (self: Effect.Effect<Output, ProcessFailed>) =>
  Effect.flatMap(self, (o) =>
    o.code === 0
      ? Effect.succeed(o)
      : Effect.fail(new ProcessFailed(`${what}: exit ${o.code ?? o.signal}\n${o.stdout}\n${o.stderr}`)))

/** The fenced code blocks of a Markdown file announced by `<!-- file: PATH -->` on the line before. */
export const codeBlocks = (markdown: string): ReadonlyArray<{ readonly file: string; readonly code: string }> => {
  const blocks: Array<{ readonly file: string; readonly code: string }> = []
  const re = /<!-- file: ([^\s]+) -->\n```[a-z]*\n([\s\S]*?)\n```/g
  for (const m of markdown.matchAll(re)) blocks.push({ file: m[1]!, code: `${m[2]!}\n` })
  return blocks
}

export interface Packed {
  readonly name: string
  /** Where the tarball was unpacked: `<consumer>/node_modules/<name>`. */
  readonly dir: string
  readonly json: {
    readonly version: string
    readonly dependencies?: Record<string, string>
    readonly peerDependencies?: Record<string, string>
    readonly peerDependenciesMeta?: Record<string, { readonly optional?: boolean }>
  }
  readonly tarball: string
}

export interface Consumer {
  /** The consumer package's directory (in the OS temp directory). */
  readonly dir: string
  readonly packed: ReadonlyArray<Packed>
  /** The public surface of the packages, read from their sources. */
  readonly packages: ReadonlyArray<Package>
  /** The files taken from the code blocks of packages/core/README.md. */
  readonly readmeFiles: ReadonlyArray<string>
  /** References to exports in the generated type test (per format). */
  readonly typeReferences: number
  /** How long `npm pack`, unpacking and linking took. */
  readonly setupMs: number
  readonly node: (args: ReadonlyArray<string>, timeout: Duration.DurationInput) => Effect.Effect<Output, ProcessFailed>
  /** `tsc -p tsconfig.json` in the consumer, started when the consumer is ready (in the background). */
  readonly typecheck: Effect.Effect<Output, ProcessFailed>
}

export const Consumer = Context.GenericTag<Consumer>("test-packed/Consumer")

/** Tools the consumer uses beyond the packages' own dependencies. */
const TOOLS = ["vitest", "@effect/vitest", "typescript", "@types/node"]

/** A package installed in the repository: the workspace's own `node_modules` first, then the root's. */
const installed = (name: string, workspaceDirs: ReadonlyArray<string>): string | undefined => {
  for (const base of [...workspaceDirs, repoRoot]) {
    const dir = path.join(base, "node_modules", name)
    if (fs.existsSync(path.join(dir, "package.json"))) return fs.realpathSync(dir)
  }
  return undefined
}

const copyDir = (from: string, to: string) => {
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name)
    const target = path.join(to, entry.name)
    if (entry.isDirectory()) {
      fs.mkdirSync(target, { recursive: true })
      copyDir(source, target)
    } else {
      fs.copyFileSync(source, target)
    }
  }
}

const write = (file: string, text: string) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
}

/**
 * The consumer's own files: the template (test-packed/consumer: tsconfig, a plain run with the local transport),
 * the transport and tests of packages/core/README.md (its `<!-- file: PATH -->` code blocks, as written), the
 * generated type test (ESM `.ts` and CommonJS `.cts`) and runtime test (`.mjs`, `.cjs`), and a vitest config that
 * preloads the loopback guard as every test process of the repository does.
 */
const writeFiles = (dir: string, packages: ReadonlyArray<Package>) => {
  copyDir(path.join(repoRoot, "test-packed", "consumer"), dir)
  const blocks = codeBlocks(fs.readFileSync(path.join(repoRoot, "packages", "core", "README.md"), "utf8"))
  for (const block of blocks) write(path.join(dir, block.file), block.code)
  const types = typeTest(packages)
  write(path.join(dir, "types", "exports.ts"), types.text)
  write(path.join(dir, "types", "exports.cts"), types.text)
  write(path.join(dir, "runtime.mjs"), runtimeTest(packages, "esm"))
  write(path.join(dir, "runtime.cjs"), runtimeTest(packages, "cjs"))
  const guard = path.join(repoRoot, "test-support", "loopback-guard.ts")
  write(
    path.join(dir, "vitest.config.mjs"),
    `import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: [${JSON.stringify(guard)}]
  }
})
`
  )
  return { readmeFiles: blocks.map((b) => b.file), typeReferences: types.references }
}

export const isBuiltin = (specifier: string): boolean =>
  specifier.startsWith("node:") || builtinModules.includes(specifier.split("/")[0]!)

const make = Effect.gen(function*() {
  const started = Date.now()
  const packages = readPackages(repoRoot)
  for (const pkg of packages) {
    if (!fs.existsSync(path.join(pkg.dir, "dist", "index.js"))) {
      return yield* Effect.dieMessage(`${pkg.name} is not built (no dist/index.js): run \`npm run build\` first`)
    }
  }
  const tmp = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "runcmd-packed-"))),
    // RUNCMD_PACKED_KEEP=1 keeps it, to look into (its path is printed)
    (dir) =>
      Effect.sync(() =>
        process.env.RUNCMD_PACKED_KEEP === "1"
          ? console.log(`packed consumer kept in ${dir}`)
          : fs.rmSync(dir, { recursive: true, force: true })
      )
  )
  const tarballs = path.join(tmp, "tarballs")
  const dir = path.join(tmp, "consumer")
  fs.mkdirSync(tarballs)
  fs.mkdirSync(path.join(dir, "node_modules"), { recursive: true })

  // npm pack: the files a registry user gets (`files`, package.json, README), no lifecycle scripts
  const pack = yield* exec(
    "npm",
    [
      "pack",
      "--ignore-scripts",
      "--json",
      "--pack-destination",
      tarballs,
      ...packages.map((p) => `--workspace=${path.relative(repoRoot, p.dir)}`)
    ],
    { cwd: repoRoot, timeout: "120 seconds" }
  ).pipe(expectSuccess("npm pack"))
  const listed = JSON.parse(pack.stdout) as ReadonlyArray<{ readonly name: string; readonly filename: string }>

  // unpack each into node_modules as npm does (the tarball's `package/` is the package's directory)
  const packed: Array<Packed> = []
  for (const entry of listed) {
    const target = path.join(dir, "node_modules", entry.name)
    fs.mkdirSync(target, { recursive: true })
    const tarball = path.join(tarballs, entry.filename)
    yield* exec("tar", ["-xzf", tarball, "-C", target, "--strip-components=1"], { cwd: tmp, timeout: "60 seconds" })
      .pipe(expectSuccess(`unpacking ${entry.filename}`))
    packed.push({
      name: entry.name,
      dir: target,
      json: JSON.parse(fs.readFileSync(path.join(target, "package.json"), "utf8")),
      tarball
    })
  }

  // every dependency and peer of the packed packages (but each other), and the tools: links into the repository
  const workspaceDirs = packages.map((p) => p.dir)
  const names = new Set<string>(TOOLS)
  for (const p of packed) {
    for (const d of [...Object.keys(p.json.dependencies ?? {}), ...Object.keys(p.json.peerDependencies ?? {})]) {
      if (!packed.some((q) => q.name === d)) names.add(d)
    }
  }
  for (const name of [...names].sort()) {
    const source = installed(name, workspaceDirs)
    if (source === undefined) {
      const optional = packed.some((p) => p.json.peerDependenciesMeta?.[name]?.optional === true)
      if (optional) continue
      return yield* Effect.dieMessage(`${name} is not installed in the repository (run npm ci)`)
    }
    const link = path.join(dir, "node_modules", name)
    fs.mkdirSync(path.dirname(link), { recursive: true })
    fs.symlinkSync(source, link, "dir")
  }

  fs.writeFileSync(
    path.join(dir, "package.json"),
    JSON.stringify(
      {
        name: "runcmd-packed-consumer",
        private: true,
        type: "module",
        dependencies: Object.fromEntries(packed.map((p) => [p.name, `file:${p.tarball}`]))
      },
      null,
      2
    )
  )
  const generated = writeFiles(dir, packages)
  const node = (args: ReadonlyArray<string>, timeout: Duration.DurationInput) =>
    exec(process.execPath, args, { cwd: dir, timeout })
  // tsc is CPU-bound and the conformance run mostly waits on processes: the type check runs meanwhile
  const typecheck = yield* Effect.forkScoped(
    node(["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"], "240 seconds")
  )
  return {
    dir,
    packed,
    packages,
    ...generated,
    setupMs: Date.now() - started,
    node,
    typecheck: Fiber.join(typecheck)
  } satisfies Consumer
})

/** The consumer, built once for a test file and removed (temp directory and all) when its scope closes. */
export const layer: Layer.Layer<Consumer> = Layer.scoped(Consumer, Effect.orDie(make))
