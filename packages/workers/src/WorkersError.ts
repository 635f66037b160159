/**
 * The one error of `@hasten/workers`, with a `reason` for each way a distributed run can
 * go wrong before any item runs: Redis cannot be reached, or an option is out of range.
 * An item's own failure is never this error: it becomes that item's result.
 * @since 0.1.0
 */
import { Schema } from "effect"

/** Redis did not answer at `url` (its password, if any, replaced by `***`). @category errors @since 0.1.0 */
export class RedisUnreachable extends Schema.TaggedError<RedisUnreachable>()("RedisUnreachable", {
  /** The URL tried, redacted: `redis://:***@host:6379`. */
  url: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `cannot reach Redis at ${this.url}: ${this.description}`
  }
}

/** An option that is missing or out of range; `field` names it. @category errors @since 0.1.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  field: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `${this.field}: ${this.description}`
  }
}

/**
 * The one error of `@hasten/workers`; handle a reason with
 * `Effect.catchReason("WorkersError", "RedisUnreachable", …)`.
 * @category errors @since 0.1.0
 */
export class WorkersError extends Schema.TaggedError<WorkersError>()("WorkersError", {
  reason: Schema.Union([RedisUnreachable, InvalidOptions])
}) {
  override get message(): string {
    return this.reason.message
  }
}
