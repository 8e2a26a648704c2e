/**
 * The real-process path of the conformance suite, against the minimal reference transport built on
 * node:child_process in `support/ReferenceTransport.ts` (not a product: transport-local is the real one). It proves
 * the suite's sh scripts, process checks and cleanup work on a POSIX host, independently of the transport packages.
 */
import * as Target from "@runcmd/core/Target"
import { conformance } from "@runcmd/core/testing"
import * as ReferenceTransport from "./support/ReferenceTransport.js"

await conformance("reference child_process transport", ReferenceTransport.layer(), {
  targets: (n) => Array.from({ length: n }, (_, i) => Target.local(`ref-${i}`))
})
