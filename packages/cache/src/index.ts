/**
 * `@hasten/cache`: a response cache for `Llm` and `Embedder` with memory, SQLite and
 * Redis stores, single-flight and faithful stream replay.
 * @since 0.1.0
 */

/** The entry namespace: every module below under one name (layers, options, metrics, …). @since 0.1.0 */
export * as Cache from "./Cache.js"
/** The `Llm` middleware: `make` and its layers. @since 0.1.0 */
export * as LlmCache from "./LlmCache.js"
/** The `Embedder` middleware: `make` and its layers. @since 0.1.0 */
export * as EmbedderCache from "./EmbedderCache.js"
/** Options, the store layer they select, and the same options from the environment. @since 0.1.0 */
export * as CacheConfig from "./CacheConfig.js"
/** The keys entries are stored under. @since 0.1.0 */
export * as CacheKey from "./CacheKey.js"
/** What an entry holds and its JSON encoding. @since 0.1.0 */
export * as CachePayload from "./CachePayload.js"
/** The cache's counters. @since 0.1.0 */
export * as CacheMetrics from "./CacheMetrics.js"
/** The Promise facade for code that does not use Effect. @since 0.1.0 */
export * as CachedLlm from "./CachedLlm.js"
/** The store interface, its service tag and tiering. @since 0.1.0 */
export * as CacheStore from "./CacheStore.js"
/** The in-memory LRU store. @since 0.1.0 */
export * as MemoryStore from "./MemoryStore.js"
/** The SQLite store (embedded default). @since 0.1.0 */
export * as SqliteStore from "./SqliteStore.js"
/** The Redis store (shared). @since 0.1.0 */
export * as RedisStore from "./RedisStore.js"
/** `CacheError`, the package's one error (bad options), and its reasons. @since 0.2.0 */
export * as CacheError from "./CacheError.js"
