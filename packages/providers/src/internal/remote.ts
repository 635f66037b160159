/**
 * Shared plumbing for the remote providers: the clock, secret scrubbing, SDK error
 * classification and configuration errors. Not exported from the package.
 * @internal
 */
import { LlmError, RateLimitHeaders } from "@hasten/core"
import { Clock, Config, Effect, Option, Redacted } from "effect"
import { ProviderConfigError, ProviderError } from "../ProviderError.js"

/** Epoch milliseconds through Effect's `Clock` (so `TestClock` drives it). */
export const now: Effect.Effect<number> = Clock.currentTimeMillis

/**
 * Replaces every occurrence of the secrets in `text` (and of `Bearer <secret>`) with
 * `[redacted]`, so provider error bodies that echo a key never reach logs.
 */
export const scrub = (text: string, secrets: ReadonlyArray<string>): string => {
  let out = text
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join("[redacted]")
  }
  return out
}

/** The secret values a provider must never print. */
export const secretsOf = (key: Redacted.Redacted<string> | undefined): ReadonlyArray<string> =>
  key === undefined ? [] : [Redacted.value(key)]

/** Which budget a 429 was about, judged from the rate-limit headers of the response. */
export const scopeFromHeaders = (
  info: RateLimitHeaders.RateLimitInfo | undefined
): LlmError.RateLimitScope | undefined => {
  if (info === undefined) return undefined
  if (info.remainingRequests === 0) return "requests"
  if (info.remainingTokens === 0) return "tokens"
  if (info.remainingInputTokens === 0) return "input_tokens"
  if (info.remainingOutputTokens === 0) return "output_tokens"
  return undefined
}

/** The subset of an SDK's `APIError` we read. */
export interface HttpErrorLike {
  readonly status: number
  readonly message: string
  readonly headers?: { get(name: string): string | null } | undefined
  readonly code?: string | null | undefined
  readonly type?: string | null | undefined
}

/** Classifies an HTTP error response into an `LlmError`, with the provider's headers. */
export const fromHttpError = (
  provider: string,
  error: HttpErrorLike,
  secrets: ReadonlyArray<string>,
  nowMillis: number
): LlmError.LlmError => {
  const message = scrub(error.message, secrets)
  const headers = error.headers
  const info = headers === undefined ? undefined : RateLimitHeaders.parse(headers, nowMillis)
  const retryAfterMillis = headers === undefined ? undefined : RateLimitHeaders.parseRetryAfterMillis(headers, nowMillis)
  const scope = scopeFromHeaders(info)
  if ((error.status === 400 || error.status === 413) && /prompt is too long|input is too long/i.test(message)) {
    return LlmError.make(provider, new LlmError.ContextLengthExceeded({ description: message }))
  }
  if (error.status === 402 || /credit balance is too low|insufficient credit/i.test(message)) {
    return LlmError.make(provider, new LlmError.RateLimited({ scope: "quota", description: message }))
  }
  return LlmError.make(
    provider,
    LlmError.fromHttpStatus({
      status: error.status,
      message,
      code: error.code,
      type: error.type,
      retryAfterMillis,
      scope
    })
  )
}

/** A failure that is neither an HTTP error nor a connection error: a bad response shape or a bug. */
export const unexpected = (provider: string, error: unknown, secrets: ReadonlyArray<string>): LlmError.LlmError =>
  LlmError.isLlmError(error)
    ? error
    : LlmError.make(
      provider,
      new LlmError.BadResponse({ description: scrub(error instanceof Error ? error.message : String(error), secrets) })
    )

/** `cause.message` chain of a connection error, scrubbed. */
export const describeConnectionError = (error: unknown, secrets: ReadonlyArray<string>): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code
    parts.push(typeof code === "string" ? `${current.message} (${code})` : current.message)
    current = current.cause
  }
  return scrub(parts.join(": ") || String(error), secrets)
}

/**
 * Reads an API key from the environment as `Redacted`, failing with a message that names
 * the variable when it is missing or empty. An explicit key wins.
 */
export const requiredKey = (
  provider: string,
  variable: string,
  explicit: Redacted.Redacted<string> | undefined,
  hint: string
): Effect.Effect<Redacted.Redacted<string>, ProviderError> =>
  explicit !== undefined
    ? Effect.succeed(explicit)
    : Effect.flatMap(
      Effect.orElseSucceed(Config.option(Config.Redacted(variable)), () => Option.none()),
      (key) =>
        Option.isSome(key) && Redacted.value(key.value).length > 0
          ? Effect.succeed(key.value)
          : Effect.fail(
            new ProviderError({
              reason: new ProviderConfigError({ provider, variable, description: `${variable} is not set: ${hint}` })
            })
          )
    )

/** Reads an optional string (a base URL) from the environment; an explicit value wins. */
export const optionalString = (
  variable: string,
  explicit: string | undefined
): Effect.Effect<string | undefined> =>
  explicit !== undefined
    ? Effect.succeed(explicit)
    : Effect.map(
      Effect.orElseSucceed(Config.option(Config.String(variable)), () => Option.none<string>()),
      (value) => Option.isSome(value) && value.value.length > 0 ? value.value : undefined
    )
