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
import { createWriteStream, mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { Completion, CompletionRequest as Request, Llm, LlmError, type RateLimitHeaders } from "@hasten/core"
import type { CompletionRequest } from "@hasten/core"
import {
  Cause,
  Clock,
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
  Schedule,
  Schema,
  Semaphore,
  Stream
} from "effect"
import { ConfigProvider } from "effect"
import { CircuitBreaker, RateLimiter } from "effect/persistence"
import type * as Scope from "effect/Scope"
import * as Estimator from "./Estimator.js"
import { Gate } from "./internal/gate.js"
import * as IoRedis from "./IoRedis.js"
import { concurrencyLimit, http429Total, retriesTotal, waitSecondsTotal, waitsTotal } from "./Metrics.js"
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

interface KeyState {
  /**
   * The lobby: at most `lobbySize` calls of the key are past it at once (waiting for a
   * permit, for the windows, in flight or backing off); the rest wait here in FIFO order,
   * suspended before any per-call work, so a burst of thousands of calls sends its first
   * request at once instead of after every call has been set up (0.77 s for 3000 calls),
   * and the semaphores behind it never hold more than a few waiters (see `Gate`).
   */
  readonly lobby: Gate
  readonly semaphore: Semaphore.Semaphore
  /** One fiber at a time waits for the key's windows (FIFO, no thundering herd). */
  readonly admission: Semaphore.Semaphore
  /** AIMD concurrency limit: the semaphore's permits. */
  limit: number
  /** Successes since the limit last changed (a window of `limit` successes adds one). */
  successes: number
  lastDecrease: number
  holdUntil: number
}

interface Window {
  readonly name: "requests_per_second" | "requests_per_minute" | "tokens" | "input_tokens" | "output_tokens"
  readonly unit: "request" | "total" | "input" | "output"
  /** The budget per `windowMillis`. */
  readonly limit: number
  readonly windowMillis: number
}

const seconds = (millis: number) => (millis / 1000).toFixed(2)

const AIMD_DECREASE_INTERVAL_MILLIS = 1000

/**
 * Builds the limiter over the `RateLimiter` in context (memory or Redis store).
 * @category constructors @since 0.1.0
 */
export const makeLimiter = Effect.fnUntraced(function*(input: Options) {
  const options = yield* Effect.orDie(resolve(input))
  const seed = input.seed
  const limiter = yield* RateLimiter.RateLimiter
  const breaker = options.circuitBreaker === false ? undefined : yield* CircuitBreaker.make({
    tripPolicy: CircuitBreaker.consecutive(options.circuitBreaker.failures),
    openDuration: Schedule.exponential(Duration.millis(options.circuitBreaker.openMillis)).pipe(
      Schedule.upTo({ duration: Duration.minutes(1) })
    )
  })
  const random = seed === undefined ? undefined : yield* Random.withSeed(Effect.service(Random.Random), seed)
  const file = options.logFile === undefined ? undefined : yield* Effect.acquireRelease(
    Effect.sync(() => {
      mkdirSync(dirname(options.logFile!), { recursive: true })
      return createWriteStream(options.logFile!, { flags: "a" })
    }),
    (stream) =>
      Effect.callback<void>((resume) => {
        stream.end(() => resume(Effect.void))
      })
  )

  // Every budget is "at most `limit` in ANY window of `windowMillis`" (what a provider's
  // sliding-window log enforces, and stricter than its token bucket). On the RateLimiter's
  // token bucket that means no burst: a request window refills one request every
  // window / limit, and a token window holds at most the current call's cost and refills
  // at (limit - largest cost seen) / window, so the call straddling a window edge still fits.
  const windows: Array<Window> = []
  if (Number.isFinite(options.requestsPerSecond)) {
    windows.push({ name: "requests_per_second", unit: "request", limit: options.requestsPerSecond, windowMillis: 1000 })
  }
  if (Number.isFinite(options.requestsPerMinute)) {
    windows.push({ name: "requests_per_minute", unit: "request", limit: options.requestsPerMinute, windowMillis: options.requestWindowMillis })
  }
  if (Number.isFinite(options.tokensPerMinute)) {
    windows.push({ name: "tokens", unit: "total", limit: options.tokensPerMinute, windowMillis: options.tokenWindowMillis })
  }
  if (Number.isFinite(options.inputTokensPerMinute)) {
    windows.push({ name: "input_tokens", unit: "input", limit: options.inputTokensPerMinute, windowMillis: options.tokenWindowMillis })
  }
  if (Number.isFinite(options.outputTokensPerMinute)) {
    windows.push({ name: "output_tokens", unit: "output", limit: options.outputTokensPerMinute, windowMillis: options.tokenWindowMillis })
  }
  const requestWindow = windows.find((window) => window.unit === "request")
  const tokensOf = (unit: Window["unit"], input: number, output: number) =>
    unit === "request" ? 1 : unit === "total" ? input + output : unit === "input" ? input : output
  const largest = new Map<string, number>()
  /** The RateLimiter arguments (capacity and the window that gives the pacing rate) for a call. */
  const bucketOf = (window: Window, windowKey: string, tokens: number, admission: boolean): { readonly limit: number; readonly window: Duration.Duration } => {
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
  const consume = (window: Window, key: string, tokens: number, admission: boolean, onExceeded: "delay" | "fail") => {
    const windowKey = `${key}:${window.name}`
    const bucket = bucketOf(window, windowKey, tokens, admission)
    return Effect.map(
      limiter.consume({ algorithm: "token-bucket", onExceeded, key: windowKey, tokens, ...bucket }),
      (result) => ({ ...result, bucket, windowKey })
    )
  }

  const states = new Map<string, KeyState>()
  const lobbySize = Math.max(16, options.maxConcurrency * 4)
  const lobby = (key: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => stateFor(key).lobby.with(effect))
  const enterLobby = (key: string): Effect.Effect<void, never, Scope.Scope> =>
    Effect.suspend(() => {
      const gate = stateFor(key).lobby
      // the wait stays interruptible (an interrupted wait holds nothing); once in, the
      // release is registered before anything can interrupt
      return Effect.uninterruptibleMask((restore) =>
        Effect.andThen(restore(gate.take), Effect.addFinalizer(() => Effect.sync(gate.release)))
      )
    })

  const stateFor = (key: string): KeyState => {
    let state = states.get(key)
    if (state === undefined) {
      state = {
        lobby: new Gate(lobbySize),
        semaphore: Semaphore.makeUnsafe(options.maxConcurrency),
        admission: Semaphore.makeUnsafe(1),
        limit: options.maxConcurrency,
        successes: 0,
        lastDecrease: -Infinity,
        holdUntil: 0
      }
      states.set(key, state)
    }
    return state
  }

  const storeError = (provider: string) => (error: RateLimiter.RateLimiterError) =>
    LlmError.make(provider, new LlmError.Transport({ description: `rate-limit store: ${error.message}` }))

  const event = (message: string, annotations: Record<string, unknown>) =>
    Effect.gen(function*() {
      yield* Effect.logInfo(message).pipe(Effect.annotateLogs(annotations))
      if (file !== undefined) {
        const now = yield* Clock.currentTimeMillis
        const fields = Object.entries(annotations).map(([name, value]) => `${name}=${String(value)}`).join(" ")
        file.write(`${new Date(now).toISOString()} ${message} ${fields}\n`)
      }
    })

  const resize = (key: string, state: KeyState, limit: number) =>
    Effect.gen(function*() {
      state.successes = 0
      if (limit === state.limit) return
      state.limit = limit
      yield* state.semaphore.resize(limit)
      yield* Metric.update(Metric.withAttributes(concurrencyLimit, { key }), limit)
    })

  const increase = (key: string, state: KeyState) =>
    Effect.suspend(() => {
      if (!options.adaptiveConcurrency || state.limit >= options.maxConcurrency) return Effect.void
      state.successes++
      return state.successes >= state.limit ? resize(key, state, state.limit + 1) : Effect.void
    })

  // A 429 halves the limit; an overload (often a lone 503 that says nothing about this
  // client's pace) takes a quarter off.
  const decrease = (key: string, state: KeyState, reason: string, factor: number) =>
    Effect.gen(function*() {
      if (!options.adaptiveConcurrency) return
      const now = yield* Clock.currentTimeMillis
      // One decrease per burst: the calls already in flight answer 429 together.
      if (now - state.lastDecrease < AIMD_DECREASE_INTERVAL_MILLIS) return
      state.lastDecrease = now
      const next = Math.max(1, Math.floor(state.limit * factor))
      if (next < state.limit) {
        yield* event(`concurrency=${next}`, { event: "rate_limit.concurrency", key, concurrency: next, reason })
      }
      yield* resize(key, state, next)
    })

  /** Refunds (negative) or charges (positive) token windows; a refund never fills a bucket past one call's worth. */
  const adjust = (key: string, provider: string, input: number, output: number, requests = 0) =>
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
            algorithm: "token-bucket", onExceeded: "delay", key: result.windowKey, limit: result.bucket.limit,
            window: result.bucket.window, tokens: result.remaining - cap
          })
        }
      }).pipe(Effect.mapError(storeError(provider))), { discard: true })

  // A spent budget holds the key for the time one more call's worth replenishes, as the
  // provider's continuous refill does (reset / limit per unit; the whole reset when the
  // provider does not send its limit).
  const learn = (state: KeyState, info: RateLimitHeaders.RateLimitInfo | undefined, key: string, cost: { readonly input: number; readonly output: number }) =>
    Effect.gen(function*() {
      if (!options.learnFromHeaders || info === undefined) return
      const holds: Array<[string, number]> = []
      const spent = (name: string, remaining: number | undefined, reset: number | undefined, limit: number | undefined, units: number) => {
        if (remaining === undefined || remaining > 0 || reset === undefined || reset <= 0) return
        holds.push([name, limit !== undefined && limit > 0 ? Math.min(reset, (reset * Math.max(1, units)) / limit) : reset])
      }
      spent("requests", info.remainingRequests, info.resetRequestsMillis, info.limitRequests, 1)
      spent("tokens", info.remainingTokens, info.resetTokensMillis, info.limitTokens, cost.input + cost.output)
      spent("input_tokens", info.remainingInputTokens, info.resetInputTokensMillis, info.limitInputTokens, cost.input)
      spent("output_tokens", info.remainingOutputTokens, info.resetOutputTokensMillis, info.limitOutputTokens, cost.output)
      if (holds.length === 0) return
      const [name, millis] = holds.reduce((a, b) => (b[1] > a[1] ? b : a))
      const now = yield* Clock.currentTimeMillis
      if (now + millis > state.holdUntil) {
        state.holdUntil = now + millis
        yield* event(`hold=${seconds(millis)}`, { event: "rate_limit.hold", key, hold_seconds: seconds(millis), budget: name })
      }
    })

  const admit = (cost: Cost): Effect.Effect<Admission, LlmError.LlmError, Scope.Scope> =>
    Effect.gen(function*() {
      const provider = cost.provider ?? cost.key
      const key = cost.key
      const input = cost.inputTokens ?? 0
      const output = cost.outputTokens ?? 0
      for (const window of windows) {
        const tokens = tokensOf(window.unit, input, output)
        if (window.unit !== "request" && tokens > window.limit) {
          return yield* LlmError.make(provider, new LlmError.InvalidRequest({
            description: `request needs ${tokens} ${window.name.replace("_", " ")} (estimated prompt ${input} + maxTokens ${output}) ` +
              `but the budget for ${key} is ${window.limit} per ${window.windowMillis / 1000} s: it can never be admitted; shorten it or lower maxTokens`
          }))
        }
      }
      const state = stateFor(key)
      const start = yield* Clock.currentTimeMillis
      yield* state.semaphore.takeScoped(1)
      return yield* Effect.gen(function*() {
        const begin = yield* Clock.currentTimeMillis
        let reason = "none"
        let longest = 0
        const waitFor = (millis: number, why: string) => {
          if (millis >= longest) {
            longest = millis
            reason = why
          }
          return Effect.sleep(Duration.millis(millis))
        }
        // A cooldown after a 429 (shared through the store) or the pace the store learned.
        const adaptive = requestWindow === undefined ? undefined : yield* limiter.adaptiveConsume({
          key: `${key}:adaptive`, tokens: 1, fallbackLimit: requestWindow.limit, fallbackWindow: Duration.millis(requestWindow.windowMillis)
        })
        if (adaptive !== undefined && Duration.isPositive(adaptive.delay)) yield* waitFor(Duration.toMillis(adaptive.delay), `adaptive_${adaptive.phase}`)
        // Take every window at the moment of sending, never a future slot: a fiber that wakes
        // late (a busy event loop) re-checks instead of bunching with the calls after it.
        yield* state.admission.withPermits(1)(Effect.gen(function*() {
          while (true) {
            const now = yield* Clock.currentTimeMillis
            if (state.holdUntil > now) {
              yield* waitFor(state.holdUntil - now, "headers")
              continue
            }
            const taken: Array<readonly [Window, number]> = []
            let retryAfter = 0
            let blocking = "none"
            for (const window of windows) {
              const tokens = tokensOf(window.unit, input, output)
              if (tokens === 0) continue
              const exit = yield* Effect.exit(consume(window, key, tokens, true, "fail"))
              if (Exit.isSuccess(exit)) {
                taken.push([window, tokens])
                continue
              }
              const error = Cause.findErrorOption(exit.cause)
              if (Option.isSome(error) && error.value.reason._tag === "RateLimitExceeded") {
                retryAfter = Math.max(1, Duration.toMillis(error.value.reason.retryAfter))
                blocking = window.name
                break
              }
              return yield* Effect.failCause(exit.cause)
            }
            if (retryAfter === 0) break
            yield* Effect.forEach(taken, ([window, tokens]) => consume(window, key, -tokens, false, "delay"), { discard: true })
            yield* waitFor(retryAfter, blocking)
          }
        }))
        const end = yield* Clock.currentTimeMillis
        const wait = end - begin
        if (wait > 0) {
          // Metrics count every wait; the log only shows waits visible at its precision (10 ms).
          if (wait >= 10) yield* event(`pre_wait=${seconds(wait)}`, { event: "rate_limit.pre_wait", key, pre_wait_seconds: seconds(wait), reason })
          yield* Metric.update(Metric.withAttributes(waitsTotal, { key, reason }), 1)
          yield* Metric.update(Metric.withAttributes(waitSecondsTotal, { key, reason }), wait / 1000)
        }
        let settled = false
        const once = (effect: Effect.Effect<void>) =>
          Effect.suspend(() => {
            if (settled) return Effect.void
            settled = true
            return effect
          })
        return {
          waitMillis: end - start,
          succeed: (observed) =>
            once(Effect.gen(function*() {
              const usage = observed?.usage
              if (usage !== undefined && options.tokenAccounting === "usage") {
                yield* adjust(key, provider, usage.inputTokens - input, usage.outputTokens - output)
              }
              yield* learn(state, observed?.rateLimit, key, { input, output })
              yield* increase(key, state)
            }).pipe(Effect.catch(() => Effect.void))),
          fail: (error) =>
            once(Effect.gen(function*() {
              // The provider reported no usage for a failed call: give its tokens back. The
              // request itself stays counted: providers count unsuccessful requests against the
              // request window (OpenAI: "unsuccessful requests contribute to your per-minute
              // limit"), so handing the place back would send more than the limit and turn every
              // fault into 429s that count too.
              yield* adjust(key, provider, -input, -output)
              if (!LlmError.isLlmError(error)) return
              const reason = error.reason
              if (reason._tag === "RateLimited") {
                yield* Metric.update(Metric.withAttributes(http429Total, { key, scope: reason.scope }), 1)
                if (reason.scope === "quota") return
                yield* decrease(key, state, `429_${reason.scope}`, 0.5)
                if (adaptive !== undefined && reason.retryAfterMillis !== undefined) {
                  yield* limiter.adaptiveFeedback({
                    key: `${key}:adaptive`, epoch: adaptive.epoch, tokens: 1, status: 429,
                    retryAfter: Duration.millis(Math.min(reason.retryAfterMillis, options.retryAfterCapMillis))
                  })
                }
              } else if (reason._tag === "Overloaded") {
                yield* decrease(key, state, "overloaded", 0.75)
              }
            }).pipe(Effect.catch(() => Effect.void)))
        } satisfies Admission
      }).pipe(Effect.mapError(storeError(provider)))
    })

  const breakerError = (provider: string, key: string) => (error: CircuitBreaker.CircuitBreakerError) => {
    const reason = error.reason
    return LlmError.make(provider, new LlmError.Overloaded({
      description: reason._tag === "CircuitOpen"
        ? `circuit open for ${key} after repeated server errors; retry in ${seconds(Duration.toMillis(reason.retryAfter))}s`
        : reason._tag === "CircuitHalfOpen"
        ? `circuit half-open for ${key}: a probe call is running`
        : `circuit breaker store: ${reason.message}`,
      ...(reason._tag === "CircuitOpen" ? { retryAfterMillis: Duration.toMillis(reason.retryAfter) } : {})
    }))
  }

  const classify = (exit: Exit.Exit<unknown, unknown>): CircuitBreaker.Outcome => {
    if (Exit.isSuccess(exit)) return CircuitBreaker.success
    const error = Cause.findErrorOption(exit.cause)
    if (Option.isSome(error) && LlmError.isLlmError(error.value)) {
      const reason = error.value.reason
      if (reason._tag === "ServerError" || reason._tag === "Overloaded") {
        return CircuitBreaker.failure(reason._tag === "Overloaded" && reason.retryAfterMillis !== undefined
          ? { retryAfter: Duration.millis(reason.retryAfterMillis) }
          : undefined)
      }
    }
    return CircuitBreaker.ignored
  }

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
        : breaker.execute(attempt, { key: call.key, classify }).pipe(
          Effect.mapError((error) =>
            error instanceof CircuitBreaker.CircuitBreakerError ? breakerError(provider, call.key)(error) : error
          )
        )
      const onBackoff = (backoff: Backoff) =>
        Effect.gen(function*() {
          const millis = Duration.toMillis(backoff.delay)
          backoffMillis += millis
          yield* event(`backoff=${seconds(millis)} attempt=${backoff.attempt}`, {
            event: "rate_limit.backoff",
            key: call.key,
            backoff_seconds: seconds(millis),
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
