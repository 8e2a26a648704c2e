#!/usr/bin/env node
// The `runcmd` command. It runs the CLI bundled into one file (dist/bundle/runcmd.cjs, from `npm run build`, or
// `npx turbo run build --filter=@runcmd/cli...`): resolving and reading the ~900 modules it is made of would take most
// of a second at each start. V8's compiled code is cached between runs, which roughly halves what is left: by Node
// itself where it can (≥ 22.1), else by `loadCached` below. NODE_DISABLE_COMPILE_CACHE=1 turns the cache off,
// NODE_COMPILE_CACHE=DIR moves it (default ~/.cache/runcmd), as they do for Node's own cache.
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import module from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as v8 from "node:v8"
import * as vm from "node:vm"

const bundle = fileURLToPath(new URL("../dist/bundle/runcmd.cjs", import.meta.url))
if (!fs.existsSync(bundle)) {
  process.stderr.write(
    "runcmd: the CLI is not built (packages/cli/dist/bundle/runcmd.cjs is missing). " +
      "Fix: run `npm run build` at the repository root (or `npx turbo run build --filter=@runcmd/cli...`).\n"
  )
  process.exit(2)
}

/** Where the code cache goes, or `undefined` when it is off. */
const cacheDir = () => {
  if ((process.env.NODE_DISABLE_COMPILE_CACHE ?? "") !== "") return undefined
  if ((process.env.NODE_COMPILE_CACHE ?? "") !== "") return path.resolve(process.env.NODE_COMPILE_CACHE)
  try {
    const xdg = process.env.XDG_CACHE_HOME ?? ""
    return path.join(path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache"), "runcmd")
  } catch {
    return undefined // no home directory
  }
}

const sha256 = (data) => crypto.createHash("sha256").update(data).digest()

// a cache file: the SHA-256 of the bundle it was made from, the SHA-256 of V8's data, the commands whose code it holds
// (a bit each: a command it has not seen yet adds its code when it exits), then V8's data
const header = 65
// (help counts as its own command: `run --help` runs none of `run`'s code, whose first real run must still add it)
const args = process.argv.slice(2)
const dash = args.indexOf("--")
const head = dash === -1 ? args : args.slice(0, dash)
const command = head.includes("--help") || head.includes("-h") ? undefined : head[0]
const commandBit = command === "run" ? 1 : command === "inventory" ? 2 : command === "report" ? 4 : 8

/** Makes the cache directory, and its parent (~/.cache) if needed. */
const makeDir = (dir) => {
  // not `recursive: true`: on Node 20 it loops forever where mkdir says ENOENT for an existing parent (/proc/x/y)
  for (const d of [path.dirname(dir), dir]) {
    try {
      fs.mkdirSync(d, { mode: 0o700 })
    } catch (error) {
      if (error.code !== "EEXIST" && d === dir) throw error
    }
  }
}

/** Writes the code compiled so far, when the process exits; a cache that cannot be written is not made. */
const save = (file, bundleHash, seen, script) => {
  const tmp = `${file}.${process.pid}.tmp`
  try {
    makeDir(path.dirname(file))
    const fd = fs.openSync(tmp, "wx", 0o600)
    try {
      const data = script.createCachedData()
      fs.writeFileSync(fd, Buffer.concat([bundleHash, sha256(data), Buffer.of(seen), data]))
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, file) // whole files only, also with runs exiting at once
  } catch {
    try {
      fs.rmSync(tmp, { force: true })
    } catch {
      // nothing to clean up
    }
  }
}

/** Runs the bundle as Node's CommonJS loader would, with V8's code cache (`vm.Script` `cachedData`). */
const loadCached = (dir) => {
  const source = fs.readFileSync(bundle)
  const bundleHash = sha256(source)
  // one file per installation and Node version
  const file = path.join(
    dir,
    `${sha256(`${bundle}\0${process.version}\0${process.arch}`).toString("hex").slice(0, 32)}.v8`
  )
  let cachedData
  let seen = 0
  try {
    const fd = fs.openSync(file, "r")
    try {
      // compiled code is code: only from a file of this user's (NODE_COMPILE_CACHE may name a shared directory)
      const data = process.getuid === undefined || fs.fstatSync(fd).uid === process.getuid()
        ? fs.readFileSync(fd)
        : Buffer.alloc(0)
      if (
        data.length > header && data.subarray(0, 32).equals(bundleHash) &&
        data.subarray(32, 64).equals(sha256(data.subarray(header)))
      ) {
        cachedData = data.subarray(header)
        seen = data[64]
      }
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    // none yet
  }
  const script = new vm.Script(
    `(function (exports, require, module, __filename, __dirname) { ${source.toString("utf8")}\n})`,
    { filename: bundle, cachedData }
  )
  if (cachedData === undefined || script.cachedDataRejected === true) seen = 0
  if ((seen & commandBit) === 0) process.once("exit", () => save(file, bundleHash, seen | commandBit, script))
  const cjs = { exports: {} }
  script.runInThisContext().call(
    cjs.exports,
    cjs.exports,
    module.createRequire(bundle),
    cjs,
    bundle,
    path.dirname(bundle)
  )
  return cjs.exports
}

// V8 doubles the young generation whenever enough objects survived its collections, up to 2 × 16 MiB. Kept at its
// initial size, streamed output is collected sooner and the command's peak RSS while output streams is ~20 MB lower
// at the same speed (BENCHMARKS.md, throughput). V8 reads this flag whenever it would grow the young generation; it
// exists in the V8 of every Node from 20 to 24 (an unknown flag would be reported on stdout, so no other versions)
if (Number(process.versions.node.split(".")[0]) <= 24) v8.setFlagsFromString("--semi-space-growth-factor=1")
module.enableCompileCache?.()
const dir = cacheDir()
const { main } = module.enableCompileCache !== undefined || dir === undefined
  ? module.createRequire(import.meta.url)(bundle)
  : loadCached(dir)
main(process.argv)
