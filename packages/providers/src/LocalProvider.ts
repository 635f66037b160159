/**
 * A local GGUF model (node-llama-cpp, llama.cpp) as Hasten's `Llm`, `Embedder` and
 * `TokenModel`. The model is loaded once through the `ModelPool`; concurrent requests run
 * on the sequences of one context and queue when all are busy.
 * @since 0.1.0
 */
import { Completion, Embedder, Llm, LlmError, TokenModel } from "@hasten/core"
import type { CompletionRequest } from "@hasten/core"
import { Config, Context, Effect, Layer, Option, Queue, Semaphore, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { ChatHistoryItem, ChatWrapper, ControlledEvaluateInputItem, LlamaGrammar, LlamaModel, Token } from "node-llama-cpp"
import * as GreedyDecoder from "./internal/greedyDecoder.js"
import { errorMessage, failure, invalid } from "./internal/localErrors.js"
import * as ModelPool from "./ModelPool.js"
import * as VocabularyText from "./internal/vocabularyText.js"

const provider = "local"

// ---------------------------------------------------------------------------
// model resolution
// ---------------------------------------------------------------------------

/** Where and how to look for a model file. @category models @since 0.1.0 */
export interface ResolveOptions {
  /** A folder searched before `shared/models` (default: env `HASTEN_MODELS_DIR`). */
  readonly modelsDir?: string | undefined
  /** Where `hf:` downloads go (default: env `HASTEN_CACHE_DIR`, else `~/.cache/hasten/models`). */
  readonly cacheDir?: string | undefined
  /** Expected sha256 (hex) of the file; checked after resolving. */
  readonly sha256?: string | undefined
  /** Whether an `hf:` URI may be downloaded when not cached (default true; false = offline). */
  readonly download?: boolean | undefined
  /** Folders to start the upward `shared/models` search from (default: cwd and this module's folder). */
  readonly searchFrom?: ReadonlyArray<string> | undefined
}

const howToProvide =
  "Provide a model: set HASTEN_MODEL to a .gguf path, put the file in a shared/models folder (or HASTEN_MODELS_DIR), " +
  "or pass an hf: URI (e.g. hf:ggml-org/models/tinyllamas/stories260K.gguf) to download it."

const moduleDir = (): string | undefined => {
  try {
    return Path.dirname(fileURLToPath(import.meta.url))
  } catch {
    return undefined
  }
}

const ancestors = (start: string): Array<string> => {
  const result: Array<string> = []
  let current = Path.resolve(start)
  for (;;) {
    result.push(current)
    const parent = Path.dirname(current)
    if (parent === current) return result
    current = parent
  }
}

const isFile = (path: string): boolean => {
  try {
    return Fs.statSync(path).isFile()
  } catch {
    return false
  }
}

const sha256File = (path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const hash = Crypto.createHash("sha256")
    Fs.createReadStream(path).on("data", (chunk) => hash.update(chunk)).on("error", reject).on("end", () =>
      resolve(hash.digest("hex")))
  })

/**
 * Candidate folders for model files: `modelsDir` / `HASTEN_MODELS_DIR`, then every
 * `shared/models` folder found walking up from the cwd and from this module's location
 * (in a fresh clone, `shared/` sits beside the repository).
 * @category models @since 0.1.0
 */
export const modelFolders = (options: ResolveOptions = {}): Array<string> => {
  const folders: Array<string> = []
  const explicit = options.modelsDir ?? process.env.HASTEN_MODELS_DIR
  if (explicit !== undefined && explicit.length > 0) folders.push(Path.resolve(explicit))
  const starts = options.searchFrom ?? [process.cwd(), ...(moduleDir() !== undefined ? [moduleDir()!] : [])]
  for (const start of starts) {
    for (const dir of ancestors(start)) {
      const candidate = Path.join(dir, "shared", "models")
      if (!folders.includes(candidate) && Fs.existsSync(candidate)) folders.push(candidate)
    }
  }
  return folders
}

/**
 * Resolves a model name, path or `hf:` URI to a local file: an existing path as given; a
 * bare name in `HASTEN_MODELS_DIR` or the nearest `shared/models` (`.gguf` optional); an
 * `hf:` URI through node-llama-cpp's `resolveModelFile` into the cache dir. With no name,
 * `HASTEN_MODEL` is used. Fails with an `InvalidRequest` `LlmError` that says how to
 * provide a model.
 * @category constructors @since 0.1.0
 */
export const resolveModelPath = (
  nameOrPath?: string | undefined,
  options: ResolveOptions = {}
): Effect.Effect<string, LlmError.LlmError> =>
  Effect.gen(function*() {
    const fromEnv = yield* Config.option(Config.String("HASTEN_MODEL")).pipe(Effect.orElseSucceed(() => Option.none<string>()))
    const name = nameOrPath ?? Option.getOrUndefined(fromEnv)
    if (name === undefined || name.trim().length === 0) {
      return yield* invalid(`no model given (option \`model\` is empty and HASTEN_MODEL is not set). ${howToProvide}`)
    }
    const resolved = yield* name.startsWith("hf:") || /^https?:\/\//.test(name)
      ? download(name, options)
      : Effect.suspend(() => {
        if (isFile(name)) return Effect.succeed(Path.resolve(name))
        const base = Path.basename(name)
        const names = base.endsWith(".gguf") ? [base] : [base, `${base}.gguf`]
        const folders = modelFolders(options)
        for (const folder of folders) {
          for (const file of names) {
            const candidate = Path.join(folder, file)
            if (isFile(candidate)) return Effect.succeed(candidate)
          }
        }
        return Effect.fail(invalid(
          `model not found: "${name}" (looked for ${names.join(" / ")} as a path and in ${
            folders.length > 0 ? folders.join(", ") : "no shared/models folder (none found above the cwd)"
          }). ${howToProvide}`
        ))
      })
    if (options.sha256 !== undefined) {
      const actual = yield* Effect.tryPromise({ try: () => sha256File(resolved), catch: failure(`could not read ${resolved}`) })
      if (actual.toLowerCase() !== options.sha256.toLowerCase()) {
        return yield* invalid(`sha256 mismatch for ${resolved}: expected ${options.sha256}, got ${actual}`)
      }
    }
    return resolved
  })

const download = (uri: string, options: ResolveOptions): Effect.Effect<string, LlmError.LlmError> =>
  Effect.tryPromise({
    try: async (signal) => {
      const { resolveModelFile } = await import("node-llama-cpp")
      const directory = options.cacheDir ?? process.env.HASTEN_CACHE_DIR ?? Path.join(Os.homedir(), ".cache", "hasten", "models")
      return await resolveModelFile(uri, {
        directory,
        download: options.download === false ? false : "auto",
        cli: process.stderr.isTTY === true,
        signal
      })
    },
    catch: (cause) =>
      invalid(
        `could not resolve ${uri}${options.download === false ? " (downloads disabled)" : ""}: ${errorMessage(cause)}. ${howToProvide}`
      )
  })

// ---------------------------------------------------------------------------
// the layer
// ---------------------------------------------------------------------------

/** Settings of a local model. @category models @since 0.1.0 */
export interface Options extends ResolveOptions {
  /** A model name (looked up in shared/models), a .gguf path, or an `hf:` URI. Default: env HASTEN_MODEL. */
  readonly model?: string | undefined
  /** Model id reported in completions and by `/v1/models`. Default: the file name without `.gguf`. */
  readonly id?: string | undefined
  /** Tokens per sequence. Default: min(2048, the model's training context). */
  readonly contextSize?: number | undefined
  /** Parallel sequences (concurrent requests without queueing). Default 1. */
  readonly sequences?: number | undefined
  /** CPU threads. Default 1 (tiny models run far faster on one thread). */
  readonly threads?: number | undefined
  /** Offload to a GPU when one is usable. Default false (the prebuilt CPU binary). */
  readonly gpu?: boolean | undefined
  readonly batchSize?: number | undefined
  /** llama.cpp flash attention (default false; see `ModelPool.ContextKey`). */
  readonly flashAttention?: boolean | undefined
  /**
   * How `messages` become a prompt: `"auto"` uses the model's chat template when the GGUF
   * has one and plain text otherwise; `"none"` always plain text; or a node-llama-cpp
   * `ChatWrapper` instance.
   */
  readonly chatTemplate?: "auto" | "none" | ChatWrapper | undefined
  /** Temperature used when a request omits it. Default 0.8 (llama.cpp's default). */
  readonly defaultTemperature?: number | undefined
  /**
   * `TokenModel`'s greedy steps (`appendGreedy`, `generateGreedy`, what speculative decoding
   * runs) sample every position of a batch at once on persistent greedy samplers, through
   * node-llama-cpp internals, instead of `controlledEvaluate`'s one position after another
   * with a new sampler per call. Same tokens, several times cheaper per verified position on
   * small models. Default true; `false` keeps to node-llama-cpp's public API. When the
   * installed node-llama-cpp lacks an internal it needs, the public API is used anyway.
   */
  readonly fastGreedy?: boolean | undefined
}

/** Facts about the loaded model and the state of its sequences. @category models @since 0.1.0 */
export interface Status {
  readonly id: string
  readonly modelPath: string
  readonly contextSize: number
  readonly sequences: number
  /** Sequences of the base context not in use right now. */
  readonly freeSequences: number
  readonly trainContextSize: number
  readonly vocabularySize: number
  readonly hasChatTemplate: boolean
  /** Tokens generated by every request so far (aborted ones count what they produced). */
  readonly generatedTokens: number
}

/** The loaded model behind a `Local.layer`, for servers and tests. @category models @since 0.1.0 */
export interface LocalModelService {
  readonly id: string
  readonly modelPath: string
  readonly status: Effect.Effect<Status>
  /** Exact prompt token count for a request (as `complete` would evaluate it). */
  readonly countPromptTokens: (request: CompletionRequest.CompletionRequest) => Effect.Effect<number, LlmError.LlmError>
}

/**
 * The loaded local model (id, path, sequence status).
 * @category services @since 0.1.0
 */
export class LocalModel extends Context.Service<LocalModel, LocalModelService>()("@hasten/providers/LocalModel") {}

/** `controlledEvaluate` options: the raw logits after a position. */
const withLogits = { generateNext: { logits: true } } as const
/** Greedy next-token generation for `controlledEvaluate` (temperature 0: llama.cpp's greedy sampler). */
const greedyNext = { generateNext: { token: true, options: { temperature: 0 } } } as const

const softmax = (logits: ReadonlyMap<number, number>, size: number): Float32Array => {
  const out = new Float32Array(size)
  let max = -Infinity
  for (const value of logits.values()) if (value > max) max = value
  let sum = 0
  const scratch = new Float64Array(size)
  for (const [token, value] of logits) {
    const weight = Math.exp(value - max)
    scratch[token] = weight
    sum += weight
  }
  for (let i = 0; i < size; i++) out[i] = scratch[i]! / sum
  return out
}

const finishReasonOf = (stopReason: string): Completion.FinishReason => {
  switch (stopReason) {
    case "maxTokens":
      return "length"
    case "eogToken":
    case "stopGenerationTrigger":
    case "customStopTrigger":
      return "stop"
    default:
      return "unknown"
  }
}

interface Prepared {
  readonly tokens: Array<Token>
  /** Prompt tokens evaluated, the BOS token included. */
  readonly inputTokens: number
  readonly stopTriggers: Array<string | ReadonlyArray<string | Token>>
  readonly grammar: LlamaGrammar | undefined
}

/**
 * Builds the services over a pooled model. Requires a `ModelPool`; {@link layer} provides
 * the default one.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const pool = yield* ModelPool.ModelPool
  const modelPath = yield* resolveModelPath(options.model, options)
  const id = options.id ?? Path.basename(modelPath).replace(/\.gguf$/i, "")
  const gpu = options.gpu ?? false
  const threads = options.threads ?? 1
  const sequences = options.sequences ?? 1
  if (!Number.isInteger(sequences) || sequences < 1) return yield* invalid(`sequences must be a positive integer, got ${sequences}`)
  if (!Number.isInteger(threads) || threads < 0) return yield* invalid(`threads must be a non-negative integer, got ${threads}`)
  const loadedModel = yield* pool.model(modelPath, gpu)
  const contextSize = options.contextSize ?? Math.min(2048, loadedModel.trainContextSize || 2048)
  const key: ModelPool.ContextKey = {
    modelPath,
    contextSize,
    sequences,
    threads,
    batchSize: options.batchSize,
    gpu,
    flashAttention: options.flashAttention ?? false
  }
  const base = yield* pool.context(key)
  const model: LlamaModel = base.model
  const llama = base.llama
  const metadata = model.fileInfo.metadata as unknown as {
    readonly tokenizer?: { readonly chat_template?: string; readonly ggml?: { readonly tokens?: ReadonlyArray<string> } }
  }
  const vocabularyTokens = metadata.tokenizer?.ggml?.tokens ?? []
  const vocabularySize = vocabularyTokens.length
  // Text the vocabulary cannot encode would abort the process inside llama.cpp (no byte fallback).
  const sanitize = VocabularyText.make(vocabularyTokens, (metadata.tokenizer?.ggml as { readonly token_type?: ReadonlyArray<number> } | undefined)?.token_type)
  const vocabularyId = Crypto.createHash("sha256").update(vocabularyTokens.join("\u0000")).digest("hex").slice(0, 16)
  const hasChatTemplate = typeof metadata.tokenizer?.chat_template === "string" && metadata.tokenizer.chat_template.length > 0
  const { LlamaCompletion, resolveChatWrapper } = yield* Effect.promise(() => import("node-llama-cpp"))
  const chatWrapper: ChatWrapper | undefined = options.chatTemplate === undefined || options.chatTemplate === "auto"
    ? (hasChatTemplate ? resolveChatWrapper(model) : undefined)
    : options.chatTemplate === "none"
    ? undefined
    : options.chatTemplate
  const bos = model.tokens.bos ?? undefined
  const prependBos = bos !== undefined && model.tokens.shouldPrependBosToken
  const endTokens = [model.tokens.eos, model.tokens.eot].filter((token): token is Token => token !== null)
  const defaultTemperature = options.defaultTemperature ?? 0.8
  const grammars = new Map<string, Promise<LlamaGrammar>>()
  let generatedTokens = 0

  const adapterContext = (adapter: string): Effect.Effect<ModelPool.PooledContext, LlmError.LlmError, Scope.Scope> =>
    Effect.suspend(() => {
      const candidates = [adapter, ...modelFolders(options).map((folder) => Path.join(folder, adapter))]
      const found = candidates.find(isFile)
      if (found === undefined) {
        return Effect.fail(invalid(`LoRA adapter file not found: "${adapter}" (looked in the cwd and ${modelFolders(options).join(", ") || "no shared/models folder"})`))
      }
      return pool.context({ ...key, adapter: Path.resolve(found) })
    })

  const contextFor = (request: CompletionRequest.CompletionRequest) =>
    request.adapter === undefined || request.adapter.length === 0 ? Effect.succeed(base) : adapterContext(request.adapter)

  const grammarFor = (request: CompletionRequest.CompletionRequest): Effect.Effect<LlamaGrammar | undefined, LlmError.LlmError> => {
    const format = request.responseFormat
    if (format === undefined || format.type !== "json") return Effect.succeed(undefined)
    const cacheKey = JSON.stringify(format.schema ?? null)
    return Effect.tryPromise({
      try: () => {
        let grammar = grammars.get(cacheKey)
        if (grammar === undefined) {
          grammar = format.schema === undefined
            ? llama.getGrammarFor("json")
            : llama.createGrammarForJsonSchema(format.schema as never)
          grammar.catch(() => grammars.delete(cacheKey))
          grammars.set(cacheKey, grammar)
        }
        return grammar
      },
      catch: (cause) => invalid(`unsupported JSON schema in responseFormat: ${errorMessage(cause)}`)
    })
  }

  const promptTokens = (request: CompletionRequest.CompletionRequest): { tokens: Array<Token>; stop: Array<string> } => {
    if (request.prompt !== undefined && request.prompt.length > 0) {
      return { tokens: model.tokenize(sanitize(request.prompt), false), stop: [] }
    }
    if (chatWrapper !== undefined) {
      const history: Array<ChatHistoryItem> = request.messages.map((message): ChatHistoryItem =>
        message.role === "system"
          ? { type: "system", text: sanitize(message.content) }
          : message.role === "user"
          ? { type: "user", text: sanitize(message.content) }
          : { type: "model", response: [sanitize(message.content)] }
      )
      history.push({ type: "model", response: [] })
      const state = chatWrapper.generateContextState({ chatHistory: history })
      const tokens = state.contextText.tokenize(model.tokenizer)
      if (bos !== undefined && tokens[0] === bos) tokens.shift()
      return { tokens, stop: state.stopGenerationTriggers.map((trigger) => trigger.toString()) }
    }
    return { tokens: model.tokenize(sanitize(request.messages.map((message) => message.content).join("\n")), false), stop: [] }
  }

  const prepare = (request: CompletionRequest.CompletionRequest, sequenceSize: number): Effect.Effect<Prepared, LlmError.LlmError> =>
    Effect.gen(function*() {
      const { stop, tokens } = promptTokens(request)
      const inputTokens = tokens.length + (prependBos ? 1 : 0)
      const needed = inputTokens + (request.maxTokens ?? 1)
      if (needed > sequenceSize) {
        return yield* LlmError.make(
          provider,
          new LlmError.ContextLengthExceeded({
            description: `the prompt has ${inputTokens} tokens${
              request.maxTokens !== undefined ? ` and maxTokens is ${request.maxTokens}` : ""
            }, more than the context size of ${sequenceSize} tokens`
          })
        )
      }
      const grammar = yield* grammarFor(request)
      return { tokens, inputTokens, stopTriggers: [...stop, ...(request.stop ?? []).map(sanitize)], grammar }
    })

  const generationOptions = (request: CompletionRequest.CompletionRequest, prepared: Prepared) => {
    const penalized = (request.repeatPenalty !== undefined && request.repeatPenalty !== 1) ||
      (request.frequencyPenalty !== undefined && request.frequencyPenalty !== 0) ||
      (request.presencePenalty !== undefined && request.presencePenalty !== 0)
    return {
      temperature: request.temperature ?? defaultTemperature,
      ...(request.topK !== undefined ? { topK: request.topK } : {}),
      ...(request.topP !== undefined ? { topP: request.topP } : {}),
      ...(request.seed !== undefined ? { seed: request.seed } : {}),
      ...(request.maxTokens !== undefined ? { maxTokens: request.maxTokens } : {}),
      repeatPenalty: penalized
        ? {
          penalty: request.repeatPenalty ?? 1,
          frequencyPenalty: request.frequencyPenalty ?? 0,
          presencePenalty: request.presencePenalty ?? 0,
          lastTokens: request.penaltyWindow ?? 64
        }
        : false as const,
      ...(prepared.grammar !== undefined ? { grammar: prepared.grammar } : {}),
      ...(prepared.stopTriggers.length > 0 ? { customStopTriggers: prepared.stopTriggers } : {}),
      disableContextShift: true
    }
  }

  /**
   * Runs one generation on a free sequence of the request's context; `onText` receives
   * each text delta with the tokens generated since the previous one.
   */
  const generate = (
    request: CompletionRequest.CompletionRequest,
    onText: (text: string, tokens: number) => void
  ) =>
    Effect.scoped(Effect.gen(function*() {
      const context = yield* contextFor(request)
      const prepared = yield* prepare(request, context.context.contextSize)
      if (request.maxTokens === 0) return { prepared, outputTokens: 0, stopReason: "maxTokens", text: "", queueWaitMillis: 0 }
      const clock = yield* Effect.clockWith(Effect.succeed)
      const waitStart = clock.currentTimeMillisUnsafe()
      const slot = yield* ModelPool.acquireSlot(context)
      const queueWaitMillis = clock.currentTimeMillisUnsafe() - waitStart
      let outputTokens = 0
      let pendingTokens = 0
      const result = yield* Effect.tryPromise({
        try: (signal) => {
          const completion = new LlamaCompletion({ contextSequence: slot.sequence, autoDisposeSequence: false })
          const run = completion.generateCompletionWithMeta(prepared.tokens, {
            ...generationOptions(request, prepared),
            signal,
            onToken: (tokens) => {
              generatedTokens += tokens.length
              outputTokens += tokens.length
              pendingTokens += tokens.length
            },
            onTextChunk: (text) => {
              if (text.length === 0) return
              const tokens = pendingTokens
              pendingTokens = 0
              onText(text, tokens)
            }
          }).finally(() => completion.dispose({ disposeSequence: false }))
          slot.pending = run
          return run
        },
        catch: failure("generation failed")
      })
      if (pendingTokens > 0) onText("", pendingTokens)
      return { prepared, outputTokens, stopReason: result.metadata.stopReason, text: result.response, queueWaitMillis }
    }))

  const complete = Effect.fn("Local.complete")(function*(request: CompletionRequest.CompletionRequest) {
    const clock = yield* Effect.clockWith(Effect.succeed)
    const start = clock.currentTimeMillisUnsafe()
    let firstToken: number | undefined
    const result = yield* generate(request, () => {
      if (firstToken === undefined) firstToken = clock.currentTimeMillisUnsafe()
    })
    const end = clock.currentTimeMillisUnsafe()
    return new Completion.Completion({
      text: result.text,
      finishReason: finishReasonOf(result.stopReason),
      usage: { inputTokens: result.prepared.inputTokens, outputTokens: result.outputTokens },
      model: request.model.length > 0 ? request.model : id,
      provider,
      timing: firstToken === undefined ? { start, end } : { start, firstToken, end },
      // how long the request waited for a free sequence (perf-logger reads it)
      metadata: { queueWaitMillis: result.queueWaitMillis }
    })
  })

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.callback<Completion.CompletionChunk, LlmError.LlmError>((queue) =>
      generate(request, (text, tokens) => {
        Queue.offerUnsafe(queue, new Completion.CompletionChunk({ text, tokens }))
      }).pipe(
        Effect.tap((result) =>
          Effect.sync(() => {
            Queue.offerUnsafe(
              queue,
              new Completion.CompletionChunk({
                text: "",
                finishReason: finishReasonOf(result.stopReason),
                usage: { inputTokens: result.prepared.inputTokens, outputTokens: result.outputTokens },
                model: request.model.length > 0 ? request.model : id,
                metadata: { queueWaitMillis: result.queueWaitMillis }
              })
            )
            Queue.endUnsafe(queue)
          })
        ),
        Effect.catch((error) => Queue.fail(queue, error)),
        Effect.forkScoped
      )
    )

  const llm: Llm.LlmService = { name: provider, complete, stream }

  // -------------------------------------------------------------------------
  // Embedder
  // -------------------------------------------------------------------------
  // created on first use, then kept warm by the pool's idle TTL
  const embeddingKey = { modelPath, threads, gpu, contextSize }
  const embed = Effect.fn("Local.embed")(function*(texts: ReadonlyArray<string>, embedOptions?: Embedder.EmbedOptions) {
    const context = yield* pool.embedding(embeddingKey)
    const vectors: Array<ReadonlyArray<number>> = []
    let inputTokens = 0
    for (const text of texts) {
      const safeText = sanitize(text)
      const tokens = model.tokenize(safeText).length + (prependBos ? 1 : 0)
      if (tokens > contextSize) {
        return yield* LlmError.make(
          provider,
          new LlmError.ContextLengthExceeded({ description: `an input has ${tokens} tokens, more than the context size of ${contextSize}` })
        )
      }
      inputTokens += tokens
      const embedding = yield* Effect.tryPromise({
        try: () => context.getEmbeddingFor(safeText),
        catch: failure("embedding failed")
      })
      const vector = Array.from(embedding.vector)
      vectors.push(embedOptions?.dimensions !== undefined ? vector.slice(0, embedOptions.dimensions) : vector)
    }
    const result: Embedder.Embeddings = { vectors, model: embedOptions?.model ?? id, usage: { inputTokens } }
    return result
  })
  const embedder: Embedder.EmbedderService = {
    name: provider,
    model: id,
    embed: (texts, embedOptions) => Effect.scoped(embed(texts, embedOptions))
  }

  // -------------------------------------------------------------------------
  // TokenModel
  // -------------------------------------------------------------------------
  /** The error for the first token outside the vocabulary, if any (checked on every decoding step). */
  const outOfVocabulary = (tokens: ReadonlyArray<number>) => {
    for (const token of tokens) {
      if (!Number.isInteger(token) || token < 0 || token >= vocabularySize) {
        return invalid(`token ${token} is outside the vocabulary (0..${vocabularySize - 1})`)
      }
    }
    return undefined
  }
  const checkTokens = (tokens: ReadonlyArray<number>) => {
    const error = outOfVocabulary(tokens)
    return error === undefined ? Effect.void : Effect.fail(error)
  }

  const tokenModel: TokenModel.TokenModelService = {
    name: id,
    vocabularySize,
    vocabularyId,
    bos,
    endTokens,
    tokenize: (text, tokenizeOptions) =>
      Effect.sync(() => {
        const addBos = tokenizeOptions?.addBos === true && bos !== undefined
        const tokens = model.tokenize(sanitize(text), false)
        return addBos ? [bos!, ...tokens] : tokens
      }),
    detokenize: (tokens) => Effect.andThen(checkTokens(tokens), Effect.sync(() => model.detokenize(tokens as Array<Token>))),
    sequence: () =>
      Effect.gen(function*() {
        const slot = yield* ModelPool.acquireSlot(base)
        const lock = yield* Semaphore.make(1)
        const tokens: Array<number> = []
        const sequence = slot.sequence
        // A long-lived greedy generator for steps that need the next token after the last
        // position only (plain decoding steps, a prompt): `controlledEvaluate` builds a
        // sampler per call, which costs about as much as a small model's forward pass; the
        // generator keeps one, as node-llama-cpp's own generation does. It is driven with
        // `next(tokens)` (evaluate these instead of the sampled token) and lives as long as the
        // sequence; `controlledEvaluate` and `eraseContextTokenRanges` may run between steps.
        let generator: AsyncGenerator<Token, void, void | Token | Array<Token>> | undefined
        // With `fastGreedy`, greedy steps run on a decoder that samples a batch's positions at
        // once (see internal/greedyDecoder.ts); without it (or without the internals it needs),
        // on `controlledEvaluate` and the generator above.
        const decoder = options.fastGreedy === false ? undefined : GreedyDecoder.make(sequence)
        yield* Effect.addFinalizer(() =>
          Effect.promise(async () => {
            const current = generator
            generator = undefined
            await current?.return(undefined).catch(() => undefined)
            // samplers are freed once the sequence's last evaluation has settled
            await slot.pending?.catch(() => undefined)
            decoder?.dispose()
          })
        )
        /**
         * A native operation that, once started, runs to its end even if the caller is
         * interrupted: the interruption aborts its signal (a greedy run stops after the step in
         * progress) and then waits for it, so the lock is released, and the caller resumes, only
         * once `tokens` matches the sequence again. (Otherwise a pass would go on natively
         * behind the next operations' back, and a caller reading `tokens()` would see a state
         * that is about to change.)
         */
        const native = <A>(run: (signal: AbortSignal) => Promise<A>, message: string): Effect.Effect<A, LlmError.LlmError> =>
          Effect.uninterruptibleMask((restore) => {
            const controller = new AbortController()
            let pending: Promise<A>
            try {
              pending = run(controller.signal)
            } catch (error) {
              pending = Promise.reject(error)
            }
            slot.pending = pending
            return restore(Effect.tryPromise({ try: () => pending, catch: failure(message) })).pipe(
              Effect.onInterrupt(() =>
                Effect.promise(() => {
                  controller.abort()
                  return pending.then(() => undefined, () => undefined)
                })
              )
            )
          })
        /**
         * One forward pass over `newTokens` (bounds and context checked). The tokens are
         * recorded when the pass completes, so `tokens` always matches the sequence's state;
         * `run` gets the signal `native` aborts on interruption. (A plain function rather than
         * a generator: it runs once per decoding step.)
         */
        const evaluate = <A>(
          newTokens: ReadonlyArray<number>,
          run: (signal: AbortSignal) => Promise<A>,
          /** Tokens the pass evaluated after `newTokens` (a greedy run's decoded tokens). */
          evaluatedAfter?: (result: A) => ReadonlyArray<number>
        ): Effect.Effect<A, LlmError.LlmError> => {
          const bad = outOfVocabulary(newTokens)
          if (bad !== undefined) return Effect.fail(bad)
          // node-llama-cpp keeps one position free: a pass that would fill the context shifts it
          // first (erases its beginning), behind `tokens`' back
          if (tokens.length + newTokens.length > sequence.contextSize - 1) {
            return LlmError.make(
              provider,
              new LlmError.ContextLengthExceeded({
                description: `appending ${newTokens.length} tokens to ${tokens.length} exceeds the context size of ${sequence.contextSize} (one position stays free)`
              })
            )
          }
          return native((signal) =>
            run(signal).then((result) => {
              tokens.push(...newTokens)
              if (evaluatedAfter !== undefined) tokens.push(...evaluatedAfter(result))
              return result
            }), "evaluation failed")
        }
        const controlled = (newTokens: ReadonlyArray<number>, item: (token: Token, index: number) => ControlledEvaluateInputItem) =>
          evaluate(newTokens, () => sequence.controlledEvaluate(newTokens.map((token, index) => item(token as Token, index))))
        const stepGreedy = (newTokens: ReadonlyArray<number>) =>
          decoder !== undefined ? evaluate(newTokens, () => decoder.decode(newTokens, newTokens.length - 1)) : evaluate(newTokens, async () => {
            const input = newTokens as Array<Token>
            let step: IteratorResult<Token, void>
            try {
              if (generator === undefined) {
                generator = sequence.evaluate(input, { temperature: 0, yieldEogToken: true })
                step = await generator.next()
              } else {
                step = await generator.next(input)
              }
            } catch (error) {
              // a failed step ends the generator; the next step starts a new one
              generator = undefined
              throw error
            }
            if (step.done === true) {
              generator = undefined
              throw new Error("the greedy generator ended")
            }
            return [step.value as number]
          })
        /**
         * Plain greedy decoding, natively: `newTokens` then up to `count - 1` sampled tokens are
         * evaluated by the greedy generator in one loop, as node-llama-cpp's own generation runs
         * (no Effect step, lock or bookkeeping per token). Afterwards the sequence holds
         * `newTokens` and every decoded token but the last (not evaluated yet, as after
         * `appendGreedy`).
         */
        const runGreedy = (newTokens: ReadonlyArray<number>, count: number, stopAt: ReadonlySet<number> | undefined) =>
          evaluate(newTokens, async (signal) => {
            const out: Array<number> = []
            // an interrupted run stops after the step in progress (what it decoded stays decoded)
            const more = () => out.length < count && !(out.length > 0 && signal.aborted)
            if (decoder !== undefined) {
              let input: ReadonlyArray<number> = newTokens
              try {
                while (more()) {
                  const next = (await decoder.decode(input, input.length - 1))[0]!
                  out.push(next)
                  if (stopAt?.has(next) === true) break
                  input = [next]
                }
              } catch (error) {
                if (out.length === 0) throw error
                // what was decoded stays decoded: the caller gets it, the sequence holds it
              }
              return out
            }
            let input: Array<Token> | undefined = newTokens as Array<Token>
            try {
              while (more()) {
                let step: IteratorResult<Token, void>
                if (generator === undefined) {
                  generator = sequence.evaluate(input!, { temperature: 0, yieldEogToken: true })
                  step = await generator.next()
                } else {
                  step = await generator.next(input)
                }
                if (step.done === true) {
                  generator = undefined
                  throw new Error("the greedy generator ended")
                }
                input = undefined
                out.push(step.value as number)
                if (stopAt?.has(step.value as number) === true) break
              }
            } catch (error) {
              // a failed step ends the generator; the next step starts a new one
              generator = undefined
              if (out.length === 0) throw error
              // what was decoded stays decoded: the caller gets it, the sequence holds it
            }
            return out
          }, (out) => out.slice(0, -1))
        const append = (newTokens: ReadonlyArray<number>) =>
          lock.withPermits(1)(Effect.gen(function*() {
            if (newTokens.length === 0) return []
            const results = yield* controlled(newTokens, (token) => [token, withLogits])
            const distributions: Array<TokenModel.Distribution> = []
            for (let i = 0; i < newTokens.length; i++) {
              const logits = results[i]?.next.logits
              if (logits === undefined) {
                return yield* LlmError.make(provider, new LlmError.BadResponse({ description: `no logits for position ${i}` }))
              }
              distributions.push(softmax(logits, vocabularySize))
            }
            return distributions
          }))
        // The greedy fast path speculative decoding looks for (`appendGreedy` in
        // @hasten/speculative): one forward pass like `append`, but llama.cpp's own greedy
        // sampler picks each next token natively, so no logits cross into JavaScript and no
        // distribution is built. Plain greedy decoding samples the same way.
        const appendGreedy = (newTokens: ReadonlyArray<number>, from = 0): Effect.Effect<ReadonlyArray<number>, LlmError.LlmError> => {
          if (newTokens.length === 0) return Effect.succeed([])
          if (!Number.isInteger(from) || from < 0 || from >= newTokens.length) {
            return Effect.fail(invalid(`appendGreedy: from must be an integer in 0..${newTokens.length - 1}, got ${from}`))
          }
          // the decoding step: no Effect.gen on the way, one lock, one forward pass
          if (from === newTokens.length - 1) return lock.withPermits(1)(Effect.suspend(() => stepGreedy(newTokens)))
          if (decoder !== undefined) return lock.withPermits(1)(Effect.suspend(() => evaluate(newTokens, () => decoder.decode(newTokens, from))))
          return lock.withPermits(1)(Effect.gen(function*() {
            const results = yield* controlled(newTokens, (token, index) => (index < from ? token : [token, greedyNext]))
            const nexts: Array<number> = []
            for (let i = from; i < newTokens.length; i++) {
              const next = results[i]?.next.token
              if (next === undefined || next === null) {
                return yield* LlmError.make(provider, new LlmError.BadResponse({ description: `no greedy token for position ${i}` }))
              }
              nexts.push(next)
            }
            return nexts
          }))
        }
        // The plain decoding loop for speculative decoding's off periods (`generateGreedy` in
        // @hasten/speculative): `count` greedy steps natively, as `sequence.evaluate` runs them.
        const generateGreedy = (
          newTokens: ReadonlyArray<number>,
          count: number,
          stopAt?: ReadonlySet<number>
        ): Effect.Effect<ReadonlyArray<number>, LlmError.LlmError> => {
          if (newTokens.length === 0) return Effect.fail(invalid("generateGreedy: no tokens to evaluate"))
          if (!Number.isInteger(count) || count < 1) {
            return Effect.fail(invalid(`generateGreedy: count must be a positive integer, got ${count}`))
          }
          // The run stops short of a full context: node-llama-cpp keeps one position free and
          // would shift the context (drop its start) to evaluate more, behind `tokens`' back.
          // At most `contextSize - 1` tokens are evaluated; too long an input fails in `evaluate`.
          return lock.withPermits(1)(Effect.suspend(() =>
            runGreedy(newTokens, Math.max(1, Math.min(count, sequence.contextSize - tokens.length - newTokens.length)), stopAt)
          ))
        }
        const truncate = (length: number) =>
          lock.withPermits(1)(Effect.gen(function*() {
            if (!Number.isInteger(length) || length < 0) return yield* invalid(`truncate length must be a non-negative integer, got ${length}`)
            if (length >= tokens.length) return
            yield* native(() =>
              sequence.eraseContextTokenRanges([{ start: length, end: sequence.nextTokenIndex }]).then(() => {
                tokens.length = length
              }), "truncate failed")
          }))
        const result: TokenModel.TokenSequence & {
          readonly appendGreedy: typeof appendGreedy
          readonly generateGreedy: typeof generateGreedy
        } = {
          // a live read-only view (no copy per decoding step); it changes as the sequence does
          tokens: () => tokens,
          append,
          appendGreedy,
          generateGreedy,
          truncate
        }
        return result
      })
  }

  const localModel: LocalModelService = {
    id,
    modelPath,
    status: Effect.sync(() => ({
      id,
      modelPath,
      contextSize: base.context.contextSize,
      sequences: base.total,
      freeSequences: Queue.sizeUnsafe(base.free),
      trainContextSize: model.trainContextSize,
      vocabularySize,
      hasChatTemplate,
      generatedTokens
    })),
    countPromptTokens: (request) => Effect.map(prepare(request, Number.MAX_SAFE_INTEGER), (prepared) => prepared.inputTokens)
  }

  return Context.make(Llm.Llm, llm).pipe(
    Context.add(Embedder.Embedder, embedder),
    Context.add(TokenModel.TokenModel, tokenModel),
    Context.add(LocalModel, localModel)
  )
})

/**
 * Local model services over a `ModelPool` you provide (share one pool between several
 * layers, or give it your own idle TTL).
 * @category layers @since 0.1.0
 */
export const layerWithPool = (
  options: Options = {}
): Layer.Layer<Llm.Llm | Embedder.Embedder | TokenModel.TokenModel | LocalModel, LlmError.LlmError, ModelPool.ModelPool> =>
  Layer.effectContext(make(options))

/**
 * `Llm` (name `"local"`), `Embedder`, `TokenModel` and `LocalModel` over one GGUF model,
 * loaded once through the default `ModelPool` and released when the layer's scope closes.
 * @category layers @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Llm.Llm | Embedder.Embedder | TokenModel.TokenModel | LocalModel, LlmError.LlmError> =>
  layerWithPool(options).pipe(Layer.provide(ModelPool.layerDefault))
