/**
 * `@hasten/providers/local`: a local GGUF model through node-llama-cpp as `Llm`,
 * `Embedder` and `TokenModel`, with a shared `ModelPool`.
 * @since 0.1.0
 */

/** The local provider: `Local.layer({ model, contextSize, sequences, threads, gpu })`, `Local.resolveModelPath`. @since 0.1.0 */
export * as Local from "./LocalProvider.js"
/** Loaded models, contexts and LoRA adapters shared across users, with idle eviction. @since 0.1.0 */
export * as ModelPool from "./ModelPool.js"
