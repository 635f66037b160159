/**
 * Token-aware rate limiting for any Hasten `Llm` (and any effect): per-key budgets for
 * concurrency, requests per second and per minute, tokens per minute (optionally split
 * into input and output), one retry layer with decorrelated jitter that honours
 * `retry-after`, learning from the provider's rate-limit headers, adaptive concurrency
 * (AIMD) and a circuit breaker on repeated 5xx. Budgets live in a `RateLimiter` store from
 * `effect/persistence`: in memory by default, in Redis to share them between processes.
 *
 * The entry module: it re-exports every module below, so `RateLimit.layer`,
 * `RateLimit.Options`, `RateLimit.makeLimiter`, … reach them all.
 * @since 0.1.0
 */

/** Options, their defaults and validation. @since 0.1.0 */
export * from "./Options.js"
/** Decorrelated jitter and the one retry schedule. @since 0.1.0 */
export * from "./Retry.js"
/** Wait, retry, 429 and concurrency metrics. @since 0.1.0 */
export * from "./Metrics.js"
/** The limiter service, its layers and `wrap` for any effect. @since 0.1.0 */
export * from "./Limiter.js"
/** The `Llm` middleware: `layer`, `layerFromLimiter`, `wrapLlm`, `keyOf`. @since 0.1.0 */
export * from "./Middleware.js"
/** Options from the environment: `config`, `layerConfig`. @since 0.1.0 */
export * from "./Config.js"
/** The plain async facade: `createLlm`, `createLimiter`. @since 0.1.0 */
export * from "./Async.js"
