/**
 * The SQLite store, the embedded default: one file (`.hasten/cache.db`) in WAL mode
 * with a busy timeout, so entries survive restarts and several processes can read and
 * write the same file at once. Built on `node:sqlite` (Node 24), no native addon.
 *
 * Writes are write-behind by default: `set` queues the entry (reads of this store see it at
 * once) and the queue is committed `lingerMillis` (20 ms, read through `Clock`) after its
 * first entry, everything queued by then in one transaction, so a cache miss answers before
 * its entry is on disk, the commit stays off the next request's path, and a burst of misses
 * costs one commit. Closing the store (its scope, the layer's release) and the process's
 * `exit` event write what is queued; a crash (`kill -9`, power loss) loses at most the
 * entries of the last `lingerMillis` (20 ms). `writeBehind: false` commits in `set`.
 * @since 0.1.0
 */
import { Clock, Duration, Effect, type Fiber, Layer } from "effect"
import { CacheStore, CacheStoreError, type CacheStoreService, type Entry, isExpired, pruneCutoff, withNow } from "./CacheStore.js"
import { SqliteDatabase } from "./internal/sqlite.js"
import { SqliteWriter, type WireRow } from "./internal/sqliteWriter.js"

/** Where the file is and how long a writer waits for another process's lock. @category models @since 0.1.0 */
export interface Options {
  /** The database file (default `.hasten/cache.db`, relative to the working directory); `:memory:` for a private one. */
  readonly path?: string | undefined
  /** How long to wait for another process's write lock (default 5 s). */
  readonly busyTimeoutMillis?: number | undefined
  /**
   * Queue writes and commit them together shortly after (default `true`); `false`: every
   * `set` commits before it succeeds.
   */
  readonly writeBehind?: boolean | undefined
  /**
   * How long a queued write waits for others to share its commit (default 20 ms). Longer
   * batches cost less per entry (the WAL pages, the checkpoint's fsync) and fewer commits land
   * on requests in flight: behind `hasten-serve`, 25 ms instead of 5 took 15–48 µs off the p50
   * of a request with cache, rate limit and perf logs (three interleaved runs); a crash loses
   * at most this window of entries.
   */
  readonly lingerMillis?: number | undefined
  /**
   * Commit the queue on a worker thread with its own connection (default `false`; a file
   * only). The transactions, the WAL checkpoints they trigger (an fsync every ~1,000 pages)
   * and the busy wait for another process's write lock then stay off the event loop, at a
   * cost per call: a cross-thread message per batch, and the reading connection's page cache
   * is reset by each of the thread's commits (a miss's lookup +2 µs). Measured in the server
   * bench's in-process stack, a cache miss's p50 was 12 µs higher with it, so it is for files
   * several processes write at once, where a commit can wait for another's lock.
   */
  readonly commitThread?: boolean | undefined
}

/** The default file. @category configuration @since 0.1.0 */
export const defaultPath = ".hasten/cache.db"

const storeError = (operation: string, error: unknown) =>
  new CacheStoreError({ store: "sqlite", operation, description: error instanceof Error ? error.message : String(error) })

const attempt = <A>(operation: string, f: () => A): Effect.Effect<A, CacheStoreError> =>
  Effect.try({ try: f, catch: (error) => storeError(operation, error) })

/** The queues of the stores open in this process, written when it exits. */
const atExit = new Set<() => void>()
let exitHooked = false
const flushAllAtExit = () => {
  for (const flush of atExit) {
    try {
      flush()
    } catch {
      // exiting: nowhere left to report it
    }
  }
  atExit.clear()
}

/**
 * Opens (creating if needed) the database; it is closed when the scope closes.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const writeBehind = options.writeBehind ?? true
  const path = options.path ?? defaultPath
  const busyTimeoutMillis = Math.max(0, Math.floor(options.busyTimeoutMillis ?? 5_000))
  // a private in-memory database has no file a second connection could open
  const threaded = writeBehind && options.commitThread === true && path !== ":memory:" && path !== "" &&
    !path.startsWith("file::memory:")
  // Entries `set` but not yet committed, by key; reads see them first.
  const pending = new Map<string, Entry>()
  // Entries handed to the writer thread and not yet committed; reads see them next.
  const inFlight = new Map<string, Entry>()
  let scheduled = false
  // A background commit that failed: reported by the next `set` (the cache's error policy sees it).
  let failed: unknown = undefined
  let writer: SqliteWriter | undefined
  let drainWaiters: Array<() => void> = []
  const writeRows = (db: SqliteDatabase, rows: Array<Entry>) => {
    if (rows.length > 0) db.setMany(rows)
  }
  /** Commits the queue on this thread's connection. */
  const flush = (db: SqliteDatabase) => {
    scheduled = false
    if (pending.size === 0) return
    const rows = [...pending.values()]
    pending.clear()
    writeRows(db, rows)
  }
  const db = yield* Effect.acquireRelease(
    attempt("open", () => new SqliteDatabase({ path, busyTimeoutMillis })),
    (db) =>
      Effect.andThen(
        drained,
        Effect.suspend(() => {
          atExit.delete(onExit)
          let warning: Effect.Effect<void> = Effect.void
          try {
            flush(db)
          } catch (error) {
            warning = Effect.logWarning(`${storeError("set", error).message}; the last queued entries were not written`)
          }
          const closeWriter = writer === undefined
            ? Effect.void
            : Effect.callback<void>((resume) => writer!.close(() => resume(Effect.void)))
          return Effect.andThen(warning, Effect.ensuring(closeWriter, Effect.sync(() => db.close())))
        })
      )
  )
  // At exit the thread may not get to answer: what it holds is written here too (upserts).
  const onExit = () => writeRows(db, [...inFlight.values(), ...pending.values()])
  if (writeBehind) {
    // a process that exits without closing the store (process.exit) still writes the queue
    if (!exitHooked) {
      exitHooked = true
      process.once("exit", flushAllAtExit)
    }
    atExit.add(onExit)
  }
  /** Succeeds once the writer thread has committed (or given up on) everything sent to it. */
  const drained: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (writer === undefined || writer.inFlight === 0) return resume(Effect.void)
    drainWaiters.push(() => resume(Effect.void))
  })
  const wake = () => {
    if (writer !== undefined && writer.inFlight > 0) return
    const waiters = drainWaiters
    drainWaiters = []
    for (const waiter of waiters) waiter()
  }
  /** Hands the queue to the writer thread (started on the first commit). */
  const send = (current: SqliteWriter) => {
    scheduled = false
    if (pending.size === 0) return
    const rows = [...pending.values()]
    pending.clear()
    const wire: Array<WireRow> = []
    for (const row of rows) {
      inFlight.set(row.key, row)
      wire.push([row.key, row.namespace, row.value, row.createdAt, row.expiresAt ?? null])
    }
    current.write(wire, (error) => {
      for (const row of rows) {
        if (inFlight.get(row.key) !== row) continue
        inFlight.delete(row.key)
        // the thread stopped before committing them: they go back to the queue, committed here
        if (!current.alive && !pending.has(row.key)) pending.set(row.key, row)
      }
      if (!current.alive) flushSoon()
      else if (error !== undefined) failed = new Error(error)
      wake()
    })
  }
  const linger = Duration.millis(Math.max(0, options.lingerMillis ?? 20))
  const runFork = Effect.runForkWith(yield* Effect.context<never>())
  let timer: Fiber.Fiber<void> | undefined
  const commitQueued = Effect.sync(() => {
    timer = undefined
    if (!scheduled) return
    try {
      if (threaded && (writer === undefined || writer.alive)) {
        writer ??= new SqliteWriter(path, busyTimeoutMillis, () => {})
        send(writer)
      } else {
        flush(db)
      }
    } catch (error) {
      failed = error
    }
  })
  const flushSoon = () => {
    if (scheduled || pending.size === 0) return
    scheduled = true
    timer = runFork(Effect.andThen(Effect.sleep(linger), commitQueued))
  }
  yield* Effect.addFinalizer(() => Effect.sync(() => timer?.interruptUnsafe()))
  /** Commits everything first: operations that read or change many rows see every write. */
  const flushed = <A>(operation: string, f: () => A): Effect.Effect<A, CacheStoreError> =>
    Effect.andThen(
      drained,
      attempt(operation, () => {
        flush(db)
        return f()
      })
    )
  /** The live row under `key` at `now`: the queue's, the writer thread's, then the file's. */
  const getNow = (key: string, now: number): Entry | undefined => {
    let row: Entry | undefined = pending.get(key) ?? (inFlight.size > 0 ? inFlight.get(key) : undefined)
    if (row === undefined) {
      try {
        row = db.get(key)
      } catch (error) {
        throw storeError("get", error)
      }
    }
    return row === undefined || isExpired(row, now) ? undefined : row
  }
  /** Queues a row (write-behind); reports a background commit's failure once. */
  const queue = (entry: Entry): number => {
    if (failed !== undefined) {
      const error = failed
      failed = undefined
      throw storeError("set", error)
    }
    pending.set(entry.key, entry)
    flushSoon()
    return 0
  }
  const store: CacheStoreService = {
    name: "sqlite",
    get: withNow(
      (key: string) =>
        Clock.clockWith((clock) => {
          try {
            return Effect.succeed(getNow(key, clock.currentTimeMillisUnsafe()))
          } catch (error) {
            return Effect.fail(error as CacheStoreError)
          }
        }),
      getNow
    ),
    // a commit per `set` (writeBehind: false) waits for the file's lock: no synchronous form then
    set: writeBehind
      ? withNow(
        (entry: Entry) =>
          Effect.suspend(() => {
            try {
              return Effect.succeed(queue(entry))
            } catch (error) {
              return Effect.fail(error as CacheStoreError)
            }
          }),
        queue
      )
      : (entry: Entry) =>
        attempt("set", () => {
          db.set(entry)
          return 0
        }),
    delete: (key) => flushed("delete", () => db.delete(key)),
    prune: (options) =>
      Clock.clockWith((clock) =>
        flushed("prune", () => {
          const now = clock.currentTimeMillisUnsafe()
          return db.prune({ namespace: options?.namespace, cutoff: pruneCutoff(now, options), now })
        })
      ),
    clear: flushed("clear", () => db.clear()),
    stats: flushed("stats", () => db.stats())
  }
  return store
})

/** A `CacheStore` layer backed by one SQLite file. @category layers @since 0.1.0 */
export const layer = (options?: Options): Layer.Layer<CacheStore, CacheStoreError> => Layer.effect(CacheStore, make(options))
