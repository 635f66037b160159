/**
 * The SQLite store, the embedded default: one file (`.hasten/cache.db`) in WAL mode
 * with a busy timeout, so entries survive restarts and several processes can read and
 * write the same file at once. Built on `node:sqlite` (Node 24), no native addon.
 * @since 0.1.0
 */
import { Clock, Effect, Layer } from "effect"
import { CacheStore, CacheStoreError, type CacheStoreService, type Entry, isExpired, pruneCutoff } from "./CacheStore.js"
import { SqliteDatabase } from "./internal/sqlite.js"

/** Where the file is and how long a writer waits for another process's lock. @category models @since 0.1.0 */
export interface Options {
  /** The database file (default `.hasten/cache.db`, relative to the working directory); `:memory:` for a private one. */
  readonly path?: string | undefined
  /** How long to wait for another process's write lock (default 5 s). */
  readonly busyTimeoutMillis?: number | undefined
}

/** The default file. @category configuration @since 0.1.0 */
export const defaultPath = ".hasten/cache.db"

const storeError = (operation: string, error: unknown) =>
  new CacheStoreError({ store: "sqlite", operation, description: error instanceof Error ? error.message : String(error) })

const attempt = <A>(operation: string, f: () => A): Effect.Effect<A, CacheStoreError> =>
  Effect.try({ try: f, catch: (error) => storeError(operation, error) })

/**
 * Opens (creating if needed) the database; it is closed when the scope closes.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const db = yield* Effect.acquireRelease(
    attempt("open", () => new SqliteDatabase({ path: options.path ?? defaultPath, busyTimeoutMillis: options.busyTimeoutMillis })),
    (db) => Effect.sync(() => db.close())
  )
  const store: CacheStoreService = {
    name: "sqlite",
    // The hot path: no `Effect.try`, one clock read, one object per row.
    get: (key) =>
      Clock.clockWith((clock) => {
        let row: Entry | undefined
        try {
          row = db.get(key)
        } catch (error) {
          return Effect.fail(storeError("get", error))
        }
        return Effect.succeed(row === undefined || isExpired(row, clock.currentTimeMillisUnsafe()) ? undefined : row)
      }),
    set: (entry) =>
      attempt("set", () => {
        db.set(entry)
        return 0
      }),
    delete: (key) => attempt("delete", () => db.delete(key)),
    prune: (options) =>
      Clock.clockWith((clock) =>
        attempt("prune", () => {
          const now = clock.currentTimeMillisUnsafe()
          return db.prune({ namespace: options?.namespace, cutoff: pruneCutoff(now, options), now })
        })
      ),
    clear: attempt("clear", () => db.clear()),
    stats: attempt("stats", () => db.stats())
  }
  return store
})

/** A `CacheStore` layer backed by one SQLite file. @category layers @since 0.1.0 */
export const layer = (options?: Options): Layer.Layer<CacheStore, CacheStoreError> => Layer.effect(CacheStore, make(options))
