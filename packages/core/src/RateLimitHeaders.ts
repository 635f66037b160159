/**
 * Parsers for providers' rate-limit headers: `retry-after`, `retry-after-ms`, OpenAI's
 * `x-ratelimit-*` (with its `6m0s` / `20ms` reset format) and Anthropic's
 * `anthropic-ratelimit-*` (RFC 3339 reset instants).
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * What the provider said about its limits on one response. Durations are milliseconds
 * from the moment the response was received.
 * @category models @since 0.1.0
 */
export const RateLimitInfo = Schema.Struct({
  limitRequests: Schema.optionalKey(Schema.Number),
  remainingRequests: Schema.optionalKey(Schema.Number),
  resetRequestsMillis: Schema.optionalKey(Schema.Number),
  limitTokens: Schema.optionalKey(Schema.Number),
  remainingTokens: Schema.optionalKey(Schema.Number),
  resetTokensMillis: Schema.optionalKey(Schema.Number),
  limitInputTokens: Schema.optionalKey(Schema.Number),
  remainingInputTokens: Schema.optionalKey(Schema.Number),
  resetInputTokensMillis: Schema.optionalKey(Schema.Number),
  limitOutputTokens: Schema.optionalKey(Schema.Number),
  remainingOutputTokens: Schema.optionalKey(Schema.Number),
  resetOutputTokensMillis: Schema.optionalKey(Schema.Number),
  retryAfterMillis: Schema.optionalKey(Schema.Number)
})
/** @category models @since 0.1.0 */
export type RateLimitInfo = { -readonly [K in keyof typeof RateLimitInfo.Type]: (typeof RateLimitInfo.Type)[K] }

/** Anything that can answer a header lookup: a `Headers`, a plain record, a Map. @category models @since 0.1.0 */
export type HeaderSource =
  | { get(name: string): string | null | undefined }
  | Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

const header = (headers: HeaderSource, name: string): string | undefined => {
  if (typeof (headers as { get?: unknown }).get === "function") {
    const value = (headers as { get(name: string): string | null | undefined }).get(name)
    return value === null || value === undefined ? undefined : value
  }
  const record = headers as Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  const value = record[name] ?? record[name.toLowerCase()]
  if (value === undefined) {
    const key = Object.keys(record).find((k) => k.toLowerCase() === name)
    if (key === undefined) return undefined
    const found = record[key]
    return typeof found === "string" ? found : found?.[0]
  }
  return typeof value === "string" ? value : value[0]
}

/**
 * The source as a `get` lookup, made once per parse: a plain record (Node's headers) is read
 * by key, and a name it lacks is looked up in an index of its keys in lower case, built on the
 * first miss (a response without rate-limit headers misses every name: once per name this
 * listed and lower-cased all its keys).
 */
const lookup = (headers: HeaderSource): { get(name: string): string | null | undefined } => {
  if (typeof (headers as { get?: unknown }).get === "function") return headers as { get(name: string): string | null | undefined }
  const record = headers as Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  let lower: Map<string, string> | undefined
  return {
    get: (name) => {
      let value = record[name]
      if (value === undefined) {
        if (lower === undefined) {
          lower = new Map()
          for (const key of Object.keys(record)) {
            const folded = key.toLowerCase()
            if (!lower.has(folded)) lower.set(folded, key)
          }
        }
        const key = lower.get(name.toLowerCase())
        value = key === undefined ? undefined : record[key]
      }
      return value === undefined ? undefined : typeof value === "string" ? value : value[0]
    }
  }
}

const unitMillis: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Parses a Go-style duration as OpenAI sends it in `x-ratelimit-reset-*`: `"6m0s"`,
 * `"20ms"`, `"1s"`, `"0.5s"`, `"1h2m3.5s"`; a bare number is seconds.
 * Returns milliseconds, or `undefined` when the text is not a duration.
 * @category parsers @since 0.1.0
 */
export const parseDurationMillis = (text: string): number | undefined => {
  const trimmed = text.trim()
  if (trimmed.length === 0) return undefined
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000
  const pattern = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy
  let total = 0
  let consumed = 0
  for (const match of trimmed.matchAll(pattern)) {
    total += Number(match[1]) * unitMillis[match[2]!]!
    consumed += match[0].length
  }
  return consumed === trimmed.length && consumed > 0 ? total : undefined
}

/**
 * Parses `retry-after-ms` (milliseconds) or `retry-after` (seconds or an HTTP date),
 * preferring the millisecond header. `now` is epoch milliseconds (for the date form).
 * @category parsers @since 0.1.0
 */
export const parseRetryAfterMillis = (source: HeaderSource, now: number): number | undefined => {
  const headers = lookup(source)
  const millis = header(headers, "retry-after-ms")
  if (millis !== undefined) {
    const value = Number(millis)
    if (Number.isFinite(value) && value >= 0) return value
  }
  const retryAfter = header(headers, "retry-after")
  if (retryAfter === undefined) return undefined
  const seconds = Number(retryAfter)
  if (retryAfter.trim() !== "" && Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const date = Date.parse(retryAfter)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const numberHeader = (headers: HeaderSource, name: string): number | undefined => {
  const value = header(headers, name)
  if (value === undefined) return undefined
  const parsed = Number(value)
  return Number.isFinite(parsed) ? parsed : undefined
}

const instantHeader = (headers: HeaderSource, name: string, now: number): number | undefined => {
  const value = header(headers, name)
  if (value === undefined) return undefined
  const date = Date.parse(value)
  if (!Number.isNaN(date)) return Math.max(0, date - now)
  return parseDurationMillis(value)
}

const set = <K extends keyof RateLimitInfo>(info: RateLimitInfo, key: K, value: RateLimitInfo[K] | undefined) => {
  if (value !== undefined) info[key] = value
}

/**
 * Parses OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and the
 * retry-after headers. Returns `undefined` when none is present.
 * @category parsers @since 0.1.0
 */
export const parseOpenAi = (source: HeaderSource, now: number): RateLimitInfo | undefined => {
  const headers = lookup(source)
  const info: RateLimitInfo = {}
  set(info, "limitRequests", numberHeader(headers, "x-ratelimit-limit-requests"))
  set(info, "remainingRequests", numberHeader(headers, "x-ratelimit-remaining-requests"))
  const resetRequests = header(headers, "x-ratelimit-reset-requests")
  set(info, "resetRequestsMillis", resetRequests === undefined ? undefined : parseDurationMillis(resetRequests))
  set(info, "limitTokens", numberHeader(headers, "x-ratelimit-limit-tokens"))
  set(info, "remainingTokens", numberHeader(headers, "x-ratelimit-remaining-tokens"))
  const resetTokens = header(headers, "x-ratelimit-reset-tokens")
  set(info, "resetTokensMillis", resetTokens === undefined ? undefined : parseDurationMillis(resetTokens))
  set(info, "retryAfterMillis", parseRetryAfterMillis(headers, now))
  return Object.keys(info).length === 0 ? undefined : info
}

/**
 * Parses Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
 * (reset is an RFC 3339 instant) and `retry-after`. Returns `undefined` when none is present.
 * @category parsers @since 0.1.0
 */
export const parseAnthropic = (source: HeaderSource, now: number): RateLimitInfo | undefined => {
  const headers = lookup(source)
  const info: RateLimitInfo = {}
  const p = "anthropic-ratelimit-"
  set(info, "limitRequests", numberHeader(headers, `${p}requests-limit`))
  set(info, "remainingRequests", numberHeader(headers, `${p}requests-remaining`))
  set(info, "resetRequestsMillis", instantHeader(headers, `${p}requests-reset`, now))
  set(info, "limitTokens", numberHeader(headers, `${p}tokens-limit`))
  set(info, "remainingTokens", numberHeader(headers, `${p}tokens-remaining`))
  set(info, "resetTokensMillis", instantHeader(headers, `${p}tokens-reset`, now))
  set(info, "limitInputTokens", numberHeader(headers, `${p}input-tokens-limit`))
  set(info, "remainingInputTokens", numberHeader(headers, `${p}input-tokens-remaining`))
  set(info, "resetInputTokensMillis", instantHeader(headers, `${p}input-tokens-reset`, now))
  set(info, "limitOutputTokens", numberHeader(headers, `${p}output-tokens-limit`))
  set(info, "remainingOutputTokens", numberHeader(headers, `${p}output-tokens-remaining`))
  set(info, "resetOutputTokensMillis", instantHeader(headers, `${p}output-tokens-reset`, now))
  set(info, "retryAfterMillis", parseRetryAfterMillis(headers, now))
  return Object.keys(info).length === 0 ? undefined : info
}

/**
 * Parses whichever family of headers is present (OpenAI's, Anthropic's, or only retry-after).
 * @category parsers @since 0.1.0
 */
export const parse = (source: HeaderSource, now: number): RateLimitInfo | undefined => {
  const headers = lookup(source)
  return header(headers, "anthropic-ratelimit-requests-limit") !== undefined ||
      header(headers, "anthropic-ratelimit-tokens-limit") !== undefined ||
      header(headers, "anthropic-ratelimit-input-tokens-limit") !== undefined
    ? parseAnthropic(headers, now)
    : parseOpenAi(headers, now)
}
