/**
 * `@hasten/speculative`: exact speculative decoding for local models, as an `Llm` layer
 * over the `TokenModel` service.
 * @since 0.1.0
 */

/** The speculative `Llm` layer and its statistics. @since 0.1.0 */
export * as Speculative from "./Speculative.js"
/** Drafters: draft model, prompt lookup, n-gram cache. @since 0.1.0 */
export * as Drafter from "./Drafter.js"
/** Temperature / top-k / top-p, seeded PRNG and the verification rule. @since 0.1.0 */
export * as Sampling from "./Sampling.js"
/** The `SpeculativeError` family. @since 0.1.0 */
export * as SpeculativeError from "./SpeculativeError.js"
