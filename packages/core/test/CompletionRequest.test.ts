/**
 * `CompletionRequest.build`: the same request as the schema's constructor, or the same error —
 * checked against `new CompletionRequest` on every field's valid and invalid values.
 */
import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest } from "@hasten/core"
import { Equal } from "effect"

/** Values per field, valid and not: the record must name every field of the schema. */
const values: { readonly [K in CompletionRequest.Field]: ReadonlyArray<unknown> } = {
  model: ["gpt-4o-mini", "", 3],
  messages: [
    [{ role: "user", content: "hi" }],
    [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }, { role: "assistant", content: "" }],
    [],
    [{ role: "tool", content: "x" }],
    [{ role: "user", content: 1 }],
    [{ role: "user", content: "hi", name: "extra" }],
    [{ role: "user" }],
    [null],
    "hi"
  ],
  prompt: ["Once upon a time", "", 1],
  maxTokens: [0, 8, 1_000_000, -1, 1.5, Number.NaN, "8"],
  temperature: [0, 0.8, 5, -0.1, Infinity, Number.NaN],
  topP: [0, 0.5, 1, 1.01, -0.1],
  topK: [0, 40, -1, 2.5],
  seed: [0, -7, 42, 1.5, 2 ** 60],
  stop: [[], ["\n", "END"], ["a", 1], "stop"],
  adapter: ["lora", 1],
  responseFormat: [
    { type: "text" },
    { type: "json" },
    { type: "json", schema: { type: "object" }, name: "answer" },
    { type: "xml" },
    { type: "text", extra: 1 }
  ],
  repeatPenalty: [1.1, 0, -1],
  frequencyPenalty: [-2, 0, 1.5, Infinity],
  presencePenalty: [-2, 0.5, Number.NaN],
  penaltyWindow: [64, 0, -64],
  logprobs: [true, false, "yes"],
  topLogprobs: [0, 5, 20, 21, -1],
  contextOverflow: ["error", "truncate", "shift", "wrap"],
  providerOptions: [{ a: 1 }, {}, 3],
  trial: [0, 3, -1]
}

const outcome = (make: () => CompletionRequest.CompletionRequest) => {
  try {
    return { request: make() }
  } catch (error) {
    return { error: String(error) }
  }
}

/** `build` and the constructor agree on `input`: both throw the same error, or both give equal requests. */
const agree = (input: Record<string, unknown>) => {
  const expected = outcome(() => new CompletionRequest.CompletionRequest(input as never))
  const actual = outcome(() => CompletionRequest.build(input as never))
  const label = JSON.stringify(input)
  if (expected.error !== undefined) {
    assert.strictEqual(actual.error, expected.error, label)
    return "error"
  }
  assert.isDefined(actual.request, label)
  assert.instanceOf(actual.request, CompletionRequest.CompletionRequest)
  assert.isTrue(Equal.equals(actual.request, expected.request), label)
  assert.strictEqual(JSON.stringify(actual.request), JSON.stringify(expected.request), label)
  assert.deepStrictEqual(Object.keys(actual.request!), Object.keys(expected.request!), label)
  return "request"
}

describe("CompletionRequest.build", () => {
  it("agrees with the constructor on every value of every field", () => {
    const base = { model: "m", messages: [{ role: "user", content: "hi" }] }
    const outcomes: Array<string> = []
    for (const [field, candidates] of Object.entries(values)) {
      for (const value of candidates) outcomes.push(agree({ ...base, [field]: value }))
      outcomes.push(agree({ ...base, [field]: undefined }))
    }
    outcomes.push(agree({ ...base, unknownField: 1 }), agree({ model: "m" }))
    // both kinds were compared
    assert.include(outcomes, "error")
    assert.include(outcomes, "request")
  })

  it("agrees on 3000 random combinations of fields", () => {
    // a small deterministic generator (mulberry32): every run checks the same inputs
    let state = 0x9e3779b9
    const random = () => {
      state = (state + 0x6d2b79f5) | 0
      let t = Math.imul(state ^ (state >>> 15), 1 | state)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
    const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]!
    const entries = Object.entries(values)
    const outcomes: Array<string> = []
    for (let index = 0; index < 3000; index++) {
      const input: Record<string, unknown> = {}
      for (const [field, candidates] of entries) {
        // required fields mostly present, optional ones sometimes; valid values more often than not
        const chance = field === "model" || field === "messages" ? 0.97 : 0.25
        if (random() < chance) input[field] = random() < 0.7 ? candidates[0] : pick(candidates)
      }
      outcomes.push(agree(input))
    }
    assert.isAbove(outcomes.filter((outcome) => outcome === "request").length, 300)
    assert.isAbove(outcomes.filter((outcome) => outcome === "error").length, 300)
  })

  it("copies the input's messages and stop list, as decoding does", () => {
    const messages = [{ role: "user" as const, content: "hi" }]
    const stop = ["END"]
    const request = CompletionRequest.build({ model: "m", messages, stop })
    assert.notStrictEqual(request.messages, messages)
    assert.notStrictEqual(request.messages[0], messages[0])
    assert.notStrictEqual(request.stop, stop)
    messages.push({ role: "user", content: "later" })
    assert.strictEqual(request.messages.length, 1)
  })

  it("makeUnsafe keeps its errors", () => {
    assert.throws(() => CompletionRequest.makeUnsafe({ model: "m", messages: [], maxTokens: -1 } as never), /maxTokens|greater/)
    assert.throws(() => CompletionRequest.makeUnsafe({ model: "m", messages: [] }), /needs messages or a prompt/)
  })
})
