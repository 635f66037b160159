/**
 * Wraps a provider `Llm` layer in the evaluator's default middleware: the response cache
 * outermost (a warm re-run never reaches the network), then perf-logger (measures what
 * goes upstream), then rate limiting, then the provider. Build the shared parts (cache
 * store, recorder) once per run and pass them to every candidate and the judge, so the
 * runner's layer memoization opens one store and one recorder.
 * @since 0.1.0
 */
import { Cache, CacheStore } from "@hasten/cache"
import { Llm, LlmError } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { Context, Effect, Layer, Stream } from "effect"

/** The middleware of a stack; each part is optional. @category models @since 0.1.0 */
export interface Middleware {
  /** A cache store shared by every stack of the run (see {@link cacheStore}); omitted means no cache. */
  readonly cache?: Layer.Layer<CacheStore.CacheStore, unknown>
  /** Cache settings (namespace, TTL). */
  readonly cacheSettings?: Cache.Settings
  /** A perf-logger recorder shared by every stack of the run; omitted means no measurements. */
  readonly perf?: Layer.Layer<PerfLogger.PerfLogger, unknown>
  /**
   * Rate-limit middleware (e.g. `RateLimit.layer(options)`), placed just above the provider.
   * Each stack gets its own instance (budgets are per provider and model anyway).
   */
  readonly rateLimit?: Layer.Layer<Llm.Llm, unknown, Llm.Llm>
  /**
   * Fleet middleware of a distributed run (e.g. `FleetSingleFlight.layer` from `@hasten/workers`),
   * placed just under the cache: a miss there is coalesced with identical calls in flight
   * anywhere in the fleet before it reaches perf-logger, the rate limiter and the provider.
   * @since 0.3.0
   */
  readonly fleet?: Layer.Layer<Llm.Llm, unknown, Llm.Llm>
}

/**
 * The cache store of a run: SQLite at `path` (default `.hasten/cache.db`) or in memory.
 * @category constructors @since 0.1.0
 */
export const cacheStore = (
  options?: { readonly store?: "sqlite" | "memory"; readonly path?: string }
): Layer.Layer<CacheStore.CacheStore, unknown> =>
  Cache.layerStore({ store: options?.store ?? "sqlite", path: options?.path ?? ".hasten/cache.db" })

/**
 * Wraps `provider` in the given middleware: cache → fleet → perf-logger → rate limit → provider.
 * @category constructors @since 0.1.0
 */
export const wrap = (provider: Layer.Layer<Llm.Llm, unknown>, middleware: Middleware = {}): Layer.Layer<Llm.Llm, unknown> => {
  // `Llm.stack` builds each middleware fresh (middleware values are shared between stacks);
  // the store and the recorder are provided outside it, so every stack shares them.
  let llm: Layer.Layer<Llm.Llm, unknown> = middleware.rateLimit === undefined ? provider : Llm.stack(provider, middleware.rateLimit)
  if (middleware.perf !== undefined) llm = Llm.stack(llm, PerfLogger.layer).pipe(Layer.provide(middleware.perf))
  if (middleware.fleet !== undefined) llm = Llm.stack(llm, middleware.fleet)
  if (middleware.cache !== undefined) {
    llm = Llm.stack(llm, Cache.layerFromStore(middleware.cacheSettings)).pipe(Layer.provide(middleware.cache))
  }
  return llm
}

/**
 * Defers building `provider` until the first call: a run answered entirely from the cache
 * (a warm re-run, a resumed run) never loads the model. `name` must be the provider's
 * `Llm.name` (`local`, `openai`, …), since cache keys include it before the provider exists.
 * `check` runs eagerly (e.g. resolve the model path) so bad input still fails at startup.
 * A build failure fails every call with that error.
 * @category constructors @since 0.1.0
 */
export const lazy = <E>(
  name: string,
  provider: Layer.Layer<Llm.Llm, E>,
  check: Effect.Effect<unknown, unknown> = Effect.void
): Layer.Layer<Llm.Llm, unknown> =>
  Layer.effect(
    Llm.Llm,
    Effect.gen(function*() {
      yield* check
      const scope = yield* Effect.scope
      const memoMap = yield* Layer.makeMemoMap
      const inner = yield* Effect.cached(
        Layer.buildWithMemoMap(provider, memoMap, scope).pipe(
          Effect.map((context) => Context.get(context, Llm.Llm)),
          Effect.mapError((error) =>
            LlmError.make(
              name,
              new LlmError.InvalidRequest({
                description: `provider failed to start: ${error instanceof Error ? error.message : String(error)}`
              })
            )
          )
        )
      )
      return {
        name,
        complete: (request) => Effect.flatMap(inner, (llm) => llm.complete(request)),
        stream: (request) => Stream.unwrap(Effect.map(inner, (llm) => llm.stream(request)))
      } satisfies Llm.LlmService
    })
  )
