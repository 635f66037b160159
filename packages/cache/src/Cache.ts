/**
 * The response cache: an `Llm` (and `Embedder`) middleware that answers repeated
 * deterministic requests from a store (memory, SQLite, Redis, or a tier), makes one
 * upstream call for N concurrent identical misses, and replays streams chunk by chunk.
 * Put it outermost: hits then skip the rate limiter and never reach the network.
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import { join } from "node:path"
import {
  Clock,
  Config,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  ManagedRuntime,
  Metric,
  Option,
  Redacted,
  Schema,
  Scope,
  Stream
} from "effect"
import { LRUCache } from "lru-cache"
import { Completion, type CompletionRequest, Embedder, Llm, LlmError, RequestKey } from "@hasten/core"
import { CacheStore, type CacheStoreError, type CacheStoreService, type Entry, type PruneOptions, type Stats, tiered } from "./CacheStore.js"
import * as MemoryStore from "./MemoryStore.js"
import * as RedisStore from "./RedisStore.js"
import * as SqliteStore from "./SqliteStore.js"

// ---------------------------------------------------------------------------
// options
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------

/** Requests answered from the store. @category metrics @since 0.1.0 */
export const hits = Metric.counter("hasten_cache_hits_total", { description: "Cache hits", incremental: true })
/** Cacheable requests not found in the store. @category metrics @since 0.1.0 */
export const misses = Metric.counter("hasten_cache_misses_total", { description: "Cache misses", incremental: true })
/** Requests the policy did not cache. @category metrics @since 0.1.0 */
export const skipped = Metric.counter("hasten_cache_skipped_total", { description: "Requests outside the cache policy", incremental: true })
/** Misses that joined an identical in-flight upstream call instead of making their own. @category metrics @since 0.1.0 */
export const coalesced = Metric.counter("hasten_cache_coalesced_total", {
  description: "Misses served by an identical in-flight call",
  incremental: true
})
/** Bytes of encoded entries read on hits. @category metrics @since 0.1.0 */
export const bytesRead = Metric.counter("hasten_cache_read_bytes_total", { description: "Bytes read on hits", incremental: true })
/** Bytes of encoded entries written. @category metrics @since 0.1.0 */
export const bytesWritten = Metric.counter("hasten_cache_written_bytes_total", { description: "Bytes written", incremental: true })
/** Entries the memory store's size bound evicted. @category metrics @since 0.1.0 */
export const evictions = Metric.counter("hasten_cache_evictions_total", { description: "Entries evicted by the size bound", incremental: true })
/** Entries that failed to decode (treated as misses and overwritten). @category metrics @since 0.1.0 */
export const corrupt = Metric.counter("hasten_cache_corrupt_total", { description: "Undecodable entries", incremental: true })
/** Store operations that failed. @category metrics @since 0.1.0 */
export const storeErrors = Metric.counter("hasten_cache_store_errors_total", { description: "Failed store operations", incremental: true })

const counterFor = (name: string, description: string, store: string) =>
  Metric.counter(name, { description, incremental: true, attributes: { store } })

/** The counters above with the `store` attribute baked in (cheaper per update than `withAttributes`). */
const metricsFor = (store: string) => ({
  hits: counterFor("hasten_cache_hits_total", "Cache hits", store),
  misses: counterFor("hasten_cache_misses_total", "Cache misses", store),
  skipped: counterFor("hasten_cache_skipped_total", "Requests outside the cache policy", store),
  bytesRead: counterFor("hasten_cache_read_bytes_total", "Bytes read on hits", store),
  bytesWritten: counterFor("hasten_cache_written_bytes_total", "Bytes written", store),
  evictions: counterFor("hasten_cache_evictions_total", "Entries evicted by the size bound", store),
  corrupt: counterFor("hasten_cache_corrupt_total", "Undecodable entries", store),
  storeErrors: counterFor("hasten_cache_store_errors_total", "Failed store operations", store)
})

// ---------------------------------------------------------------------------
// payloads
// ---------------------------------------------------------------------------

/** What an entry holds: a completion, the chunks of a finished stream, or one embedding vector. @category models @since 0.1.0 */
export const Payload = Schema.Union([
  Schema.TaggedStruct("completion", { completion: Completion.Completion }),
  Schema.TaggedStruct("stream", { chunks: Schema.Array(Completion.CompletionChunk) }),
  Schema.TaggedStruct("embedding", { model: Schema.String, vector: Schema.Array(Schema.Number) })
])
/** @category models @since 0.1.0 */
export type Payload = typeof Payload.Type

const encodePayloadSync = Schema.encodeSync(Payload)
const decodePayloadExit = Schema.decodeUnknownExit(Payload)

/** Encodes a payload as JSON text, or `undefined` when it cannot be (e.g. unserializable metadata). @category utils @since 0.1.0 */
export const encodePayload = (payload: Payload): string | undefined => {
  try {
    return JSON.stringify(encodePayloadSync(payload))
  } catch {
    return undefined
  }
}

/**
 * Decodes JSON text into a payload; `undefined` when it is corrupt. With `markCached`,
 * the completion (or every chunk) comes out with `cached: true`, in the same decode.
 * @category utils @since 0.1.0
 */
export const decodePayload = (text: string, markCached = false): Payload | undefined => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  if (markCached && typeof json === "object" && json !== null) {
    const record = json as { _tag?: unknown; completion?: unknown; chunks?: unknown }
    if (record._tag === "completion" && typeof record.completion === "object" && record.completion !== null) {
      ;(record.completion as Record<string, unknown>).cached = true
    } else if (record._tag === "stream" && Array.isArray(record.chunks)) {
      for (const chunk of record.chunks) if (typeof chunk === "object" && chunk !== null) chunk.cached = true
    }
  }
  const exit = decodePayloadExit(json)
  return Exit.isSuccess(exit) ? exit.value : undefined
}

// ---------------------------------------------------------------------------
// single-flight
// ---------------------------------------------------------------------------

interface Flight<A> {
  readonly deferred: Deferred.Deferred<A, LlmError.LlmError>
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  waiters: number
}

/**
 * One upstream call per key at a time: the first caller forks `run` into the layer's
 * scope; later callers wait on the same result. The flight stays joinable until
 * `after` (the store write) finishes, so nobody slips between the result and the write.
 * When every waiter is interrupted, the upstream call is interrupted too.
 */
const singleFlight = <A>(
  flights: Map<string, Flight<A>>,
  scope: Scope.Scope,
  key: string,
  run: Effect.Effect<A, LlmError.LlmError>,
  after: (value: A) => Effect.Effect<void>
): Effect.Effect<A, LlmError.LlmError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      let flight = flights.get(key)
      if (flight === undefined) {
        const created: Flight<A> = { deferred: Deferred.makeUnsafe(), fiber: undefined, waiters: 0 }
        flight = created
        flights.set(key, created)
        const leave = Effect.sync(() => {
          if (flights.get(key) === created) flights.delete(key)
        })
        created.fiber = yield* Effect.forkIn(
          Effect.exit(run).pipe(
            // Write first, then leave the map, then answer: a caller that sees the answer
            // finds it in the store, and nobody joins a finished flight.
            Effect.flatMap((exit) =>
              (Exit.isSuccess(exit) ? after(exit.value) : Effect.void).pipe(
                Effect.andThen(leave),
                Effect.andThen(Deferred.done(created.deferred, exit))
              )
            ),
            Effect.ensuring(leave)
          ),
          scope
        )
      } else {
        yield* Metric.update(coalesced, 1)
      }
      const joined = flight
      joined.waiters++
      return yield* restore(Deferred.await(joined.deferred)).pipe(
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            joined.waiters--
            if (joined.waiters > 0 || Deferred.isDoneUnsafe(joined.deferred) || joined.fiber === undefined) return Effect.void
            if (flights.get(key) === joined) flights.delete(key)
            return Fiber.interrupt(joined.fiber)
          })
        )
      )
    })
  )

interface StreamFlight {
  readonly chunks: Array<Completion.CompletionChunk>
  exit: Exit.Exit<void, LlmError.LlmError> | undefined
  signal: Deferred.Deferred<void>
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  waiters: number
}

const notify = (flight: StreamFlight): void => {
  const previous = flight.signal
  flight.signal = Deferred.makeUnsafe()
  Deferred.doneUnsafe(previous, Effect.void)
}

/** A follower of a stream flight: every chunk from the first, then the flight's end. */
const follow = (flight: StreamFlight): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
  Stream.paginate(0, (index: number): Effect.Effect<
    readonly [ReadonlyArray<Completion.CompletionChunk>, Option.Option<number>],
    LlmError.LlmError
  > => {
    if (index < flight.chunks.length) {
      return Effect.succeed([flight.chunks.slice(index), Option.some(flight.chunks.length)] as const)
    }
    const exit = flight.exit
    if (exit !== undefined) {
      return Exit.isSuccess(exit) ? Effect.succeed([[], Option.none()] as const) : Effect.failCause(exit.cause)
    }
    return Effect.as(Deferred.await(flight.signal), [[], Option.some(index)] as const)
  })

// ---------------------------------------------------------------------------
// the middleware
// ---------------------------------------------------------------------------

interface Decoded {
  readonly completion?: Completion.Completion
  readonly chunks?: ReadonlyArray<Completion.CompletionChunk>
  readonly bytes: number
}

const markCompletion = (completion: Completion.Completion): Completion.Completion =>
  new Completion.Completion({ ...completion, cached: true })

/** Store access with the configured error policy, one warning per outage, and metrics. */
const makeGuard = (store: CacheStoreService, onStoreError: OnStoreError) => {
  let degraded = false
  const storeErrorsForStore = metricsFor(store.name).storeErrors
  const recovered = Effect.suspend(() => {
    if (!degraded) return Effect.void
    degraded = false
    return Effect.logInfo(`cache store ${store.name} is reachable again`)
  })
  return <A>(operation: Effect.Effect<A, CacheStoreError>, fallback: A): Effect.Effect<A, LlmError.LlmError> =>
    (degraded ? Effect.tap(operation, () => recovered) : operation).pipe(
      Effect.catch((error) =>
        Effect.andThen(
          Metric.update(storeErrorsForStore, 1),
          onStoreError === "fail"
            ? Effect.fail(LlmError.make("cache", new LlmError.Transport({ description: error.message })))
            : Effect.suspend(() => {
              if (degraded) return Effect.succeed(fallback)
              degraded = true
              return Effect.as(
                Effect.logWarning(`${error.message}; the cache is bypassed (calls go upstream) until the store recovers`),
                fallback
              )
            })
        )
      )
    )
}

/**
 * Wraps an `Llm` with the cache, reading and writing `store`. Needs a scope (the
 * in-flight upstream calls live in it).
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(inner: Llm.LlmService, store: CacheStoreService, settings: Settings = {}) {
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
  const completions = new Map<string, Flight<Completion.Completion>>()
  const streams = new Map<string, StreamFlight>()
  // Decoded entries by key, reused while the stored text is unchanged: a hit still reads
  // the store every time, but identical text is validated and decoded only once.
  const decodedEntries = new LRUCache<string, { readonly value: string; readonly decoded: Decoded }>({ max: 1_000 })

  const cacheable = (request: CompletionRequest.CompletionRequest): boolean =>
    policy === "all" || RequestKey.isDeterministic(request)

  const keyOf = (request: CompletionRequest.CompletionRequest): string =>
    RequestKey.make(request, { provider: inner.name, namespace, version })

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

  /** The decoded entry under `key`, or `undefined` on a miss (absent, corrupt, or store down under `bypass`). */
  const lookup = (key: string): Effect.Effect<Decoded | undefined, LlmError.LlmError> =>
    Effect.flatMap(guard(store.get(key), undefined), (entry) => {
      if (entry === undefined) return Effect.as(Metric.update(missesMetric, 1), undefined)
      const decoded = decodeEntry(entry)
      if (decoded === undefined) {
        return Effect.as(
          Effect.andThen(
            Effect.all([Metric.update(corruptMetric, 1), Metric.update(missesMetric, 1)], { discard: true }),
            Effect.logWarning(`cache store ${store.name}: entry ${key} is corrupt; treating it as a miss and overwriting it`)
          ),
          undefined
        )
      }
      // Both hit counters in one step: this is the hot path.
      return Effect.contextWith((context) => {
        hitsMetric.updateUnsafe(1, context)
        bytesReadMetric.updateUnsafe(decoded.bytes, context)
        return Effect.succeed(decoded)
      })
    })

  const write = (key: string, payload: Payload): Effect.Effect<void> =>
    Effect.suspend(() => {
      const value = encodePayload(payload)
      if (value === undefined) {
        return Effect.logWarning(`cache: entry ${key} cannot be encoded as JSON; not stored`)
      }
      return Clock.clockWith((clock) => {
        const now = clock.currentTimeMillisUnsafe()
        const entry: Entry = {
          key,
          namespace,
          value,
          createdAt: now,
          ...(ttlMillis !== undefined ? { expiresAt: now + ttlMillis } : {})
        }
        return guard(store.set(entry), 0).pipe(
          Effect.flatMap((evicted) =>
            Effect.all([
              Metric.update(bytesWrittenMetric, Buffer.byteLength(value)),
              evicted > 0 ? Metric.update(evictionsMetric, evicted) : Effect.void
            ], { discard: true })
          ),
          Effect.catch(() => Effect.void)
        )
      })
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
    return Effect.flatMap(lookup(key), (hit) => {
      if (hit?.completion !== undefined) return Effect.succeed(hit.completion)
      if (hit?.chunks !== undefined) return foldChunks(request, hit.chunks)
      return singleFlight(
        completions,
        scope,
        key,
        inner.complete(request),
        (completion) => write(key, { _tag: "completion", completion })
      )
    })
  }

  const streamMiss = (
    key: string,
    request: CompletionRequest.CompletionRequest
  ): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(
      Effect.uninterruptible(Effect.gen(function*() {
        let flight = streams.get(key)
        if (flight === undefined) {
          const created: StreamFlight = { chunks: [], exit: undefined, signal: Deferred.makeUnsafe(), fiber: undefined, waiters: 0 }
          flight = created
          streams.set(key, created)
          created.fiber = yield* Effect.forkIn(
            Stream.runForEach(inner.stream(request), (chunk) =>
              Effect.sync(() => {
                created.chunks.push(chunk)
                notify(created)
              })).pipe(
                Effect.exit,
                Effect.flatMap((exit) =>
                  // Stored only after the terminal event; failures and interruptions never are.
                  (Exit.isSuccess(exit) ? write(key, { _tag: "stream", chunks: created.chunks }) : Effect.void).pipe(
                    Effect.andThen(Effect.sync(() => {
                      if (streams.get(key) === created) streams.delete(key)
                      created.exit = exit
                      notify(created)
                    }))
                  )
                ),
                Effect.onInterrupt(() =>
                  Effect.sync(() => {
                    if (created.exit === undefined) {
                      created.exit = Exit.interrupt()
                      notify(created)
                    }
                  })
                ),
                Effect.ensuring(Effect.sync(() => {
                  if (streams.get(key) === created) streams.delete(key)
                }))
              ),
            scope
          )
        } else {
          yield* Metric.update(coalesced, 1)
        }
        const joined = flight
        joined.waiters++
        return follow(joined).pipe(
          Stream.onExit(() =>
            Effect.suspend(() => {
              joined.waiters--
              if (joined.waiters > 0 || joined.exit !== undefined || joined.fiber === undefined) return Effect.void
              if (streams.get(key) === joined) streams.delete(key)
              return Fiber.interrupt(joined.fiber)
            })
          )
        )
      }))
    )

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> => {
    if (!cacheable(request)) return Stream.unwrap(Effect.as(Metric.update(skippedMetric, 1), inner.stream(request)))
    return Stream.unwrap(Effect.suspend(() => {
      const key = keyOf(request)
      return Effect.map(lookup(key), (hit) => {
        if (hit?.chunks !== undefined) return Stream.fromIterable(hit.chunks)
        if (hit?.completion !== undefined) return Stream.fromIterable(Completion.toChunks(hit.completion))
        return streamMiss(key, request)
      })
    }))
  }

  return Llm.Llm.of({ name: inner.name, complete, stream })
})

// ---------------------------------------------------------------------------
// embeddings
// ---------------------------------------------------------------------------

/** The key of one embedded text. @category utils @since 0.1.0 */
export const embeddingKey = (
  text: string,
  options: { readonly provider: string; readonly model: string; readonly dimensions?: number | undefined; readonly namespace?: string | undefined; readonly version?: number | undefined }
): string =>
  createHash("sha256").update(RequestKey.canonicalJson({
    v: options.version ?? 1,
    namespace: options.namespace ?? "default",
    provider: options.provider,
    embedding: { model: options.model, dimensions: options.dimensions, text }
  })).digest("hex")

/**
 * Wraps an `Embedder`: each text is its own entry (embeddings are deterministic, so
 * the policy does not apply); only the texts not in the store go upstream, in one call.
 * @category constructors @since 0.1.0
 */
export const makeEmbedder = Effect.fnUntraced(function*(inner: Embedder.EmbedderService, store: CacheStoreService, settings: Settings = {}) {
  if (settings.enabled === false) return inner
  const scope = yield* Effect.scope
  const namespace = settings.namespace ?? "default"
  const version = settings.version ?? 1
  const ttlMillis = settings.ttl === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(settings.ttl))
  const guard = makeGuard(store, settings.onStoreError ?? "bypass")
  const metrics = metricsFor(store.name)
  const flights = new Map<string, Flight<Embedder.Embeddings>>()

  const embed = (texts: ReadonlyArray<string>, options?: Embedder.EmbedOptions): Effect.Effect<Embedder.Embeddings, LlmError.LlmError> =>
    Effect.gen(function*() {
      const model = options?.model ?? inner.model
      const keys = texts.map((text) => embeddingKey(text, { provider: inner.name, model, dimensions: options?.dimensions, namespace, version }))
      const vectors: Array<ReadonlyArray<number> | undefined> = []
      const missing = new Map<string, string>()
      for (let index = 0; index < texts.length; index++) {
        const key = keys[index]!
        const entry = yield* guard(store.get(key), undefined)
        const payload = entry === undefined ? undefined : decodePayload(entry.value)
        if (payload?._tag === "embedding") {
          vectors.push(payload.vector)
          yield* Metric.update(metrics.hits, 1)
          continue
        }
        if (entry !== undefined) {
          yield* Metric.update(metrics.corrupt, 1)
          yield* Effect.logWarning(`cache store ${store.name}: embedding entry ${key} is corrupt; treating it as a miss`)
        }
        yield* Metric.update(metrics.misses, 1)
        vectors.push(undefined)
        missing.set(key, texts[index]!)
      }
      if (missing.size === 0) {
        return { vectors: vectors as Array<ReadonlyArray<number>>, model, usage: { inputTokens: 0 }, cached: true }
      }
      const missingKeys = [...missing.keys()]
      const missingTexts = [...missing.values()]
      const upstream = yield* singleFlight(
        flights,
        scope,
        createHash("sha256").update(missingKeys.join(",")).digest("hex"),
        inner.embed(missingTexts, options),
        (result) =>
          Clock.clockWith((clock) =>
            Effect.forEach(missingKeys, (key, index) => {
              const vector = result.vectors[index]
              const value = vector === undefined ? undefined : encodePayload({ _tag: "embedding", model: result.model, vector })
              if (value === undefined) return Effect.void
              const now = clock.currentTimeMillisUnsafe()
              return guard(
                store.set({ key, namespace, value, createdAt: now, ...(ttlMillis !== undefined ? { expiresAt: now + ttlMillis } : {}) }),
                0
              ).pipe(
                Effect.andThen(Metric.update(metrics.bytesWritten, Buffer.byteLength(value))),
                Effect.catch(() => Effect.void)
              )
            }, { discard: true })
          )
      )
      const fresh = new Map(missingKeys.map((key, index) => [key, upstream.vectors[index]] as const))
      return {
        vectors: vectors.map((vector, index) => vector ?? fresh.get(keys[index]!) ?? []),
        model: upstream.model,
        usage: upstream.usage,
        cached: false
      }
    })

  return { name: inner.name, model: inner.model, embed } satisfies Embedder.EmbedderService
})

// ---------------------------------------------------------------------------
// layers
// ---------------------------------------------------------------------------

/**
 * The store layer {@link layer} builds from options (handy for maintenance: prune, clear, stats).
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
 * The `Embedder` middleware over a `CacheStore` you provide.
 * @category layers @since 0.1.0
 */
export const layerEmbedderFromStore = (settings: Settings = {}): Layer.Layer<Embedder.Embedder, never, Embedder.Embedder | CacheStore> =>
  Layer.effect(
    Embedder.Embedder,
    Effect.gen(function*() {
      const inner = yield* Effect.service(Embedder.Embedder)
      const store = yield* Effect.service(CacheStore)
      return yield* makeEmbedder(inner, store, settings)
    })
  )

/** Opens the store; when it cannot be opened, `bypass` warns and passes through, `fail` dies. */
const withStore = <I, S>(
  tag: Context.Key<I, S>,
  options: Options,
  wrap: (settings: Settings) => Layer.Layer<I, never, I | CacheStore>
): Layer.Layer<I, never, I> => {
  const passThrough = Layer.effect(tag, Effect.service(tag))
  if (options.enabled === false) return passThrough
  return wrap(options).pipe(
    Layer.provide(layerStore(options)),
    Layer.catch((error: CacheStoreError) =>
      options.onStoreError === "fail"
        ? Layer.effect(tag, Effect.die(error))
        : Layer.effect(
          tag,
          Effect.andThen(
            Effect.logWarning(`${error.message}; running without a cache`),
            Effect.service(tag)
          )
        )
    )
  )
}

/**
 * The cache as `Llm` middleware: `Cache.layer({ store: "sqlite" })` wraps the `Llm`
 * below it. Outermost in a stack, so hits skip rate limiting and logging of network calls.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Llm.Llm, never, Llm.Llm> => withStore(Llm.Llm, options, layerFromStore)

/**
 * The cache as `Embedder` middleware (one entry per text).
 * @category layers @since 0.1.0
 */
export const layerEmbedder = (options: Options = {}): Layer.Layer<Embedder.Embedder, never, Embedder.Embedder> =>
  withStore(Embedder.Embedder, options, layerEmbedderFromStore)

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
export const fromArgs = (argv: ReadonlyArray<string>): { readonly enabled?: false } =>
  argv.includes("--no-cache") ? { enabled: false } : {}

/**
 * {@link layer} configured from the environment ({@link config}); `overrides` win
 * (e.g. `Cache.fromArgs(process.argv)`).
 * @category layers @since 0.1.0
 */
export const layerConfigWith = (overrides: Options = {}): Layer.Layer<Llm.Llm, Config.ConfigError, Llm.Llm> =>
  Layer.unwrap(Effect.map(config, (options) => layer({ ...options, ...overrides })))

/**
 * {@link layer} configured from the environment ({@link config}).
 * @category layers @since 0.1.0
 */
export const layerConfig: Layer.Layer<Llm.Llm, Config.ConfigError, Llm.Llm> = layerConfigWith()

// ---------------------------------------------------------------------------
// plain async TypeScript
// ---------------------------------------------------------------------------

/** A cached `Llm` for code that does not use Effect. @category models @since 0.1.0 */
export interface CachedLlm {
  readonly complete: (request: CompletionRequest.CompletionRequest) => Promise<Completion.Completion>
  readonly stream: (request: CompletionRequest.CompletionRequest) => AsyncIterable<Completion.CompletionChunk>
  /** Removes entries by namespace and age. */
  readonly prune: (options?: PruneOptions) => Promise<number>
  /** Removes every entry. */
  readonly clear: () => Promise<void>
  readonly stats: () => Promise<Stats>
  /** Closes the store (SQLite file, Redis connection) and the upstream layer. */
  readonly dispose: () => Promise<void>
}

/**
 * A Promise facade over a `ManagedRuntime`: the cache (one store, shared with the
 * maintenance methods) over any upstream `Llm` layer. Rejects with the `LlmError` of a
 * failed call, or with `CacheStoreError` when the store cannot be opened.
 * @category constructors @since 0.1.0
 */
export const createCachedLlm = <E>(upstream: Layer.Layer<Llm.Llm, E>, options: Options = {}): CachedLlm => {
  const runtime = ManagedRuntime.make(
    layerFromStore(options).pipe(Layer.provide(upstream), Layer.provideMerge(layerStore(options)))
  )
  const store = Effect.service(CacheStore)
  return {
    complete: (request) => runtime.runPromise(Llm.complete(request)),
    stream: (request) => ({
      [Symbol.asyncIterator]: () => {
        let iterator: AsyncIterator<Completion.CompletionChunk> | undefined
        const open = async () =>
          iterator ??= Stream.toAsyncIterable(Stream.provideContext(Llm.stream(request), await runtime.context()))[Symbol.asyncIterator]()
        return {
          next: async () => (await open()).next(),
          return: async (value?: unknown) => (await open()).return?.(value) ?? { done: true as const, value: undefined }
        }
      }
    }),
    prune: (pruneOptions) => runtime.runPromise(Effect.flatMap(store, (cache) => cache.prune(pruneOptions))),
    clear: () => runtime.runPromise(Effect.flatMap(store, (cache) => cache.clear)),
    stats: () => runtime.runPromise(Effect.flatMap(store, (cache) => cache.stats)),
    dispose: () => runtime.dispose()
  }
}
