import * as Target from "@runcmd/core/Target"
import { conformance } from "@runcmd/core/testing"
import * as LocalTransport from "../src/LocalTransport.js"

const targets = (n: number) => Array.from({ length: n }, (_, i) => Target.local(`local-${i}`, { index: String(i) }))

// the direct spawn (the default) and the full wrapper are both real paths: both must pass
await conformance("local", LocalTransport.layer(), { targets })
await conformance("local (wrapper)", LocalTransport.layer({ direct: false }), { targets })
