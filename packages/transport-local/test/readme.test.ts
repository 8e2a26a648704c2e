import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, "../../..")

describe("README", () => {
  it("the example runs as written", () => {
    const readme = fs.readFileSync(path.join(here, "../README.md"), "utf8")
    const code = /```ts\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf("## Example")))?.[1]
    assert.isDefined(code)
    // inside node_modules so that @runcmd/* resolve as in a user's project (to the sources: no build needed)
    const dir = path.join(root, "node_modules", ".cache", `runcmd-readme-local-${process.pid}`)
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, "example.mts")
    fs.writeFileSync(file, code!)
    try {
      const out = execFileSync(process.execPath, ["--conditions=@runcmd/source", "--import", "tsx", file], {
        cwd: root,
        encoding: "utf8",
        timeout: 60_000
      })
      assert.strictEqual(out, "build-1: Succeeded\nbuild-2: Succeeded\n")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 90_000)
})
