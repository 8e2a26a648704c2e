// npm run bench [-- name...]: runs the named benchmarks (all by default), each printing medians and ratios
// measured in one run and writing bench/results/<name>.json.
import { runnerScale } from "./runner-scale.js"

const benchmarks: Record<string, () => Promise<void>> = {
  "runner-scale": runnerScale
}

const wanted = process.argv.slice(2)
const names = wanted.length > 0 ? wanted : Object.keys(benchmarks)
for (const name of names) {
  const bench = benchmarks[name]
  if (bench === undefined) {
    console.error(`unknown benchmark ${name}; known: ${Object.keys(benchmarks).join(", ")}`)
    process.exit(2)
  }
  await bench()
}
