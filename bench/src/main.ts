// npm run bench [-- name...]: runs the named benchmarks (all by default), each printing medians and ratios
// measured in one run and writing bench/results/<name>.json. Benchmarks run against the built packages
// (`npx turbo run build` first). See bench/README.md and BENCHMARKS.md.
import { cliStartup } from "./cli-startup.js"
import { cloudCallsAzure } from "./cloud-calls-azure.js"
import { cloudCallsSsm } from "./cloud-calls-ssm.js"
import { local } from "./local.js"
import { runnerScale } from "./runner-scale.js"
import { sshFanout } from "./ssh-fanout.js"
import { sshSequential } from "./ssh-sequential.js"
import { throughput } from "./throughput.js"

const benchmarks: Record<string, () => Promise<void>> = {
  "runner-scale": runnerScale,
  local,
  "cli-startup": cliStartup,
  "ssh-sequential": sshSequential,
  "ssh-fanout": sshFanout,
  throughput,
  "cloud-calls-ssm": cloudCallsSsm,
  "cloud-calls-azure": cloudCallsAzure
}

const wanted = process.argv.slice(2)
const names = wanted.length > 0 ? wanted : Object.keys(benchmarks)
for (const name of names) {
  if (benchmarks[name] === undefined) {
    console.error(`unknown benchmark ${name}; known: ${Object.keys(benchmarks).join(", ")}`)
    process.exit(2)
  }
}
for (const name of names) {
  console.log(`\n=== ${name}`)
  await benchmarks[name]!()
}
