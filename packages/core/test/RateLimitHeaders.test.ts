import { assert, describe, it } from "@effect/vitest"
import { RateLimitHeaders } from "@hasten/core"

const now = Date.parse("2026-01-01T00:00:00Z")

describe("RateLimitHeaders", () => {
  it("parses OpenAI's Go-style reset durations", () => {
    assert.strictEqual(RateLimitHeaders.parseDurationMillis("6m0s"), 360_000)
    assert.strictEqual(RateLimitHeaders.parseDurationMillis("20ms"), 20)
    assert.strictEqual(RateLimitHeaders.parseDurationMillis("1s"), 1000)
    assert.strictEqual(RateLimitHeaders.parseDurationMillis("0.5s"), 500)
    assert.strictEqual(RateLimitHeaders.parseDurationMillis("1h2m3.5s"), 3_723_500)
    assert.strictEqual(RateLimitHeaders.parseDurationMillis("2"), 2000)
    assert.isUndefined(RateLimitHeaders.parseDurationMillis("soon"))
    assert.isUndefined(RateLimitHeaders.parseDurationMillis("6m0sx"))
    assert.isUndefined(RateLimitHeaders.parseDurationMillis(""))
  })

  it("prefers retry-after-ms, accepts seconds and HTTP dates", () => {
    assert.strictEqual(RateLimitHeaders.parseRetryAfterMillis({ "retry-after-ms": "250", "retry-after": "3" }, now), 250)
    assert.strictEqual(RateLimitHeaders.parseRetryAfterMillis({ "retry-after": "3" }, now), 3000)
    assert.strictEqual(RateLimitHeaders.parseRetryAfterMillis({ "retry-after": "Thu, 01 Jan 2026 00:00:05 GMT" }, now), 5000)
    assert.isUndefined(RateLimitHeaders.parseRetryAfterMillis({ "retry-after": "later" }, now))
    assert.isUndefined(RateLimitHeaders.parseRetryAfterMillis({}, now))
  })

  it("reads OpenAI x-ratelimit headers from a fetch Headers object", () => {
    const headers = new Headers({
      "x-ratelimit-limit-requests": "60",
      "x-ratelimit-remaining-requests": "59",
      "x-ratelimit-reset-requests": "1s",
      "x-ratelimit-limit-tokens": "150000",
      "x-ratelimit-remaining-tokens": "149984",
      "x-ratelimit-reset-tokens": "6m0s"
    })
    assert.deepStrictEqual(RateLimitHeaders.parse(headers, now), {
      limitRequests: 60,
      remainingRequests: 59,
      resetRequestsMillis: 1000,
      limitTokens: 150_000,
      remainingTokens: 149_984,
      resetTokensMillis: 360_000
    })
  })

  it("reads Anthropic headers with RFC 3339 reset instants", () => {
    const info = RateLimitHeaders.parse({
      "anthropic-ratelimit-requests-limit": "50",
      "anthropic-ratelimit-requests-remaining": "49",
      "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:01Z",
      "anthropic-ratelimit-input-tokens-limit": "40000",
      "anthropic-ratelimit-input-tokens-remaining": "39000",
      "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:30Z",
      "retry-after": "1"
    }, now)
    assert.deepStrictEqual(info, {
      limitRequests: 50,
      remainingRequests: 49,
      resetRequestsMillis: 1000,
      limitInputTokens: 40_000,
      remainingInputTokens: 39_000,
      resetInputTokensMillis: 30_000,
      retryAfterMillis: 1000
    })
  })

  it("reads a plain record whatever the case of its keys, and the first of repeated values", () => {
    const info = RateLimitHeaders.parse({
      "Content-Type": "application/json",
      "X-RateLimit-Limit-Requests": "500",
      "x-ratelimit-remaining-requests": ["499", "1"],
      "Retry-After-Ms": "250"
    }, now)
    assert.deepStrictEqual(info, { limitRequests: 500, remainingRequests: 499, retryAfterMillis: 250 })
  })

  it("returns undefined when no rate-limit header is present", () => {
    assert.isUndefined(RateLimitHeaders.parse({ "content-type": "application/json" }, now))
  })
})
