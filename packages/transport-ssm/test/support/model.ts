/**
 * Checks JSON values against the shapes of the shared SSM service model (botocore format, AWS JSON 1.1:
 * timestamps are epoch seconds as numbers), strictly: unknown members, missing required members, values outside
 * enums, lengths or ranges are errors. Parameter Store shapes (not in the model file) are added below, in the
 * same format, from the service's API reference.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

interface Shape {
  readonly type: string
  readonly members?: Record<string, { readonly shape: string }>
  readonly required?: ReadonlyArray<string>
  readonly member?: { readonly shape: string }
  readonly key?: { readonly shape: string }
  readonly value?: { readonly shape: string }
  readonly enum?: ReadonlyArray<string>
  readonly min?: number
  readonly max?: number
  readonly pattern?: string
}

interface Model {
  readonly operations: Record<string, {
    readonly input?: { readonly shape: string }
    readonly output?: { readonly shape: string }
    readonly errors?: ReadonlyArray<{ readonly shape: string }>
  }>
  readonly shapes: Record<string, Shape>
}

const dir = path.dirname(fileURLToPath(import.meta.url))
export const model: Model = JSON.parse(
  fs.readFileSync(path.join(dir, "../fixtures/ssm-run-command-model.json"), "utf8")
)

const parameterStore: Model = {
  operations: {
    PutParameter: {
      input: { shape: "PutParameterRequest" },
      output: { shape: "PutParameterResult" },
      errors: [{ shape: "ParameterAlreadyExists" }, { shape: "UnsupportedParameterType" }]
    },
    GetParameter: {
      input: { shape: "GetParameterRequest" },
      output: { shape: "GetParameterResult" },
      errors: [{ shape: "ParameterNotFound" }]
    },
    DeleteParameter: {
      input: { shape: "DeleteParameterRequest" },
      output: { shape: "DeleteParameterResult" },
      errors: [{ shape: "ParameterNotFound" }]
    }
  },
  shapes: {
    PSParameterName: { type: "string", min: 1, max: 2048 },
    PSParameterValue: { type: "string" },
    ParameterType: { type: "string", enum: ["String", "StringList", "SecureString"] },
    ParameterTier: { type: "string", enum: ["Standard", "Advanced", "Intelligent-Tiering"] },
    PSParameterVersion: { type: "long" },
    PutParameterRequest: {
      type: "structure",
      required: ["Name", "Value"],
      members: {
        Name: { shape: "PSParameterName" },
        Description: { shape: "String" },
        Value: { shape: "PSParameterValue" },
        Type: { shape: "ParameterType" },
        KeyId: { shape: "String" },
        Overwrite: { shape: "Boolean" },
        Tier: { shape: "ParameterTier" }
      }
    },
    PutParameterResult: {
      type: "structure",
      members: { Version: { shape: "PSParameterVersion" }, Tier: { shape: "ParameterTier" } }
    },
    GetParameterRequest: {
      type: "structure",
      required: ["Name"],
      members: { Name: { shape: "PSParameterName" }, WithDecryption: { shape: "Boolean" } }
    },
    Parameter: {
      type: "structure",
      members: {
        Name: { shape: "PSParameterName" },
        Type: { shape: "ParameterType" },
        Value: { shape: "PSParameterValue" },
        Version: { shape: "PSParameterVersion" },
        Selector: { shape: "String" },
        SourceResult: { shape: "String" },
        LastModifiedDate: { shape: "DateTime" },
        ARN: { shape: "String" },
        DataType: { shape: "String" }
      }
    },
    GetParameterResult: { type: "structure", members: { Parameter: { shape: "Parameter" } } },
    DeleteParameterRequest: { type: "structure", required: ["Name"], members: { Name: { shape: "PSParameterName" } } },
    DeleteParameterResult: { type: "structure", members: {} },
    ParameterAlreadyExists: { type: "structure", members: { message: { shape: "String" } } },
    ParameterNotFound: { type: "structure", members: { message: { shape: "String" } } },
    UnsupportedParameterType: { type: "structure", members: { message: { shape: "String" } } }
  }
}

const shapes: Record<string, Shape> = { ...model.shapes, ...parameterStore.shapes }
const operations = { ...model.operations, ...parameterStore.operations }

/** Errors every operation may answer with (common to AWS JSON services). */
const commonErrors = ["ThrottlingException", "ValidationException", "InternalServerError", "SerializationException"]

/** The problems of `value` as shape `name` (empty: valid). */
export const check = (name: string, value: unknown, at = "$"): Array<string> => {
  const shape = shapes[name]
  if (shape === undefined) return [`${at}: unknown shape ${name}`]
  let problems: Array<string> = []
  const bad = (why: string) => problems.push(`${at} (${name}): ${why}`)
  switch (shape.type) {
    case "structure": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return [`${at} (${name}): not an object`]
      const record = value as Record<string, unknown>
      for (const required of shape.required ?? []) {
        if (record[required] === undefined) bad(`missing required member ${required}`)
      }
      for (const [key, v] of Object.entries(record)) {
        const member = shape.members?.[key]
        if (member === undefined) bad(`unknown member ${key}`)
        else if (v !== null) problems = problems.concat(check(member.shape, v, `${at}.${key}`))
      }
      break
    }
    case "list": {
      if (!Array.isArray(value)) return [`${at} (${name}): not a list`]
      if (shape.min !== undefined && value.length < shape.min) bad(`fewer than ${shape.min} items`)
      if (shape.max !== undefined && value.length > shape.max) bad(`more than ${shape.max} items`)
      value.forEach((v, i) => {
        problems = problems.concat(check(shape.member!.shape, v, `${at}[${i}]`))
      })
      break
    }
    case "map": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return [`${at} (${name}): not a map`]
      for (const [k, v] of Object.entries(value)) {
        problems = problems.concat(check(shape.key!.shape, k, `${at}{key}`), check(shape.value!.shape, v, `${at}.${k}`))
      }
      break
    }
    case "string": {
      if (typeof value !== "string") return [`${at} (${name}): not a string`]
      if (shape.enum !== undefined && !shape.enum.includes(value)) {
        bad(`${JSON.stringify(value)} is not one of ${shape.enum.join(", ")}`)
      }
      if (shape.min !== undefined && value.length < shape.min) bad(`shorter than ${shape.min}`)
      if (shape.max !== undefined && value.length > shape.max) bad(`longer than ${shape.max}`)
      break
    }
    case "integer":
    case "long": {
      if (typeof value !== "number" || !Number.isInteger(value)) return [`${at} (${name}): not an integer`]
      if (shape.min !== undefined && value < shape.min) bad(`below ${shape.min}`)
      if (shape.max !== undefined && value > shape.max) bad(`above ${shape.max}`)
      break
    }
    case "double":
    case "float":
      if (typeof value !== "number") bad("not a number")
      break
    case "boolean":
      if (typeof value !== "boolean") bad("not a boolean")
      break
    case "timestamp":
      if (typeof value !== "number" || !Number.isFinite(value)) bad("a timestamp is epoch seconds as a JSON number")
      break
    case "blob":
      if (typeof value !== "string") bad("not base64 text")
      break
    default:
      bad(`unhandled type ${shape.type}`)
  }
  return problems
}

/** The problems of one response of `operation` (HTTP `status`). */
export const checkResponse = (operation: string, status: number, response: unknown): Array<string> => {
  const op = operations[operation]
  if (op === undefined) return [`unknown operation ${operation}`]
  if (status === 200) return check(op.output!.shape, response, operation)
  const error = response as { __type?: unknown; message?: unknown }
  const allowed = [...(op.errors ?? []).map((e) => e.shape), ...commonErrors]
  const problems: Array<string> = []
  if (typeof error.__type !== "string" || !allowed.includes(error.__type)) {
    problems.push(
      `${operation}: error ${String(error.__type)} is not one the operation declares (${allowed.join(", ")})`
    )
  }
  if (typeof error.message !== "string") problems.push(`${operation}: an error needs a message`)
  if (Object.keys(error).some((k) => k !== "__type" && k !== "message")) {
    problems.push(`${operation}: extra error fields`)
  }
  return problems
}

/** The problems of one request body of `operation`. */
export const checkRequest = (operation: string, body: unknown): Array<string> => {
  const op = operations[operation]
  if (op === undefined) return [`unknown operation ${operation}`]
  return check(op.input!.shape, body, operation)
}
