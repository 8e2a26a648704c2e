/**
 * The core transport conformance suite through the ARM emulator, managed run commands without a storage container:
 * output only at the end (the instance view, text), the last 4 KB per stream kept (flagged `truncatedBy`), kills
 * confirmed by DELETE then gone. The cases that need output while the script runs find it in the process table.
 */
import { conformance } from "@runcmd/core/testing"
import { vmTarget } from "./harness.js"
import * as Harness from "./harness.js"

await conformance(
  "azure (managed run commands without storage, ARM emulator)",
  Harness.layer({
    emulator: {
      vms: [...Array.from({ length: 6 }, (_, i) => ({ name: `vm-${i}` })), {
        name: "vm-stopped",
        powerState: "deallocated"
      }]
    },
    storage: false
  }),
  {
    targets: (n) => Array.from({ length: n }, (_, i) => vmTarget(i)),
    unreachableTarget: () => ({ ...vmTarget(0), id: "vm-stopped", vmName: "vm-stopped" }),
    cappedOutputKeeps: "last",
    textOutput: true,
    testTimeout: 120_000
  }
)
