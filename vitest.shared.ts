import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

const root = path.dirname(fileURLToPath(import.meta.url))

// Tests resolve workspace packages to their TypeScript sources (the "@runcmd/source" export condition),
// so a change in core is seen by every package's tests without a rebuild.
export default defineConfig({
  resolve: { conditions: ["@runcmd/source"] },
  ssr: { resolve: { conditions: ["@runcmd/source"], externalConditions: ["@runcmd/source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: [path.join(root, "test-support/loopback-guard.ts")],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    fakeTimers: { toFake: undefined }
  }
})
