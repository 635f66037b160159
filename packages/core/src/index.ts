/**
 * `@hasten/core`: the contract every Hasten package shares.
 * @since 0.1.0
 */

/** Requests: messages, sampling controls, response format. @since 0.1.0 */
export * as CompletionRequest from "./CompletionRequest.js"
/** How a provider treats each request field: sent, mapped, identity only, or refused. @since 0.3.0 */
export * as FieldSupport from "./FieldSupport.js"
/** Completions, stream chunks, usage and timings. @since 0.1.0 */
export * as Completion from "./Completion.js"
/** Typed facts layers report about a call (retries, waits, batch size, speculative statistics). @since 0.2.0 */
export * as Facts from "./Facts.js"
/** The `LlmError` family with its retry classification. @since 0.1.0 */
export * as LlmError from "./LlmError.js"
/** The `Llm` service. @since 0.1.0 */
export * as Llm from "./Llm.js"
/** The `Embedder` service. @since 0.1.0 */
export * as Embedder from "./Embedder.js"
/** The `TokenModel` service (token-level local models). @since 0.1.0 */
export * as TokenModel from "./TokenModel.js"
/** Parsers for providers' rate-limit headers. @since 0.1.0 */
export * as RateLimitHeaders from "./RateLimitHeaders.js"
/** How a provider admits and counts calls against its rate limits. @since 0.2.0 */
export * as RateLimitPolicy from "./RateLimitPolicy.js"
/** The canonical request key. @since 0.1.0 */
export * as RequestKey from "./RequestKey.js"
/** `Llm` as an `effect/ai` `LanguageModel`. @since 0.1.0 */
export * as AiLanguageModel from "./AiLanguageModel.js"
/** Decoding at the edges: JSON text and lines through a Schema, problems that name the field. @since 0.2.0 */
export * as Boundary from "./Boundary.js"
