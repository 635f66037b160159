/**
 * The Redis store: one cache shared by many processes and machines. Entries are
 * strings with Redis-side expiry (`PX`), indexed per namespace in a sorted set by
 * creation time so `prune` can work by namespace and age. Commands fail fast while
 * Redis is unreachable (no offline queue), which lets the cache middleware degrade to
 * pass-through instead of hanging the run; the client reconnects in the background.
 * @since 0.1.0
 */
import { Clock, Effect, Layer, Redacted } from "effect"
import { Redis } from "ioredis"
import { CacheStore, CacheStoreError, type CacheStoreService, type Entry, isExpired, pruneCutoff } from "./CacheStore.js"

/** Connection and layout options. @category models @since 0.1.0 */
export interface Options {
  /** `redis://[:password@]host:port[/db]`; may carry a password, so a `Redacted` is accepted. Default `redis://127.0.0.1:6379`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** Bring your own client (it is not closed by the store). */
  readonly client?: Redis | undefined
  /** Key prefix (default `hasten:cache:`). */
  readonly prefix?: string | undefined
  /** Per-command timeout (default 1,000 ms). */
  readonly commandTimeoutMillis?: number | undefined
  /** How long to wait for the first connection before carrying on disconnected (default 1,000 ms). */
  readonly connectTimeoutMillis?: number | undefined
}

const fail = (operation: string) => (error: unknown) =>
  new CacheStoreError({ store: "redis", operation, description: error instanceof Error ? error.message : String(error) })

/** `namespace \n createdAt \n expiresAt \n value` — one GET reads an entry. */
const encodeEntry = (entry: Entry): string => `${entry.namespace}\n${entry.createdAt}\n${entry.expiresAt ?? ""}\n${entry.value}`

const decodeEntry = (key: string, text: string): Entry => {
  const first = text.indexOf("\n")
  const second = text.indexOf("\n", first + 1)
  const third = text.indexOf("\n", second + 1)
  if (first < 0 || second < 0 || third < 0) return { key, namespace: "", value: text, createdAt: 0 }
  const expires = text.slice(second + 1, third)
  return {
    key,
    namespace: text.slice(0, first),
    createdAt: Number(text.slice(first + 1, second)),
    expiresAt: expires === "" ? undefined : Number(expires),
    value: text.slice(third + 1)
  }
}

/**
 * Connects to Redis (or adopts `client`); the connection is closed when the scope
 * closes. An unreachable server is not an error here: operations fail with
 * `CacheStoreError` until it comes back.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const prefix = options.prefix ?? "hasten:cache:"
  const owned = options.client === undefined
  const client = options.client ?? (yield* Effect.acquireRelease(
    Effect.try({ catch: fail("connect"), try: () => {
      const url = options.url === undefined
        ? "redis://127.0.0.1:6379"
        : Redacted.isRedacted(options.url) ? Redacted.value(options.url) : options.url
      const redis = new Redis(url, {
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: options.commandTimeoutMillis ?? 1_000,
        connectTimeout: options.connectTimeoutMillis ?? 1_000,
        retryStrategy: (times) => Math.min(100 * times, 2_000)
      })
      // Connection errors surface as failed commands; keep ioredis from printing each one.
      redis.on("error", () => {})
      return redis
    } }),
    (redis) => Effect.sync(() => redis.disconnect())
  ))
  if (owned) {
    yield* Effect.tryPromise({ try: () => client.connect(), catch: fail("connect") }).pipe(
      Effect.timeoutOrElse({
        duration: options.connectTimeoutMillis ?? 1_000,
        orElse: () => Effect.fail(fail("connect")("timed out"))
      }),
      Effect.catch((error) => Effect.logWarning(`${error.message}; continuing without the shared cache until it is reachable`))
    )
  }
  const entryKey = (key: string) => `${prefix}e:${key}`
  const namespaceKey = (namespace: string) => `${prefix}ns:${namespace}`
  const namespacesKey = `${prefix}namespaces`

  const namespaces = (namespace: string | undefined) =>
    namespace !== undefined
      ? Effect.succeed([namespace])
      : Effect.tryPromise({ try: () => client.smembers(namespacesKey), catch: fail("prune") })

  const store: CacheStoreService = {
    name: "redis",
    get: (key) =>
      Effect.flatMap(Effect.tryPromise({ try: () => client.get(entryKey(key)), catch: fail("get") }), (text) =>
        Clock.clockWith((clock) =>
          Effect.sync(() => {
            if (text === null) return undefined
            const entry = decodeEntry(key, text)
            return isExpired(entry, clock.currentTimeMillisUnsafe()) ? undefined : entry
          })
        )),
    set: (entry) =>
      Clock.clockWith((clock) =>
        Effect.tryPromise({
          try: async () => {
            const multi = client.multi()
            if (entry.expiresAt !== undefined) {
              multi.set(entryKey(entry.key), encodeEntry(entry), "PX", Math.max(1, entry.expiresAt - clock.currentTimeMillisUnsafe()))
            } else {
              multi.set(entryKey(entry.key), encodeEntry(entry))
            }
            multi.zadd(namespaceKey(entry.namespace), entry.createdAt, entry.key)
            multi.sadd(namespacesKey, entry.namespace)
            const results = await multi.exec()
            const failed = results?.find(([error]) => error !== null)
            if (failed !== undefined) throw failed[0]
            return 0
          },
          catch: fail("set")
        })
      ),
    delete: (key) =>
      Effect.tryPromise({
        try: async () => (await client.del(entryKey(key))) > 0,
        catch: fail("delete")
      }),
    prune: (options) =>
      Effect.flatMap(namespaces(options?.namespace), (names) =>
        Clock.clockWith((clock) =>
          Effect.tryPromise({
            try: async () => {
              const now = clock.currentTimeMillisUnsafe()
              const cutoff = pruneCutoff(now, options)
              let removed = 0
              for (const name of names) {
                const old = await client.zrangebyscore(namespaceKey(name), "-inf", cutoff)
                if (old.length > 0) {
                  removed += await client.del(...old.map(entryKey))
                  await client.zrem(namespaceKey(name), ...old)
                }
                // Members whose entry Redis already expired: drop them from the index.
                const rest = await client.zrange(namespaceKey(name), "0", "-1")
                if (rest.length > 0) {
                  const pipeline = client.pipeline()
                  for (const key of rest) pipeline.exists(entryKey(key))
                  const exists = (await pipeline.exec()) ?? []
                  const gone = rest.filter((_, index) => exists[index]?.[1] === 0)
                  if (gone.length > 0) await client.zrem(namespaceKey(name), ...gone)
                }
              }
              return removed
            },
            catch: fail("prune")
          })
        )),
    clear: Effect.flatMap(namespaces(undefined), (names) =>
      Effect.tryPromise({
        try: async () => {
          for (const name of names) {
            const keys = await client.zrange(namespaceKey(name), "0", "-1")
            for (let index = 0; index < keys.length; index += 500) {
              await client.del(...keys.slice(index, index + 500).map(entryKey))
            }
            await client.del(namespaceKey(name))
          }
          await client.del(namespacesKey)
        },
        catch: fail("clear")
      })),
    stats: Effect.flatMap(namespaces(undefined), (names) =>
      Effect.tryPromise({
        try: async () => {
          let entries = 0
          let bytes = 0
          for (const name of names) {
            const keys = await client.zrange(namespaceKey(name), "0", "-1")
            if (keys.length === 0) continue
            const pipeline = client.pipeline()
            for (const key of keys) pipeline.strlen(entryKey(key))
            for (const [, length] of (await pipeline.exec()) ?? []) {
              if (typeof length === "number" && length > 0) {
                entries++
                bytes += length
              }
            }
          }
          return { entries, bytes }
        },
        catch: fail("stats")
      }))
  }
  return store
})

/** A `CacheStore` layer backed by Redis (fails only on an invalid URL; an unreachable server is not an error). @category layers @since 0.1.0 */
export const layer = (options?: Options): Layer.Layer<CacheStore, CacheStoreError> => Layer.effect(CacheStore, make(options))
