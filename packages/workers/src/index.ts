/**
 * `@hasten/workers`: one evaluation or pipeline across many processes and machines —
 * content-addressed items as BullMQ jobs on Redis, results read back from Redis,
 * kill -9 safe; fleet-wide single-flight and concurrency for `Llm` stacks.
 * @since 0.1.0
 */

/** Content-addressed jobs on BullMQ: `coordinate` (enqueue and collect) and `serve` (a worker). @since 0.1.0 */
export * as WorkQueue from "./WorkQueue.js"
/** The Redis URL of the fleet: `HASTEN_REDIS_URL`, redaction, a checked connection. @since 0.1.0 */
export * as RedisConnection from "./RedisConnection.js"
/** Identical requests in flight anywhere in the fleet make one upstream call. @since 0.1.0 */
export * as FleetSingleFlight from "./FleetSingleFlight.js"
/** A concurrency limit shared by every process of the fleet. @since 0.1.0 */
export * as FleetConcurrency from "./FleetConcurrency.js"
/** The one error of the package and its reasons. @since 0.1.0 */
export { InvalidOptions, RedisUnreachable, WorkersError } from "./WorkersError.js"
