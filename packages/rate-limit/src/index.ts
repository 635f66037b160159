/**
 * `@hasten/rate-limit`: token-aware budgets, one retry layer with decorrelated jitter,
 * header learning and adaptive concurrency for any Hasten `Llm`, shared across processes
 * through Redis.
 * @since 0.1.0
 */

/** The middleware, the limiter service, the retry schedule and `wrap`. @since 0.1.0 */
export * as RateLimit from "./RateLimit.js"
/** Token estimators (gpt-tokenizer, a local model's tokenizer, characters). @since 0.1.0 */
export * as Estimator from "./Estimator.js"
/** The `effect/persistence` `Redis` service over an ioredis client. @since 0.1.0 */
export * as IoRedis from "./IoRedis.js"
