/**
 * `@hasten/providers/anthropic`: Anthropic's Messages API through the official
 * `@anthropic-ai/sdk` (an optional peer dependency: install it to use this entry).
 * @since 0.1.0
 */

/** Anthropic as an `Llm` layer. @since 0.1.0 */
export * as Anthropic from "./AnthropicProvider.js"
