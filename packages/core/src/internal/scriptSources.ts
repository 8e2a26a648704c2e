/**
 * The body of the `ScriptSources` service: the built-in `file`, `http` and `https` schemes, the resolvers
 * registered by layers, and how a `File` or `Url` source becomes the `Script` transports receive.
 *
 * @internal
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { fileURLToPath } from "node:url"
import { InvalidPlan } from "../InvalidPlan.js"
import * as ScriptSource from "../ScriptSource.js"
import type * as ScriptSources from "../ScriptSources.js"
import * as Collection from "./collection.js"

const invalid = (reason: InvalidPlan["reason"], path: string, description: string) =>
  new InvalidPlan({ reason, path, description })

/**
 * Reads a local file of the plan (`what`: how messages call it), `FileUnreadable` at `at` if it cannot.
 *
 * @internal
 */
export const readLocal = (path: string, at: string, what = "file"): Effect.Effect<Uint8Array, InvalidPlan> =>
  Effect.gen(function*() {
    const fs = yield* Effect.serviceOption(FileSystem.FileSystem)
    if (Option.isNone(fs)) {
      return yield* invalid("FileUnreadable", at, `reading a ${what} needs a FileSystem layer (e.g. NodeContext.layer)`)
    }
    return yield* fs.value.readFile(path).pipe(
      Effect.mapError((e) => invalid("FileUnreadable", at, `cannot read ${what} ${path}: ${e.message}`))
    )
  })

const fetchHttp = (url: string, at: string): Effect.Effect<Uint8Array, InvalidPlan> =>
  Effect.gen(function*() {
    const client = yield* Effect.serviceOption(HttpClient.HttpClient)
    if (Option.isNone(client)) {
      return yield* invalid(
        "FetchFailed",
        at,
        "fetching a script url needs an HttpClient layer (e.g. FetchHttpClient.layer)"
      )
    }
    const fetchFailed = (why: string) => invalid("FetchFailed", at, `cannot fetch ${url}: ${why}`)
    const body = yield* client.value.get(url).pipe(
      Effect.mapError((e) => fetchFailed(e.message)),
      Effect.flatMap((r) =>
        r.status >= 200 && r.status < 300
          ? Effect.mapError(r.arrayBuffer, (e) => fetchFailed(e.message))
          : Effect.fail(fetchFailed(`HTTP status ${r.status}`))
      ),
      Effect.scoped
    )
    return new Uint8Array(body)
  })

/**
 * The schemes every `ScriptSources` serves (a resolver registered for one of them replaces it): `file` (local
 * paths and `file://` urls, with a FileSystem layer) and `http`/`https` (with an HttpClient layer).
 *
 * @internal
 */
export const builtIn: ReadonlyArray<ScriptSources.Resolver> = [
  {
    scheme: "file",
    fetch: ({ field, location }) =>
      readLocal(location.startsWith("file://") ? fileURLToPath(location) : location, field, "script file")
  },
  { scheme: "http", fetch: ({ field, location }) => fetchHttp(location, field) },
  { scheme: "https", fetch: ({ field, location }) => fetchHttp(location, field) }
]

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//

/**
 * The scheme of a location: `s3` for `s3://bucket/key`; `file` for a path without one.
 *
 * @internal
 */
export const schemeOf = (location: string): string => SCHEME.exec(location)?.[1]?.toLowerCase() ?? "file"

const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")

/** @internal */
export const sha256 = (bytes: Uint8Array): Effect.Effect<string> =>
  Effect.map(Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", bytes)), (d) => hex(new Uint8Array(d)))

/** @internal */
export const make = (
  parent: Option.Option<ScriptSources.ScriptSources.Service>
): ScriptSources.ScriptSources.Service => {
  const registered = Collection.make<ScriptSources.Resolver>(Option.map(parent, (p) => p.resolvers))
  // the last registered wins: a layer nearer the program overrides an enclosing one and the built-ins
  const resolvers = () => [...builtIn, ...registered.items()]
  const find = (scheme: string) => {
    const all = resolvers()
    for (let i = all.length - 1; i >= 0; i--) if (all[i]!.scheme === scheme) return all[i]
    return undefined
  }
  const schemes = () => [...new Set(resolvers().map((r) => r.scheme))].sort()
  const fetch = (location: string, field: string) => {
    const scheme = schemeOf(location)
    const resolver = find(scheme)
    if (resolver === undefined) {
      return Effect.fail(invalid(
        "InvalidValue",
        field,
        `no script source serves the scheme ${JSON.stringify(scheme)} of ${location} (known: ${
          schemes().join(", ")
        }); provide the layer of the package that serves it (ScriptSources.layer), or give a local path or an https url. Nothing was run.`
      ))
    }
    return Effect.map(
      resolver.fetch({ location, field }),
      (content) => typeof content === "string" ? new TextEncoder().encode(content) : content
    )
  }
  const toScript = (bytes: Uint8Array, interpreter: ScriptSource.Interpreter | undefined) => {
    const text = new TextDecoder().decode(bytes)
    return new ScriptSource.Script({ text, interpreter: interpreter ?? ScriptSource.interpreterFromShebang(text) })
  }
  const resolve = (
    source: ScriptSource.ScriptSource,
    field = "job.source"
  ): Effect.Effect<ScriptSource.ResolvedSource, InvalidPlan> => {
    switch (source._tag) {
      case "Command":
      case "Script":
      case "Native":
        return Effect.succeed(source)
      case "File": {
        const scheme = schemeOf(source.path)
        if (scheme === "http" || scheme === "https") {
          return Effect.fail(invalid(
            "InvalidValue",
            `${field}.path`,
            `a script fetched over ${scheme} is run only once checked: give ${source.path} as a Url source with its sha256 (sha256sum of the script). Nothing was run.`
          ))
        }
        return Effect.map(fetch(source.path, `${field}.path`), (bytes) => toScript(bytes, source.interpreter))
      }
      case "Url":
        return Effect.gen(function*() {
          const bytes = yield* fetch(source.url, `${field}.url`)
          const digest = yield* sha256(bytes)
          if (digest !== source.sha256.toLowerCase()) {
            return yield* invalid(
              "ChecksumMismatch",
              `${field}.sha256`,
              `the script at ${source.url} has sha256 ${digest}, expected ${source.sha256.toLowerCase()}; nothing was run`
            )
          }
          return toScript(bytes, source.interpreter)
        })
    }
  }
  return { resolve, schemes, resolvers: registered.items, register: registered.add }
}
