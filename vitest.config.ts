import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    // test-packed: the packed packages installed in a consumer outside the repository (needs the build)
    projects: ["packages/*/vitest.config.ts", "test-packed/vitest.config.ts", "test-faults/vitest.config.ts"]
  }
})
