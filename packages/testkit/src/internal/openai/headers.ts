/**
 * The headers on every OpenAI response: `x-request-id`, `openai-processing-ms` and, when
 * `rpm`/`tpm` are set, `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
 * @since 0.1.0
 */
import { formatDuration } from "../engine/duration.js"
import type { LimitState } from "../engine/rateLimiter.js"
import type { RouteContext } from "../engine/route.js"

/** OpenAI's `x-ratelimit-*` headers for a key's limit state (reset as `20ms`, `1.5s`, `6m0s`). */
export const rateLimitHeaders = (state: LimitState): Record<string, string> => {
  const headers: Record<string, string> = {}
  if (state.limitRequests !== undefined) {
    headers["x-ratelimit-limit-requests"] = String(state.limitRequests)
    headers["x-ratelimit-remaining-requests"] = String(state.remainingRequests ?? 0)
    headers["x-ratelimit-reset-requests"] = formatDuration(state.resetRequestsMs ?? 0)
  }
  if (state.limitTokens !== undefined) {
    headers["x-ratelimit-limit-tokens"] = String(state.limitTokens)
    headers["x-ratelimit-remaining-tokens"] = String(state.remainingTokens ?? 0)
    headers["x-ratelimit-reset-tokens"] = formatDuration(state.resetTokensMs ?? 0)
  }
  return headers
}

/** The headers of every OpenAI response; the rate-limit ones from `state`, or from the key's state now. */
export const commonHeaders = (context: RouteContext, state?: LimitState): Record<string, string> => ({
  "x-request-id": context.engine.id("req_"),
  "openai-processing-ms": "1",
  ...rateLimitHeaders(state ?? context.engine.state(context.key || undefined))
})
