/**
 * The `Llm` service: the only seam between pipeline code (and middleware) and a model
 * vendor. Providers implement it; middleware is a `Layer<Llm, E, Llm>` that wraps it.
 * @since 0.1.0
 */
import { Context, Effect, Layer, ManagedRuntime, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as Completion from "./Completion.js"
import { CompletionRequest, type CompletionRequestInput, type InvalidCompletionRequest, make as makeRequest } from "./CompletionRequest.js"
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
  /**
   * The identity of the endpoint behind this `Llm` (a base URL, a Replicate deployment),
   * so two compatible servers that share a provider name and a model id are told apart
   * (the cache puts it in its keys). Middleware built with {@link middleware} passes it
   * on. Absent: the provider name alone identifies the backend.
   */
  readonly endpoint?: string | undefined
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
  static readonly layerEcho: Layer.Layer<Llm> = Layer.sync(
    Llm,
    () =>
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
        ))
  )
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
 * Carries what describes the backend (`rateLimitPolicy`, `endpoint`) from an inner `Llm`
 * to the one that wraps it, unless the outer one sets its own.
 * @category constructors @since 0.2.0
 */
export const inherit = (inner: LlmService, outer: LlmService): LlmService => {
  const policy = outer.rateLimitPolicy === undefined && inner.rateLimitPolicy !== undefined
  const endpoint = outer.endpoint === undefined && inner.endpoint !== undefined
  if (!policy && !endpoint) return outer
  return {
    ...outer,
    ...(policy ? { rateLimitPolicy: inner.rateLimitPolicy } : {}),
    ...(endpoint ? { endpoint: inner.endpoint } : {})
  }
}

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

/** Options of one call through a {@link PromiseLlm}. @category models @since 0.2.0 */
export interface PromiseCallOptions {
  /** Aborting it interrupts the call, which aborts the upstream request. */
  readonly signal?: AbortSignal | undefined
}

/**
 * An `Llm` for code that does not use Effect: the one Promise facade every Hasten package
 * returns (packages add their own methods beside these). Calls reject with the `LlmError`
 * of a failed call (or `InvalidCompletionRequest` for a plain object that does not
 * validate); `dispose()` (or `await using`) closes the layer: connections, files, models.
 * @category models @since 0.2.0
 */
export interface PromiseLlm<Options extends PromiseCallOptions = PromiseCallOptions> extends AsyncDisposable {
  /** One completion, from a `CompletionRequest` or the plain object `CompletionRequest.make` takes. */
  readonly complete: (request: CompletionRequest | CompletionRequestInput, options?: Options) => Promise<Completion.Completion>
  /** A streamed completion; leaving a `for await` early interrupts the call. */
  readonly stream: (request: CompletionRequest | CompletionRequestInput, options?: Options) => AsyncIterable<Completion.CompletionChunk>
  /** Closes the runtime and everything the layer opened; calls after it reject. */
  readonly dispose: () => Promise<void>
}

/** How {@link promiseFromRuntime} runs each call. @category models @since 0.2.0 */
export interface PromiseSettings<Options extends PromiseCallOptions> {
  /** Services one call runs with, from its options (perf-logger puts its stage here). */
  readonly callContext?: ((options: Options | undefined) => Context.Context<never>) | undefined
}

const toRequest = (request: CompletionRequest | CompletionRequestInput): Effect.Effect<CompletionRequest, InvalidCompletionRequest> =>
  request instanceof CompletionRequest ? Effect.succeed(request) : makeRequest(request)

/**
 * The {@link PromiseLlm} over a `ManagedRuntime` that provides `Llm` (and possibly more,
 * which a package's own facade methods run against on the same runtime).
 * @category constructors @since 0.2.0
 */
export const promiseFromRuntime = <R, ER, Options extends PromiseCallOptions = PromiseCallOptions>(
  runtime: ManagedRuntime.ManagedRuntime<Llm | R, ER>,
  settings: PromiseSettings<Options> = {}
): PromiseLlm<Options> => {
  const callContext = (options: Options | undefined): Context.Context<never> =>
    settings.callContext === undefined ? Context.empty() : settings.callContext(options)
  const dispose = () => runtime.dispose()
  return {
    complete: (request, options) =>
      runtime.runPromise(
        Effect.provideContext(Effect.flatMap(toRequest(request), complete), callContext(options)),
        options?.signal === undefined ? undefined : { signal: options.signal }
      ),
    stream: (request, options) => ({
      [Symbol.asyncIterator]: () => {
        let iterator: Promise<AsyncIterator<Completion.CompletionChunk>> | undefined
        const open = () =>
          iterator ??= runtime.context().then((context) =>
            Stream.toAsyncIterableWith(
              Stream.unwrap(Effect.map(toRequest(request), stream)).pipe(Stream.provideContext(callContext(options))),
              context
            )[Symbol.asyncIterator]()
          )
        return {
          next: async () => (await open()).next(),
          return: async (value?: unknown) =>
            iterator === undefined
              ? { done: true as const, value: undefined }
              : (await iterator).return?.(value) ?? { done: true as const, value: undefined }
        }
      }
    }),
    dispose,
    [Symbol.asyncDispose]: dispose
  }
}

/**
 * The {@link PromiseLlm} over any layer that provides `Llm` (a provider, a whole stack):
 * the layer is built on the first call and closed by `dispose()`.
 * @example
 * ```ts
 * await using llm = Llm.toPromise(Llm.Llm.layerEcho)
 * const completion = await llm.complete({ model: "m", messages: [{ role: "user", content: "hi" }] })
 * for await (const chunk of llm.stream(CompletionRequest.user("m", "hi"))) process.stdout.write(chunk.text)
 * ```
 * @category constructors @since 0.2.0
 */
export const toPromise = <E, R = never>(layer: Layer.Layer<Llm | R, E>): PromiseLlm => promiseFromRuntime(ManagedRuntime.make(layer))
