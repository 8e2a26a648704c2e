import { defineProject, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.js"

// The packed-consumer test (packed.test.ts): needs the built packages (`npm test` builds first). Only this
// directory's *.test.ts: test-packed/consumer holds files of the consumer package, run there, not here.
export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "packed",
      include: ["*.test.ts"],
      testTimeout: 300_000,
      hookTimeout: 300_000
    }
  })
)
