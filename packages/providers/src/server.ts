/**
 * `@hasten/providers/server`: a local OpenAI-compatible HTTP server over any `Llm` and
 * `Embedder` (typically `Local.layer`), also runnable as the `hasten-serve` CLI.
 * @since 0.1.0
 */

/** The server: `Server.layer({ port, host, models })`. @since 0.1.0 */
export * as Server from "./CompatibleServer.js"
