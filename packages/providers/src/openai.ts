/**
 * `@hasten/providers/openai`: OpenAI and OpenAI-compatible servers through the official
 * `openai` SDK (an optional peer dependency: install `openai` to use this entry).
 * @since 0.1.0
 */

/** OpenAI as `Llm` and `Embedder` layers. @since 0.1.0 */
export * as OpenAi from "./OpenAiProvider.js"
