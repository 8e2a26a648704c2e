import { conformance, InMemoryTransport, memoryTarget } from "@runcmd/core/testing"

// The in-memory transport against the conformance suite: every case runs its in-memory behaviour equivalent
// through the Runner under TestClock, proving the contract plumbing (draining, exit after drain, timeouts,
// cancellation, concurrency, redaction), not shell semantics.
await conformance("in-memory", InMemoryTransport.layer(), {
  simulated: true,
  targets: (n) => Array.from({ length: n }, (_, i) => memoryTarget(`mem-${i}`))
})

// The same suite with the declarations of a transport that delivers output by polling, cannot confirm kills and
// caps inline output (a cloud Run Command service): the cases assert the declared behaviour instead.
await conformance(
  "in-memory (polled, best-effort cancel, capped output)",
  InMemoryTransport.layer({
    capabilities: { output: "polled", cancel: "best-effort", maxInlineOutputBytes: 1024 * 1024 },
    pollInterval: "500 millis"
  }),
  {
    simulated: true,
    targets: (n) => Array.from({ length: n }, (_, i) => memoryTarget(`cloud-${i}`)),
    cancel: "best-effort",
    maxOutputBytes: 1024 * 1024
  }
)
