/**
 * The core transport conformance suite through the ARM emulator, action run commands: output only at the end (the
 * result's message, text), the service keeps the last 4 KB per stream, no cancel: the cases assert the declared
 * behaviour instead (the titles say which). The process-table checks after a kill run on a second VM of the same
 * emulator (one host), the first one being busy with the execution the service cannot end.
 */
import { conformance } from "@runcmd/core/testing"
import { vmTarget } from "./harness.js"
import * as Harness from "./harness.js"

await conformance(
  "azure (action run commands, ARM emulator)",
  Harness.layer({
    emulator: {
      vms: [...Array.from({ length: 6 }, (_, i) => ({ name: `vm-${i}` })), {
        name: "vm-stopped",
        powerState: "deallocated"
      }]
    },
    transport: { mode: "action" }
  }),
  {
    targets: (n) => Array.from({ length: n }, (_, i) => vmTarget(i)),
    unreachableTarget: () => ({ ...vmTarget(0), id: "vm-stopped", vmName: "vm-stopped" }),
    cappedOutputKeeps: "last",
    textOutput: true,
    testTimeout: 120_000
  }
)
