/**
 * The Redis store: one cache shared by many processes and machines. Entries are
 * strings with Redis-side expiry (`PX`), indexed per namespace in a sorted set by
 * creation time so `prune` can work by namespace and age, and in one sorted set by
 * expiry instant so `prune` removes what Effect's `Clock` says has expired. Commands fail fast while
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

// A namespace may hold newlines: in the header they are written `\n` (and `\` as `\\`),
// which leaves every namespace without either character as it was.
const escapeNamespace = (namespace: string): string => namespace.replaceAll("\\", "\\\\").replaceAll("\n", "\\n")
const unescapeNamespace = (text: string): string => text.replace(/\\([\\n])/g, (_, char: string) => (char === "n" ? "\n" : "\\"))

/** `namespace \n createdAt \n expiresAt \n value` — one GET reads an entry. */
const encodeEntry = (entry: Entry): string =>
  `${escapeNamespace(entry.namespace)}\n${entry.createdAt}\n${entry.expiresAt ?? ""}\n${entry.value}`

/** Where the header ends (the third newline), or -1 when `text` has no complete header. */
const headerEnd = (text: string): number => {
  const first = text.indexOf("\n")
  const second = first < 0 ? -1 : text.indexOf("\n", first + 1)
  return second < 0 ? -1 : text.indexOf("\n", second + 1)
}

const decodeEntry = (key: string, text: string): Entry => {
  const third = headerEnd(text)
  if (third < 0) return { key, namespace: "", value: text, createdAt: 0 }
  const first = text.indexOf("\n")
  const second = text.indexOf("\n", first + 1)
  const expires = text.slice(second + 1, third)
  const namespace = unescapeNamespace(text.slice(0, first))
  const createdAt = Number(text.slice(first + 1, second))
  const value = text.slice(third + 1)
  return expires === "" ? { key, namespace, createdAt, value } : { key, namespace, createdAt, expiresAt: Number(expires), value }
}

/** How much of an entry `prune` reads to learn its namespace and times (more only for a longer header). */
const headerBytes = 512

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
    Effect.try({
      catch: fail("connect"),
      try: () => {
        const url = options.url === undefined
          ? "redis://127.0.0.1:6379"
          : Redacted.isRedacted(options.url)
          ? Redacted.value(options.url)
          : options.url
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
      }
    }),
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
  const expiriesKey = `${prefix}expiries`

  /**
   * What `prune` needs of the entries under `keys`: each one's header (namespace and
   * times; the value may be cut short), `"gone"`, or `"corrupt"` (no header).
   */
  const headers = async (keys: ReadonlyArray<string>): Promise<Array<Entry | "gone" | "corrupt">> => {
    const pipeline = client.pipeline()
    for (const key of keys) pipeline.strlen(entryKey(key)).getrange(entryKey(key), 0, headerBytes - 1)
    const results = (await pipeline.exec()) ?? []
    const cut: Array<number> = []
    const found = keys.map((key, index): Entry | "gone" | "corrupt" => {
      const length = results[2 * index]?.[1]
      const head = results[2 * index + 1]?.[1]
      if (typeof length !== "number" || length === 0 || typeof head !== "string") return "gone"
      if (headerEnd(head) >= 0) return decodeEntry(key, head)
      if (length <= headerBytes) return "corrupt"
      cut.push(index)
      return "gone"
    })
    if (cut.length > 0) {
      const texts = await client.mget(...cut.map((index) => entryKey(keys[index]!)))
      cut.forEach((index, position) => {
        const text = texts[position]
        found[index] = text === null || text === undefined ? "gone" : headerEnd(text) >= 0 ? decodeEntry(keys[index]!, text) : "corrupt"
      })
    }
    return found
  }

  /** Runs `command` over `keys` in slices, so no single command carries too many arguments. */
  const inSlices = async (keys: ReadonlyArray<string>, command: (slice: Array<string>) => Promise<number>): Promise<number> => {
    let total = 0
    for (let index = 0; index < keys.length; index += 500) total += await command(keys.slice(index, index + 500))
    return total
  }

  /** Every indexed entry key once (an entry re-set under another namespace is listed under both). */
  const allKeys = async (): Promise<Array<string>> => {
    const keys = new Set<string>()
    for (const name of await client.smembers(namespacesKey)) {
      for (const key of await client.zrange(namespaceKey(name), "0", "-1")) keys.add(key)
    }
    return [...keys]
  }

  const namespaces = (namespace: string | undefined) =>
    namespace !== undefined
      ? Effect.succeed([namespace])
      : Effect.tryPromise({ try: () => client.smembers(namespacesKey), catch: fail("prune") })

  const store: CacheStoreService = {
    name: "redis",
    get: (key) =>
      Effect.flatMap(
        Effect.tryPromise({ try: () => client.get(entryKey(key)), catch: fail("get") }),
        (text) =>
          Clock.clockWith((clock) =>
            Effect.sync(() => {
              if (text === null) return undefined
              const entry = decodeEntry(key, text)
              return isExpired(entry, clock.currentTimeMillisUnsafe()) ? undefined : entry
            })
          )
      ),
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
            if (entry.expiresAt !== undefined) multi.zadd(expiriesKey, entry.expiresAt, entry.key)
            else multi.zrem(expiriesKey, entry.key)
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
              const doomed = new Set<string>()
              for (const name of names) {
                const members = await client.zrange(namespaceKey(name), "0", "-1")
                if (members.length === 0) continue
                // Decide by the entry itself: the index may list an entry Redis already
                // expired, or one re-set under another namespace since. Values without a
                // header (corrupt) go.
                const found = await headers(members)
                const unlisted: Array<string> = []
                members.forEach((key, index) => {
                  const entry = found[index]!
                  if (entry === "gone" || (entry !== "corrupt" && entry.namespace !== name)) {
                    unlisted.push(key)
                  } else if (entry === "corrupt" || entry.createdAt <= cutoff || isExpired(entry, now)) {
                    doomed.add(key)
                    unlisted.push(key)
                  }
                })
                await inSlices(unlisted, (slice) => client.zrem(namespaceKey(name), ...slice))
              }
              // Expired by the Clock, in any namespace (Redis drops them too, on its own clock).
              const expiring = await client.zrangebyscore(expiriesKey, "-inf", now)
              if (expiring.length > 0) {
                const found = await headers(expiring)
                expiring.forEach((key, index) => {
                  const entry = found[index]!
                  if (typeof entry === "object" && isExpired(entry, now)) doomed.add(key)
                })
                await inSlices(expiring, (slice) => client.zrem(expiriesKey, ...slice))
              }
              const removed = await inSlices([...doomed], (slice) => client.del(...slice.map(entryKey)))
              await inSlices([...doomed], (slice) => client.zrem(expiriesKey, ...slice))
              return removed
            },
            catch: fail("prune")
          })
        )),
    clear: Effect.tryPromise({
      try: async () => {
        const names = await client.smembers(namespacesKey)
        await inSlices(await allKeys(), (slice) => client.del(...slice.map(entryKey)))
        await inSlices(names.map(namespaceKey), (slice) => client.del(...slice))
        await client.del(namespacesKey, expiriesKey)
      },
      catch: fail("clear")
    }),
    stats: Effect.tryPromise({
      try: async () => {
        let entries = 0
        let bytes = 0
        const keys = await allKeys()
        for (let index = 0; index < keys.length; index += 500) {
          const pipeline = client.pipeline()
          for (const key of keys.slice(index, index + 500)) pipeline.strlen(entryKey(key))
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
    })
  }
  return store
})

/** A `CacheStore` layer backed by Redis (fails only on an invalid URL; an unreachable server is not an error). @category layers @since 0.1.0 */
export const layer = (options?: Options): Layer.Layer<CacheStore, CacheStoreError> => Layer.effect(CacheStore, make(options))
