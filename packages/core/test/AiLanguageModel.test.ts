import { assert, describe, it } from "@effect/vitest"
import { AiLanguageModel, Completion, Llm, LlmError } from "@hasten/core"
import { Effect, Layer, Schema, Stream } from "effect"
import { LanguageModel } from "effect/ai"

const seen: Array<unknown> = []

// A scripted Llm: answers JSON when asked for JSON, fails for "fail", echoes otherwise.
const Scripted = Layer.succeed(
  Llm.Llm,
  Llm.fromComplete("scripted", (request) => {
    seen.push(request)
    const last = request.messages.at(-1)?.content ?? ""
    if (last === "fail") {
      return Effect.fail(LlmError.make("scripted", new LlmError.RateLimited({ scope: "quota", description: "no credit" })))
    }
    const text = request.responseFormat?.type === "json" ? JSON.stringify({ answer: 4 }) : `you said ${last}`
    return Effect.succeed(
      new Completion.Completion({
        text,
        finishReason: "stop",
        usage: { inputTokens: 5, outputTokens: 3, cachedInputTokens: 2 },
        model: request.model,
        provider: "scripted",
        timing: { start: 0, end: 0 }
      })
    )
  })
)

const Live = AiLanguageModel.layer({ model: "m-1", defaults: { temperature: 0 } }).pipe(Layer.provide(Scripted))

describe("AiLanguageModel", () => {
  it.effect("generateText runs through the Llm with system + user messages and maps usage", () =>
    Effect.gen(function*() {
      seen.length = 0
      const response = yield* LanguageModel.generateText({
        prompt: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }]
      })
      assert.strictEqual(response.text, "you said hi")
      assert.strictEqual(response.finishReason, "stop")
      assert.strictEqual(response.usage.inputTokens.total, 5)
      assert.strictEqual(response.usage.inputTokens.cacheRead, 2)
      assert.strictEqual(response.usage.outputTokens.total, 3)
      const request = seen[0] as { model: string; temperature: number; messages: Array<{ role: string; content: string }> }
      assert.strictEqual(request.model, "m-1")
      assert.strictEqual(request.temperature, 0)
      assert.deepStrictEqual(request.messages, [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }])
    }).pipe(Effect.provide(Live)))

  it.effect("streamText emits the deltas and a finish part", () =>
    Effect.gen(function*() {
      const parts = yield* Stream.runCollect(LanguageModel.streamText({ prompt: "stream me" }))
      const text = parts.filter((part) => part.type === "text-delta").map((part) => (part as { delta: string }).delta).join("")
      assert.strictEqual(text, "you said stream me")
      assert.strictEqual(parts.at(-1)!.type, "finish")
    }).pipe(Effect.provide(Live)))

  it.effect("generateObject sends a JSON response format with the schema and decodes the answer", () =>
    Effect.gen(function*() {
      seen.length = 0
      const response = yield* LanguageModel.generateObject({
        prompt: "2+2?",
        schema: Schema.Struct({ answer: Schema.Number }),
        objectName: "Answer"
      })
      assert.deepStrictEqual(response.value, { answer: 4 })
      const format = (seen[0] as { responseFormat: { type: string; name: string; schema: { type: string } } }).responseFormat
      assert.strictEqual(format.type, "json")
      assert.strictEqual(format.name, "Answer")
      assert.strictEqual(format.schema.type, "object")
    }).pipe(Effect.provide(Live)))

  it.effect("maps a quota LlmError to AiError QuotaExhaustedError (not retryable)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(LanguageModel.generateText({ prompt: "fail" }))
      assert.strictEqual(error._tag, "AiError")
      assert.strictEqual(error.reason._tag, "QuotaExhaustedError")
      assert.isFalse(error.isRetryable)
    }).pipe(Effect.provide(Live)))
})
