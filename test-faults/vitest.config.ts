import { defineProject, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.js"

// The fault suite (`npm run test:faults`): leaks, a fault proxy in front of sshd, load, bad input, sinks under
// faults. Real processes and servers on loopback; every case bounded in time.
export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "faults",
      include: ["test/**/*.test.ts"],
      testTimeout: 120_000,
      hookTimeout: 120_000
    }
  })
)
