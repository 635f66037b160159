/**
 * The one error of `@hasten/providers` besides core's `LlmError` (which every call fails
 * with): a provider layer that cannot be built from its options or the environment, a bad
 * `hasten-serve` flag, and the OpenAI-shaped HTTP errors the local server answers with.
 * @since 0.2.0
 */
import { Schema } from "effect"

/** A provider layer could not be built from its options or the environment. @category errors @since 0.1.0 */
export class ProviderConfigError extends Schema.TaggedError<ProviderConfigError>()("ProviderConfigError", {
  provider: Schema.String,
  /** The environment variable (or option) that is missing or bad. */
  variable: Schema.String,
  description: Schema.String
}) {}

/** A `hasten-serve` flag that is unknown, missing its value or out of range. @category errors @since 0.2.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** The flag without its dashes (`sequences`), or `""` when the parser could not say. */
  option: Schema.String,
  description: Schema.String
}) {}

/** `hasten-serve --help`: the description is the usage text. @category errors @since 0.2.0 */
export class Usage extends Schema.TaggedError<Usage>()("Usage", {
  description: Schema.String
}) {}

/**
 * An HTTP error in OpenAI's shape, `{ error: { message, type, param, code } }`, as the
 * local server answers (see `Server.fromLlmError`).
 * @category errors @since 0.1.0
 */
export class HttpError extends Schema.TaggedError<HttpError>()("HttpError", {
  status: Schema.Number,
  description: Schema.String,
  type: Schema.String,
  code: Schema.NullOr(Schema.String),
  param: Schema.NullOr(Schema.String)
}) {
  /** The description, as OpenAI's `error.message`. */
  override get message(): string {
    return this.description
  }
  /** The response body. */
  body(): string {
    return JSON.stringify({ error: { message: this.description, type: this.type, param: this.param, code: this.code } })
  }
}

/**
 * The one error of `@hasten/providers` (calls fail with core's `LlmError`); handle one
 * reason with `Effect.catchReason("ProviderError", "ProviderConfigError", …)`.
 * @category errors @since 0.2.0
 */
export class ProviderError extends Schema.TaggedError<ProviderError>()("ProviderError", {
  reason: Schema.Union([ProviderConfigError, InvalidOptions, Usage, HttpError])
}) {
  /** The reason's description. */
  override get message(): string {
    return this.reason.description
  }
}
