/**
 * The `Llm` middleware: every call of the `Llm` below goes through the limiter, with its
 * cost estimated and reserved, under the budget key of its provider, model and API key.
 * @since 0.1.0
 */
import { Completion, type CompletionRequest, Facts, Llm, LlmError, type RateLimitHeaders } from "@hasten/core"
import { Cause, Context, Duration, Effect, Exit, Layer, Option, Redacted, Stream } from "effect"
import * as Tracer from "effect/Tracer"
import { createHash } from "node:crypto"
import * as Estimator from "./Estimator.js"
import { type Call, type Cost, layerLimiter, Limiter, type LimiterService, type Outcome } from "./Limiter.js"
import type { Options } from "./Options.js"

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
 * A stream's deadlines: its first chunk within `firstMillis` (the attempt's deadline), each
 * next one within `idleMillis`; a stream that falls silent fails with a `Timeout` (and
 * its upstream request is aborted).
 */
const timed = <A>(
  stream: Stream.Stream<A, LlmError.LlmError>,
  firstMillis: number | undefined,
  idleMillis: number | undefined,
  provider: string
): Stream.Stream<A, LlmError.LlmError> =>
  firstMillis === undefined && idleMillis === undefined ? stream : Stream.transformPull(stream, (pull) =>
    Effect.sync(() => {
      let first = true
      return Effect.suspend(() => {
        const millis = first ? firstMillis : idleMillis
        if (millis === undefined) return pull
        return Effect.timeoutOrElse(pull, {
          duration: Duration.millis(millis),
          orElse: () =>
            Effect.fail(LlmError.make(
              provider,
              new LlmError.Timeout({
                description: `the stream sent ${first ? "no first chunk" : "nothing more"} within ${(millis / 1000).toFixed(1)} s`
              })
            ))
        }).pipe(Effect.tap(() =>
          Effect.sync(() => {
            first = false
          })
        ))
      })
    }))

/**
 * Wraps an `Llm` so every call goes through the limiter: cost estimated and reserved,
 * waits for the budgets, retried by the one retry schedule, reconciled with the actual
 * usage, and `{ retries, rateLimitWaitMillis, backoffMillis, timeouts }` written as typed `facts`.
 * @category constructors @since 0.1.0
 */
export const wrapLlm = (inner: Llm.LlmService, limiter: LimiterService, options: Options = {}): Llm.LlmService => {
  const estimator = options.estimator ?? Estimator.safe
  const policy = inner.rateLimitPolicy
  const defaultMaxTokens = limiter.options.defaultMaxTokens ?? policy?.defaultMaxTokens ?? 256
  const costWith = (request: CompletionRequest.CompletionRequest, key: string, inputTokens: number): Cost => ({
    key,
    provider: inner.name,
    inputTokens,
    outputTokens: request.maxTokens ?? defaultMaxTokens,
    policy
  })
  /** The call's cost: with no token budget that can apply to the key, no prompt estimate (a tokenizer pass). */
  const costOf = (request: CompletionRequest.CompletionRequest, key: string): Cost | Effect.Effect<Cost, LlmError.LlmError> =>
    limiter.needsInputTokens?.(key, policy) === false
      ? costWith(request, key, 0)
      : Effect.map(estimator(request), (inputTokens) => costWith(request, key, inputTokens))

  const facts = (outcome: Outcome<Completion.Completion>): Completion.Completion =>
    Completion.withFacts(outcome.value, {
      retries: outcome.attempts - 1,
      rateLimitWaitMillis: outcome.waitMillis,
      backoffMillis: outcome.backoffMillis,
      ...(outcome.timeouts > 0 ? { timeouts: outcome.timeouts } : {}),
      ...(outcome.http429 > 0 ? { http429: outcome.http429 } : {})
    })
  const observe = (completion: Completion.Completion) => ({ usage: completion.usage, rateLimit: completion.rateLimit })
  // the whole call, lobby included (`Limiter.run`: the lean path for keys far from their budgets)
  const run = (request: CompletionRequest.CompletionRequest, key: string) => {
    const call = (cost: Cost): Call<Completion.Completion, LlmError.LlmError, never> => ({
      ...cost,
      effect: inner.complete(request),
      observe
    })
    const cost = costOf(request, key)
    const priced = Effect.isEffect(cost) ? Effect.map(cost, call) : call(cost)
    if (limiter.run !== undefined) return limiter.run(key, priced)
    return limiter.lobby(key)(Effect.isEffect(priced) ? Effect.flatMap(priced, limiter.execute) : limiter.execute(priced))
  }
  // With a tracer that exports spans (OTLP, DevTools): one `RateLimit.complete` span per call
  // with its key and wait; with Effect's native in-memory tracer nobody reads them, so none is
  // opened (as perf-logger's `spans: "auto"`).
  const traced = Effect.fnUntraced(function*(request: CompletionRequest.CompletionRequest, key: string) {
    yield* Effect.annotateCurrentSpan("rateLimit.key", key)
    const outcome = yield* run(request, key)
    yield* Effect.annotateCurrentSpan("rateLimit.waitMillis", outcome.waitMillis)
    return facts(outcome)
  })
  const complete = (request: CompletionRequest.CompletionRequest) =>
    Effect.contextWith((context: Context.Context<never>) => {
      const key = keyOf(options, inner.name, request)
      return Context.get(context, Tracer.Tracer) === Tracer.nativeTracer
        ? Effect.map(run(request, key), facts)
        : Effect.withSpan(traced(request, key), "RateLimit.complete", { captureStackTrace: false })
    })

  // A stream is budgeted like a call and holds its concurrency slot until it ends; it is
  // not retried (chunks already delivered cannot be taken back).
  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.gen(function*() {
      const key = keyOf(options, inner.name, request)
      yield* limiter.enterLobby(key)
      const priced = costOf(request, key)
      const cost = Effect.isEffect(priced) ? yield* priced : priced
      const admission = yield* limiter.admit(cost)
      let usage: Completion.Usage | undefined
      let rateLimit: RateLimitHeaders.RateLimitInfo | undefined
      return timed(
        inner.stream(request),
        admission.deadlineMillis?.(),
        limiter.options.timeout === false ? undefined : limiter.options.timeout.idleMillis,
        inner.name
      ).pipe(
        Stream.map((chunk) => {
          if (chunk.usage !== undefined) usage = chunk.usage
          if (chunk.rateLimit !== undefined) rateLimit = chunk.rateLimit
          return chunk.finishReason === undefined ? chunk : new Completion.CompletionChunk({
            ...chunk,
            facts: Facts.merge(chunk.facts ?? Facts.empty, { retries: 0, rateLimitWaitMillis: admission.waitMillis, backoffMillis: 0 })
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

/**
 * The middleware over a `Limiter` already in context (share one limiter between
 * several `Llm` stacks and `wrap`).
 * @category layers @since 0.1.0
 */
export const layerFromLimiter = (
  options: Pick<Options, "estimator" | "apiKey" | "scope"> = {}
): Layer.Layer<Llm.Llm, never, Llm.Llm | Limiter> =>
  Llm.middleware((inner) => Effect.map(Effect.service(Limiter), (limiter) => wrapLlm(inner, limiter, options)))

/**
 * Rate-limit middleware: `Layer<Llm, never, Llm>`. Sits below the cache (hits never
 * spend budget) and above the perf-logger and the provider.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Llm.Llm, never, Llm.Llm> =>
  layerFromLimiter(options).pipe(Layer.provide(layerLimiter(options)))
