/**
 * Targets: the places a plan runs. Core declares the shared fields and the `local` kind; each transport package
 * declares the schema of the kinds it serves (`ssh`, `ssm`, ...) with {@link make}, and decoders take the list of
 * kinds they accept, so a new transport needs no change here.
 *
 * @since 0.1.0
 */
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/**
 * A target id: non-empty, no white space, unique within a plan.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TargetId = Schema.String.pipe(
  Schema.pattern(/^[^\s]+$/, { message: () => "a target id must be non-empty and contain no white space" })
)

/**
 * @since 0.1.0
 * @category schemas
 */
export const Os = Schema.Literal("linux", "windows")

/**
 * @since 0.1.0
 * @category models
 */
export type Os = typeof Os.Type

/**
 * @since 0.1.0
 * @category schemas
 */
export const Labels = Schema.Record({ key: Schema.String, value: Schema.String })

/**
 * The fields every target has.
 *
 * @since 0.1.0
 * @category schemas
 */
export const baseFields = {
  id: TargetId,
  labels: Schema.optionalWith(Labels, { default: () => ({}) }),
  os: Schema.optionalWith(Os, { default: () => "linux" as const }),
  /** Extra environment for every execution on this target (the job's own `env` wins on a clash). */
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  /** This target's own `onControllerLoss`, over the policy's (`ExecutionPolicy.forTarget`). */
  onControllerLoss: Schema.optional(Schema.Literal("terminate", "continue"))
}

/**
 * What the Runner and sinks know of any target.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  readonly kind: string
  readonly id: string
  readonly labels: { readonly [key: string]: string }
  readonly os: Os
  /** Extra environment for every execution on this target (the job's own `env` wins on a clash). */
  readonly env?: { readonly [name: string]: string } | undefined
  /** This target's own `onControllerLoss`, over the policy's (`ExecutionPolicy.forTarget`). */
  readonly onControllerLoss?: "terminate" | "continue" | undefined
}

/**
 * A target kind's schema, as a transport package declares it.
 *
 * @since 0.1.0
 * @category models
 */
export type TargetSchema = Schema.Schema.AnyNoContext

/**
 * Declares a target kind: `kind` is the discriminator used in inventories (`kind: ssh`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Kind extends string, Fields extends Schema.Struct.Fields>(kind: Kind, fields: Fields) =>
  Schema.Struct({ kind: Schema.Literal(kind), ...baseFields, ...fields })

/**
 * The local machine (the embedded default). One machine may be many targets, each with its own labels.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Local = make("local", {})

/**
 * @since 0.1.0
 * @category models
 */
export type Local = typeof Local.Type

/**
 * @since 0.1.0
 * @category constructors
 */
export const local = (id = "local", labels: Record<string, string> = {}): Local => ({
  kind: "local",
  id,
  labels,
  os: process.platform === "win32" ? "windows" : "linux"
})

/**
 * A schema accepting any of the given kinds, with an error that names the known kinds for an unknown one.
 *
 * @since 0.1.0
 * @category schemas
 */
export const union = (kinds: ReadonlyArray<TargetSchema>): Schema.Schema<Target, unknown> => {
  const byKind = new Map<string, TargetSchema>()
  for (const schema of kinds) {
    const ast = Schema.typeSchema(schema).ast
    const kind = kindOf(ast)
    if (kind !== undefined) byKind.set(kind, schema)
  }
  const known = [...byKind.keys()].sort().join(", ")
  return Schema.declare(
    [],
    {
      decode: () => (input, options, ast) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) {
          return ParseResult.fail(new ParseResult.Type(ast, input, "a target must be an object with a `kind`"))
        }
        const kind = (input as { kind?: unknown }).kind
        const schema = typeof kind === "string" ? byKind.get(kind) : undefined
        if (schema === undefined) {
          return ParseResult.fail(
            new ParseResult.Type(
              ast,
              kind,
              `unknown target kind ${
                JSON.stringify(kind)
              }; known kinds: ${known} (install and add the transport for it)`
            )
          )
        }
        return ParseResult.decodeUnknown(schema)(input, options)
      },
      encode: () => (input, options) => {
        const schema = byKind.get((input as Target).kind)
        return schema === undefined
          ? ParseResult.succeed(input)
          : ParseResult.encodeUnknown(schema)(input, options)
      }
    },
    { identifier: "Target", description: `a target of kind ${known}` }
  ) as unknown as Schema.Schema<Target, unknown>
}

const kindOf = (ast: import("effect/SchemaAST").AST): string | undefined => {
  if (ast._tag !== "TypeLiteral") return undefined
  const prop = ast.propertySignatures.find((p) => p.name === "kind")
  if (prop === undefined || prop.type._tag !== "Literal") return undefined
  return typeof prop.type.literal === "string" ? prop.type.literal : undefined
}
