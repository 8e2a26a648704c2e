/**
 * The secrets canary's tools: every log line and span of an effect recorded as text, and one check that no form of
 * a secret appears in any of the channels a test gathered (report, errors, output files, request bodies...).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Tracer from "effect/Tracer"
import { AssertionError } from "node:assert"

/** @internal */
export interface Telemetry {
  /** Each log line: level, message, annotations, spans and cause. */
  readonly logs: ReadonlyArray<string>
  /** Each span's name, attributes, events, links and the cause it ended with. */
  readonly spans: ReadonlyArray<string>
}

// errors as their message and own fields (JSON.stringify gives `{}` for an Error), failures with their pretty cause
const errorsAsData = (_: string, v: unknown): unknown =>
  typeof v === "bigint"
    ? String(v)
    : v instanceof Error
    ? { name: v.name, message: v.message, ...Object.fromEntries(Object.entries(v)) }
    : v

const show = (u: unknown): string => {
  if (typeof u === "string") return u
  const pretty = Exit.isExit(u) && Exit.isFailure(u)
    ? Cause.pretty(u.cause, { renderErrorCause: true }) + "\n"
    : Cause.isCause(u)
    ? Cause.pretty(u, { renderErrorCause: true }) + "\n"
    : ""
  try {
    return pretty + (JSON.stringify(u, errorsAsData) ?? String(u))
  } catch {
    return pretty + String(u)
  }
}

/** @internal */
export const recordTelemetry = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<readonly [Exit.Exit<A, E>, Telemetry], never, R> =>
  Effect.flatMap(Effect.tracer, (base) => {
    const logs: Array<string> = []
    const spans: Array<string> = []
    const tracer = Tracer.make({
      span: (name, parent, context, links, startTime, kind, options) => {
        const span = base.span(name, parent, context, links, startTime, kind, options)
        spans.push(`${name} links=${show(links.map((l) => l.attributes))}`)
        const attribute = span.attribute.bind(span)
        span.attribute = (key, value) => {
          spans.push(`${name} ${key}=${show(value)}`)
          attribute(key, value)
        }
        const event = span.event.bind(span)
        span.event = (n, t, a) => {
          spans.push(`${name} event ${n} ${show(a ?? {})}`)
          event(n, t, a)
        }
        const end = span.end.bind(span)
        span.end = (t, exit) => {
          if (exit._tag === "Failure") {
            spans.push(`${name} failed ${Cause.pretty(exit.cause, { renderErrorCause: true })}`)
          }
          end(t, exit)
        }
        return span
      },
      context: base.context
    })
    const logger = Logger.make(({ annotations, cause, logLevel, message, spans: logSpans }) => {
      logs.push(
        `${logLevel.label} ${show(message)} ${show([...annotations])} ${show([...logSpans].map((s) => s.label))}` +
          (Cause.isEmpty(cause) ? "" : ` ${Cause.pretty(cause, { renderErrorCause: true })}`)
      )
    })
    return effect.pipe(
      Effect.exit,
      Effect.withTracer(tracer),
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Logger.withMinimumLogLevel(LogLevel.All),
      Effect.map((exit) => [exit, { logs, spans }] as const)
    )
  })

/** @internal */
export const leakForms = (secret: string): ReadonlyArray<string> => {
  const base64 = Buffer.from(secret, "utf8").toString("base64")
  const forms = [
    secret,
    JSON.stringify(secret).slice(1, -1),
    encodeURIComponent(secret),
    base64.replace(/=+$/, ""),
    Buffer.from(secret, "utf8").toString("hex"),
    Buffer.from(secret, "utf16le").toString("base64").replace(/=+$/, "")
  ]
  // short secrets would match by chance in the encoded forms' noise
  return [...new Set(forms)].filter((f) => f.length >= 6)
}

/** @internal */
export const assertNoLeak = (secrets: ReadonlyArray<string>, channels: Record<string, unknown>): void => {
  for (const [channel, value] of Object.entries(channels)) {
    const text = Array.isArray(value) ? value.map(show).join("\n") : show(value)
    for (const secret of secrets) {
      for (const form of leakForms(secret)) {
        const at = text.indexOf(form)
        if (at >= 0) {
          throw new AssertionError({
            message: `a secret leaked into ${channel} (as ${form === secret ? "is" : "an encoded form"}): ` +
              `…${text.slice(Math.max(0, at - 40), at).replaceAll(form, "<secret>")}<secret>…`
          })
        }
      }
    }
  }
}
