/**
 * `@hasten/providers/replicate`: Replicate's language models through the official
 * `replicate` SDK (an optional peer dependency; `gpt-tokenizer` is used for usage
 * estimates when a prediction reports no token counts).
 * @since 0.1.0
 */

/** Replicate as an `Llm` layer. @since 0.1.0 */
export * as Replicate from "./ReplicateProvider.js"
