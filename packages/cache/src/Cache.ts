/**
 * The response cache: an `Llm` (and `Embedder`) middleware that answers repeated
 * deterministic requests from a store (memory, SQLite, Redis, or a tier), makes one
 * upstream call for N concurrent identical misses, and replays streams chunk by chunk.
 * Put it outermost: hits then skip the rate limiter and never reach the network.
 *
 * The entry namespace: each concept lives in its own module and is re-exported here
 * under the name it has always had (`Cache.layer`, `Cache.makeEmbedder`, `Cache.hits`, …).
 * @since 0.1.0
 */

/** The `Llm` middleware: `make`, `layer`, `layerFromStore`, `layerConfig(options?)` (`layerConfigWith` is its deprecated alias). @since 0.1.0 */
export * from "./LlmCache.js"
/** The `Embedder` middleware, under the names it has here. @since 0.1.0 */
export { layer as layerEmbedder, layerFromStore as layerEmbedderFromStore, make as makeEmbedder } from "./EmbedderCache.js"
/** Options, the store layer they select, and the same options from the environment. @since 0.1.0 */
export * from "./CacheConfig.js"
/** The keys entries are stored under. @since 0.1.0 */
export * from "./CacheKey.js"
/** What an entry holds and its JSON encoding. @since 0.1.0 */
export * from "./CachePayload.js"
/** The counters. @since 0.1.0 */
export * from "./CacheMetrics.js"
/** The Promise facade for code that does not use Effect. @since 0.1.0 */
export * from "./CachedLlm.js"
/** The package's one error (bad options) and its reason. @since 0.2.0 */
export { CacheError, InvalidOptions } from "./CacheError.js"
