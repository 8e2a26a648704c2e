import * as Target from "@runcmd/core/Target"
import { conformance } from "@runcmd/core/testing"
import * as LocalTransport from "../src/LocalTransport.js"

await conformance("local", LocalTransport.layer(), {
  targets: (n) => Array.from({ length: n }, (_, i) => Target.local(`local-${i}`, { index: String(i) }))
})
