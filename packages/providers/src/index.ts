/**
 * `@hasten/providers`: OpenAI, Anthropic, Replicate and local llama.cpp models as Hasten
 * `Llm` layers. Each provider has its own entry so an app installs only the SDKs it uses:
 * `@hasten/providers/openai`, `/anthropic`, `/replicate`, `/local`, `/router`. This root
 * entry imports no SDK: it re-exports the router (which needs none) and the providers'
 * option types.
 * @since 0.1.0
 */

/** `ProviderError`, the package's one error (calls fail with core's `LlmError`), and its reasons. @since 0.2.0 */
export * as ProviderError from "./ProviderError.js"

/** Routing one logical model across several endpoints. @since 0.1.0 */
export * as Router from "./EndpointRouter.js"

/** Options of `OpenAi.layer`. @since 0.1.0 */
export type { Options as OpenAiOptions } from "./OpenAiProvider.js"
/** Options of `Anthropic.layer`. @since 0.1.0 */
export type { Options as AnthropicOptions } from "./AnthropicProvider.js"
/** Options of `Replicate.layer`. @since 0.1.0 */
export type { Options as ReplicateOptions, PollOptions as ReplicatePollOptions } from "./ReplicateProvider.js"
