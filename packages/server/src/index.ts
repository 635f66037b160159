/**
 * `@hasten/server`: an OpenAI-compatible server and gateway over any Hasten `Llm` stack —
 * local GGUF models and remote upstreams (routed with failover), middleware from the other
 * Hasten packages, strict OpenAI validation, `/health`, `/ready`, `/metrics`, API keys,
 * backpressure and graceful shutdown; also the `hasten-serve` CLI.
 * @since 0.1.0
 */

/** The HTTP server over served models: `Server.layer({ port, models })`. @since 0.1.0 */
export * as Server from "./Server.js"

/** Strict decoding of OpenAI request bodies and what each model can honour. @since 0.1.0 */
export * as OpenAiRequest from "./OpenAiRequest.js"

/** The configuration file and `hasten-serve` flags, decoded into a plan. @since 0.1.0 */
export * as ServerConfig from "./ServerConfig.js"

/** Builds served models (local, upstreams with routing, middleware) from a plan. @since 0.1.0 */
export * as Gateway from "./Gateway.js"

/** The server's counters and the `/metrics` page. @since 0.1.0 */
export * as ServerMetrics from "./ServerMetrics.js"

/** `ServerError` and its reasons. @since 0.1.0 */
export * as ServerError from "./ServerError.js"
