/**
 * The response cache as `Embedder` middleware: each text is its own entry (embeddings
 * are deterministic, so the policy does not apply) and only the texts not in the store
 * go upstream, in one call; identical concurrent batches make one call.
 * @since 0.1.0
 */
import { Embedder, type LlmError } from "@hasten/core"
import { Clock, Duration, Effect, Layer, Metric } from "effect"
import { createHash } from "node:crypto"
import type { Options, Settings } from "./CacheConfig.js"
import { validateSettings } from "./CacheError.js"
import { embeddingKey } from "./CacheKey.js"
import { decodePayload, encodePayload } from "./CachePayload.js"
import { CacheStore, type CacheStoreService } from "./CacheStore.js"
import { metricsFor } from "./internal/metrics.js"
import { makeFlights, singleFlight } from "./internal/singleFlight.js"
import { makeGuard } from "./internal/storeGuard.js"
import { withStore } from "./internal/withStore.js"

/**
 * Wraps an `Embedder`: each text is its own entry (embeddings are deterministic, so
 * the policy does not apply); only the texts not in the store go upstream, in one call.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(inner: Embedder.EmbedderService, store: CacheStoreService, settings: Settings = {}) {
  const invalid = validateSettings(settings)
  if (invalid !== undefined) return yield* Effect.die(invalid)
  if (settings.enabled === false) return inner
  const namespace = settings.namespace ?? "default"
  const version = settings.version ?? 1
  const ttlMillis = settings.ttl === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(settings.ttl))
  const guard = makeGuard(store, settings.onStoreError ?? "bypass")
  const metrics = metricsFor(store.name)
  const flights = yield* makeFlights<Embedder.Embeddings>()

  const embed = (texts: ReadonlyArray<string>, options?: Embedder.EmbedOptions): Effect.Effect<Embedder.Embeddings, LlmError.LlmError> =>
    Effect.gen(function*() {
      const model = options?.model ?? inner.model
      const keys = texts.map((text) =>
        embeddingKey(text, { provider: inner.name, model, dimensions: options?.dimensions, namespace, version })
      )
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

/**
 * The `Embedder` middleware over a `CacheStore` you provide.
 * @category layers @since 0.1.0
 */
export const layerFromStore = (settings: Settings = {}): Layer.Layer<Embedder.Embedder, never, Embedder.Embedder | CacheStore> =>
  Layer.effect(
    Embedder.Embedder,
    Effect.gen(function*() {
      const inner = yield* Effect.service(Embedder.Embedder)
      const store = yield* Effect.service(CacheStore)
      return yield* make(inner, store, settings)
    })
  )

/**
 * The cache as `Embedder` middleware (one entry per text).
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Embedder.Embedder, never, Embedder.Embedder> =>
  withStore(Embedder.Embedder, options, layerFromStore)
