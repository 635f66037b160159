/**
 * Token-aware rate limiting for any Hasten `Llm` (and any effect): per-key budgets for
 * concurrency, requests per second and per minute, tokens per minute (optionally split
 * into input and output), one retry layer with decorrelated jitter that honours
 * `retry-after`, learning from the provider's rate-limit headers, adaptive concurrency
 * (AIMD) and a circuit breaker on repeated 5xx. Budgets live in a `RateLimiter` store from
 * `effect/persistence`: in memory by default, in Redis to share them between processes.
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import { Completion, CompletionRequest as Request, Llm, LlmError, type RateLimitHeaders } from "@hasten/core"
import type { CompletionRequest } from "@hasten/core"
import {
  Cause,
  Config,
  Context,
  Duration,
  Effect,
  Exit,
  Layer,
  ManagedRuntime,
  Metric,
  Option,
  Random,
  Redacted,
  Schema,
  Stream
} from "effect"
import { ConfigProvider } from "effect"
import { CircuitBreaker, RateLimiter } from "effect/persistence"
import type * as Scope from "effect/Scope"
import * as Estimator from "./Estimator.js"
import * as Admit from "./internal/admit.js"
import * as Aimd from "./internal/aimd.js"
import * as Breaker from "./internal/breaker.js"
import * as Events from "./internal/events.js"
import * as Headers from "./internal/headers.js"
import * as KeyStates from "./internal/keyState.js"
import * as Windows from "./internal/windows.js"
import * as IoRedis from "./IoRedis.js"
import { retriesTotal } from "./Metrics.js"
import { type Options, type Resolved, resolve } from "./Options.js"
import { type Backoff, retrySchedule } from "./Retry.js"

export * from "./Options.js"
export * from "./Retry.js"
export * from "./Metrics.js"

// ---------------------------------------------------------------------------
// the limiter service
// ---------------------------------------------------------------------------

/** What a call costs against its key's budgets. @category models @since 0.1.0 */
export interface Cost {
  /** The budget key; calls sharing it share every budget. */
  readonly key: string
  /** Input tokens reserved before the call (or all tokens for a non-LLM call). Default 0. */
  readonly inputTokens?: number | undefined
  /** Output tokens reserved before the call. Default 0. */
  readonly outputTokens?: number | undefined
  /** The name errors carry as `provider` (default: the key). */
  readonly provider?: string | undefined
}

/** A call for {@link LimiterService.execute}. @category models @since 0.1.0 */
export interface Call<A, E, R> extends Cost {
  readonly effect: Effect.Effect<A, E, R>
  /** What the finished call reports: actual usage (for reconciliation) and rate-limit headers. */
  readonly observe?: ((value: A) => {
    readonly usage?: { readonly inputTokens: number; readonly outputTokens: number } | undefined
    readonly rateLimit?: RateLimitHeaders.RateLimitInfo | undefined
  }) | undefined
}

/** How a call went through the limiter. @category models @since 0.1.0 */
export interface Outcome<A> {
  readonly value: A
  /** Attempts made (1 + retries). */
  readonly attempts: number
  /** Milliseconds waited before sending, over all attempts (concurrency slot + budgets + holds). */
  readonly waitMillis: number
  /** Milliseconds slept in backoff between attempts. */
  readonly backoffMillis: number
}

/** The limiter's operations. @category models @since 0.1.0 */
export interface LimiterService {
  readonly options: Resolved
  /** Runs a call under its key's budgets with the retry schedule. */
  readonly execute: <A, E, R>(call: Call<A, E, R>) => Effect.Effect<Outcome<A>, E | LlmError.LlmError, R>
  /**
   * Takes a concurrency slot (held until the scope closes) and waits for the budgets of
   * one attempt, without retrying; settle it with `succeed` or `fail` (streams use this).
   */
  readonly admit: (cost: Cost) => Effect.Effect<Admission, LlmError.LlmError, Scope.Scope>
  /**
   * Runs `effect` once the key's lobby lets it in (FIFO): only a few times the concurrency
   * limit of calls per key are set up at once, the rest wait suspended. `execute` callers
   * wrap whole calls in it (retries included).
   */
  readonly lobby: (key: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** Takes a place in the key's lobby until the scope closes (streams hold it while they run). */
  readonly enterLobby: (key: string) => Effect.Effect<void, never, Scope.Scope>
  /** The current adaptive concurrency limit of a key. */
  readonly concurrency: (key: string) => Effect.Effect<number>
  /** Until when (epoch millis) headers hold a key; 0 when not held. */
  readonly heldUntil: (key: string) => Effect.Effect<number>
}

/** An admitted attempt; call exactly one of its settle functions. @category models @since 0.1.0 */
export interface Admission {
  readonly waitMillis: number
  readonly succeed: (observed?: {
    readonly usage?: { readonly inputTokens: number; readonly outputTokens: number } | undefined
    readonly rateLimit?: RateLimitHeaders.RateLimitInfo | undefined
  }) => Effect.Effect<void>
  readonly fail: (error: unknown) => Effect.Effect<void>
}

/**
 * The shared limiter behind the `Llm` middleware and {@link wrap}.
 * @category services @since 0.1.0
 */
export class Limiter extends Context.Service<Limiter, LimiterService>()("@hasten/rate-limit/Limiter") {}

/**
 * Builds the limiter over the `RateLimiter` in context (memory or Redis store).
 * @category constructors @since 0.1.0
 */
export const makeLimiter = Effect.fnUntraced(function*(input: Options) {
  const options = yield* Effect.orDie(resolve(input))
  const seed = input.seed
  const limiter = yield* RateLimiter.RateLimiter
  const breaker = yield* Breaker.make(options)
  const random = seed === undefined ? undefined : yield* Random.withSeed(Effect.service(Random.Random), seed)
  const event = yield* Events.make(options)
  const { stateFor, lobby, enterLobby } = KeyStates.make(options)
  const admit = Admit.make({
    options,
    limiter,
    windows: Windows.make(options, limiter),
    stateFor,
    aimd: Aimd.make(options, event),
    learn: Headers.make(options, event).learn,
    event
  })

  const execute = <A, E, R>(call: Call<A, E, R>): Effect.Effect<Outcome<A>, E | LlmError.LlmError, R> =>
    Effect.gen(function*() {
      const provider = call.provider ?? call.key
      let attempts = 0
      let waitMillis = 0
      let backoffMillis = 0
      const attempt: Effect.Effect<A, E | LlmError.LlmError, R> = Effect.scoped(Effect.gen(function*() {
        attempts++
        const admission = yield* admit(call)
        waitMillis += admission.waitMillis
        return yield* call.effect.pipe(
          Effect.onExit((exit) =>
            Exit.isSuccess(exit)
              ? admission.succeed(call.observe?.(exit.value))
              : admission.fail(Option.getOrUndefined(Cause.findErrorOption(exit.cause)))
          )
        )
      }))
      const guarded = breaker === undefined
        ? attempt
        : breaker.execute(attempt, { key: call.key, classify: Breaker.classify }).pipe(
          Effect.mapError((error) =>
            error instanceof CircuitBreaker.CircuitBreakerError ? Breaker.breakerError(provider, call.key)(error) : error
          )
        )
      const onBackoff = (backoff: Backoff) =>
        Effect.gen(function*() {
          const millis = Duration.toMillis(backoff.delay)
          backoffMillis += millis
          yield* event(`backoff=${Events.seconds(millis)} attempt=${backoff.attempt}`, {
            event: "rate_limit.backoff",
            key: call.key,
            backoff_seconds: Events.seconds(millis),
            attempt: backoff.attempt,
            reason: backoff.error.reason._tag,
            retry_after: backoff.fromRetryAfter
          })
          yield* Metric.update(Metric.withAttributes(retriesTotal, { key: call.key, reason: backoff.error.reason._tag }), 1)
        })
      const retried = options.retriesEnabled
        ? Effect.retry(guarded, retrySchedule({ ...options, random }, onBackoff))
        : guarded
      const value = yield* retried.pipe(
        Effect.mapError((error) => {
          if (LlmError.isLlmError(error) && error.reason._tag === "RateLimited" && error.reason.scope === "quota") {
            return LlmError.make(error.provider, new LlmError.RateLimited({
              scope: "quota",
              description: `quota exhausted for ${call.key}: ${error.reason.description} ` +
                `(not retried: add credits or raise the quota)`
            }))
          }
          return error
        })
      )
      return { value, attempts, waitMillis, backoffMillis }
    })

  return Limiter.of({
    options,
    execute,
    admit,
    lobby,
    enterLobby,
    concurrency: (key) => Effect.sync(() => stateFor(key).limit),
    heldUntil: (key) => Effect.sync(() => stateFor(key).holdUntil)
  })
})

// ---------------------------------------------------------------------------
// the Llm middleware
// ---------------------------------------------------------------------------

// Hashed once per key object or string: a SHA-256 per call was 4% of a call's CPU.
const keyHashes = new WeakMap<Redacted.Redacted<string>, string>()
const stringKeyHashes = new Map<string, string>()
const apiKeyHash = (apiKey: Redacted.Redacted<string> | string | undefined): string => {
  if (apiKey === undefined) return "default"
  const known = typeof apiKey === "string" ? stringKeyHashes.get(apiKey) : keyHashes.get(apiKey)
  if (known !== undefined) return known
  const hash = createHash("sha256").update(typeof apiKey === "string" ? apiKey : Redacted.value(apiKey)).digest("hex").slice(0, 12)
  if (typeof apiKey === "string") {
    if (stringKeyHashes.size >= 1_000) stringKeyHashes.clear()
    stringKeyHashes.set(apiKey, hash)
  } else {
    keyHashes.set(apiKey, hash)
  }
  return hash
}

/**
 * The budget key of a request: `<scope or provider>:<model>:<API-key hash>`.
 * @category utils @since 0.1.0
 */
export const keyOf = (
  options: Pick<Options, "scope" | "apiKey">,
  provider: string,
  request: CompletionRequest.CompletionRequest
): string => `${options.scope ?? provider}:${request.model}:${apiKeyHash(options.apiKey)}`

/**
 * Wraps an `Llm` so every call goes through the limiter: cost estimated and reserved,
 * waits for the budgets, retried by the one retry schedule, reconciled with the actual
 * usage, and `{ retries, rateLimitWaitMillis, backoffMillis }` attached to `metadata`.
 * @category constructors @since 0.1.0
 */
export const wrapLlm = (inner: Llm.LlmService, limiter: LimiterService, options: Options = {}): Llm.LlmService => {
  const estimator = options.estimator ?? Estimator.openAi
  const costOf = (request: CompletionRequest.CompletionRequest, key: string) =>
    Effect.map(estimator(request), (inputTokens): Cost => ({
      key,
      provider: inner.name,
      inputTokens,
      outputTokens: request.maxTokens ?? limiter.options.defaultMaxTokens
    }))

  // `fnUntraced` + `withSpan` without a stack capture: the same span, less per-call work.
  const completeUntraced = Effect.fnUntraced(function*(request: CompletionRequest.CompletionRequest, key: string) {
    const cost = yield* costOf(request, key)
    yield* Effect.annotateCurrentSpan("rateLimit.key", cost.key)
    const outcome = yield* limiter.execute({
      ...cost,
      effect: inner.complete(request),
      observe: (completion) => ({ usage: completion.usage, rateLimit: completion.rateLimit })
    })
    yield* Effect.annotateCurrentSpan("rateLimit.waitMillis", outcome.waitMillis)
    return new Completion.Completion({
      ...outcome.value,
      metadata: {
        ...outcome.value.metadata,
        retries: outcome.attempts - 1,
        rateLimitWaitMillis: outcome.waitMillis,
        backoffMillis: outcome.backoffMillis
      }
    })
  })
  const complete = (request: CompletionRequest.CompletionRequest) =>
    Effect.suspend(() => {
      const key = keyOf(options, inner.name, request)
      return limiter.lobby(key)(Effect.withSpan(completeUntraced(request, key), "RateLimit.complete", { captureStackTrace: false }))
    })

  // A stream is budgeted like a call and holds its concurrency slot until it ends; it is
  // not retried (chunks already delivered cannot be taken back).
  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.gen(function*() {
      const key = keyOf(options, inner.name, request)
      yield* limiter.enterLobby(key)
      const cost = yield* costOf(request, key)
      const admission = yield* limiter.admit(cost)
      let usage: Completion.Usage | undefined
      let rateLimit: RateLimitHeaders.RateLimitInfo | undefined
      return inner.stream(request).pipe(
        Stream.map((chunk) => {
          if (chunk.usage !== undefined) usage = chunk.usage
          if (chunk.rateLimit !== undefined) rateLimit = chunk.rateLimit
          return chunk.finishReason === undefined ? chunk : new Completion.CompletionChunk({
            ...chunk,
            metadata: { ...chunk.metadata, retries: 0, rateLimitWaitMillis: admission.waitMillis, backoffMillis: 0 }
          })
        }),
        Stream.onExit((exit) =>
          Exit.isSuccess(exit)
            ? admission.succeed({ usage, rateLimit })
            : admission.fail(Option.getOrUndefined(Cause.findErrorOption(exit.cause)))
        )
      )
    }))

  return { name: inner.name, complete, stream }
}

const storeLayer = (options: Options): Layer.Layer<RateLimiter.RateLimiterStore> =>
  options.redis === undefined
    ? RateLimiter.layerStoreMemory
    : RateLimiter.layerStoreRedis({ prefix: options.redisPrefix ?? "hasten:ratelimit:" }).pipe(
      Layer.provide(IoRedis.layer(options.redis))
    )

/**
 * The limiter over a `RateLimiterStore` you provide (e.g. `RateLimiter.layerStoreRedis`).
 * @category layers @since 0.1.0
 */
export const layerLimiterWithStore = (options: Options = {}): Layer.Layer<Limiter, never, RateLimiter.RateLimiterStore> =>
  Layer.effect(Limiter, makeLimiter(options)).pipe(
    Layer.provide(Layer.merge(RateLimiter.layer, CircuitBreaker.layerStoreMemory()))
  )

/**
 * The limiter alone, for {@link wrap} on any effect: memory store, or Redis when
 * `options.redis` is set.
 * @category layers @since 0.1.0
 */
export const layerLimiter = (options: Options = {}): Layer.Layer<Limiter> =>
  layerLimiterWithStore(options).pipe(Layer.provide(storeLayer(options)))

/**
 * The middleware over a `Limiter` already in context (share one limiter between
 * several `Llm` stacks and `wrap`).
 * @category layers @since 0.1.0
 */
export const layerFromLimiter = (options: Pick<Options, "estimator" | "apiKey" | "scope"> = {}): Layer.Layer<Llm.Llm, never, Llm.Llm | Limiter> =>
  Llm.middleware((inner) => Effect.map(Effect.service(Limiter), (limiter) => wrapLlm(inner, limiter, options)))

/**
 * Rate-limit middleware: `Layer<Llm, never, Llm>`. Sits below the cache (hits never
 * spend budget) and above the perf-logger and the provider.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Llm.Llm, never, Llm.Llm> =>
  layerFromLimiter(options).pipe(Layer.provide(layerLimiter(options)))

// ---------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------

const number = (name: string, rule: "positive" | "nonNegative" | "positiveInt" | "nonNegativeInt") =>
  Config.schema(
    (rule === "positiveInt" || rule === "nonNegativeInt" ? Schema.Int : Schema.Finite).check(
      rule === "positive" ? Schema.isGreaterThan(0) : rule === "positiveInt" ? Schema.isGreaterThanOrEqualTo(1) : Schema.isGreaterThanOrEqualTo(0)
    ),
    name
  )

const optional = <A>(config: Config.Config<A>) => Config.map(Config.option(config), Option.getOrUndefined)

/**
 * The environment: `MAX_CONCURRENCY` (2), `RPS_LIMIT` (2.0), `TPM_LIMIT` (120000),
 * `MAX_RETRIES` (6), `RETRIES_ENABLED` (1), and optionally `RPM_LIMIT`,
 * `INPUT_TPM_LIMIT`, `OUTPUT_TPM_LIMIT`, `RETRY_BASE_MS` (500), `RETRY_CAP_MS` (30000),
 * `RETRY_AFTER_CAP_MS` (60000), `RATE_LIMIT_LOG_FILE`, `RATE_LIMIT_REDIS_URL`.
 * An invalid value fails with a `ConfigError` naming the variable.
 * @category configuration @since 0.1.0
 */
export const config: Config.Config<Options> = Config.all({
  maxConcurrency: number("MAX_CONCURRENCY", "positiveInt").pipe(Config.withDefault(2)),
  requestsPerSecond: number("RPS_LIMIT", "positive").pipe(Config.withDefault(2)),
  requestsPerMinute: optional(number("RPM_LIMIT", "positive")),
  tokensPerMinute: number("TPM_LIMIT", "positiveInt").pipe(Config.withDefault(120_000)),
  inputTokensPerMinute: optional(number("INPUT_TPM_LIMIT", "positiveInt")),
  outputTokensPerMinute: optional(number("OUTPUT_TPM_LIMIT", "positiveInt")),
  maxRetries: number("MAX_RETRIES", "nonNegativeInt").pipe(Config.withDefault(6)),
  retriesEnabled: Config.Boolean("RETRIES_ENABLED").pipe(Config.withDefault(true)),
  retryBaseMillis: number("RETRY_BASE_MS", "nonNegative").pipe(Config.withDefault(500)),
  retryCapMillis: number("RETRY_CAP_MS", "nonNegative").pipe(Config.withDefault(30_000)),
  retryAfterCapMillis: number("RETRY_AFTER_CAP_MS", "nonNegative").pipe(Config.withDefault(60_000)),
  logFile: optional(Config.String("RATE_LIMIT_LOG_FILE")),
  redisUrl: optional(Config.String("RATE_LIMIT_REDIS_URL"))
}).pipe(
  Config.map(({ redisUrl, ...rest }): Options => ({ ...rest, ...(redisUrl !== undefined ? { redis: { url: redisUrl } } : {}) }))
)

/**
 * {@link layer} configured from the environment ({@link config}).
 * @category layers @since 0.1.0
 */
export const layerConfig: Layer.Layer<Llm.Llm, Config.ConfigError, Llm.Llm> = Layer.unwrap(
  Effect.gen(function*() {
    const options = yield* config
    yield* Effect.mapError(resolve(options), (error) => new Config.ConfigError(new ConfigProvider.SourceError({ message: error.message })))
    return layer(options)
  })
)

// ---------------------------------------------------------------------------
// generic use
// ---------------------------------------------------------------------------

/**
 * Runs any effect under the budgets of `cost.key` (concurrency, request and token
 * windows) with the retry schedule (only retryable `LlmError`s are retried).
 * @category combinators @since 0.1.0
 */
export const wrap = <A, E, R>(effect: Effect.Effect<A, E, R>, cost: Cost): Effect.Effect<A, E | LlmError.LlmError, R | Limiter> =>
  Effect.flatMap(Effect.service(Limiter), (limiter) =>
    limiter.lobby(cost.key)(Effect.map(limiter.execute({ ...cost, effect }), (outcome) => outcome.value)))

// ---------------------------------------------------------------------------
// plain async TypeScript
// ---------------------------------------------------------------------------

/** A rate-limited `Llm` for code that does not use Effect. @category models @since 0.1.0 */
export interface PromiseLlm {
  readonly complete: (request: CompletionRequest.CompletionRequest | Request.CompletionRequestInput) => Promise<Completion.Completion>
  /** Closes the runtime (Redis connections, log file). */
  readonly dispose: () => Promise<void>
}

/**
 * A Promise facade on `ManagedRuntime`: the middleware over any `Llm` layer.
 * @category constructors @since 0.1.0
 */
export const createLlm = <E>(upstream: Layer.Layer<Llm.Llm, E>, options: Options = {}): PromiseLlm => {
  const runtime = ManagedRuntime.make(layer(options).pipe(Layer.provide(upstream)))
  return {
    complete: (request) =>
      runtime.runPromise(Effect.flatMap(
        request instanceof Request.CompletionRequest ? Effect.succeed(request) : Request.make(request),
        Llm.complete
      )),
    dispose: () => runtime.dispose()
  }
}

/** Budgets and retries for any async function. @category models @since 0.1.0 */
export interface PromiseLimiter {
  /** Runs `task` under the budgets of `cost.key`; rejections that are retryable `LlmError`s are retried. */
  readonly run: <A>(task: () => Promise<A>, cost: Cost) => Promise<A>
  readonly dispose: () => Promise<void>
}

/**
 * A Promise facade for {@link wrap}: rate-limit any async function.
 * @category constructors @since 0.1.0
 */
export const createLimiter = (options: Options = {}): PromiseLimiter => {
  const runtime = ManagedRuntime.make(layerLimiter(options))
  return {
    run: (task, cost) =>
      runtime.runPromise(wrap(
        Effect.tryPromise({ try: task, catch: (error) => error }),
        cost
      )),
    dispose: () => runtime.dispose()
  }
}
