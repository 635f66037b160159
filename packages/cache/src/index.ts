/**
 * `@hasten/cache`: a response cache for `Llm` and `Embedder` with memory, SQLite and
 * Redis stores, single-flight and faithful stream replay.
 * @since 0.1.0
 */

/** The cache middleware: layers, options, metrics. @since 0.1.0 */
export * as Cache from "./Cache.js"
/** The store interface, its service tag and tiering. @since 0.1.0 */
export * as CacheStore from "./CacheStore.js"
/** The in-memory LRU store. @since 0.1.0 */
export * as MemoryStore from "./MemoryStore.js"
/** The SQLite store (embedded default). @since 0.1.0 */
export * as SqliteStore from "./SqliteStore.js"
/** The Redis store (shared). @since 0.1.0 */
export * as RedisStore from "./RedisStore.js"
