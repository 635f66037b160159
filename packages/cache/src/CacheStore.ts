/**
 * The one small interface every cache backend implements (get, set, delete, prune,
 * clear, stats), the `CacheStore` service tag, and tiering (a fast store in front of a
 * shared one). Entries hold already-encoded JSON text; the cache middleware owns the
 * encoding, so a store never needs to know what a completion is.
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, Schema } from "effect"

/** One cache entry. Times are epoch milliseconds read through Effect's `Clock`. @category models @since 0.1.0 */
export interface Entry {
  /** The request key (`RequestKey.make`), unique across namespaces. */
  readonly key: string
  readonly namespace: string
  /** The encoded payload (JSON text). */
  readonly value: string
  readonly createdAt: number
  /** When the entry stops being served; absent means never. */
  readonly expiresAt?: number | undefined
}

/** What `prune` removes: entries of one namespace (or all), created at least `olderThan` ago (or any age). @category models @since 0.1.0 */
export interface PruneOptions {
  readonly namespace?: string | undefined
  readonly olderThan?: Duration.Input | undefined
}

/** Size of a store. @category models @since 0.1.0 */
export interface Stats {
  readonly entries: number
  readonly bytes: number
}

/** A store operation failed (disk full, Redis unreachable, …). @category errors @since 0.1.0 */
export class CacheStoreError extends Schema.TaggedError<CacheStoreError>()("CacheStoreError", {
  store: Schema.String,
  operation: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `cache store ${this.store}: ${this.operation} failed: ${this.description}`
  }
}

/** The operations of a cache backend. @category models @since 0.1.0 */
export interface CacheStoreService {
  /** `memory`, `sqlite`, `redis`, or `memory+sqlite` for a tier. */
  readonly name: string
  /**
   * The live entry under `key`; expired entries are misses. A store that never waits (memory,
   * SQLite) may give the function a synchronous form, `get.now(key, now)` (epoch millis; throws
   * a `CacheStoreError` where `get` would fail), which the cache middleware's hot path uses. It
   * belongs to this very function: a wrapper that replaces `get` drops it.
   */
  readonly get: {
    (key: string): Effect.Effect<Entry | undefined, CacheStoreError>
    readonly now?: ((key: string, now: number) => Entry | undefined) | undefined
  }
  /**
   * Inserts or replaces an entry; succeeds with how many entries the size bound evicted. A
   * store that never waits (memory, SQLite's write-behind queue) may give it a synchronous
   * form, `set.now(entry)` (throws a `CacheStoreError` where `set` would fail).
   */
  readonly set: {
    (entry: Entry): Effect.Effect<number, CacheStoreError>
    readonly now?: ((entry: Entry) => number) | undefined
  }
  /** Removes one entry; whether it was there. */
  readonly delete: (key: string) => Effect.Effect<boolean, CacheStoreError>
  /** Removes entries by namespace and age, and every expired entry whatever its namespace; succeeds with how many. */
  readonly prune: (options?: PruneOptions) => Effect.Effect<number, CacheStoreError>
  /** Removes every entry. */
  readonly clear: Effect.Effect<void, CacheStoreError>
  readonly stats: Effect.Effect<Stats, CacheStoreError>
}

/**
 * Attaches synchronous forms to a store's `get` and `set` (see {@link CacheStoreService}).
 * @category constructors @since 0.4.0
 */
export const withNow = <F extends (...args: ReadonlyArray<never>) => unknown, N>(f: F, now: N): F & { readonly now: N } =>
  Object.assign(f, { now })

/**
 * The cache store the `Cache` middleware reads and writes. Provide it once and use it
 * both under `Cache.layerFromStore` and for maintenance (`prune`, `clear`, `stats`).
 * @category services @since 0.1.0
 */
export class CacheStore extends Context.Service<CacheStore, CacheStoreService>()("@hasten/cache/CacheStore") {}

/**
 * The cutoff instant of a prune: entries created at or before it go.
 * @category utils @since 0.1.0
 */
export const pruneCutoff = (now: number, options?: PruneOptions): number =>
  options?.olderThan === undefined ? Number.MAX_SAFE_INTEGER : now - Duration.toMillis(Duration.fromInputUnsafe(options.olderThan))

/** Whether an entry is expired at `now`. @category predicates @since 0.1.0 */
export const isExpired = (entry: Entry, now: number): boolean => entry.expiresAt !== undefined && entry.expiresAt <= now

/**
 * A tier: reads try `front` first and fill it from `back` on a back hit; writes,
 * deletes, prunes and clears go to both. Stats are the back store's.
 * @category constructors @since 0.1.0
 */
export const tiered = (front: CacheStoreService, back: CacheStoreService): CacheStoreService => ({
  name: `${front.name}+${back.name}`,
  get: (key) =>
    Effect.flatMap(front.get(key), (hit) =>
      hit !== undefined
        ? Effect.succeed(hit)
        : Effect.flatMap(back.get(key), (entry) => entry === undefined ? Effect.succeed(undefined) : Effect.as(front.set(entry), entry))),
  set: (entry) => Effect.flatMap(back.set(entry), (evicted) => Effect.map(front.set(entry), (more) => evicted + more)),
  delete: (key) => Effect.zipWith(front.delete(key), back.delete(key), (a, b) => a || b),
  prune: (options) => Effect.zipWith(front.prune(options), back.prune(options), (_, b) => b),
  clear: Effect.andThen(front.clear, back.clear),
  stats: back.stats
})

/**
 * A layer providing a tier of two store layers.
 * @category layers @since 0.1.0
 */
export const layerTiered = <E1, R1, E2, R2>(
  front: Layer.Layer<CacheStore, E1, R1>,
  back: Layer.Layer<CacheStore, E2, R2>
): Layer.Layer<CacheStore, E1 | E2, R1 | R2> =>
  Layer.effect(
    CacheStore,
    Effect.gen(function*() {
      const frontStore = Context.get(yield* Layer.build(Layer.fresh(front)), CacheStore)
      const backStore = Context.get(yield* Layer.build(Layer.fresh(back)), CacheStore)
      return tiered(frontStore, backStore)
    })
  )
