/**
 * The one error of `@hasten/testkit`: a simulator or `redis-server` that did not start,
 * or a bad `hasten-simulator` flag.
 * @since 0.2.0
 */
import { Schema } from "effect"

/** The simulator failed to start (a port in use, …). @category errors @since 0.1.0 */
export class SimulatorError extends Schema.TaggedError<SimulatorError>()("SimulatorError", {
  description: Schema.String
}) {}

/** `redis-server` is missing or did not start. @category errors @since 0.1.0 */
export class RedisServerError extends Schema.TaggedError<RedisServerError>()("RedisServerError", {
  description: Schema.String
}) {}

/** A `hasten-simulator` flag that is missing its value, not a number, out of range or unknown. @category errors @since 0.2.0 */
export class InvalidFlag extends Schema.TaggedError<InvalidFlag>()("InvalidFlag", {
  /** The flag without its dashes (`rpm`), or `""` when the parser could not say. */
  flag: Schema.String,
  description: Schema.String
}) {}

/**
 * The one error of `@hasten/testkit`; handle one reason with
 * `Effect.catchReason("TestkitError", "RedisServerError", …)`.
 * @category errors @since 0.2.0
 */
export class TestkitError extends Schema.TaggedError<TestkitError>()("TestkitError", {
  reason: Schema.Union([SimulatorError, RedisServerError, InvalidFlag])
}) {
  /** The reason's description. */
  override get message(): string {
    return this.reason.description
  }
}
