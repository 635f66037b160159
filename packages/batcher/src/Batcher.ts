/**
 * Automatic batching for any Hasten stack. Callers keep calling `complete`/`embed` one
 * item at a time; the batcher collects calls for up to a window (`BATCH_TIMEOUT`) or
 * until `maxBatchSize` (`BATCH_SIZE`) and dispatches them to a batch backend, built on
 * Effect's `Request`/`RequestResolver`. Items run through shared slots, so a local
 * model with N sequences is kept full (continuous batching: a new item takes a slot as
 * soon as one finishes, not when the whole batch is done).
 * @since 0.1.0
 */
import { Completion, type CompletionRequest, Embedder, Facts, Llm, type LlmError } from "@hasten/core"
import { Cause, Config, Duration, Effect, Exit, Layer, Metric, Request, RequestResolver, Schema } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Adaptive from "./Adaptive.js"
import { validate } from "./BatcherError.js"

/**
 * A batch backend: runs many requests at once and returns one `Exit` per request, in
 * order, so a bad item fails only its own caller. `facts[i]` is what the batcher knows
 * about `requests[i]` before it runs (`batchSize`, `queueWaitMillis`); a backend that calls
 * an `Llm` passes them down with `Facts.annotate`, so a perf-logger below records them.
 * @category models @since 0.1.0
 */
export interface BatchBackend {
  readonly name: string
  readonly run: (
    requests: NonEmptyReadonlyArray<CompletionRequest.CompletionRequest>,
    facts?: ReadonlyArray<Facts.Facts>
  ) => Effect.Effect<ReadonlyArray<Exit.Exit<Completion.Completion, LlmError.LlmError>>>
}

/** Options for {@link layer}. @category configuration @since 0.1.0 */
export interface Options {
  /** Largest batch (`BATCH_SIZE`, default 32). */
  readonly maxBatchSize?: number
  /** How long the first item of a batch waits for company (`BATCH_TIMEOUT`, default 100 ms). */
  readonly window?: Duration.Input
  /** `false` passes every call straight through (the seeds' `--no-batching`). Default `true`. */
  readonly enabled?: boolean
  /**
   * Items in flight across all batches: a number, or adaptive sizing options
   * (default: `maxBatchSize`, fixed). For a local model, the number of sequences.
   */
  readonly concurrency?: number | Adaptive.Options
  /**
   * Where batches go. Default: dispatch every item to the `Llm` below through the shared
   * slots. Give a backend (e.g. `OpenAiBatch.backend`) to send whole batches elsewhere.
   */
  readonly backend?: BatchBackend
}

const batchSize = Metric.histogram("hasten_batcher_batch_size", {
  description: "Items per dispatched batch",
  boundaries: Metric.linearBoundaries({ start: 1, width: 4, count: 16 })
})
const queueWait = Metric.histogram("hasten_batcher_queue_wait_seconds", {
  description: "Time an item waited before its batch was dispatched",
  boundaries: Metric.exponentialBoundaries({ start: 0.001, factor: 2, count: 14 })
})
const items = Metric.counter("hasten_batcher_items_total", { description: "Items dispatched", incremental: true })

class CompleteItem extends Request.Class<
  {
    readonly request: CompletionRequest.CompletionRequest
    readonly enqueuedAt: number
  },
  Completion.Completion,
  LlmError.LlmError
> {}

/**
 * The default backend: each item goes to `llm.complete` through the controller's
 * slots, with its batch facts passed down (`Facts.annotate`); items of different batches
 * share the slots (continuous batching).
 * @category constructors @since 0.1.0
 */
export const dispatchBackend = (llm: Llm.LlmService, controller: Adaptive.Controller): BatchBackend => ({
  name: `dispatch(${llm.name})`,
  run: (requests, facts) =>
    Effect.forEach(
      requests,
      (request, index) => runItem(llm, controller, request, facts?.[index] ?? Facts.empty),
      { concurrency: "unbounded" }
    )
})

const runItem = (
  llm: Llm.LlmService,
  controller: Adaptive.Controller,
  request: CompletionRequest.CompletionRequest,
  facts: Facts.Facts
): Effect.Effect<Exit.Exit<Completion.Completion, LlmError.LlmError>> =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(controller.withSlot(llm.complete(request)))
    if (Exit.isFailure(exit) && Adaptive.isAllocationFailure(Cause.squash(exit.cause))) {
      // The backend ran out of memory at this size: halve it and try this item once more.
      yield* controller.shrinkOnAllocationFailure
      const retry = yield* Effect.exit(controller.withSlot(llm.complete(request)))
      yield* controller.record(Exit.isSuccess(retry) ? "ok" : "error")
      return retry
    }
    yield* controller.record(Exit.isSuccess(exit) ? "ok" : "error")
    return exit
  }).pipe(Facts.annotate(facts))

/**
 * Builds the batching `Llm` over `inner`; dies with a `BatcherError` (`InvalidOptions`,
 * naming the field) when the options fail their schema.
 * @category constructors @since 0.1.0
 */
export const make = (inner: Llm.LlmService, options: Options = {}): Effect.Effect<Llm.LlmService> =>
  Effect.gen(function*() {
    const invalid = validate(options)
    if (invalid !== undefined) return yield* Effect.die(invalid)
    if (options.enabled === false) return inner
    const maxBatchSize = options.maxBatchSize ?? 32
    const concurrency = options.concurrency ?? maxBatchSize
    const controller = yield* Adaptive.make(
      typeof concurrency === "number" ? { max: concurrency, initial: concurrency, adaptive: false } : concurrency
    )
    const backend = options.backend ?? dispatchBackend(inner, controller)
    const resolver = RequestResolver.make<CompleteItem>((entries) =>
      Effect.gen(function*() {
        const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        const size = entries.length
        yield* Metric.update(batchSize, size)
        yield* Metric.update(items, size)
        yield* Effect.annotateCurrentSpan({ "batcher.size": size, "batcher.backend": backend.name })
        const facts = entries.map((entry): Facts.Facts => ({ batchSize: size, queueWaitMillis: now - entry.request.enqueuedAt }))
        for (const entry of entries) yield* Metric.update(queueWait, (now - entry.request.enqueuedAt) / 1000)
        const exits = yield* backend.run(
          entries.map((entry) => entry.request.request) as unknown as NonEmptyReadonlyArray<CompletionRequest.CompletionRequest>,
          facts
        )
        entries.forEach((entry, index) => {
          const exit = exits[index]
          if (exit === undefined) {
            entry.completeUnsafe(Exit.die(new Error(`batch backend ${backend.name} returned ${exits.length} results for ${size} requests`)))
            return
          }
          entry.completeUnsafe(Exit.map(exit, Completion.withFacts(facts[index]!)))
        })
      }).pipe(Effect.withSpan("Batcher.dispatch"))
    ).pipe(
      RequestResolver.setDelay(options.window ?? Duration.millis(100)),
      RequestResolver.batchN(maxBatchSize)
    )
    const complete = Effect.fn("Batcher.complete")(function*(request: CompletionRequest.CompletionRequest) {
      const enqueuedAt = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      return yield* Effect.request(new CompleteItem({ request, enqueuedAt }), resolver)
    })
    return {
      name: inner.name,
      complete,
      // Streams are not batched, but they take a slot so they count against the backend's capacity.
      stream: (request) => inner.stream(request)
    } satisfies Llm.LlmService
  })

/**
 * Batching middleware: `Layer<Llm, never, Llm>`.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Llm.Llm, never, Llm.Llm> => Llm.middleware((inner) => make(inner, options))

/**
 * Reads `BATCH_SIZE` (32), `BATCH_TIMEOUT` in seconds (0.1), `BATCHING_ENABLED` (true)
 * and `BATCH_CONCURRENCY` (defaults to `BATCH_SIZE`). Bad values fail at startup naming
 * the variable.
 * @category layers @since 0.1.0
 */
export const config: Config.Config<Options> = Config.all({
  maxBatchSize: Config.schema(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), "BATCH_SIZE").pipe(Config.withDefault(32)),
  timeoutSeconds: Config.schema(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)), "BATCH_TIMEOUT").pipe(Config.withDefault(0.1)),
  enabled: Config.Boolean("BATCHING_ENABLED").pipe(Config.withDefault(true)),
  concurrency: Config.option(Config.schema(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)), "BATCH_CONCURRENCY"))
}).pipe(Config.map(({ concurrency, enabled, maxBatchSize, timeoutSeconds }): Options => ({
  maxBatchSize,
  window: Duration.millis(timeoutSeconds * 1000),
  enabled,
  ...(concurrency._tag === "Some" ? { concurrency: concurrency.value } : {})
})))

/**
 * {@link layer} configured from the environment ({@link config}); explicit `options` win
 * over it (`Batcher.layerConfig({ enabled: false })` for a `--no-batching` flag).
 * @category layers @since 0.1.0
 */
export const layerConfig = (options: Options = {}): Layer.Layer<Llm.Llm, Config.ConfigError, Llm.Llm> =>
  Layer.unwrap(Effect.map(
    Effect.gen(function*() {
      return yield* config
    }),
    (fromEnv) => layer({ ...fromEnv, ...options })
  ))

// ---------------------------------------------------------------------------
// Embeddings

class EmbedItem extends Request.Class<
  {
    readonly text: string
    readonly model: string | undefined
    readonly dimensions: number | undefined
  },
  ReadonlyArray<number>,
  LlmError.LlmError
> {}

/** Options for {@link layerEmbedder}. @category configuration @since 0.1.0 */
export interface EmbedderOptions {
  /** Most texts per upstream call (default 256). */
  readonly maxBatchSize?: number
  /** Collection window (default 20 ms). */
  readonly window?: Duration.Input
  readonly enabled?: boolean
}

/**
 * Builds an `Embedder` that merges concurrent `embed` calls into array-input calls
 * on `inner`. If a merged call fails, each caller's texts are retried alone so one bad
 * input fails only its own caller.
 * @category constructors @since 0.1.0
 */
export const makeEmbedder = (inner: Embedder.EmbedderService, options: EmbedderOptions = {}): Effect.Effect<Embedder.EmbedderService> =>
  Effect.sync(() => {
    const invalid = validate(options)
    if (invalid !== undefined) throw invalid
    if (options.enabled === false) return inner
    const resolver = RequestResolver.makeGrouped<EmbedItem, string>({
      key: (entry) => `${entry.request.model ?? ""}\u0000${entry.request.dimensions ?? ""}`,
      resolver: (entries) =>
        Effect.gen(function*() {
          const first = entries[0].request
          const embedOptions = {
            ...(first.model !== undefined ? { model: first.model } : {}),
            ...(first.dimensions !== undefined ? { dimensions: first.dimensions } : {})
          }
          yield* Metric.update(batchSize, entries.length)
          const exit = yield* Effect.exit(inner.embed(entries.map((entry) => entry.request.text), embedOptions))
          if (Exit.isSuccess(exit) && exit.value.vectors.length === entries.length) {
            entries.forEach((entry, index) => entry.completeUnsafe(Exit.succeed(exit.value.vectors[index]!)))
            return
          }
          // Isolate: one call per text, so only the bad ones fail.
          yield* Effect.forEach(entries, (entry) =>
            Effect.exit(inner.embed([entry.request.text], embedOptions)).pipe(
              Effect.map((single) => entry.completeUnsafe(Exit.map(single, (embeddings) => embeddings.vectors[0]!)))
            ), { concurrency: 8, discard: true })
        })
    }).pipe(
      RequestResolver.setDelay(options.window ?? Duration.millis(20)),
      RequestResolver.batchN(options.maxBatchSize ?? 256)
    )
    const embed = Effect.fn("Batcher.embed")(function*(texts: ReadonlyArray<string>, embedOptions?: Embedder.EmbedOptions) {
      const vectors = yield* Effect.forEach(
        texts,
        (text) => Effect.request(new EmbedItem({ text, model: embedOptions?.model, dimensions: embedOptions?.dimensions }), resolver),
        { concurrency: "unbounded" }
      )
      return {
        vectors,
        model: embedOptions?.model ?? inner.model,
        usage: { inputTokens: texts.reduce((sum, text) => sum + Math.ceil(text.length / 4), 0) }
      } satisfies Embedder.Embeddings
    })
    return { name: inner.name, model: inner.model, embed }
  })

/**
 * Embedding batching middleware: `Layer<Embedder, never, Embedder>`.
 * @category layers @since 0.1.0
 */
export const layerEmbedder = (options: EmbedderOptions = {}): Layer.Layer<Embedder.Embedder, never, Embedder.Embedder> =>
  Layer.effect(Embedder.Embedder, Effect.flatMap(Effect.service(Embedder.Embedder), (inner) => makeEmbedder(inner, options)))
