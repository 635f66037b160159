/**
 * The `Llm` service: the only seam between pipeline code (and middleware) and a model
 * vendor. Providers implement it; middleware is a `Layer<Llm, E, Llm>` that wraps it.
 * @since 0.1.0
 */
import { Context, Effect, Layer, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as Completion from "./Completion.js"
import type { CompletionRequest } from "./CompletionRequest.js"
import type { LlmError } from "./LlmError.js"
import type { RateLimitPolicy } from "./RateLimitPolicy.js"

/** The operations every language-model backend offers. @category models @since 0.1.0 */
export interface LlmService {
  /** The provider name (`openai`, `anthropic`, `replicate`, `local`, …), part of cache and budget keys. */
  readonly name: string
  /** One completion. Interrupting the effect aborts the upstream call. */
  readonly complete: (request: CompletionRequest) => Effect.Effect<Completion.Completion, LlmError>
  /** A streamed completion; the last chunk carries usage and the finish reason. */
  readonly stream: (request: CompletionRequest) => Stream.Stream<Completion.CompletionChunk, LlmError>
  /**
   * How the provider admits and counts calls against its rate limits (see
   * `RateLimitPolicy`); middleware built with {@link middleware} passes it on. Absent: no
   * provider budget is known.
   */
  readonly rateLimitPolicy?: RateLimitPolicy | undefined
}

/**
 * The language-model service.
 * @category services @since 0.1.0
 */
export class Llm extends Context.Service<Llm, LlmService>()("@hasten/core/Llm") {
  /**
   * A deterministic fake that answers with the last message's content, prefixed by
   * `echo: `; usage counts whitespace-separated words. For tests and examples.
   * @category testing @since 0.1.0
   */
  static readonly layerEcho: Layer.Layer<Llm> = Layer.sync(Llm, () =>
    fromComplete("echo", (request) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          const now = clock.currentTimeMillisUnsafe()
          const last = request.prompt ?? request.messages.at(-1)?.content ?? ""
          const text = `echo: ${last}`
          return new Completion.Completion({
            text,
            finishReason: "stop",
            usage: { inputTokens: countWords(last), outputTokens: countWords(text) },
            model: request.model,
            provider: "echo",
            timing: { start: now, firstToken: now, end: now }
          })
        })
      )
    ))
}

const countWords = (text: string): number => text.split(/\s+/).filter((word) => word.length > 0).length

/**
 * Builds an `Llm` from a `complete` function; `stream` emits the whole completion as one chunk.
 * @category constructors @since 0.1.0
 */
export const fromComplete = (
  name: string,
  complete: (request: CompletionRequest) => Effect.Effect<Completion.Completion, LlmError>
): LlmService => ({
  name,
  complete,
  stream: (request) => Stream.unwrap(Effect.map(complete(request), (completion) => Stream.fromIterable(Completion.toChunks(completion))))
})

/**
 * Builds an `Llm` from a `stream` function; `complete` collects the stream.
 * @category constructors @since 0.1.0
 */
export const fromStream = (
  name: string,
  stream: (request: CompletionRequest) => Stream.Stream<Completion.CompletionChunk, LlmError>
): LlmService => ({
  name,
  stream,
  complete: (request) => Completion.fromStream(stream(request), { model: request.model, provider: name })
})

/**
 * Middleware helper: a layer that reads the `Llm` below it and provides a wrapped one.
 * The wrapped `Llm` keeps the inner one's `rateLimitPolicy` unless it sets its own.
 * @category constructors @since 0.1.0
 */
export const middleware = <E = never, R = never>(
  wrap: (inner: LlmService) => Effect.Effect<LlmService, E, R>
): Layer.Layer<Llm, E, Llm | Exclude<R, Scope.Scope>> =>
  Layer.effect(Llm, Effect.flatMap(Effect.service(Llm), (inner) => Effect.map(wrap(inner), (outer) => inherit(inner, outer))))

/**
 * Carries what describes the backend (`rateLimitPolicy`) from an inner `Llm` to the one
 * that wraps it, unless the outer one sets its own.
 * @category constructors @since 0.2.0
 */
export const inherit = (inner: LlmService, outer: LlmService): LlmService =>
  outer.rateLimitPolicy !== undefined || inner.rateLimitPolicy === undefined
    ? outer
    : { ...outer, rateLimitPolicy: inner.rateLimitPolicy }

/** Calls `complete` on the current `Llm`. @category accessors @since 0.1.0 */
export const complete = (request: CompletionRequest): Effect.Effect<Completion.Completion, LlmError, Llm> =>
  Effect.flatMap(Effect.service(Llm), (llm) => llm.complete(request))

/** Calls `stream` on the current `Llm`. @category accessors @since 0.1.0 */
export const stream = (request: CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError, Llm> =>
  Stream.unwrap(Effect.map(Effect.service(Llm), (llm) => llm.stream(request)))

/**
 * Builds a stack from a provider layer and middleware layers listed top (outermost, the
 * first a call reaches, e.g. the cache) to bottom (just above the provider). Each
 * middleware is built fresh (`Layer.fresh`): two stacks made from the same middleware
 * value get two instances, each over its own provider, instead of one memoized instance
 * over whichever provider was built first. The provider and whatever the middleware still
 * needs (a cache store, a perf-logger recorder) stay memoized: provide those to the
 * result to share them between stacks.
 * @category constructors @since 0.2.0
 */
export const stack = <E, R, const Middleware extends ReadonlyArray<Layer.Layer<Llm, any, any>>>(
  provider: Layer.Layer<Llm, E, R>,
  ...middleware: Middleware
): Layer.Layer<
  Llm,
  E | Layer.Error<Middleware[number]>,
  R | Exclude<Layer.Services<Middleware[number]>, Llm>
> =>
  middleware.reduceRight<Layer.Layer<Llm, any, any>>(
    (below, layer) => Layer.provide(Layer.fresh(layer), below),
    provider
  )
