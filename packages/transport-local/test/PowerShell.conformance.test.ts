import * as Target from "@runcmd/core/Target"
import { conformancePowerShell } from "@runcmd/core/testing"
import { pwshPath, skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as LocalTransport from "../src/LocalTransport.js"

const targets = (n: number) => Array.from({ length: n }, (_, i) => Target.local(`local-${i}`, { index: String(i) }))

// PowerShell scripts run by the real pwsh (7.6), found like the tests find it
if (!skipWithoutPwsh("transport-local PowerShell conformance")) {
  await conformancePowerShell("local (pwsh)", LocalTransport.layer({ powershell: pwshPath()! }), {
    targets,
    timeout: "15 seconds",
    margin: "10 seconds"
  })
}
