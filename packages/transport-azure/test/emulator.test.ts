/**
 * The emulator against the REST spec (`test/fixtures/azure`, copied from the project's shared fixtures): every operation, driven with the examples'
 * parameters over raw HTTPS, answers with a status the spec lists and a body valid against the spec's
 * definitions; every api-version from 2020-06-01 on is accepted; the scripts run `agentNice` levels below the
 * emulator; `main` announces itself in one JSON line.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as https from "node:https"
import * as os from "node:os"
import * as path from "node:path"
import * as Emulator from "../src/testing.js"

// a copy of the shared fixtures (the Azure REST spec's run-command examples and definitions; see SOURCES.md there)
const FIXTURES = path.resolve(import.meta.dirname, "fixtures/azure")
const spec = JSON.parse(fs.readFileSync(path.join(FIXTURES, "runCommand-definitions.json"), "utf8"))
const example = (name: string) =>
  JSON.parse(fs.readFileSync(path.join(FIXTURES, "runCommandExamples", `${name}.json`), "utf8"))

type Schema = Record<string, any>

const resolve = (schema: Schema): Schema => {
  const ref = schema.$ref as string | undefined
  if (ref === undefined) return schema
  const name = ref.slice(ref.lastIndexOf("/") + 1)
  const def = spec.definitions[name]
  if (def === undefined) throw new Error(`no definition ${name}`)
  return resolve(def)
}

/** Every property of a schema, `allOf` included. */
const propertiesOf = (schema: Schema): { props: Record<string, Schema>; required: Array<string> } => {
  const s = resolve(schema)
  const props: Record<string, Schema> = { ...s.properties }
  const required: Array<string> = [...(s.required ?? [])]
  for (const part of s.allOf ?? []) {
    const inner = propertiesOf(part)
    Object.assign(props, inner.props)
    for (const r of inner.required) required.push(r)
  }
  return { props, required }
}

/** Problems of `value` against `schema` (types, unknown properties, required ones, enums). */
const validate = (value: unknown, schema: Schema, at = "$", problems: Array<string> = []): Array<string> => {
  const s = resolve(schema)
  const type = s.type ?? (s.properties !== undefined || s.allOf !== undefined ? "object" : undefined)
  if (type === "object") {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      problems.push(`${at}: expected an object`)
      return problems
    }
    const { props, required } = propertiesOf(s)
    for (const r of required) if (!(r in value)) problems.push(`${at}.${r}: required`)
    for (const [k, v] of Object.entries(value)) {
      if (props[k] !== undefined) validate(v, props[k]!, `${at}.${k}`, problems)
      else if (s.additionalProperties !== undefined && typeof s.additionalProperties === "object") {
        validate(v, s.additionalProperties, `${at}.${k}`, problems)
      } else if (s.additionalProperties !== true) problems.push(`${at}.${k}: not in the spec`)
    }
  } else if (type === "array") {
    if (!Array.isArray(value)) {
      problems.push(`${at}: expected an array`)
      return problems
    }
    value.forEach((v, i) => validate(v, s.items ?? {}, `${at}[${i}]`, problems))
  } else if (type === "string") {
    if (typeof value !== "string") problems.push(`${at}: expected a string`)
    else if (s.enum !== undefined && !s.enum.includes(value)) problems.push(`${at}: ${value} not in ${s.enum}`)
    else if (s.format === "date-time" && Number.isNaN(Date.parse(value))) problems.push(`${at}: not a date-time`)
  } else if (type === "integer") {
    if (!Number.isInteger(value)) problems.push(`${at}: expected an integer`)
  } else if (type === "boolean") {
    if (typeof value !== "boolean") problems.push(`${at}: expected a boolean`)
  }
  return problems
}

/** The operation of the spec for a method and a concrete path. */
const operation = (method: string, concrete: string) => {
  for (const [template, ops] of Object.entries(spec.paths as Record<string, Record<string, any>>)) {
    const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+").replace(/\./g, "\\.")}$`, "i")
    if (pattern.test(concrete) && ops[method.toLowerCase()] !== undefined) return ops[method.toLowerCase()]
  }
  throw new Error(`no operation for ${method} ${concrete}`)
}

interface Reply {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: any
}

const request = (emulator: Emulator.Emulator, method: string, url: string, body?: unknown): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const req = https.request(url.startsWith("https:") ? url : `${emulator.endpoint}${url}`, {
      method,
      ca: emulator.ca,
      headers: { authorization: "Bearer x", "content-type": "application/json" }
    }, (res) => {
      const parts: Array<Buffer> = []
      res.on("data", (b: Buffer) => parts.push(b))
      res.on("end", () => {
        const text = Buffer.concat(parts).toString("utf8")
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === "" ? undefined : JSON.parse(text) })
      })
    })
    req.on("error", reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })

/** Calls the emulator and checks the reply against the spec operation: a listed status and a valid body. */
const checked = async (
  emulator: Emulator.Emulator,
  method: string,
  p: string,
  apiVersion: string,
  body?: unknown,
  extraQuery = ""
) => {
  const reply = await request(emulator, method, `${p}?api-version=${apiVersion}${extraQuery}`, body)
  const op = operation(method, p)
  const listed = Object.keys(op.responses)
  const entry = op.responses[String(reply.status)] ?? op.responses.default
  assert.isDefined(entry, `${method} ${p}: status ${reply.status} is in the spec (${listed})`)
  if (!listed.includes(String(reply.status))) {
    assert.isDefined(op.responses.default, `${method} ${p}: ${reply.status} only as an error`)
  }
  if (entry?.schema !== undefined && reply.body !== undefined) {
    assert.deepStrictEqual(
      validate(reply.body, entry.schema),
      [],
      `${method} ${p} → ${reply.status}: ${JSON.stringify(reply.body)}`
    )
  }
  return reply
}

const waitFor = async (emulator: Emulator.Emulator, asyncOperation: string) => {
  for (let i = 0; i < 200; i++) {
    const op = await request(emulator, "GET", asyncOperation)
    if (op.body.status !== "InProgress") return op
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error("the operation did not end")
}

/** An example's run command body, without the blob URIs and identities (they name real storage accounts). */
const exampleBody = (name: string, script: string) => {
  const body = structuredClone(example(name).parameters.runCommand)
  for (
    const k of [
      "outputBlobUri",
      "errorBlobUri",
      "outputBlobManagedIdentity",
      "errorBlobManagedIdentity",
      "runAsUser",
      "runAsPassword"
    ]
  ) {
    delete body.properties[k]
  }
  body.properties.source = { script }
  return body
}

describe("ARM emulator", () => {
  it(
    "answers every operation of the spec with a listed status and a valid body, at every api-version from 2020-06-01",
    async () => {
      // the scripts 3 nice levels below the emulator (agentNice), which the action's output shows
      const emulator = await Emulator.start({
        vms: [{ name: "myVM" }],
        scaleSets: [{ name: "myvmScaleSet", instances: 1 }],
        agentNice: 3
      })
      const versions = ["2020-06-01", "2021-07-01", "2022-11-01", "2023-03-01", "2024-11-01", "2026-03-01"]
      let v = 0
      const version = () => versions[v++ % versions.length]!
      try {
        const sub = `/subscriptions/${emulator.subscription}`
        const rg = `${sub}/resourceGroups/${emulator.resourceGroup}/providers/Microsoft.Compute`
        // run command documents
        await checked(
          emulator,
          "GET",
          `${sub}/providers/Microsoft.Compute/locations/${emulator.location}/runCommands`,
          version()
        )
        await checked(
          emulator,
          "GET",
          `${sub}/providers/Microsoft.Compute/locations/${emulator.location}/runCommands/RunShellScript`,
          version()
        )
        // action run commands: 202, then the result on the Location URL
        for (
          const parent of [`${rg}/virtualMachines/myVM`, `${rg}/virtualMachineScaleSets/myvmScaleSet/virtualmachines/0`]
        ) {
          const accepted = await checked(emulator, "POST", `${parent}/runCommand`, version(), {
            commandId: "RunShellScript",
            script: ["echo hello", "nice"]
          })
          assert.strictEqual(accepted.status, 202)
          await waitFor(emulator, String(accepted.headers["azure-asyncoperation"]))
          const result = await request(emulator, "GET", String(accepted.headers.location))
          assert.strictEqual(result.status, 200)
          assert.deepStrictEqual(validate(result.body, { $ref: "#/definitions/RunCommandResult" }), [])
          assert.include(result.body.value[0].message, `[stdout]\nhello\n${Math.min(19, os.getPriority() + 3)}\n`)
        }
        // managed run commands, on a VM and on a scale-set VM
        for (
          const [parent, prefix] of [[`${rg}/virtualMachines/myVM`, "VirtualMachineRunCommand"], [
            `${rg}/virtualMachineScaleSets/myvmScaleSet/virtualMachines/0`,
            "VirtualMachineScaleSetVMRunCommand"
          ]] as const
        ) {
          const rc = `${parent}/runCommands/myRunCommand`
          const created = await checked(emulator, "PUT", rc, version(), {
            ...exampleBody(`${prefix}_CreateOrUpdate`, "echo hello"),
            location: emulator.location
          })
          assert.strictEqual(created.status, 201)
          await waitFor(emulator, String(created.headers["azure-asyncoperation"]))
          await checked(emulator, "GET", rc, version())
          const expanded = await checked(emulator, "GET", rc, version(), undefined, "&%24expand=instanceView")
          assert.strictEqual(expanded.body.properties.instanceView.executionState, "Succeeded")
          assert.strictEqual(expanded.body.properties.instanceView.output, "hello\n")
          // the example GET response's shape: the same keys at the top level
          assert.includeMembers(
            Object.keys(expanded.body),
            Object.keys(example(`${prefix}_Get`).responses["200"].body).filter((k) => k !== "tags")
          )
          await checked(emulator, "GET", `${parent}/runCommands`, version(), undefined, "&%24expand=instanceView")
          const patched = await checked(
            emulator,
            "PATCH",
            rc,
            version(),
            exampleBody(`${prefix}_Update`, "echo patched")
          )
          assert.strictEqual(patched.status, 200)
          const deleted = await checked(emulator, "DELETE", rc, version())
          assert.strictEqual(deleted.status, 202)
          await waitFor(emulator, String(deleted.headers["azure-asyncoperation"]))
          const gone = await checked(emulator, "GET", rc, version())
          assert.strictEqual(gone.status, 404)
          assert.strictEqual(gone.body.error.code, "ResourceNotFound")
          assert.strictEqual((await checked(emulator, "DELETE", rc, version())).status, 204)
        }
        // api-versions before 2020-06-01 and none at all are refused
        const old = await request(emulator, "GET", `${rg}/virtualMachines/myVM/runCommands?api-version=2019-12-01`)
        assert.strictEqual(old.status, 400)
        assert.strictEqual(old.body.error.code, "InvalidApiVersionParameter")
        const none = await request(emulator, "GET", `${rg}/virtualMachines/myVM/runCommands`)
        assert.strictEqual(none.body.error.code, "MissingApiVersionParameter")
      } finally {
        await emulator.close()
      }
    },
    60_000
  )

  it(
    "main announces endpoint, subscription, names and the CA path in one JSON line, and serves until aborted",
    async () => {
      const lines: Array<string> = []
      const controller = new AbortController()
      const served = Emulator.main(["--vms", "2", "--scale-set", "web:3"], {
        write: (line) => {
          lines.push(line)
          controller.abort()
        },
        signal: controller.signal
      })
      await served
      assert.strictEqual(lines.length, 1)
      const a = JSON.parse(lines[0]!) as Emulator.Announcement
      assert.match(a.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/)
      assert.deepStrictEqual(a.vms, ["vm-0", "vm-1"])
      assert.deepStrictEqual(a.scaleSets, [{ name: "web", instanceIds: ["0", "1", "2"] }])
      assert.match(a.caCertificate, /cert\.pem$/)
      assert.throws(() => Emulator.parseArgs(["--scale-set", "web"]), /NAME:COUNT/)
      assert.throws(() => Emulator.parseArgs(["--bogus"]), /unknown argument/)
    },
    60_000
  )
})

describe("the spec check itself", () => {
  it("finds what is wrong", () => {
    const good = {
      name: "x",
      id: "/a",
      type: "t",
      location: "eastus",
      properties: {
        source: { script: "echo" },
        provisioningState: "Succeeded",
        instanceView: { executionState: "Running", exitCode: 0 }
      }
    }
    assert.deepStrictEqual(validate(good, { $ref: "#/definitions/VirtualMachineRunCommand" }), [])
    const bad = {
      ...good,
      extra: 1,
      properties: { ...good.properties, timeoutInSeconds: "60", instanceView: { executionState: "Sleeping" } }
    }
    const problems = validate(bad, { $ref: "#/definitions/VirtualMachineRunCommand" })
    assert.includeMembers(problems, ["$.extra: not in the spec", "$.properties.timeoutInSeconds: expected an integer"])
    assert.isTrue(problems.some((p) => p.includes("Sleeping")), problems.join("; "))
  })
})
