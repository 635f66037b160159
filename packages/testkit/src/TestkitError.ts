/**
 * The one error of `@hasten/testkit`: a simulator or `redis-server` that did not start,
 * a bad `hasten-simulator` flag, or a synthetic model that could not be written.
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

/** Bad `SyntheticModel` options, or a missing or unknown tokenizer donor file. @category errors @since 0.2.0 */
export class SyntheticModelError extends Schema.TaggedError<SyntheticModelError>()("SyntheticModelError", {
  description: Schema.String
}) {}

/**
 * The one error of `@hasten/testkit`; handle one reason with
 * `Effect.catchReason("TestkitError", "RedisServerError", …)`.
 * @category errors @since 0.2.0
 */
export class TestkitError extends Schema.TaggedError<TestkitError>()("TestkitError", {
  reason: Schema.Union([SimulatorError, RedisServerError, InvalidFlag, SyntheticModelError])
}) {
  /** The reason's description. */
  override get message(): string {
    return this.reason.description
  }
}
