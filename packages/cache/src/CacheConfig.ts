/**
 * The cache's options: which store (memory, SQLite, Redis, or a memory tier in front),
 * which requests are cached, namespace, key version, TTL and what a failing store does;
 * the store layer they select, and the same options read from the environment.
 * @since 0.1.0
 */
import { Config, Context, type Duration, Effect, Layer, Option, type Redacted } from "effect"
import { join } from "node:path"
import { CacheStore, type CacheStoreError, tiered } from "./CacheStore.js"
import * as MemoryStore from "./MemoryStore.js"
import * as RedisStore from "./RedisStore.js"
import * as SqliteStore from "./SqliteStore.js"

/** Which requests are cached. @category models @since 0.1.0 */
export type Policy = "deterministic" | "all"

/** What a failing store does to a call: `bypass` warns and calls upstream; `fail` fails the call. @category models @since 0.1.0 */
export type OnStoreError = "bypass" | "fail"

/** Behaviour independent of the store. @category models @since 0.1.0 */
export interface Settings {
  /** `false` turns the cache off for a run (the seeds' `use_cache` / `--no-cache`). Default `true`. */
  readonly enabled?: boolean | undefined
  /** `deterministic` (default): only temperature 0 or seeded requests; `all`: every request. */
  readonly policy?: Policy | undefined
  /** Separates users of one store. Default `"default"`. */
  readonly namespace?: string | undefined
  /** Bump to ignore every entry written under an older version. Default `1`. */
  readonly version?: number | undefined
  /** How long an entry is served; default forever. */
  readonly ttl?: Duration.Input | undefined
  /** Default `bypass`: a store that is down degrades to pass-through with a warning. */
  readonly onStoreError?: OnStoreError | undefined
}

/** Store selection plus {@link Settings}. @category models @since 0.1.0 */
export interface Options extends Settings {
  /** Default `sqlite`. */
  readonly store?: "memory" | "sqlite" | "redis" | undefined
  /** SQLite file; default `.hasten/cache.db`. */
  readonly path?: string | undefined
  /** Redis URL; default `redis://127.0.0.1:6379`. */
  readonly redisUrl?: string | Redacted.Redacted<string> | undefined
  /** Redis key prefix; default `hasten:cache:`. */
  readonly redisPrefix?: string | undefined
  /** Put a memory LRU in front of the SQLite or Redis store. Default `false`. */
  readonly tier?: boolean | undefined
  /** Bounds of the memory store (or of the front tier). */
  readonly memory?: MemoryStore.Options | undefined
}

/**
 * The store layer the cache layers build from options (handy for maintenance: prune, clear, stats).
 * @category layers @since 0.1.0
 */
export const layerStore = (options: Options = {}): Layer.Layer<CacheStore, CacheStoreError> => {
  const memory = () => MemoryStore.layer(options.memory)
  const back = (): Layer.Layer<CacheStore, CacheStoreError> => {
    switch (options.store ?? "sqlite") {
      case "memory":
        return memory()
      case "redis":
        return RedisStore.layer({ url: options.redisUrl, prefix: options.redisPrefix })
      case "sqlite":
        return SqliteStore.layer({ path: options.path })
    }
  }
  if (options.tier === true && options.store !== "memory") {
    return Layer.effect(
      CacheStore,
      Effect.gen(function*() {
        const front = Context.get(yield* Layer.build(memory()), CacheStore)
        const store = Context.get(yield* Layer.build(back()), CacheStore)
        return tiered(front, store)
      })
    )
  }
  return back()
}

/**
 * Options from the environment: `HASTEN_CACHE` (0/1), `HASTEN_CACHE_STORE`
 * (memory|sqlite|redis), `HASTEN_CACHE_PATH` or `HASTEN_CACHE_DIR`, `REDIS_URL`,
 * `HASTEN_CACHE_TIER`, `HASTEN_CACHE_TTL`, `HASTEN_CACHE_NAMESPACE`,
 * `HASTEN_CACHE_POLICY`, `HASTEN_CACHE_ON_STORE_ERROR`.
 * @category configuration @since 0.1.0
 */
export const config: Config.Config<Options> = Config.all({
  enabled: Config.Boolean("HASTEN_CACHE").pipe(Config.withDefault(true)),
  store: Config.Literals(["memory", "sqlite", "redis"], "HASTEN_CACHE_STORE").pipe(Config.withDefault("sqlite" as const)),
  path: Config.String("HASTEN_CACHE_PATH").pipe(Config.option),
  dir: Config.String("HASTEN_CACHE_DIR").pipe(Config.option),
  redisUrl: Config.Redacted("REDIS_URL").pipe(Config.option),
  tier: Config.Boolean("HASTEN_CACHE_TIER").pipe(Config.withDefault(false)),
  ttl: Config.Duration("HASTEN_CACHE_TTL").pipe(Config.option),
  namespace: Config.String("HASTEN_CACHE_NAMESPACE").pipe(Config.withDefault("default")),
  policy: Config.Literals(["deterministic", "all"], "HASTEN_CACHE_POLICY").pipe(Config.withDefault("deterministic" as const)),
  onStoreError: Config.Literals(["bypass", "fail"], "HASTEN_CACHE_ON_STORE_ERROR").pipe(Config.withDefault("bypass" as const))
}).pipe(Config.map((values): Options => ({
  enabled: values.enabled,
  store: values.store,
  tier: values.tier,
  namespace: values.namespace,
  policy: values.policy,
  onStoreError: values.onStoreError,
  ...(Option.isSome(values.path)
    ? { path: values.path.value }
    : Option.isSome(values.dir)
    ? { path: join(values.dir.value, "cache.db") }
    : {}),
  ...(Option.isSome(values.redisUrl) ? { redisUrl: values.redisUrl.value } : {}),
  ...(Option.isSome(values.ttl) ? { ttl: values.ttl.value } : {})
})))

/**
 * Whether command-line arguments turn the cache off (`--no-cache`): spread into options as
 * `Cache.layer({ ...options, ...Cache.fromArgs(process.argv) })`.
 * @category configuration @since 0.1.0
 */
export const fromArgs = (argv: ReadonlyArray<string>): { readonly enabled?: false } => argv.includes("--no-cache") ? { enabled: false } : {}
