/**
 * The settings of a local model: which file, the context and sequences to run it on, how
 * messages become a prompt, and the sampling defaults.
 * @since 0.1.0
 */
import type { CompletionRequest } from "@hasten/core"
import type { ChatWrapper } from "node-llama-cpp"
import type { ResolveOptions } from "./LocalModelFile.js"

/** Settings of a local model. @category models @since 0.1.0 */
export interface Options extends ResolveOptions {
  /** A model name (looked up in shared/models), a .gguf path, or an `hf:` URI. Default: env HASTEN_MODEL. */
  readonly model?: string | undefined
  /** Model id reported in completions and by `/v1/models`. Default: the file name without `.gguf`. */
  readonly id?: string | undefined
  /** Tokens per sequence. Default: min(2048, the model's training context). */
  readonly contextSize?: number | undefined
  /**
   * Parallel sequences (concurrent requests without queueing). Default 1. `"auto"`: as many
   * as `memoryFraction` of free memory holds, at what one sequence costs this model (its KV
   * cache — bytes per token from the GGUF's attention shape × `contextSize` — plus what
   * node-llama-cpp estimates one more sequence adds), within `[1, maxSequences]`.
   */
  readonly sequences?: number | "auto" | undefined
  /** The most sequences `sequences: "auto"` picks. Default 16. */
  readonly maxSequences?: number | undefined
  /** The fraction of free memory `sequences: "auto"` may fill. Default 0.5. */
  readonly memoryFraction?: number | undefined
  /** CPU threads. Default 1 (tiny models run far faster on one thread). */
  readonly threads?: number | undefined
  /** Offload to a GPU when one is usable. Default false (the prebuilt CPU binary). */
  readonly gpu?: boolean | undefined
  readonly batchSize?: number | undefined
  /** llama.cpp flash attention (default: on from an embedding width of 512; see `ModelPool.defaultFlashAttention`). */
  readonly flashAttention?: boolean | undefined
  /**
   * How `messages` become a prompt: `"auto"` uses the model's chat template when the GGUF
   * has one and plain text otherwise; `"none"` always plain text; or a node-llama-cpp
   * `ChatWrapper` instance.
   */
  readonly chatTemplate?: "auto" | "none" | ChatWrapper | undefined
  /**
   * What to do with a prompt that does not fit the context when a request does not say
   * (`CompletionRequest.contextOverflow`): `error` (default), `truncate` (keep the system
   * prompt and the most recent turns that fit; `facts.droppedPromptTokens`), or `shift`
   * (generation may run past the window, dropping the oldest tokens).
   */
  readonly contextOverflow?: CompletionRequest.ContextOverflow | undefined
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
  /**
   * Greedy completions (temperature 0, no JSON format, penalties, adapter or logprobs, and a
   * `contextOverflow` other than `"shift"`) run in one continuous batch per context: each step
   * decodes the next token of every such generation (and chunks of new prompts) in one native
   * batch and samples them all at once on persistent greedy samplers, through node-llama-cpp
   * internals, instead of node-llama-cpp's per-sequence dispatcher. Text, stop triggers and
   * end tokens stay node-llama-cpp's (`LlamaCompletion` runs over the batch's tokens). Same
   * outputs; at 16 concurrent requests on a 110M-shaped model, 3–4x the items/s of one at a
   * time where node-llama-cpp's own path got 1.2–2x (the providers README has the numbers).
   * Default true; `false` keeps every request on node-llama-cpp's own generation. When the
   * installed node-llama-cpp lacks an internal it needs, its own generation is used anyway.
   */
  readonly leanGreedy?: boolean | undefined
}
