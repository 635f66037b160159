/**
 * The cache for code that does not use Effect: a Promise facade over a
 * `ManagedRuntime` holding the cached `Llm` and its store, with the store's maintenance
 * methods (prune, clear, stats) beside `complete` and `stream`.
 * @since 0.1.0
 */
import { Effect, Layer, ManagedRuntime, Stream } from "effect"
import { type Completion, type CompletionRequest, Llm } from "@hasten/core"
import { layerStore, type Options } from "./CacheConfig.js"
import { CacheStore, type PruneOptions, type Stats } from "./CacheStore.js"
import { layerFromStore } from "./LlmCache.js"

/** A cached `Llm` for code that does not use Effect. @category models @since 0.1.0 */
export interface CachedLlm {
  readonly complete: (request: CompletionRequest.CompletionRequest) => Promise<Completion.Completion>
  readonly stream: (request: CompletionRequest.CompletionRequest) => AsyncIterable<Completion.CompletionChunk>
  /** Removes entries by namespace and age. */
  readonly prune: (options?: PruneOptions) => Promise<number>
  /** Removes every entry. */
  readonly clear: () => Promise<void>
  readonly stats: () => Promise<Stats>
  /** Closes the store (SQLite file, Redis connection) and the upstream layer. */
  readonly dispose: () => Promise<void>
}

/**
 * A Promise facade over a `ManagedRuntime`: the cache (one store, shared with the
 * maintenance methods) over any upstream `Llm` layer. Rejects with the `LlmError` of a
 * failed call, or with `CacheStoreError` when the store cannot be opened.
 * @category constructors @since 0.1.0
 */
export const createCachedLlm = <E>(upstream: Layer.Layer<Llm.Llm, E>, options: Options = {}): CachedLlm => {
  const runtime = ManagedRuntime.make(
    layerFromStore(options).pipe(Layer.provide(upstream), Layer.provideMerge(layerStore(options)))
  )
  const store = Effect.service(CacheStore)
  return {
    complete: (request) => runtime.runPromise(Llm.complete(request)),
    stream: (request) => ({
      [Symbol.asyncIterator]: () => {
        let iterator: AsyncIterator<Completion.CompletionChunk> | undefined
        const open = async () =>
          iterator ??= Stream.toAsyncIterable(Stream.provideContext(Llm.stream(request), await runtime.context()))[Symbol.asyncIterator]()
        return {
          next: async () => (await open()).next(),
          return: async (value?: unknown) => (await open()).return?.(value) ?? { done: true as const, value: undefined }
        }
      }
    }),
    prune: (pruneOptions) => runtime.runPromise(Effect.flatMap(store, (cache) => cache.prune(pruneOptions))),
    clear: () => runtime.runPromise(Effect.flatMap(store, (cache) => cache.clear)),
    stats: () => runtime.runPromise(Effect.flatMap(store, (cache) => cache.stats)),
    dispose: () => runtime.dispose()
  }
}
