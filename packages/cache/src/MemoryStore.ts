/**
 * The in-memory store: an LRU (`lru-cache`) bounded by entry count and by bytes, with
 * per-entry expiry instants checked against Effect's `Clock` (so `TestClock` drives TTL).
 * Per process; the fastest tier, and the usual front of a tier.
 * @since 0.1.0
 */
import { Clock, Effect, Layer } from "effect"
import { LRUCache } from "lru-cache"
import { CacheStore, type CacheStoreService, type Entry, isExpired, pruneCutoff, withNow } from "./CacheStore.js"

/** Bounds of the memory store. @category models @since 0.1.0 */
export interface Options {
  /** Most entries kept (default 10,000). */
  readonly maxEntries?: number | undefined
  /** Most bytes of encoded payload kept (default 64 MiB). */
  readonly maxBytes?: number | undefined
}

const entrySize = (entry: Entry): number => Buffer.byteLength(entry.value) + entry.key.length + entry.namespace.length + 32

/**
 * Builds a memory store. Entries larger than `maxBytes` are not kept.
 * @category constructors @since 0.1.0
 */
export const makeUnsafe = (options: Options = {}): CacheStoreService => {
  let evictions = 0
  const lru = new LRUCache<string, Entry>({
    max: options.maxEntries ?? 10_000,
    maxSize: options.maxBytes ?? 64 * 1024 * 1024,
    sizeCalculation: entrySize,
    dispose: (_value, _key, reason) => {
      if (reason === "evict") evictions++
    }
  })
  const getNow = (key: string, now: number): Entry | undefined => {
    const entry = lru.get(key)
    if (entry === undefined) return undefined
    if (isExpired(entry, now)) {
      lru.delete(key)
      return undefined
    }
    return entry
  }
  const setNow = (entry: Entry): number => {
    const before = evictions
    if (entrySize(entry) > lru.maxSize) return 0
    lru.set(entry.key, entry)
    return evictions - before
  }
  return {
    name: "memory",
    get: withNow((key: string) => Clock.clockWith((clock) => Effect.sync(() => getNow(key, clock.currentTimeMillisUnsafe()))), getNow),
    set: withNow((entry: Entry) => Effect.sync(() => setNow(entry)), setNow),
    delete: (key) => Effect.sync(() => lru.delete(key)),
    prune: (options) =>
      Clock.clockWith((clock) =>
        Effect.sync(() => {
          const now = clock.currentTimeMillisUnsafe()
          const cutoff = pruneCutoff(now, options)
          const doomed: Array<string> = []
          for (const [key, entry] of lru.entries()) {
            const inNamespace = options?.namespace === undefined || entry.namespace === options.namespace
            if ((inNamespace && entry.createdAt <= cutoff) || isExpired(entry, now)) doomed.push(key)
          }
          for (const key of doomed) lru.delete(key)
          return doomed.length
        })
      ),
    clear: Effect.sync(() => lru.clear()),
    stats: Effect.sync(() => ({ entries: lru.size, bytes: lru.calculatedSize }))
  }
}

/** Effect form of {@link makeUnsafe}. @category constructors @since 0.1.0 */
export const make = (options?: Options): Effect.Effect<CacheStoreService> => Effect.sync(() => makeUnsafe(options))

/** A `CacheStore` layer backed by memory. @category layers @since 0.1.0 */
export const layer = (options?: Options): Layer.Layer<CacheStore> => Layer.effect(CacheStore, make(options))
