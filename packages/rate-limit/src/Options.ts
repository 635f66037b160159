/**
 * The limiter's options: budgets, retry policy and behaviour switches, their defaults and
 * their validation.
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import type { Redacted } from "effect"
import type * as Estimator from "./Estimator.js"
import type * as IoRedis from "./IoRedis.js"

/**
 * Budgets and retry policy. Every budget applies per key (provider + model + API-key
 * hash); an omitted optional budget is not enforced.
 * @category models @since 0.1.0
 */
export interface Options {
  /** Calls in flight per key (`MAX_CONCURRENCY`, default 2); AIMD moves between 1 and this. */
  readonly maxConcurrency?: number | undefined
  /** Requests per second (`RPS_LIMIT`, default 2); `Infinity` disables it. */
  readonly requestsPerSecond?: number | undefined
  /** Requests per minute (`RPM_LIMIT`), enforced together with the per-second budget. */
  readonly requestsPerMinute?: number | undefined
  /** Tokens per minute, input + output (`TPM_LIMIT`, default 120000); `Infinity` disables it. */
  readonly tokensPerMinute?: number | undefined
  /** Input tokens per minute (Anthropic-style ITPM). */
  readonly inputTokensPerMinute?: number | undefined
  /** Output tokens per minute (Anthropic-style OTPM). */
  readonly outputTokensPerMinute?: number | undefined
  /**
   * Fraction of every budget kept in reserve against clock and network jitter (default
   * 0.01): a limit of 600 per minute is paced at 594.
   */
  readonly safetyMargin?: number | undefined
  /**
   * Fraction of a budget the pacer may send back to back to catch up after a late wake-up
   * (a busy event loop), default 0.01; the steady pace is lowered by the same amount, so no
   * window ever holds more than the budget.
   */
  readonly catchUp?: number | undefined
  /**
   * How the provider charges tokens: `usage` (default) reconciles the reservation with the
   * reported usage, refunding or charging the difference; `reserved` keeps the whole
   * reservation (prompt + maxTokens), as OpenAI documents its TPM limiter and the testkit
   * simulator enforces it. A failed call's tokens are refunded either way; its request is not
   * (providers count unsuccessful requests against the request window).
   */
  readonly tokenAccounting?: "usage" | "reserved" | undefined
  /** The window of `requestsPerMinute` in milliseconds (default 60000; for providers or simulators with other windows). */
  readonly requestWindowMillis?: number | undefined
  /** The window of the token budgets in milliseconds (default 60000). */
  readonly tokenWindowMillis?: number | undefined
  /** `RETRIES_ENABLED` (default true). */
  readonly retriesEnabled?: boolean | undefined
  /** `MAX_RETRIES` (default 6): retries after the first attempt. */
  readonly maxRetries?: number | undefined
  /** `RETRY_BASE_MS` (default 500): the decorrelated-jitter base. */
  readonly retryBaseMillis?: number | undefined
  /** `RETRY_CAP_MS` (default 30000): the longest jittered backoff. */
  readonly retryCapMillis?: number | undefined
  /** `RETRY_AFTER_CAP_MS` (default 60000): the longest `retry-after` honoured. */
  readonly retryAfterCapMillis?: number | undefined
  /** Counts a request's prompt tokens before it is sent (default `Estimator.openAi`). */
  readonly estimator?: Estimator.Estimator | undefined
  /** Output tokens reserved for a request without `maxTokens` (default 256). */
  readonly defaultMaxTokens?: number | undefined
  /** The API key the calls use: only its hash enters the budget key. */
  readonly apiKey?: Redacted.Redacted<string> | string | undefined
  /** Replaces the provider name in budget keys (share one budget between two `Llm`s). */
  readonly scope?: string | undefined
  /** Adaptive concurrency: halve on 429/overload, +1 per window of successes (default true). */
  readonly adaptiveConcurrency?: boolean | undefined
  /** Hold a key until reset when the provider's headers say a budget is spent (default true). */
  readonly learnFromHeaders?: boolean | undefined
  /** Circuit breaker on consecutive 5xx/overloads (default `{ failures: 5, openMillis: 5000 }`), or `false`. */
  readonly circuitBreaker?: false | { readonly failures?: number | undefined; readonly openMillis?: number | undefined } | undefined
  /** Append every wait and backoff event to this file (`true` = `logs/rate_limit.log`). */
  readonly logFile?: string | boolean | undefined
  /** Seed for the jitter's randomness (default: the fiber's `Random`, which `Random.withSeed` controls). */
  readonly seed?: string | number | undefined
  /** Share budgets between processes through Redis (`RateLimiter.layerStoreRedis`). */
  readonly redis?: IoRedis.Options | undefined
  /** Key prefix in Redis (default `hasten:ratelimit:`). */
  readonly redisPrefix?: string | undefined
}

/** Options with every default applied and validated. @category models @since 0.1.0 */
export interface Resolved {
  readonly maxConcurrency: number
  readonly requestsPerSecond: number
  readonly requestsPerMinute: number
  readonly tokensPerMinute: number
  readonly inputTokensPerMinute: number
  readonly outputTokensPerMinute: number
  readonly requestWindowMillis: number
  readonly tokenWindowMillis: number
  readonly safetyMargin: number
  readonly catchUp: number
  readonly tokenAccounting: "usage" | "reserved"
  readonly retriesEnabled: boolean
  readonly maxRetries: number
  readonly retryBaseMillis: number
  readonly retryCapMillis: number
  readonly retryAfterCapMillis: number
  readonly defaultMaxTokens: number
  readonly adaptiveConcurrency: boolean
  readonly learnFromHeaders: boolean
  readonly circuitBreaker: false | { readonly failures: number; readonly openMillis: number }
  readonly logFile: string | undefined
}

/** Options that fail validation (`layer` dies with it; `layerConfig` reports a `ConfigError`). @category errors @since 0.1.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  message: Schema.String
}) {}

/**
 * Applies defaults and validates: positive budgets, non-negative retry settings.
 * @category constructors @since 0.1.0
 */
export const resolve = (options: Options): Effect.Effect<Resolved, InvalidOptions> =>
  Effect.suspend(() => {
    const problems: Array<string> = []
    const check = (name: string, value: number, rule: "positive" | "nonNegative" | "positiveInt" | "nonNegativeInt") => {
      const ok = rule === "positive"
        ? value > 0
        : rule === "nonNegative"
        ? value >= 0
        : rule === "positiveInt"
        ? Number.isInteger(value) && value >= 1
        : Number.isInteger(value) && value >= 0
      if (!ok || Number.isNaN(value)) {
        const wanted = rule === "positive" ? "> 0" : rule === "nonNegative" ? ">= 0" : rule === "positiveInt" ? "an integer >= 1" : "an integer >= 0"
        problems.push(`${name} must be ${wanted}, got ${value}`)
      }
      return value
    }
    const finiteOr = (value: number) => (value === Infinity ? Infinity : value)
    const breaker = options.circuitBreaker === false ? false as const : {
      failures: check("circuitBreaker.failures", options.circuitBreaker?.failures ?? 5, "positiveInt"),
      openMillis: check("circuitBreaker.openMillis", options.circuitBreaker?.openMillis ?? 5000, "positive")
    }
    const resolved: Resolved = {
      maxConcurrency: check("maxConcurrency", options.maxConcurrency ?? 2, "positiveInt"),
      requestsPerSecond: finiteOr(check("requestsPerSecond", options.requestsPerSecond ?? 2, "positive")),
      requestsPerMinute: check("requestsPerMinute", options.requestsPerMinute ?? Infinity, "positive"),
      tokensPerMinute: check("tokensPerMinute", options.tokensPerMinute ?? 120_000, "positive"),
      inputTokensPerMinute: check("inputTokensPerMinute", options.inputTokensPerMinute ?? Infinity, "positive"),
      outputTokensPerMinute: check("outputTokensPerMinute", options.outputTokensPerMinute ?? Infinity, "positive"),
      requestWindowMillis: check("requestWindowMillis", options.requestWindowMillis ?? 60_000, "positive"),
      tokenWindowMillis: check("tokenWindowMillis", options.tokenWindowMillis ?? 60_000, "positive"),
      safetyMargin: check("safetyMargin", options.safetyMargin ?? 0.01, "nonNegative"),
      catchUp: check("catchUp", options.catchUp ?? 0.01, "nonNegative"),
      tokenAccounting: options.tokenAccounting ?? "usage",
      retriesEnabled: options.retriesEnabled ?? true,
      maxRetries: check("maxRetries", options.maxRetries ?? 6, "nonNegativeInt"),
      retryBaseMillis: check("retryBaseMillis", options.retryBaseMillis ?? 500, "nonNegative"),
      retryCapMillis: check("retryCapMillis", options.retryCapMillis ?? 30_000, "nonNegative"),
      retryAfterCapMillis: check("retryAfterCapMillis", options.retryAfterCapMillis ?? 60_000, "nonNegative"),
      defaultMaxTokens: check("defaultMaxTokens", options.defaultMaxTokens ?? 256, "nonNegativeInt"),
      adaptiveConcurrency: options.adaptiveConcurrency ?? true,
      learnFromHeaders: options.learnFromHeaders ?? true,
      circuitBreaker: breaker,
      logFile: options.logFile === true ? "logs/rate_limit.log" : options.logFile === false ? undefined : options.logFile
    }
    if (resolved.safetyMargin >= 0.5) problems.push(`safetyMargin must be < 0.5, got ${resolved.safetyMargin}`)
    if (resolved.catchUp >= 0.5) problems.push(`catchUp must be < 0.5, got ${resolved.catchUp}`)
    if (resolved.retryCapMillis < resolved.retryBaseMillis) {
      problems.push(`retryCapMillis (${resolved.retryCapMillis}) must be >= retryBaseMillis (${resolved.retryBaseMillis})`)
    }
    return problems.length > 0
      ? Effect.fail(new InvalidOptions({ message: `invalid rate-limit options: ${problems.join("; ")}` }))
      : Effect.succeed(resolved)
  })
