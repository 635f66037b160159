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
 * hash). A budget you set is a hard cap that learning never raises. One you leave unset is
 * learnt from the provider's limit headers (requests and tokens per minute, as its
 * `RateLimitPolicy` reads them); until the provider states its limits the seeds' defaults
 * are assumed (2 requests per second, 120,000 tokens per minute, 2 calls in flight).
 * @category models @since 0.1.0
 */
export interface Options {
  /**
   * Calls in flight per key (`MAX_CONCURRENCY`); AIMD moves between 1 and this. Unset: 2
   * until the provider states its limits; then as many as its request rate needs at the
   * key's latency (twice Little's law), grown by slow start, at most `learntMaxConcurrency`.
   */
  readonly maxConcurrency?: number | undefined
  /** Requests per second (`RPS_LIMIT`; assumed 2 while no request budget is set or learnt); `Infinity` disables it. */
  readonly requestsPerSecond?: number | undefined
  /** Requests per minute (`RPM_LIMIT`), enforced together with the per-second budget. */
  readonly requestsPerMinute?: number | undefined
  /** Tokens per minute, input + output (`TPM_LIMIT`; assumed 120000 while no token budget is set or learnt); `Infinity` disables it. */
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
   * How the provider charges tokens: `usage` reconciles the reservation with the reported
   * usage, refunding or charging the difference; `reserved` keeps the whole reservation
   * (prompt + maxTokens), as OpenAI documents its TPM limiter. Default: what the provider's
   * `RateLimitPolicy` declares (`reserved` for OpenAI and for a backend that declares
   * nothing, `usage` for Anthropic's reconciled budgets).
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
  /** Output tokens reserved for a request without `maxTokens` (default: the provider policy's, else 256). */
  readonly defaultMaxTokens?: number | undefined
  /** The API key the calls use: only its hash enters the budget key. */
  readonly apiKey?: Redacted.Redacted<string> | string | undefined
  /** Replaces the provider name in budget keys (share one budget between two `Llm`s). */
  readonly scope?: string | undefined
  /** Adaptive concurrency: halve on 429/overload, +1 per window of successes (default true). */
  readonly adaptiveConcurrency?: boolean | undefined
  /**
   * Learn from the provider's headers (default true): budgets left unset become the limits
   * the headers state (and configured ones above them are lowered), and a key is held until
   * reset when the headers say a budget is spent.
   */
  readonly learnFromHeaders?: boolean | undefined
  /**
   * The most calls in flight per key once the provider has stated its limits, when
   * `maxConcurrency` is unset (default 1024); below it the ceiling is twice the stated
   * request rate × the key's recent latency.
   */
  readonly learntMaxConcurrency?: number | undefined
  /**
   * A fixed per-attempt deadline in milliseconds (`REQUEST_TIMEOUT_MS`); it replaces the
   * learnt one. A hung attempt is aborted and retried as a `Timeout`.
   */
  readonly requestTimeoutMillis?: number | undefined
  /**
   * The learnt per-attempt deadline: `multiple` (4) × the key's p99 latency per token ×
   * the attempt's `maxTokens`, within `[floorMillis (1000), capMillis (120000)]`,
   * `initialMillis` (30000) until five calls have succeeded; a stream must send its first
   * chunk within the same deadline and each next one within `idleMillis` (30000). `false`
   * turns deadlines off (the SDK's own timeout, 10 minutes for OpenAI, is all that is left).
   */
  readonly timeout?: false | {
    readonly multiple?: number | undefined
    readonly floorMillis?: number | undefined
    readonly capMillis?: number | undefined
    readonly initialMillis?: number | undefined
    readonly idleMillis?: number | undefined
  } | undefined
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
  /**
   * With `redis`: share each key's AIMD decreases, holds (spent-budget headers, a 429's
   * `retry-after`) and circuit-breaker trips with every process using the same Redis and
   * prefix (`RATE_LIMIT_FLEET_STATE`, default true). Published when they happen, never read
   * per call; while Redis does not answer, each process keeps its own.
   */
  readonly fleetState?: boolean | undefined
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
  /** `undefined`: what the provider's `RateLimitPolicy` declares. */
  readonly tokenAccounting: "usage" | "reserved" | undefined
  readonly retriesEnabled: boolean
  readonly maxRetries: number
  readonly retryBaseMillis: number
  readonly retryCapMillis: number
  readonly retryAfterCapMillis: number
  /** `undefined`: the provider policy's, else 256. */
  readonly defaultMaxTokens: number | undefined
  readonly adaptiveConcurrency: boolean
  readonly learnFromHeaders: boolean
  readonly learntMaxConcurrency: number
  /** Which budgets the user set (hard caps); the others are assumed until learnt. */
  readonly configured: {
    readonly maxConcurrency: boolean
    readonly requests: boolean
    readonly tokens: boolean
  }
  readonly requestTimeoutMillis: number | undefined
  readonly timeout: false | {
    readonly multiple: number
    readonly floorMillis: number
    readonly capMillis: number
    readonly initialMillis: number
    readonly idleMillis: number
  }
  readonly circuitBreaker: false | { readonly failures: number; readonly openMillis: number }
  readonly logFile: string | undefined
}

/** Options that fail validation: `field` names the first bad option, `message` lists every problem. @category errors @since 0.1.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  field: Schema.String,
  message: Schema.String
}) {}

/**
 * The one error of `@hasten/rate-limit` outside the `LlmError`s calls fail with (`layer`
 * dies with it; `layerConfig` reports a `ConfigError`); handle a reason with
 * `Effect.catchReason("RateLimitError", "InvalidOptions", …)`.
 * @category errors @since 0.2.0
 */
export class RateLimitError extends Schema.TaggedError<RateLimitError>()("RateLimitError", {
  reason: Schema.Union([InvalidOptions])
}) {
  override get message(): string {
    return this.reason.message
  }
}

/**
 * Applies defaults and validates: positive budgets, non-negative retry settings.
 * @category constructors @since 0.1.0
 */
export const resolve = (options: Options): Effect.Effect<Resolved, RateLimitError> =>
  Effect.suspend(() => {
    const problems: Array<string> = []
    let field: string | undefined
    const problem = (name: string, text: string) => {
      field ??= name
      problems.push(text)
    }
    const check = (name: string, value: number, rule: "positive" | "nonNegative" | "positiveInt" | "nonNegativeInt") => {
      const ok = rule === "positive"
        ? value > 0
        : rule === "nonNegative"
        ? value >= 0
        : rule === "positiveInt"
        ? Number.isInteger(value) && value >= 1
        : Number.isInteger(value) && value >= 0
      if (!ok || Number.isNaN(value)) {
        const wanted = rule === "positive"
          ? "> 0"
          : rule === "nonNegative"
          ? ">= 0"
          : rule === "positiveInt"
          ? "an integer >= 1"
          : "an integer >= 0"
        problem(name, `${name} must be ${wanted}, got ${value}`)
      }
      return value
    }
    const finiteOr = (value: number) => (value === Infinity ? Infinity : value)
    const breaker = options.circuitBreaker === false ? false as const : {
      failures: check("circuitBreaker.failures", options.circuitBreaker?.failures ?? 5, "positiveInt"),
      openMillis: check("circuitBreaker.openMillis", options.circuitBreaker?.openMillis ?? 5000, "positive")
    }
    // A budget the user sets is a hard cap; the seeds' defaults are assumed for a dimension
    // (requests, tokens) only while the user set none of its budgets.
    const configured = {
      maxConcurrency: options.maxConcurrency !== undefined,
      requests: options.requestsPerSecond !== undefined || options.requestsPerMinute !== undefined,
      tokens: options.tokensPerMinute !== undefined || options.inputTokensPerMinute !== undefined ||
        options.outputTokensPerMinute !== undefined
    }
    const timeout = options.timeout === false ? false as const : {
      multiple: check("timeout.multiple", options.timeout?.multiple ?? 4, "positive"),
      floorMillis: check("timeout.floorMillis", options.timeout?.floorMillis ?? 1_000, "positive"),
      capMillis: check("timeout.capMillis", options.timeout?.capMillis ?? 120_000, "positive"),
      initialMillis: check("timeout.initialMillis", options.timeout?.initialMillis ?? 30_000, "positive"),
      idleMillis: check("timeout.idleMillis", options.timeout?.idleMillis ?? 30_000, "positive")
    }
    if (timeout !== false && timeout.capMillis < timeout.floorMillis) {
      problem("timeout.capMillis", `timeout.capMillis (${timeout.capMillis}) must be >= timeout.floorMillis (${timeout.floorMillis})`)
    }
    const resolved: Resolved = {
      maxConcurrency: check("maxConcurrency", options.maxConcurrency ?? 2, "positiveInt"),
      requestsPerSecond: finiteOr(
        check("requestsPerSecond", options.requestsPerSecond ?? (configured.requests ? Infinity : 2), "positive")
      ),
      requestsPerMinute: check("requestsPerMinute", options.requestsPerMinute ?? Infinity, "positive"),
      tokensPerMinute: check("tokensPerMinute", options.tokensPerMinute ?? (configured.tokens ? Infinity : 120_000), "positive"),
      inputTokensPerMinute: check("inputTokensPerMinute", options.inputTokensPerMinute ?? Infinity, "positive"),
      outputTokensPerMinute: check("outputTokensPerMinute", options.outputTokensPerMinute ?? Infinity, "positive"),
      requestWindowMillis: check("requestWindowMillis", options.requestWindowMillis ?? 60_000, "positive"),
      tokenWindowMillis: check("tokenWindowMillis", options.tokenWindowMillis ?? 60_000, "positive"),
      safetyMargin: check("safetyMargin", options.safetyMargin ?? 0.01, "nonNegative"),
      catchUp: check("catchUp", options.catchUp ?? 0.01, "nonNegative"),
      tokenAccounting: options.tokenAccounting,
      retriesEnabled: options.retriesEnabled ?? true,
      maxRetries: check("maxRetries", options.maxRetries ?? 6, "nonNegativeInt"),
      retryBaseMillis: check("retryBaseMillis", options.retryBaseMillis ?? 500, "nonNegative"),
      retryCapMillis: check("retryCapMillis", options.retryCapMillis ?? 30_000, "nonNegative"),
      retryAfterCapMillis: check("retryAfterCapMillis", options.retryAfterCapMillis ?? 60_000, "nonNegative"),
      defaultMaxTokens: options.defaultMaxTokens === undefined
        ? undefined
        : check("defaultMaxTokens", options.defaultMaxTokens, "nonNegativeInt"),
      adaptiveConcurrency: options.adaptiveConcurrency ?? true,
      learnFromHeaders: options.learnFromHeaders ?? true,
      learntMaxConcurrency: check("learntMaxConcurrency", options.learntMaxConcurrency ?? 1024, "positiveInt"),
      configured,
      requestTimeoutMillis: options.requestTimeoutMillis === undefined
        ? undefined
        : check("requestTimeoutMillis", options.requestTimeoutMillis, "positive"),
      timeout,
      circuitBreaker: breaker,
      logFile: options.logFile === true ? "logs/rate_limit.log" : options.logFile === false ? undefined : options.logFile
    }
    if (resolved.safetyMargin >= 0.5) problem("safetyMargin", `safetyMargin must be < 0.5, got ${resolved.safetyMargin}`)
    if (resolved.catchUp >= 0.5) problem("catchUp", `catchUp must be < 0.5, got ${resolved.catchUp}`)
    if (resolved.retryCapMillis < resolved.retryBaseMillis) {
      problem("retryCapMillis", `retryCapMillis (${resolved.retryCapMillis}) must be >= retryBaseMillis (${resolved.retryBaseMillis})`)
    }
    return problems.length > 0
      ? Effect.fail(
        new RateLimitError({ reason: new InvalidOptions({ field: field!, message: `invalid rate-limit options: ${problems.join("; ")}` }) })
      )
      : Effect.succeed(resolved)
  })
