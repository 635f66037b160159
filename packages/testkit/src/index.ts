/**
 * `@hasten/testkit`: loopback simulators of the provider APIs and fakes for tests.
 * @since 0.1.0
 */

/** One loopback server speaking the OpenAI, Anthropic and Replicate APIs. @since 0.1.0 */
export * as Simulator from "./Simulator.js"
/** Scripted `Llm` and hashing `Embedder` layers for unit tests. @since 0.1.0 */
export * as Fakes from "./Fakes.js"
/** `TestkitError`, the package's one error, and its reasons. @since 0.2.0 */
export * as TestkitError from "./TestkitError.js"
/** A real `redis-server` on a free loopback port. @since 0.1.0 */
export * as RedisServer from "./RedisServer.js"
/** Deterministic synthetic llama GGUF models at real sizes, and draft/target pairs, for timing local inference. @since 0.2.0 */
export * as SyntheticModel from "./SyntheticModel.js"
