/**
 * The budget windows of a limiter and their pacing over the `RateLimiter` token bucket.
 *
 * Every budget is "at most `limit` in ANY window of `windowMillis`" (what a provider's
 * sliding-window log enforces, and stricter than its token bucket). On the RateLimiter's
 * token bucket that means no burst: a request window refills one request every
 * window / limit, and a token window holds at most the current call's cost and refills
 * at (limit - largest cost seen) / window, so the call straddling a window edge still fits.
 * @internal
 */
import { LlmError } from "@hasten/core"
import { Duration, Effect } from "effect"
import type { RateLimiter } from "effect/persistence"
import type { Resolved } from "../Options.js"

/** One budget: `limit` units per `windowMillis`. */
export interface Window {
  readonly name:
    | "requests_per_second"
    | "requests_per_minute"
    | "tokens"
    | "input_tokens"
    | "output_tokens"
    | "provider_requests"
    | "provider_tokens"
    | "provider_input_tokens"
    | "provider_output_tokens"
  readonly unit: "request" | "total" | "input" | "output"
  /** The budget per `windowMillis`. */
  readonly limit: number
  readonly windowMillis: number
  /** `configured`: set by the user (a hard cap); `assumed`: the seeds' default until the provider states its limits; `learnt`: from the provider's headers. */
  readonly source: "configured" | "assumed" | "learnt"
}

/** The windows a key starts with: the budgets the user set, and the seeds' defaults for the dimensions left unset. */
export const initial = (options: Resolved): ReadonlyArray<Window> => {
  const windows: Array<Window> = []
  const requests = options.configured.requests ? "configured" : "assumed"
  const tokens = options.configured.tokens ? "configured" : "assumed"
  if (Number.isFinite(options.requestsPerSecond)) {
    windows.push({ name: "requests_per_second", unit: "request", limit: options.requestsPerSecond, windowMillis: 1000, source: requests })
  }
  if (Number.isFinite(options.requestsPerMinute)) {
    windows.push({
      name: "requests_per_minute",
      unit: "request",
      limit: options.requestsPerMinute,
      windowMillis: options.requestWindowMillis,
      source: requests
    })
  }
  if (Number.isFinite(options.tokensPerMinute)) {
    windows.push({ name: "tokens", unit: "total", limit: options.tokensPerMinute, windowMillis: options.tokenWindowMillis, source: tokens })
  }
  if (Number.isFinite(options.inputTokensPerMinute)) {
    windows.push({
      name: "input_tokens",
      unit: "input",
      limit: options.inputTokensPerMinute,
      windowMillis: options.tokenWindowMillis,
      source: tokens
    })
  }
  if (Number.isFinite(options.outputTokensPerMinute)) {
    windows.push({
      name: "output_tokens",
      unit: "output",
      limit: options.outputTokensPerMinute,
      windowMillis: options.tokenWindowMillis,
      source: tokens
    })
  }
  return windows
}

/** What a call of `input` + `output` tokens costs in a window's unit. */
export const tokensOf = (unit: Window["unit"], input: number, output: number) =>
  unit === "request" ? 1 : unit === "total" ? input + output : unit === "input" ? input : output

/** A store failure as the `LlmError` a call fails with. */
export const storeError = (provider: string) => (error: RateLimiter.RateLimiterError) =>
  LlmError.make(provider, new LlmError.Transport({ description: `rate-limit store: ${error.message}` }))

/** How calls take from a key's windows (which differ per key once budgets are learnt). */
export const make = (options: Resolved, limiter: RateLimiter.RateLimiter) => {
  const largest = new Map<string, number>()
  /** The RateLimiter arguments (capacity and the window that gives the pacing rate) for a call. */
  const bucketOf = (
    window: Window,
    windowKey: string,
    tokens: number,
    admission: boolean
  ): { readonly limit: number; readonly window: Duration.Duration } => {
    const budget = window.limit * (1 - options.safetyMargin)
    if (window.unit === "request") {
      const extra = Math.floor(budget * options.catchUp)
      const perMillis = (budget - extra) / window.windowMillis
      return { limit: 1 + extra, window: Duration.millis((1 + extra) / perMillis) }
    }
    const extra = budget * options.catchUp
    const cost = Math.max(1, Math.abs(tokens))
    const seen = admission ? Math.max(largest.get(windowKey) ?? 0, tokens) : largest.get(windowKey) ?? cost
    largest.set(windowKey, seen)
    const perMillis = Math.max(budget - seen - extra, budget * 0.05) / window.windowMillis
    return { limit: cost + extra, window: Duration.millis((cost + extra) / perMillis) }
  }
  /** Takes `tokens` from a window of `key` (negative: gives them back). */
  const consume = (window: Window, key: string, tokens: number, admission: boolean, onExceeded: "delay" | "fail") => {
    const windowKey = `${key}:${window.name}`
    const bucket = bucketOf(window, windowKey, tokens, admission)
    return Effect.map(
      limiter.consume({ algorithm: "token-bucket", onExceeded, key: windowKey, tokens, ...bucket }),
      (result) => ({ ...result, bucket, windowKey })
    )
  }

  /**
   * A lease for the fast path (`fast.ts`): the call's `tokens` plus a quarter of the bucket's
   * spare room, taken in one consume that fails rather than waits. `undefined` when the
   * bucket has no room for a lease of at least one more such call, or refuses it now.
   * `validMillis`: the time the bucket needs to refill the lease at its steady rate.
   */
  const lease = (window: Window, key: string, tokens: number) =>
    Effect.suspend(() => {
      const windowKey = `${key}:${window.name}`
      const bucket = bucketOf(window, windowKey, tokens, true)
      const extra = Math.floor((bucket.limit - tokens) / 4)
      if (extra < tokens) return Effect.succeed(undefined)
      const units = tokens + extra
      return Effect.clockWith((clock) =>
        limiter.consume({ algorithm: "token-bucket", onExceeded: "fail", key: windowKey, tokens: units, ...bucket }).pipe(
          Effect.map(() => ({
            units,
            at: clock.currentTimeMillisUnsafe(),
            validMillis: (extra * Duration.toMillis(bucket.window)) / bucket.limit
          })),
          Effect.catchReason("RateLimiterError", "RateLimitExceeded", () => Effect.succeed(undefined))
        )
      )
    })

  /** Refunds (negative) or charges (positive) token windows; a refund never fills a bucket past one call's worth. */
  const adjust = (windows: ReadonlyArray<Window>, key: string, provider: string, input: number, output: number, requests = 0) =>
    Effect.forEach(windows, (window) =>
      Effect.gen(function*() {
        const tokens = window.unit === "request" ? requests : tokensOf(window.unit, input, output)
        if (tokens === 0) return
        const result = yield* consume(window, key, tokens, false, "delay")
        const cap = window.unit === "request"
          ? result.bucket.limit
          : (largest.get(result.windowKey) ?? result.bucket.limit) + window.limit * (1 - options.safetyMargin) * options.catchUp
        if (tokens < 0 && result.remaining > cap) {
          yield* limiter.consume({
            algorithm: "token-bucket",
            onExceeded: "delay",
            key: result.windowKey,
            limit: result.bucket.limit,
            window: result.bucket.window,
            tokens: result.remaining - cap
          })
        }
      }).pipe(Effect.mapError(storeError(provider))), { discard: true })

  return { consume, adjust, lease }
}

/** The windows of one limiter. */
export type Windows = ReturnType<typeof make>
