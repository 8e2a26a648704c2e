/**
 * The public surface of the packages, read from their TypeScript sources with the compiler API: every module
 * a consumer can import (`@runcmd/core`, `@runcmd/core/Transport`...), every name it exports, and for each name
 * whether it is a type, a value or a namespace (with its members). The type test of the packed consumer is
 * generated from it, so that it covers every export, including the ones added later.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"

export interface Export {
  /** The name, dotted for namespace members: `Registry.Service`. */
  readonly path: ReadonlyArray<string>
  readonly type: boolean
  readonly value: boolean
  /** Type parameters of the type (all passed as `any` in the generated references). */
  readonly typeParameters: number
}

export interface Module {
  /** The module's file name without `.ts` (`Transport`, `testing`); its entry is `<package>/<name>`. */
  readonly name: string
  /** Re-exported by the root entry as `export * as <name>` (the capitalised modules, see codegen-index.mjs). */
  readonly inRoot: boolean
  readonly exports: ReadonlyArray<Export>
}

export interface Package {
  readonly name: string
  /** The directory in the repository (`packages/core`). */
  readonly dir: string
  readonly modules: ReadonlyArray<Module>
}

/** The workspace packages that are published (not private), in dependency order. */
export const publishedPackages = (root: string): ReadonlyArray<{ readonly name: string; readonly dir: string }> => {
  const dirs = fs.readdirSync(path.join(root, "packages")).map((d) => path.join(root, "packages", d))
  const found = dirs
    .filter((dir) => fs.existsSync(path.join(dir, "package.json")))
    .map((dir) => ({ dir, json: JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) }))
    .filter(({ json }) => json.private !== true)
  const names = new Set(found.map(({ json }) => json.name as string))
  const deps = (json: { dependencies?: Record<string, string> }) =>
    Object.keys(json.dependencies ?? {}).filter((d) => names.has(d))
  const ordered: Array<{ readonly name: string; readonly dir: string }> = []
  const visit = (entry: (typeof found)[number]) => {
    if (ordered.some((o) => o.name === entry.json.name)) return
    for (const d of deps(entry.json)) visit(found.find((f) => f.json.name === d)!)
    ordered.push({ name: entry.json.name, dir: entry.dir })
  }
  for (const entry of found.sort((a, b) => a.dir.localeCompare(b.dir))) visit(entry)
  return ordered
}

const typeParameterCount = (symbol: ts.Symbol): number => {
  let n = 0
  for (const d of symbol.declarations ?? []) {
    if (ts.isInterfaceDeclaration(d) || ts.isClassDeclaration(d) || ts.isTypeAliasDeclaration(d)) {
      n = Math.max(n, d.typeParameters?.length ?? 0)
    }
  }
  return n
}

const isNamespace = (symbol: ts.Symbol): boolean =>
  (symbol.flags & (ts.SymbolFlags.NamespaceModule | ts.SymbolFlags.ValueModule)) !== 0 &&
  (symbol.declarations ?? []).some((d) => ts.isModuleDeclaration(d))

/**
 * Reads every public module of every published package from its sources (`src/*.ts` but the generated
 * `index.ts`; the package's `exports` map serves them all as `<package>/<Module>`).
 */
export const readPackages = (root: string): ReadonlyArray<Package> => {
  const packages = publishedPackages(root)
  const files = packages.flatMap(({ dir }) =>
    fs.readdirSync(path.join(dir, "src"))
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts") && f !== "index.ts")
      .map((f) => path.join(dir, "src", f))
  )
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    customConditions: ["@runcmd/source"],
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    types: ["node"]
  })
  const checker = program.getTypeChecker()
  return packages.map(({ dir, name }) => {
    const modules = files
      .filter((f) => path.dirname(path.dirname(f)) === dir)
      .sort()
      .map((file): Module => {
        const source = program.getSourceFile(file)!
        const moduleSymbol = checker.getSymbolAtLocation(source)
        const exports: Array<Export> = []
        const visit = (symbol: ts.Symbol, at: ReadonlyArray<string>) => {
          const target = (symbol.flags & ts.SymbolFlags.Alias) !== 0 ? checker.getAliasedSymbol(symbol) : symbol
          const p = [...at, symbol.name]
          exports.push({
            path: p,
            type: (target.flags & ts.SymbolFlags.Type) !== 0,
            value: (target.flags & ts.SymbolFlags.Value) !== 0,
            typeParameters: typeParameterCount(target)
          })
          if (isNamespace(target)) {
            for (const member of checker.getExportsOfModule(target)) visit(member, p)
          }
        }
        for (const symbol of moduleSymbol === undefined ? [] : checker.getExportsOfModule(moduleSymbol)) {
          if (symbol.name !== "default") visit(symbol, [])
        }
        const base = path.basename(file, ".ts")
        return { name: base, inRoot: /^[A-Z]/.test(base), exports }
      })
    return { name, dir, modules }
  })
}

const identifier = (s: string) => s.replace(/[^A-Za-z0-9_]/g, "_")

/**
 * A TypeScript file referencing every export of every module through its own entry and, for the modules the root
 * re-exports, through the root entry (`import { Transport } from "@runcmd/core"` then `Transport.Registry`): a
 * type reference for every type (namespace members included), a value reference for every value. Compiled as
 * `.ts` (ESM: `import` conditions, `.d.ts`) and as `.cts` (CommonJS: `require` conditions, `.d.cts`).
 */
export const typeTest = (packages: ReadonlyArray<Package>): { readonly text: string; readonly references: number } => {
  const imports: Array<string> = []
  const lines: Array<string> = []
  let n = 0
  for (const pkg of packages) {
    const p = identifier(pkg.name)
    for (const module of pkg.modules) {
      const own = `${p}__${identifier(module.name)}`
      const root = `${p}__root__${identifier(module.name)}`
      imports.push(`import * as ${own} from "${pkg.name}/${module.name}"`)
      const ways = [own]
      if (module.inRoot) {
        imports.push(`import { ${module.name} as ${root} } from "${pkg.name}"`)
        ways.push(root)
      }
      for (const e of module.exports) {
        for (const way of ways) {
          const ref = `${way}.${e.path.join(".")}`
          if (e.type) {
            const args = e.typeParameters === 0 ? "" : `<${Array(e.typeParameters).fill("any").join(", ")}>`
            lines.push(`export type T${n++} = ${ref}${args}`)
          }
          if (e.value) lines.push(`export const v${n++} = ${ref}`)
        }
      }
    }
  }
  const text = [
    "// Generated by test-packed/support/exports.ts: every export of every public module, through every entry.",
    "/* eslint-disable */",
    ...imports,
    "",
    ...lines,
    ""
  ].join("\n")
  return { text, references: n }
}

/**
 * A script that loads every module through its own entry and through the root entry, with `import` (`.mjs`) or
 * `require` (`.cjs`), and checks that both give the same objects (one copy of each class, whichever entry) and
 * every value export the sources declare. Prints a JSON summary; exits 1 on a problem.
 */
export const runtimeTest = (packages: ReadonlyArray<Package>, format: "esm" | "cjs"): string => {
  const spec = packages.map((pkg) => ({
    name: pkg.name,
    modules: pkg.modules.map((m) => ({
      name: m.name,
      inRoot: m.inRoot,
      values: m.exports.filter((e) => e.value && e.path.length === 1).map((e) => e.path[0])
    }))
  }))
  const load = format === "esm" ? "await import" : "require"
  const body = `
const spec = ${JSON.stringify(spec)}
const problems = []
let modules = 0
let values = 0
for (const pkg of spec) {
  const root = ${load}(pkg.name)
  for (const m of pkg.modules) {
    const own = ${load}(pkg.name + "/" + m.name)
    modules++
    for (const v of m.values) {
      values++
      if (!(v in own)) problems.push(pkg.name + "/" + m.name + ": no " + v)
      else if (m.inRoot && root[m.name]?.[v] !== own[v]) {
        problems.push(pkg.name + ": " + m.name + "." + v + " through the root entry is another object")
      }
    }
  }
}
console.log(JSON.stringify({ modules, values, problems }))
process.exitCode = problems.length === 0 ? 0 : 1
`
  return format === "esm" ? body : `"use strict"\n;(() => {${body}})()\n`
}
