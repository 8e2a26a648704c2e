#!/usr/bin/env node
// The `runcmd` command: loads the built CLI (`npm run build`, or `npx turbo run build --filter=@runcmd/cli...`).
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

const entry = new URL("../dist/main.js", import.meta.url)
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(
    "runcmd: the CLI is not built (packages/cli/dist/main.js is missing). " +
      "Fix: run `npm run build` at the repository root (or `npx turbo run build --filter=@runcmd/cli...`).\n"
  )
  process.exit(2)
}
const { main } = await import(entry.href)
main(process.argv)
