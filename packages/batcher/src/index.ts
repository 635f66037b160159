/**
 * `@hasten/batcher`: automatic batching for Hasten stacks.
 * @since 0.1.0
 */

/** The batching `Llm` and `Embedder` middleware. @since 0.1.0 */
export * as Batcher from "./Batcher.js"
/** Dynamic batch sizing. @since 0.1.0 */
export * as Adaptive from "./Adaptive.js"
/** The OpenAI Batch API as a job runner and a batch backend. @since 0.1.0 */
export * as OpenAiBatch from "./OpenAiBatch.js"
/** `BatcherError`, the package's one error (bad options), and its reasons. @since 0.2.0 */
export * as BatcherError from "./BatcherError.js"
