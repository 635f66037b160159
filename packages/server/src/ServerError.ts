/**
 * The one error of `@hasten/server`, with a `reason`: an HTTP error in OpenAI's shape (what
 * a client receives), a bad `hasten-serve` flag, a bad configuration file (naming the path
 * of the bad field), `--help`, and a server that could not listen.
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * An HTTP error in OpenAI's shape, `{ error: { message, type, param, code } }`.
 * @category errors @since 0.1.0
 */
export class HttpError extends Schema.TaggedError<HttpError>()("HttpError", {
  status: Schema.Number,
  description: Schema.String,
  type: Schema.String,
  code: Schema.NullOr(Schema.String),
  param: Schema.NullOr(Schema.String),
  /** Seconds for a `retry-after` header (429, 503). */
  retryAfter: Schema.optionalKey(Schema.Number)
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

/** A `hasten-serve` flag that is unknown, missing its value or out of range. @category errors @since 0.1.0 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** The flag without its dashes (`upstream`), or `""` when the parser could not say. */
  option: Schema.String,
  description: Schema.String
}) {}

/** A configuration file that cannot be read or decoded; `path` names the bad field (`models[1].upstreams[0].url`). @category errors @since 0.1.0 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  /** The file. */
  file: Schema.String,
  /** The first bad field, `""` when the file itself is bad. */
  path: Schema.String,
  description: Schema.String
}) {}

/** `hasten-serve --help`: the description is the usage text. @category errors @since 0.1.0 */
export class Usage extends Schema.TaggedError<Usage>()("Usage", {
  description: Schema.String
}) {}

/** The server could not listen (port taken, bad host) or a model could not be loaded. @category errors @since 0.1.0 */
export class StartError extends Schema.TaggedError<StartError>()("StartError", {
  description: Schema.String
}) {}

/**
 * The one error of `@hasten/server`; handle one reason with
 * `Effect.catchReason("ServerError", "InvalidConfig", …)`.
 * @category errors @since 0.1.0
 */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", {
  reason: Schema.Union([HttpError, InvalidOptions, InvalidConfig, Usage, StartError])
}) {
  /** The reason's description (with the bad path for `InvalidConfig`). */
  override get message(): string {
    const reason = this.reason
    return reason._tag === "InvalidConfig"
      ? `${reason.file}: ${reason.path.length > 0 ? `${reason.path}: ` : ""}${reason.description}`
      : reason.description
  }
}
