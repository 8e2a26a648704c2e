/**
 * The emulator checked by an independent client, and our reader checked on a real host's envelopes: pywinrm
 * 0.3.0 (Debian `python3-winrm`, run with Debian's `/usr/bin/python3`) runs commands on the emulator over HTTPS +
 * Basic and over HTTP + NTLM with message encryption; pywinrm's canned exchanges (`fixtures/pywinrm/`) are read by
 * our client's reader and posted to the emulator.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Https from "node:https"
import * as Path from "node:path"
import { skipWithoutPwsh } from "../../../test-support/pwsh.js"
import * as Ntlm from "../src/internal/ntlm/ntlm.js"
import * as Wsman from "../src/internal/wsman.js"
import * as Xml from "../src/internal/xml.js"
import * as Emulator from "../src/testing.js"

const fixture = (name: string) => Fs.readFileSync(Path.join(__dirname, "fixtures", "pywinrm", `${name}.xml`), "utf8")

describe("pywinrm's canned envelopes", () => {
  it("our reader reads a host's answers: ShellId, CommandId, streams as bytes, Done with its exit code", () => {
    assert.strictEqual(
      Wsman.readShellId(Xml.parse(fixture("open-shell-response"))),
      "11111111-1111-1111-1111-111111111113"
    )
    assert.strictEqual(
      Xml.textOf(Xml.parse(fixture("run-cmd-response")), "CommandId"),
      "11111111-1111-1111-1111-111111111114"
    )
    const output = Xml.parse(fixture("get-cmd-output-response"))
    assert.strictEqual(Wsman.relatesTo(output), "uuid:11111111-1111-1111-1111-111111111111")
    const result = Wsman.readReceive(output)
    assert.deepStrictEqual(result.done, { exitCode: 0 })
    const stdout = Buffer.concat(result.chunks.filter((c) => c.name === "stdout").map((c) => c.bytes)).toString()
    assert.include(stdout, "Windows IP Configuration")
    assert.isTrue(result.chunks.filter((c) => c.end === true).length === 2, "both streams ended")
  })

  it("the emulator reads pywinrm's requests (Create, Command with arguments, Receive, Signal, Delete)", () => {
    for (
      const name of [
        "open-shell-request",
        "run-cmd-with-args-request",
        "get-cmd-output-request",
        "cleanup-cmd-request",
        "close-shell-request"
      ]
    ) {
      const request = Wsman.readRequest(fixture(name))
      assert.isDefined(Wsman.actionName(request.action), name)
      assert.strictEqual(request.messageId, "uuid:11111111-1111-1111-1111-111111111111")
    }
    assert.strictEqual(
      Wsman.readRequest(fixture("run-cmd-with-args-request")).shellId,
      "11111111-1111-1111-1111-111111111113"
    )
  })
})

const python = "/usr/bin/python3"
const hasPywinrm = (): boolean => {
  try {
    ChildProcess.execFileSync(python, ["-c", "import winrm"], { stdio: "ignore", timeout: 30_000 })
    return true
  } catch {
    if (process.env.CI === "true") {
      throw new Error("CI=true but python3-winrm is missing (apt-get install python3-winrm)")
    }
    process.stderr.write(
      "pywinrm.test.ts: skipped, /usr/bin/python3 has no winrm module (apt-get install python3-winrm)\n"
    )
    return false
  }
}

const SCRIPT = `
import sys, json, winrm
endpoint, user, password, ca, transport = sys.argv[1:6]
kwargs = {"transport": transport}
if ca != "-":
    kwargs["ca_trust_path"] = ca
s = winrm.Session(endpoint, auth=(user, password), **kwargs)
r = s.run_cmd("pwsh", ["-NoProfile", "-NonInteractive", "-Command", '"Write-Output (\\'hi \\' + (2+3)); [Console]::Error.WriteLine(\\'warn\\'); exit 3"'])
out = {"status": r.status_code, "stdout": r.std_out.decode(), "stderr": r.std_err.decode()}
try:
    winrm.Session(endpoint, auth=(user, "wrong" if transport == "basic" else "00000000000000000000000000000000:00000000000000000000000000000000"), **kwargs).run_cmd("echo", ["x"])
    out["wrong"] = "accepted"
except Exception as e:
    out["wrong"] = type(e).__name__
print(json.dumps(out))
`

if (!skipWithoutPwsh("pywinrm.test.ts") && hasPywinrm()) {
  describe("pywinrm against the emulator", () => {
    for (const https of [true, false]) {
      it.live(
        `run_cmd over ${
          https ? "HTTPS + Basic" : "HTTP + NTLM, message encryption"
        }: output, exit code, wrong password refused`,
        () =>
          Effect.scoped(Effect.gen(function*() {
            const emulator = yield* Emulator.make({ https })
            const password = Redacted.value(emulator.password)
            // Debian's Python has no MD4: ntlm-auth takes the NT hash in its LM:NT form instead of the password
            const secret = https ? password : `${"0".repeat(32)}:${Buffer.from(Ntlm.ntowfv1(password)).toString("hex")}`
            const result = yield* Effect.async<string, Error>((resume) => {
              const child = ChildProcess.execFile(
                python,
                [
                  "-c",
                  SCRIPT,
                  emulator.endpoint,
                  emulator.user,
                  secret,
                  emulator.caFile ?? "-",
                  https ? "basic" : "ntlm"
                ],
                { timeout: 90_000, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" } },
                (error, stdout, stderr) =>
                  resume(error ? Effect.fail(new Error(`${error.message}\n${stderr}`)) : Effect.succeed(stdout))
              )
              return Effect.sync(() => child.kill())
            })
            const out = JSON.parse(result.trim().split("\n").at(-1)!)
            assert.deepStrictEqual(out, {
              status: 3,
              stdout: "hi 5\n",
              stderr: "warn\n",
              wrong: "InvalidCredentialsError"
            })
            if (!https) {
              const bodies = emulator.requests().filter((r) => r.action !== "")
              assert.isAbove(bodies.length, 3)
              for (const r of bodies) assert.isTrue(r.encrypted, `${r.action} came sealed`)
            }
          })),
        120_000
      )
    }
  })
}

// the HTTPS emulator answers a canned request posted as is: RelatesTo echoes its MessageID
describe("the emulator answers pywinrm's canned Create", () => {
  it.live("with a ShellId and RelatesTo", () =>
    Effect.scoped(Effect.gen(function*() {
      const emulator = yield* Emulator.make({ https: true, users: { u: "p" } })
      const body = yield* Effect.promise(() =>
        new Promise<string>((resolve, reject) => {
          const req = Https.request(emulator.endpoint, {
            method: "POST",
            ca: Fs.readFileSync(emulator.caFile!),
            headers: {
              Authorization: `Basic ${Buffer.from("u:p").toString("base64")}`,
              "Content-Type": "application/soap+xml;charset=UTF-8"
            }
          }, (res) => {
            const parts: Array<Buffer> = []
            res.on("data", (d: Buffer) => parts.push(d))
            res.on("end", () => resolve(Buffer.concat(parts).toString()))
          })
          req.on("error", reject)
          req.end(fixture("open-shell-request"))
        })
      )
      const root = Xml.parse(body)
      assert.strictEqual(Wsman.relatesTo(root), "uuid:11111111-1111-1111-1111-111111111111")
      assert.match(Wsman.readShellId(root) ?? "", /^[0-9A-F-]{36}$/)
      assert.strictEqual(emulator.stats().shells, 1)
    })), 60_000)
})
