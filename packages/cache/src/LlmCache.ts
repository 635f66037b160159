/**
 * The response cache as `Llm` middleware: answers repeated deterministic requests from
 * a `CacheStore`, makes one upstream call for N concurrent identical misses, records
 * streams and replays them chunk by chunk. Put it outermost: hits then skip the rate
 * limiter and never reach the network.
 * @since 0.1.0
 */
import { Completion, type CompletionRequest, Llm, type LlmError, RequestKey } from "@hasten/core"
import { Clock, type Config, type Context, Duration, Effect, Layer, Metric, Stream } from "effect"
import { LRUCache } from "lru-cache"
import { config, type Options, type Settings } from "./CacheConfig.js"
import { validateSettings } from "./CacheError.js"
import { completionKey } from "./CacheKey.js"
import { decodePayload, encodePayload, type Payload } from "./CachePayload.js"
import { CacheStore, type CacheStoreService, type Entry } from "./CacheStore.js"
import { metricsFor } from "./internal/metrics.js"
import { makeFlights, singleFlight } from "./internal/singleFlight.js"
import { makeGuard } from "./internal/storeGuard.js"
import { type StreamFlight, streamFlight } from "./internal/streamFlight.js"
import { withStore } from "./internal/withStore.js"

interface Decoded {
  readonly completion?: Completion.Completion
  readonly chunks?: ReadonlyArray<Completion.CompletionChunk>
  readonly bytes: number
}

/** A lookup not answered synchronously: it takes the store's effect (no synchronous read, an error, a corrupt entry). */
const SLOW: unique symbol = Symbol("SLOW")

const markCompletion = (completion: Completion.Completion): Completion.Completion =>
  new Completion.Completion({ ...completion, cached: true })

/**
 * Wraps an `Llm` with the cache, reading and writing `store`. Needs a scope (the
 * in-flight upstream calls live in it).
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(inner: Llm.LlmService, store: CacheStoreService, settings: Settings = {}) {
  const invalid = validateSettings(settings)
  if (invalid !== undefined) return yield* Effect.die(invalid)
  if (settings.enabled === false) return inner
  const scope = yield* Effect.scope
  const policy = settings.policy ?? "deterministic"
  const namespace = settings.namespace ?? "default"
  const version = settings.version ?? 1
  const ttlMillis = settings.ttl === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(settings.ttl))
  const guard = makeGuard(store, settings.onStoreError ?? "bypass")
  const {
    bytesRead: bytesReadMetric,
    bytesWritten: bytesWrittenMetric,
    corrupt: corruptMetric,
    evictions: evictionsMetric,
    hits: hitsMetric,
    misses: missesMetric,
    skipped: skippedMetric
  } = metricsFor(store.name)
  const completions = yield* makeFlights<Completion.Completion>()
  const streams = new Map<string, StreamFlight<Completion.CompletionChunk>>()
  // Decoded entries by key, reused while the stored text is unchanged: a hit still reads
  // the store every time, but identical text is validated and decoded only once.
  const decodedEntries = new LRUCache<string, { readonly value: string; readonly decoded: Decoded }>({ max: 1_000 })

  const cacheable = (request: CompletionRequest.CompletionRequest): boolean => policy === "all" || RequestKey.isDeterministic(request)

  // Keys by request object: a caller that sends the same (immutable) request again, as a
  // server does for a repeated body, skips the canonical JSON and its SHA-256.
  const keys = new WeakMap<CompletionRequest.CompletionRequest, string>()
  const keyOf = (request: CompletionRequest.CompletionRequest): string => {
    let key = keys.get(request)
    if (key === undefined) {
      // the endpoint's identity: two servers under one provider name never share entries
      key = completionKey(request, { provider: inner.name, endpoint: inner.endpoint, namespace, version })
      keys.set(request, key)
    }
    return key
  }

  const decodeEntry = (entry: Entry): Decoded | undefined => {
    const memo = decodedEntries.get(entry.key)
    if (memo !== undefined && memo.value === entry.value) return memo.decoded
    const payload = decodePayload(entry.value, true)
    if (payload === undefined || payload._tag === "embedding") return undefined
    const decoded: Decoded = payload._tag === "completion"
      ? { completion: payload.completion, bytes: Buffer.byteLength(entry.value) }
      : { chunks: payload.chunks, bytes: Buffer.byteLength(entry.value) }
    decodedEntries.set(entry.key, { value: entry.value, decoded })
    return decoded
  }

  /**
   * A lookup's answer, counted: `undefined` for a miss, the decoded entry for a hit (its
   * bytes counted too), `SLOW` for an entry that does not decode (left to `lookup`, which
   * reports it).
   */
  const counted = (entry: Entry | undefined, context: Context.Context<never>): Decoded | undefined | typeof SLOW => {
    if (entry === undefined) {
      missesMetric.updateUnsafe(1, context)
      return undefined
    }
    const decoded = decodeEntry(entry)
    if (decoded === undefined) return SLOW
    hitsMetric.updateUnsafe(1, context)
    bytesReadMetric.updateUnsafe(decoded.bytes, context)
    return decoded
  }

  /** The decoded entry under `key`, or `undefined` on a miss (absent, corrupt, or store down under `bypass`). */
  const lookup = (key: string): Effect.Effect<Decoded | undefined, LlmError.LlmError> =>
    Effect.flatMap(guard(store.get(key), undefined), (entry) =>
      Effect.contextWith((context: Context.Context<never>) => {
        const answer = counted(entry, context)
        if (answer !== SLOW) return Effect.succeed(answer)
        return Effect.as(
          Effect.andThen(
            Effect.all([Metric.update(corruptMetric, 1), Metric.update(missesMetric, 1)], { discard: true }),
            Effect.logWarning(`cache store ${store.name}: entry ${key} is corrupt; treating it as a miss and overwriting it`)
          ),
          undefined
        )
      }))

  // Stores that answer at once (memory, SQLite) are read and written without effects on the
  // hot path; a store error or a corrupt entry there goes through the effect path, which
  // applies the error policy and reports it.
  const getNow = store.get.now
  const setNow = store.set.now
  const hitNow = (key: string, now: number, context: Context.Context<never>): Decoded | undefined | typeof SLOW => {
    if (getNow === undefined || guard.degraded()) return SLOW
    let entry: Entry | undefined
    try {
      entry = getNow(key, now)
    } catch {
      return SLOW
    }
    return counted(entry, context)
  }

  /** Counts a stored entry's bytes and what its store evicted for it. */
  const stored = (entry: Entry, evicted: number, context: Context.Context<never>): void => {
    bytesWrittenMetric.updateUnsafe(Buffer.byteLength(entry.value), context)
    if (evicted > 0) evictionsMetric.updateUnsafe(evicted, context)
  }

  /** Encodes and stores an entry: through the store's synchronous `set` when it has one, else (or when it throws) its effect, under the error policy. */
  const write = (key: string, payload: Payload): Effect.Effect<void> =>
    Effect.withFiber((fiber) => {
      const value = encodePayload(payload)
      if (value === undefined) return Effect.logWarning(`cache: entry ${key} cannot be encoded as JSON; not stored`)
      const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
      const entry: Entry = { key, namespace, value, createdAt: now, ...(ttlMillis !== undefined ? { expiresAt: now + ttlMillis } : {}) }
      if (setNow !== undefined && !guard.degraded()) {
        try {
          stored(entry, setNow(entry), fiber.context)
          return Effect.void
        } catch {
          // the store's effect meets the error again, under the error policy
        }
      }
      return guard(store.set(entry), 0).pipe(
        Effect.flatMap((evicted) =>
          Effect.contextWith((context: Context.Context<never>) => {
            stored(entry, evicted, context)
            return Effect.void
          })
        ),
        Effect.catch(() => Effect.void)
      )
    })

  const foldChunks = (
    request: CompletionRequest.CompletionRequest,
    chunks: ReadonlyArray<Completion.CompletionChunk>
  ): Effect.Effect<Completion.Completion> =>
    Effect.map(
      Completion.fromStream(Stream.fromIterable(chunks), { model: request.model, provider: inner.name }),
      markCompletion
    )

  const complete = (request: CompletionRequest.CompletionRequest): Effect.Effect<Completion.Completion, LlmError.LlmError> => {
    if (!cacheable(request)) return Effect.andThen(Metric.update(skippedMetric, 1), inner.complete(request))
    const key = keyOf(request)
    const answer = (hit: Decoded | undefined): Effect.Effect<Completion.Completion, LlmError.LlmError> => {
      if (hit?.completion !== undefined) return Effect.succeed(hit.completion)
      if (hit?.chunks !== undefined) return foldChunks(request, hit.chunks)
      return singleFlight(
        completions,
        key,
        inner.complete(request),
        (completion) => write(key, { _tag: "completion", completion })
      )
    }
    if (getNow === undefined) return Effect.flatMap(lookup(key), answer)
    return Effect.withFiber((fiber) => {
      const hit = hitNow(key, fiber.getRef(Clock.Clock).currentTimeMillisUnsafe(), fiber.context)
      return hit === SLOW ? Effect.flatMap(lookup(key), answer) : answer(hit)
    })
  }

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> => {
    if (!cacheable(request)) return Stream.unwrap(Effect.as(Metric.update(skippedMetric, 1), inner.stream(request)))
    return Stream.unwrap(Effect.suspend(() => {
      const key = keyOf(request)
      return Effect.map(lookup(key), (hit) => {
        if (hit?.chunks !== undefined) return Stream.fromIterable(hit.chunks)
        if (hit?.completion !== undefined) return Stream.fromIterable(Completion.toChunks(hit.completion))
        return streamFlight(streams, scope, key, inner.stream(request), (chunks) => write(key, { _tag: "stream", chunks }))
      })
    }))
  }

  // the provider's rate-limit policy stays visible to a rate limiter placed above the cache
  return Llm.inherit(inner, Llm.Llm.of({ name: inner.name, complete, stream }))
})

/**
 * The `Llm` middleware over a `CacheStore` you provide (share one store between the
 * cache and your maintenance code).
 * @category layers @since 0.1.0
 */
export const layerFromStore = (settings: Settings = {}): Layer.Layer<Llm.Llm, never, Llm.Llm | CacheStore> =>
  Layer.effect(
    Llm.Llm,
    Effect.gen(function*() {
      const inner = yield* Effect.service(Llm.Llm)
      const store = yield* Effect.service(CacheStore)
      return yield* make(inner, store, settings)
    })
  )

/**
 * The cache as `Llm` middleware: `Cache.layer({ store: "sqlite" })` wraps the `Llm`
 * below it. Outermost in a stack, so hits skip rate limiting and logging of network calls.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Llm.Llm, never, Llm.Llm> => withStore(Llm.Llm, options, layerFromStore)

/**
 * {@link layer} configured from the environment (`CacheConfig.config`); explicit `options`
 * win over it (e.g. `Cache.layerConfig(Cache.fromArgs(process.argv))`).
 * @category layers @since 0.1.0
 */
export const layerConfig = (options: Options = {}): Layer.Layer<Llm.Llm, Config.ConfigError, Llm.Llm> =>
  Layer.unwrap(Effect.map(config, (fromEnv) => layer({ ...fromEnv, ...options })))

/**
 * The same as {@link layerConfig}, which now takes the overrides itself.
 * @deprecated Use `layerConfig(overrides)`.
 * @alias
 * @category layers @since 0.1.0
 */
export const layerConfigWith: (overrides?: Options) => Layer.Layer<Llm.Llm, Config.ConfigError, Llm.Llm> = layerConfig
