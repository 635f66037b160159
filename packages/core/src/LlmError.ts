/**
 * The one error every Hasten `Llm` fails with: an `LlmError` carrying a tagged `reason`
 * and a retry classification, so exactly one retry layer can decide what to do.
 * @since 0.1.0
 */
import { Duration, Schema } from "effect"

/** Which budget a 429 was about. `quota` (billing exhausted) never recovers. @category models @since 0.1.0 */
export const RateLimitScope = Schema.Literals(["requests", "tokens", "input_tokens", "output_tokens", "concurrency", "quota", "unknown"])
/** @category models @since 0.1.0 */
export type RateLimitScope = typeof RateLimitScope.Type

/** HTTP 429: a request, token or concurrency budget is spent, or the quota is exhausted. @category errors @since 0.1.0 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  scope: RateLimitScope,
  /** What the provider asked us to wait (`retry-after` / `retry-after-ms`), when it said. */
  retryAfterMillis: Schema.optionalKey(Schema.Number),
  description: Schema.String
}) {}

/** The provider is overloaded (Anthropic 529, OpenAI 503 "overloaded"). @category errors @since 0.1.0 */
export class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {
  retryAfterMillis: Schema.optionalKey(Schema.Number),
  description: Schema.String
}) {}

/** The call took longer than allowed. @category errors @since 0.1.0 */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  description: Schema.String
}) {}

/** The connection failed or was reset before a complete response arrived. @category errors @since 0.1.0 */
export class Transport extends Schema.TaggedError<Transport>()("Transport", {
  description: Schema.String
}) {}

/** HTTP 5xx other than overload. @category errors @since 0.1.0 */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", {
  status: Schema.Number,
  description: Schema.String
}) {}

/** HTTP 400/404/422: the request itself is wrong (unknown model, bad field). @category errors @since 0.1.0 */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  status: Schema.optionalKey(Schema.Number),
  /** The request field at fault, when one is (`topK`, `logprobs`, …). */
  field: Schema.optionalKey(Schema.String),
  description: Schema.String
}) {}

/** HTTP 401/403, or a missing key. @category errors @since 0.1.0 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  description: Schema.String
}) {}

/** The prompt (plus `maxTokens`) does not fit the model's context window. @category errors @since 0.1.0 */
export class ContextLengthExceeded extends Schema.TaggedError<ContextLengthExceeded>()("ContextLengthExceeded", {
  description: Schema.String,
  /** Prompt tokens, when the backend counted them. */
  promptTokens: Schema.optionalKey(Schema.Number),
  /** The context window in tokens, when known. */
  contextSize: Schema.optionalKey(Schema.Number),
  /** The request's `maxTokens`, when it set one. */
  maxTokens: Schema.optionalKey(Schema.Number)
}) {}

/** The provider answered, but not in a shape we understand. @category errors @since 0.1.0 */
export class BadResponse extends Schema.TaggedError<BadResponse>()("BadResponse", {
  description: Schema.String
}) {}

/** Every reason an `LlmError` can carry. @category models @since 0.1.0 */
export const LlmErrorReason = Schema.Union([
  RateLimited,
  Overloaded,
  Timeout,
  Transport,
  ServerError,
  InvalidRequest,
  Unauthorized,
  ContextLengthExceeded,
  BadResponse
])
/** @category models @since 0.1.0 */
export type LlmErrorReason = typeof LlmErrorReason.Type

/**
 * The error every `Llm`, `Embedder` and `TokenModel` fails with. Handle one reason with
 * `Effect.catchReason("LlmError", "RateLimited", …)`.
 * @category errors @since 0.1.0
 */
export class LlmError extends Schema.TaggedError<LlmError>()("LlmError", {
  provider: Schema.String,
  reason: LlmErrorReason
}) {
  /** `provider: Reason: description`. */
  override get message(): string {
    return `${this.provider}: ${this.reason._tag}: ${this.reason.description}`
  }
  /** Whether retrying the same request can succeed. */
  get retryable(): boolean {
    return isRetryableReason(this.reason)
  }
  /** What the provider asked us to wait before retrying, when it said. */
  get retryAfter(): Duration.Duration | undefined {
    const reason = this.reason
    return (reason._tag === "RateLimited" || reason._tag === "Overloaded") && reason.retryAfterMillis !== undefined
      ? Duration.millis(reason.retryAfterMillis)
      : undefined
  }
}

/**
 * Transient 429s, overloads, timeouts, transport failures and 5xx are retryable;
 * quota exhaustion, invalid requests, auth failures, context overflows and bad
 * responses are not.
 * @category predicates @since 0.1.0
 */
export const isRetryableReason = (reason: LlmErrorReason): boolean => {
  switch (reason._tag) {
    case "RateLimited":
      return reason.scope !== "quota"
    case "Overloaded":
    case "Timeout":
    case "Transport":
    case "ServerError":
      return true
    default:
      return false
  }
}

/** Whether an unknown error is a retryable `LlmError`. @category predicates @since 0.1.0 */
export const isRetryable = (error: unknown): boolean => isLlmError(error) && error.retryable

/** Refines an unknown value to `LlmError`. @category predicates @since 0.1.0 */
export const isLlmError = (error: unknown): error is LlmError => error instanceof LlmError

/**
 * Builds an `LlmError` from a reason: `LlmError.make("openai", new Timeout({ description: "…" }))`.
 * @category constructors @since 0.1.0
 */
export const make = (provider: string, reason: LlmErrorReason): LlmError => new LlmError({ provider, reason })

/**
 * The error of a provider that cannot honour a request field: an `InvalidRequest` naming
 * the field and the provider, so nothing is silently dropped.
 * @category constructors @since 0.3.0
 */
export const unsupportedField = (provider: string, field: string, reason: string): LlmError =>
  make(provider, new InvalidRequest({ field, description: `${provider} does not support the request field \`${field}\`: ${reason}` }))

/**
 * Classifies an HTTP status and provider error body into a reason, the way OpenAI,
 * Anthropic and OpenAI-compatible servers report errors. `code`/`type` are the body's
 * `error.code` / `error.type`.
 * @category constructors @since 0.1.0
 */
export const fromHttpStatus = (options: {
  readonly status: number
  readonly message: string
  readonly code?: string | null | undefined
  readonly type?: string | null | undefined
  readonly retryAfterMillis?: number | undefined
  readonly scope?: RateLimitScope | undefined
}): LlmErrorReason => {
  const { status, message } = options
  const code = options.code ?? ""
  const type = options.type ?? ""
  const retry = options.retryAfterMillis !== undefined ? { retryAfterMillis: options.retryAfterMillis } : {}
  if (code === "context_length_exceeded" || /context length|context window|maximum context|too many tokens/i.test(message)) {
    if (status === 400 || status === 413 || status === 422) return new ContextLengthExceeded({ description: message })
  }
  if (status === 429) {
    if (code === "insufficient_quota" || type === "insufficient_quota") {
      return new RateLimited({ scope: "quota", description: message })
    }
    const scope: RateLimitScope = options.scope ??
      (/tokens per min|\btpm\b|tokens/i.test(message)
        ? "tokens"
        : /requests per|\brpm\b|requests/i.test(message)
        ? "requests"
        : /concurren/i.test(message)
        ? "concurrency"
        : "unknown")
    return new RateLimited({ scope, description: message, ...retry })
  }
  if (status === 529 || type === "overloaded_error" || (status === 503 && /overload/i.test(message))) {
    return new Overloaded({ description: message, ...retry })
  }
  if (status === 401 || status === 403) return new Unauthorized({ description: message })
  if (status === 408) return new Timeout({ description: message })
  if (status >= 500) return new ServerError({ status, description: message })
  if (status >= 400) return new InvalidRequest({ status, description: message })
  return new BadResponse({ description: `unexpected status ${status}: ${message}` })
}
