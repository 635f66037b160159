import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, RequestKey } from "@hasten/core"

const base: CompletionRequest.CompletionRequestInput = {
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "What is 2+2?" }],
  temperature: 0
}
const key = (input: CompletionRequest.CompletionRequestInput, provider = "openai") =>
  RequestKey.make(CompletionRequest.makeUnsafe(input), { provider })

describe("RequestKey", () => {
  it("is stable whatever the key order of nested objects", () => {
    const a = key({ ...base, providerOptions: { a: 1, b: { c: 2, d: 3 } } })
    const b = key({ ...base, providerOptions: { b: { d: 3, c: 2 }, a: 1 } })
    assert.strictEqual(a, b)
    assert.match(a, /^[0-9a-f]{64}$/)
  })

  it("distinguishes an omitted temperature from temperature 0", () => {
    const { temperature: _, ...withoutTemperature } = base
    assert.notStrictEqual(key(withoutTemperature), key(base))
  })

  it("changes with every output-affecting field", () => {
    const variants: Array<CompletionRequest.CompletionRequestInput> = [
      { ...base, model: "gpt-4o" },
      { ...base, messages: [{ role: "user", content: "What is 2+3?" }] },
      { ...base, messages: [{ role: "system", content: "What is 2+2?" }] },
      { ...base, messages: [], prompt: "raw" },
      { ...base, maxTokens: 10 },
      { ...base, temperature: 0.5 },
      { ...base, topP: 0.9 },
      { ...base, topK: 5 },
      { ...base, seed: 1 },
      { ...base, stop: ["\n"] },
      { ...base, adapter: "lora-a" },
      { ...base, responseFormat: { type: "json" } },
      { ...base, repeatPenalty: 1.1 },
      { ...base, frequencyPenalty: 0.5 },
      { ...base, presencePenalty: 0.5 },
      { ...base, penaltyWindow: 64 },
      { ...base, logprobs: true },
      { ...base, logprobs: true, topLogprobs: 3 },
      { ...base, contextOverflow: "truncate" },
      { ...base, contextOverflow: "shift" },
      { ...base, providerOptions: { user: "x" } },
      { ...base, trial: 1 }
    ]
    const keys = new Set([key(base), ...variants.map((variant) => key(variant))])
    assert.strictEqual(keys.size, variants.length + 1)
  })

  it("separates providers, namespaces and versions", () => {
    const request = CompletionRequest.makeUnsafe(base)
    const keys = new Set([
      RequestKey.make(request, { provider: "openai" }),
      RequestKey.make(request, { provider: "anthropic" }),
      RequestKey.make(request, { provider: "openai", namespace: "exp-2" }),
      RequestKey.make(request, { provider: "openai", version: 2 }),
      RequestKey.make(request, { provider: "openai", endpoint: "http://127.0.0.1:8001/v1" }),
      RequestKey.make(request, { provider: "openai", endpoint: "http://127.0.0.1:8002/v1" })
    ])
    assert.strictEqual(keys.size, 6)
  })

  it("calls only temperature 0 or seeded requests deterministic", () => {
    const { temperature: _, ...rest } = base
    assert.isTrue(RequestKey.isDeterministic(CompletionRequest.makeUnsafe(base)))
    assert.isTrue(RequestKey.isDeterministic(CompletionRequest.makeUnsafe({ ...rest, seed: 3 })))
    assert.isFalse(RequestKey.isDeterministic(CompletionRequest.makeUnsafe(rest)))
    assert.isFalse(RequestKey.isDeterministic(CompletionRequest.makeUnsafe({ ...base, temperature: 0.7 })))
  })

  it("treats logprobs: false as no logprobs", () => {
    assert.strictEqual(key({ ...base, logprobs: false }), key(base))
  })

  it("covers every request field", () => {
    const request = CompletionRequest.makeUnsafe(base)
    assert.deepStrictEqual(Object.keys(RequestKey.keyFields(request)).sort(), [...CompletionRequest.fields].sort())
  })

  it("writes exactly the generic canonical JSON, for every combination of fields", () => {
    const variants: Array<CompletionRequest.CompletionRequestInput> = [
      base,
      { model: "m", messages: [], prompt: "raw \"quoted\" \u2028 text" },
      {
        model: "m",
        messages: [{ role: "system", content: "s" }, { role: "user", content: "ü 🙂" }],
        maxTokens: 0,
        temperature: 1.5,
        topP: 0.25,
        topK: 40,
        seed: -7,
        stop: ["\n", "END"],
        adapter: "lora",
        responseFormat: { type: "json", name: "x", schema: { b: [1, { d: 2, c: 3 }], a: null } },
        repeatPenalty: 1.1,
        frequencyPenalty: -0.5,
        presencePenalty: 0.5,
        penaltyWindow: 64,
        logprobs: true,
        topLogprobs: 5,
        contextOverflow: "truncate",
        providerOptions: { z: 1, a: { y: [true, false], b: "q" } },
        trial: 3
      },
      { model: "m", messages: [{ role: "user", content: "x" }], logprobs: false, contextOverflow: "shift" }
    ]
    for (const input of variants) {
      const request = CompletionRequest.makeUnsafe(input)
      for (
        const options of [
          { provider: "openai" },
          { provider: "local", namespace: "n", version: 7 },
          { provider: "vllm", endpoint: "http://gpu-1:8000/v1" }
        ]
      ) {
        assert.strictEqual(
          RequestKey.keyText(request, options),
          RequestKey.canonicalJson({
            v: options.version ?? 1,
            endpoint: options.endpoint,
            namespace: options.namespace ?? "default",
            provider: options.provider,
            request: RequestKey.keyFields(request)
          })
        )
      }
    }
  })
})
