/**
 * A local model loaded through the `ModelPool` for one `Local.layer`, with what the
 * services read from its GGUF once: the base context, the vocabulary (size, id, the text
 * sanitizer), the BOS and end tokens, whether it has a chat template.
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Llama, LlamaModel, Token } from "node-llama-cpp"
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import * as Path from "node:path"
import { resolveModelPath } from "../LocalModelFile.js"
import type { Options } from "../LocalOptions.js"
import * as ModelPool from "../ModelPool.js"
import { invalid } from "./localErrors.js"
import * as ModelMemory from "./modelMemory.js"
import * as VocabularyText from "./vocabularyText.js"

/** A pooled model and the facts every local service shares. */
export interface LoadedModel {
  readonly options: Options
  /** Model id reported in completions: `options.id`, else the file name without `.gguf`. */
  readonly id: string
  readonly modelPath: string
  readonly pool: ModelPool.ModelPoolService
  /** The key of the base context (no adapter); adapter contexts extend it. */
  readonly key: ModelPool.ContextKey
  /** The base context: requests without an adapter and token sequences run on its sequences. */
  readonly base: ModelPool.PooledContext
  readonly model: LlamaModel
  readonly llama: Llama
  readonly vocabularySize: number
  /** A hash of the vocabulary's tokens (`TokenModel.vocabularyId`). */
  readonly vocabularyId: string
  /** Text the vocabulary cannot encode would abort the process inside llama.cpp (no byte fallback): sanitize first. */
  readonly sanitize: VocabularyText.Sanitize
  readonly bos: Token | undefined
  /** Whether the model puts a BOS token in front of a prompt. */
  readonly prependBos: boolean
  readonly endTokens: Array<Token>
  readonly hasChatTemplate: boolean
  /** Weights, KV cache and compute buffers of the base context (perf-logger's `modelMemory` fact). */
  readonly memory: ModelMemory.ModelMemory
}

/**
 * Resolves the model file, checks the settings, and takes the model and its base context
 * from the pool for the current scope.
 */
export const load = Effect.fnUntraced(function*(options: Options) {
  const pool = yield* ModelPool.ModelPool
  const modelPath = yield* resolveModelPath(options.model, options)
  const id = options.id ?? Path.basename(modelPath).replace(/\.gguf$/i, "")
  const gpu = options.gpu ?? false
  const threads = options.threads ?? 1
  const requested = options.sequences ?? 1
  if (requested !== "auto" && (!Number.isInteger(requested) || requested < 1)) {
    return yield* invalid(`sequences must be a positive integer or "auto", got ${requested}`)
  }
  const maxSequences = options.maxSequences ?? 16
  if (!Number.isInteger(maxSequences) || maxSequences < 1) {
    return yield* invalid(`maxSequences must be a positive integer, got ${maxSequences}`)
  }
  const memoryFraction = options.memoryFraction ?? 0.5
  if (!(memoryFraction > 0 && memoryFraction <= 1)) return yield* invalid(`memoryFraction must be in (0, 1], got ${memoryFraction}`)
  if (!Number.isInteger(threads) || threads < 0) return yield* invalid(`threads must be a non-negative integer, got ${threads}`)
  const loadedModel = yield* pool.model(modelPath, gpu)
  const contextSize = options.contextSize ?? Math.min(2048, loadedModel.trainContextSize || 2048)
  const flashAttention = options.flashAttention ?? ModelPool.defaultFlashAttention(loadedModel)
  const sequences = requested !== "auto" ? requested : ModelMemory.sequencesFor(
    yield* Effect.promise(() => ModelMemory.perSequenceBytes(loadedModel, { contextSize, batchSize: options.batchSize, flashAttention })),
    Os.freemem(),
    memoryFraction,
    maxSequences
  )
  const key: ModelPool.ContextKey = {
    modelPath,
    contextSize,
    sequences,
    threads,
    batchSize: options.batchSize,
    gpu,
    flashAttention
  }
  const base = yield* pool.context(key)
  const model: LlamaModel = base.model
  const metadata = model.fileInfo.metadata as unknown as {
    readonly tokenizer?: { readonly chat_template?: string; readonly ggml?: { readonly tokens?: ReadonlyArray<string> } }
  }
  const vocabularyTokens = metadata.tokenizer?.ggml?.tokens ?? []
  const bos = model.tokens.bos ?? undefined
  const loaded: LoadedModel = {
    options,
    id,
    modelPath,
    pool,
    key,
    base,
    model,
    llama: base.llama,
    vocabularySize: vocabularyTokens.length,
    vocabularyId: Crypto.createHash("sha256").update(vocabularyTokens.join("\u0000")).digest("hex").slice(0, 16),
    sanitize: VocabularyText.make(
      vocabularyTokens,
      (metadata.tokenizer?.ggml as { readonly token_type?: ReadonlyArray<number> } | undefined)?.token_type
    ),
    bos,
    prependBos: bos !== undefined && model.tokens.shouldPrependBosToken,
    endTokens: [model.tokens.eos, model.tokens.eot].filter((token): token is Token => token !== null),
    hasChatTemplate: typeof metadata.tokenizer?.chat_template === "string" && metadata.tokenizer.chat_template.length > 0,
    memory: yield* Effect.promise(() =>
      ModelMemory.measure(model, { contextSize, sequences, batchSize: options.batchSize, flashAttention })
    )
  }
  return loaded
})
