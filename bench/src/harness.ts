// Shared helpers for benchmarks: medians, ratios, results files.
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "results")

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits

export interface Result {
  readonly name: string
  readonly goal: string
  readonly met: boolean
  readonly [key: string]: unknown
}

export const writeResult = (result: Result): void => {
  fs.mkdirSync(resultsDir, { recursive: true })
  const file = path.join(resultsDir, `${result.name}.json`)
  fs.writeFileSync(file, JSON.stringify({ ...result, node: process.version, at: new Date().toISOString() }, null, 2) + "\n")
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
