import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")

const runBlock = (heading: string, name: string): string => {
  const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
  const section = readme.slice(readme.indexOf(heading))
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  assert.isDefined(code)
  // inside node_modules so that the example resolves @runcmd/* exactly as a user's project would
  const dir = path.join(root, "node_modules", ".cache", `runcmd-readme-${name}`)
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `${name}.mts`)
  fs.writeFileSync(file, code!)
  try {
    return execFileSync(process.execPath, ["--import", "tsx", file], { cwd: root, encoding: "utf8", timeout: 60_000 })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

describe("README", () => {
  it("the pipeline with services runs as written, in virtual time (against the built packages)", () => {
    const out = runBlock("## The same program in production and in tests", "pipeline")
    assert.match(out, /Succeeded: 8/)
    assert.match(out, /Failed: 2/)
    assert.match(out, /Skipped: 2/)
    assert.match(out, /in 60 s/)
    assert.match(out, /web-7: disk full/)
  })

  it("the first program runs as written (against the built packages)", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## A first program"))
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
    assert.isDefined(code)
    // inside node_modules so that the example resolves @runcmd/* exactly as a user's project would
    const dir = path.join(root, "node_modules", ".cache", "runcmd-readme")
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, "first-program.mts")
    fs.writeFileSync(file, code!)
    try {
      const out = execFileSync(process.execPath, ["--import", "tsx", file], {
        cwd: root,
        encoding: "utf8",
        timeout: 60_000
      })
      assert.match(out, /Succeeded: 2/)
      assert.match(out, /failed: \[\]/)
      assert.notInclude(out, "hunter2")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
