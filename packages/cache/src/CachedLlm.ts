/**
 * The cache for code that does not use Effect: core's Promise facade (`Llm.PromiseLlm`)
 * over the cached `Llm` and its store, with the store's maintenance methods (prune, clear,
 * stats) beside `complete` and `stream`.
 * @since 0.1.0
 */
import { Llm } from "@hasten/core"
import { Effect, Layer, ManagedRuntime } from "effect"
import { layerStore, type Options } from "./CacheConfig.js"
import { CacheStore, type PruneOptions, type Stats } from "./CacheStore.js"
import { layerFromStore } from "./LlmCache.js"

/**
 * A cached `Llm` for code that does not use Effect: core's `PromiseLlm` (`complete`,
 * `stream`, `dispose`, `await using`) plus the store's maintenance.
 * @category models @since 0.1.0
 */
export interface CachedLlm extends Llm.PromiseLlm {
  /** Removes entries by namespace and age. */
  readonly prune: (options?: PruneOptions) => Promise<number>
  /** Removes every entry. */
  readonly clear: () => Promise<void>
  readonly stats: () => Promise<Stats>
}

/**
 * `Llm.toPromise` over the cache (one store, shared with the maintenance methods) over
 * any upstream `Llm` layer. Rejects with the `LlmError` of a failed call, or with
 * `CacheStoreError` when the store cannot be opened; `dispose()` closes the store (SQLite
 * file, Redis connection) and the upstream layer.
 * @category constructors @since 0.1.0
 */
export const createCachedLlm = <E>(upstream: Layer.Layer<Llm.Llm, E>, options: Options = {}): CachedLlm => {
  const runtime = ManagedRuntime.make(
    layerFromStore(options).pipe(Layer.provide(upstream), Layer.provideMerge(layerStore(options)))
  )
  const store = Effect.service(CacheStore)
  return {
    ...Llm.promiseFromRuntime(runtime),
    prune: (pruneOptions) => runtime.runPromise(Effect.flatMap(store, (cache) => cache.prune(pruneOptions))),
    clear: () => runtime.runPromise(Effect.flatMap(store, (cache) => cache.clear)),
    stats: () => runtime.runPromise(Effect.flatMap(store, (cache) => cache.stats))
  }
}
