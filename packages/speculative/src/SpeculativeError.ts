/**
 * The error a speculative layer fails with while it is being built: a drafter that cannot
 * pair with the target, bad options, or an n-gram cache file that cannot be read or written.
 * @since 0.1.0
 */
import { Schema } from "effect"

/** Drafter and target do not share a vocabulary. @category errors @since 0.1.0 */
export class VocabularyMismatch extends Schema.TaggedError<VocabularyMismatch>()("VocabularyMismatch", {
  target: Schema.String,
  draft: Schema.String,
  description: Schema.String
}) {}

/** An option is out of range: `field` names the first bad one, `description` lists every problem. @category errors @since 0.1.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** `gamma`, `maxGamma`, `sampling.temperature`, `minNgram`, … @since 0.2.0 */
  field: Schema.String,
  description: Schema.String
}) {}

/** An n-gram cache file could not be read, parsed or written. @category errors @since 0.1.0 */
export class CacheFile extends Schema.TaggedError<CacheFile>()("CacheFile", {
  path: Schema.String,
  description: Schema.String
}) {}

/**
 * The one error of `@hasten/speculative`; handle one reason with
 * `Effect.catchReason("SpeculativeError", "VocabularyMismatch", …)`.
 * @category errors @since 0.1.0
 */
export class SpeculativeError extends Schema.TaggedError<SpeculativeError>()("SpeculativeError", {
  reason: Schema.Union([VocabularyMismatch, InvalidOptions, CacheFile])
}) {
  /** `Reason: description`. */
  override get message(): string {
    return `${this.reason._tag}: ${this.reason.description}`
  }
}
