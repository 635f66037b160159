/**
 * A process-wide pool of loaded llama.cpp models, contexts (one per LoRA adapter) and
 * embedding contexts, keyed by (model path, adapter, context settings). Entries are
 * reference-counted through scopes, kept warm for an idle time-to-live after their last
 * user leaves, and released when the pool's scope closes or on `cleanup`.
 * @since 0.1.0
 */
import { LlmError } from "@hasten/core"
import { Context, Duration, Effect, Layer, Queue, RcMap } from "effect"
import type * as Scope from "effect/Scope"
import type { Llama, LlamaContext, LlamaContextSequence, LlamaEmbeddingContext, LlamaModel } from "node-llama-cpp"
import * as Fs from "node:fs"
import * as BatchOrder from "./internal/batchOrder.js"
import { failure, invalid } from "./internal/localErrors.js"

/**
 * What identifies a pooled context: the model file, the LoRA adapter file (if any) and the
 * context settings. Two users asking for the same key share one context and its sequences.
 * @category models @since 0.1.0
 */
export interface ContextKey {
  readonly modelPath: string
  /** Path of a LoRA adapter file (GGUF) applied to the context. */
  readonly adapter?: string | undefined
  /** Tokens per sequence. */
  readonly contextSize: number
  /** Parallel sequences in the context. */
  readonly sequences: number
  readonly threads: number
  readonly batchSize?: number | undefined
  readonly gpu: boolean
  /**
   * llama.cpp flash attention. Default {@link defaultFlashAttention}: on for models of
   * embedding width 512 and up, where it is faster in every measured case (batcher bench,
   * 42M and 110M), off for smaller ones, where it is slower (the README demo on the tiny
   * fixtures: 4.6–4.7 s with it against 3.7–4.1 s without). Batched and one-token
   * evaluations differ a little more with it; greedy outputs stay equal.
   */
  readonly flashAttention?: boolean | undefined
}

/** One sequence slot of a pooled context. @category models @since 0.1.0 */
export interface Slot {
  readonly sequence: LlamaContextSequence
  /** The promise of the work running on the sequence; released slots wait for it to settle. */
  pending: Promise<unknown> | undefined
}

/**
 * A context shared through the pool: the model, the llama.cpp context, and a queue of its
 * free sequences. Take a sequence with {@link acquireSlot}.
 * @category models @since 0.1.0
 */
export interface PooledContext {
  readonly key: ContextKey
  readonly llama: Llama
  readonly model: LlamaModel
  readonly context: LlamaContext
  readonly free: Queue.Queue<Slot>
  readonly total: number
}

/** Counters and the current entries of a pool. @category models @since 0.1.0 */
export interface PoolStats {
  /** Model files loaded from disk since the pool started. */
  readonly modelLoads: number
  readonly modelReleases: number
  /** Contexts created (one per distinct key, adapters included). */
  readonly contextLoads: number
  readonly contextReleases: number
  /** Distinct LoRA adapter files loaded onto a model. */
  readonly adapterLoads: number
  readonly embeddingLoads: number
  /** Model paths currently held (in use or idle), with their reference counts. */
  readonly models: ReadonlyArray<{ readonly modelPath: string; readonly refCount: number }>
  /** Context keys currently held, with their reference counts. */
  readonly contexts: ReadonlyArray<{ readonly key: ContextKey; readonly refCount: number }>
}

/** Pool settings. @category models @since 0.1.0 */
export interface Options {
  /** How long an unused model or context stays loaded. Default 5 minutes. */
  readonly idleTimeToLive?: Duration.Input | undefined
}

/** The operations of the pool. @category models @since 0.1.0 */
export interface ModelPoolService {
  /** The process-wide `Llama` binding (CPU prebuilt binary, or GPU when asked). */
  readonly llama: (gpu: boolean) => Effect.Effect<Llama, LlmError.LlmError>
  /** A loaded model, shared by every user of the same path, held for the scope. */
  readonly model: (modelPath: string, gpu: boolean) => Effect.Effect<LlamaModel, LlmError.LlmError, Scope.Scope>
  /** A context for the key (model loaded once; adapter applied without reloading it), held for the scope. */
  readonly context: (key: ContextKey) => Effect.Effect<PooledContext, LlmError.LlmError, Scope.Scope>
  /** An embedding context on the model, held for the scope. */
  readonly embedding: (
    key: { readonly modelPath: string; readonly threads: number; readonly gpu: boolean; readonly contextSize: number }
  ) => Effect.Effect<LlamaEmbeddingContext, LlmError.LlmError, Scope.Scope>
  readonly stats: Effect.Effect<PoolStats>
  /** Releases every entry nobody holds now (instead of waiting for the idle TTL); returns how many. */
  readonly cleanup: Effect.Effect<number>
}

/**
 * The model pool service.
 * @category services @since 0.1.0
 */
export class ModelPool extends Context.Service<ModelPool, ModelPoolService>()("@hasten/providers/ModelPool") {}

const llamas = new Map<boolean, Promise<Llama>>()

/**
 * The `Llama` binding shared by the whole process: `getLlama({ gpu: false, build: "never" })`
 * (the prebuilt CPU binary, never a compile), or `gpu: "auto"` when `gpu` is true.
 * @category constructors @since 0.1.0
 */
export const getLlama = (gpu: boolean): Effect.Effect<Llama, LlmError.LlmError> =>
  Effect.tryPromise({
    try: async () => {
      let promise = llamas.get(gpu)
      if (promise === undefined) {
        const { getLlama: load, LlamaLogLevel } = await import("node-llama-cpp")
        promise = load({ gpu: gpu ? "auto" : false, build: "never", logLevel: LlamaLogLevel.error })
        promise.catch(() => llamas.delete(gpu))
        llamas.set(gpu, promise)
      }
      return await promise
    },
    catch: failure("could not load the llama.cpp binding (node-llama-cpp)")
  })

/** Embedding width from which flash attention is on by default. */
const FLASH_FROM_EMBEDDING = 512

/**
 * Whether a model's contexts use flash attention when the options do not say: on from an
 * embedding width of 512 (the llama2.c `42M` shape and up: faster per CPU second in every
 * measured case, 1.08–2.16x, and 16 sequences batch to 2.99x / 4.56x of one at 42M / 110M
 * against 1.77x / 2.98x without), off below (slower on the tiny fixture models). node-llama-cpp's
 * own default, `"auto"`, turns it on for every CPU model.
 * @category models @since 0.3.0
 */
export const defaultFlashAttention = (model: { readonly fileInfo: { readonly architectureMetadata: unknown } }): boolean => {
  const shape = model.fileInfo.architectureMetadata as { readonly embedding_length?: number } | undefined
  return (shape?.embedding_length ?? 0) >= FLASH_FROM_EMBEDDING
}

const contextKeyString = (key: ContextKey): string =>
  JSON.stringify([
    key.modelPath,
    key.adapter ?? null,
    key.contextSize,
    key.sequences,
    key.threads,
    key.batchSize ?? null,
    key.gpu,
    key.flashAttention ?? null
  ])

/**
 * Builds a pool in the current scope; closing the scope releases everything it holds.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const idleTimeToLive = options.idleTimeToLive ?? Duration.minutes(5)
  const counters = { modelLoads: 0, modelReleases: 0, contextLoads: 0, contextReleases: 0, adapterLoads: 0, embeddingLoads: 0 }
  const adaptersSeen = new Map<string, Set<string>>()

  const models = yield* RcMap.make({
    idleTimeToLive,
    lookup: (key: string) => {
      const [modelPath, gpu] = JSON.parse(key) as [string, boolean]
      return Effect.acquireRelease(
        Effect.flatMap(getLlama(gpu), (llama) =>
          Effect.tryPromise({
            try: () => llama.loadModel({ modelPath, gpuLayers: gpu ? "auto" : 0 }),
            catch: failure(`could not load the model ${modelPath}`)
          })).pipe(Effect.tap(() => Effect.sync(() => counters.modelLoads++))),
        (model) =>
          Effect.promise(() => model.dispose()).pipe(
            Effect.tap(() =>
              Effect.sync(() => {
                counters.modelReleases++
                adaptersSeen.delete(key)
              })
            )
          )
      )
    }
  })

  const model = (modelPath: string, gpu: boolean) => RcMap.get(models, JSON.stringify([modelPath, gpu]))

  const contexts = yield* RcMap.make({
    idleTimeToLive,
    lookup: (keyString: string) =>
      Effect.gen(function*() {
        const key = JSON.parse(keyString) as [string, string | null, number, number, number, number | null, boolean, boolean | null]
        const [modelPath, adapter, contextSize, sequences, threads, batchSize, gpu, flashOption] = key
        if (adapter !== null && !Fs.existsSync(adapter)) {
          return yield* invalid(`LoRA adapter file not found: ${adapter}`)
        }
        const llama = yield* getLlama(gpu)
        const loaded = yield* model(modelPath, gpu)
        const flashAttention = flashOption ?? defaultFlashAttention(loaded)
        // node-llama-cpp's batches in sequence-id order (one forward pass for consecutive ids)
        const order = BatchOrder.make()
        const context = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () =>
              loaded.createContext({
                contextSize,
                sequences,
                threads,
                flashAttention,
                batching: { itemPrioritizationStrategy: order.strategy },
                ...(batchSize !== null ? { batchSize } : {}),
                ...(adapter !== null ? { lora: { adapters: [{ filePath: adapter }] } } : {})
              }),
            catch: failure(adapter !== null ? `could not create a context with the LoRA adapter ${adapter}` : "could not create a context")
          }),
          (context) => Effect.promise(() => context.dispose()).pipe(Effect.tap(() => Effect.sync(() => counters.contextReleases++)))
        )
        order.attach(context)
        counters.contextLoads++
        if (adapter !== null) {
          const modelKey = JSON.stringify([modelPath, gpu])
          const seen = adaptersSeen.get(modelKey) ?? new Set<string>()
          if (!seen.has(adapter)) counters.adapterLoads++
          seen.add(adapter)
          adaptersSeen.set(modelKey, seen)
        }
        const free = yield* Queue.bounded<Slot>(sequences)
        for (let i = 0; i < sequences; i++) {
          Queue.offerUnsafe(free, { sequence: context.getSequence(), pending: undefined })
        }
        const pooled: PooledContext = {
          key: {
            modelPath,
            adapter: adapter ?? undefined,
            contextSize,
            sequences,
            threads,
            batchSize: batchSize ?? undefined,
            gpu,
            flashAttention
          },
          llama,
          model: loaded,
          context,
          free,
          total: sequences
        }
        return pooled
      })
  })

  const embeddings = yield* RcMap.make({
    idleTimeToLive,
    lookup: (keyString: string) =>
      Effect.gen(function*() {
        const [modelPath, threads, gpu, contextSize] = JSON.parse(keyString) as [string, number, boolean, number]
        const loaded = yield* model(modelPath, gpu)
        const context = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: () => loaded.createEmbeddingContext({ threads, contextSize }),
            catch: failure("could not create an embedding context")
          }),
          (context) => Effect.promise(() => context.dispose())
        )
        counters.embeddingLoads++
        return context
      })
  })

  const entries = <K, A, E>(map: RcMap.RcMap<K, A, E>): Array<[K, number]> =>
    map.state._tag === "Open"
      ? Array.from(map.state.map, ([key, entry]) => [key, entry.refCount] as [K, number])
      : []

  const invalidateIdle = <K, A, E>(map: RcMap.RcMap<K, A, E>) =>
    Effect.gen(function*() {
      let released = 0
      for (const [key, refCount] of entries(map)) {
        if (refCount === 0) {
          yield* RcMap.invalidate(map, key)
          released++
        }
      }
      return released
    })

  return ModelPool.of({
    llama: getLlama,
    model,
    context: (key) => RcMap.get(contexts, contextKeyString(key)),
    embedding: (key) => RcMap.get(embeddings, JSON.stringify([key.modelPath, key.threads, key.gpu, key.contextSize])),
    stats: Effect.sync(() => ({
      ...counters,
      models: entries(models).map(([key, refCount]) => ({ modelPath: (JSON.parse(key) as [string])[0], refCount })),
      contexts: entries(contexts).map(([key, refCount]) => {
        const [modelPath, adapter, contextSize, sequences, threads, batchSize, gpu, flashAttention] = JSON.parse(key) as [
          string,
          string | null,
          number,
          number,
          number,
          number | null,
          boolean,
          boolean | null
        ]
        return {
          key: {
            modelPath,
            adapter: adapter ?? undefined,
            contextSize,
            sequences,
            threads,
            batchSize: batchSize ?? undefined,
            gpu,
            ...(flashAttention !== null ? { flashAttention } : {})
          },
          refCount
        }
      })
    })),
    // contexts and embedding contexts first: releasing them drops their model references
    cleanup: Effect.gen(function*() {
      const contextsReleased = yield* invalidateIdle(contexts)
      const embeddingsReleased = yield* invalidateIdle(embeddings)
      const modelsReleased = yield* invalidateIdle(models)
      return contextsReleased + embeddingsReleased + modelsReleased
    })
  })
})

/**
 * Takes a free sequence of the context for the scope, waiting (in FIFO order) while all
 * are busy. On release it waits for the work on the sequence to settle (an interrupted
 * generation is aborted first), clears its history and hands it to the next user.
 * @category constructors @since 0.1.0
 */
export const acquireSlot = (context: PooledContext): Effect.Effect<Slot, never, Scope.Scope> =>
  Effect.acquireRelease(Queue.take(context.free), (slot) =>
    Effect.promise(async () => {
      const pending = slot.pending
      slot.pending = undefined
      if (pending !== undefined) await pending.then(() => undefined, () => undefined)
      if (!slot.sequence.disposed) await slot.sequence.clearHistory().catch(() => undefined)
    }).pipe(Effect.andThen(Queue.offer(context.free, slot))))

/**
 * A pool in a scoped layer: models stay loaded while used, for `idleTimeToLive` after, and
 * are all released when the layer's scope closes.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<ModelPool> => Layer.effect(ModelPool, make(options))

/**
 * The pool `Local.layer` uses when none is provided. One value, so layers built together
 * (one `Layer.build`, one `ManagedRuntime`) share it and load each model once.
 * @category layers @since 0.1.0
 */
export const layerDefault: Layer.Layer<ModelPool> = layer()

/** The pool's counters and entries. @category accessors @since 0.1.0 */
export const stats: Effect.Effect<PoolStats, never, ModelPool> = Effect.flatMap(Effect.service(ModelPool), (pool) => pool.stats)

/** Releases every idle entry of the pool now; returns how many were released. @category accessors @since 0.1.0 */
export const cleanup: Effect.Effect<number, never, ModelPool> = Effect.flatMap(Effect.service(ModelPool), (pool) => pool.cleanup)
