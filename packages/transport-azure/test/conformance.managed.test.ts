/**
 * The core transport conformance suite through the ARM emulator, managed run commands with append-blob output in
 * Azurite: every byte arrives, while the script runs (without storage: `conformance.managed-inline.test.ts`).
 */
import { conformance } from "@runcmd/core/testing"
import { vmTarget } from "./harness.js"
import * as Harness from "./harness.js"

await conformance(
  "azure (managed run commands, ARM emulator, Azurite)",
  Harness.layer({
    emulator: {
      vms: [...Array.from({ length: 6 }, (_, i) => ({ name: `vm-${i}` })), {
        name: "vm-stopped",
        powerState: "deallocated"
      }]
    },
    storage: true
  }),
  {
    targets: (n) => Array.from({ length: n }, (_, i) => vmTarget(i)),
    unreachableTarget: () => ({ ...vmTarget(0), id: "vm-stopped", vmName: "vm-stopped" }),
    testTimeout: 120_000
  }
)
