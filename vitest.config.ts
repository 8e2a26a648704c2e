import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    // test-packed: the packed packages installed in a consumer outside the repository (needs the build)
    projects: ["packages/*/vitest.config.ts", "test-packed/vitest.config.ts", "test-faults/vitest.config.ts"],
    // two test files at once on the 2-core CI machine (vitest's default there is one): most files spend their time
    // waiting on real processes (sshd, pwsh, the emulators' instances), so the suite's wall time nearly halves
    maxWorkers: 2,
    minWorkers: 1
  }
})
