import { assert, describe, it } from "@effect/vitest"
import { LlmError } from "@hasten/core"
import { Duration, Effect } from "effect"

describe("LlmError.fromHttpStatus", () => {
  const cases: Array<[string, Parameters<typeof LlmError.fromHttpStatus>[0], string, boolean]> = [
    [
      "transient 429",
      { status: 429, message: "Rate limit reached for requests per min", code: "rate_limit_exceeded" },
      "RateLimited",
      true
    ],
    ["quota 429 by code", { status: 429, message: "You exceeded your current quota", code: "insufficient_quota" }, "RateLimited", false],
    ["quota 429 by type", { status: 429, message: "quota", type: "insufficient_quota" }, "RateLimited", false],
    [
      "context overflow",
      { status: 400, message: "This model's maximum context length is 4096 tokens", code: "context_length_exceeded" },
      "ContextLengthExceeded",
      false
    ],
    ["bad request", { status: 400, message: "messages is required" }, "InvalidRequest", false],
    ["unknown model", { status: 404, message: "The model `x` does not exist" }, "InvalidRequest", false],
    ["unauthorized", { status: 401, message: "Incorrect API key" }, "Unauthorized", false],
    ["forbidden", { status: 403, message: "forbidden" }, "Unauthorized", false],
    ["server error", { status: 500, message: "boom" }, "ServerError", true],
    ["bad gateway", { status: 502, message: "bad gateway" }, "ServerError", true],
    ["anthropic overloaded", { status: 529, message: "Overloaded", type: "overloaded_error" }, "Overloaded", true],
    ["503 overloaded", { status: 503, message: "The engine is currently overloaded" }, "Overloaded", true],
    ["request timeout", { status: 408, message: "timeout" }, "Timeout", true]
  ]
  for (const [name, input, tag, retryable] of cases) {
    it(`${name} -> ${tag} (retryable: ${retryable})`, () => {
      const reason = LlmError.fromHttpStatus(input)
      assert.strictEqual(reason._tag, tag)
      assert.strictEqual(LlmError.isRetryableReason(reason), retryable)
      assert.strictEqual(LlmError.make("openai", reason).retryable, retryable)
    })
  }

  it("classifies the 429 scope from the message and keeps retry-after", () => {
    const tokens = LlmError.fromHttpStatus({ status: 429, message: "Rate limit reached on tokens per min (TPM)", retryAfterMillis: 1500 })
    assert.strictEqual(tokens._tag, "RateLimited")
    if (tokens._tag !== "RateLimited") return
    assert.strictEqual(tokens.scope, "tokens")
    assert.strictEqual(tokens.retryAfterMillis, 1500)
    const error = LlmError.make("openai", tokens)
    assert.isTrue(Duration.equals(error.retryAfter!, Duration.millis(1500)))
    assert.strictEqual(error.message, "openai: RateLimited: Rate limit reached on tokens per min (TPM)")
  })

  it.effect("is handled per reason with Effect.catchReason", () =>
    Effect.gen(function*() {
      const failing = Effect.fail(LlmError.make("openai", new LlmError.Timeout({ description: "30 s" })))
      const handled = yield* failing.pipe(
        Effect.catchReason("LlmError", "Timeout", (reason) => Effect.succeed(`timed out after ${reason.description}`))
      )
      assert.strictEqual(handled, "timed out after 30 s")
    }))

  it("isRetryable is false for non-LlmError values", () => {
    assert.isFalse(LlmError.isRetryable(new Error("x")))
    assert.isTrue(LlmError.isRetryable(LlmError.make("x", new LlmError.Transport({ description: "reset" }))))
  })
})
