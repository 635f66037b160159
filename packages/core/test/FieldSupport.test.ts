import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, FieldSupport, LlmError } from "@hasten/core"
import { Effect, Exit } from "effect"

const everyField = (rule: FieldSupport.Rule): FieldSupport.FieldSupport =>
  Object.fromEntries(CompletionRequest.fields.map((field) => [field, rule])) as unknown as FieldSupport.FieldSupport

const support: FieldSupport.FieldSupport = {
  ...everyField(FieldSupport.mapped("by the provider")),
  topK: FieldSupport.param("top_k"),
  stop: FieldSupport.param("stop"),
  repeatPenalty: FieldSupport.refused("no such parameter"),
  logprobs: FieldSupport.refused("no log probabilities"),
  contextOverflow: FieldSupport.refused("remote", FieldSupport.onlyErrorOverflow, "`error`"),
  trial: FieldSupport.identity("cache key only")
}

const request = (input: Partial<CompletionRequest.CompletionRequestInput>) =>
  CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "user", content: "hi" }], ...input })

describe("FieldSupport", () => {
  it.effect("refuses a set field with InvalidRequest naming the field and the provider", () =>
    Effect.gen(function*() {
      const failure = yield* Effect.flip(FieldSupport.check("acme", support, request({ repeatPenalty: 1.2 })))
      assert.strictEqual(failure.provider, "acme")
      assert.strictEqual(failure.reason._tag, "InvalidRequest")
      assert.strictEqual((failure.reason as LlmError.InvalidRequest).field, "repeatPenalty")
      assert.match(failure.message, /acme does not support the request field `repeatPenalty`: no such parameter/)
      assert.isFalse(failure.retryable)
      const passed = yield* Effect.exit(FieldSupport.check("acme", support, request({ topK: 1 })))
      assert.isTrue(Exit.isSuccess(passed))
    }))

  it("passes unset fields, accepted values and logprobs: false", () => {
    assert.isUndefined(FieldSupport.firstRefusal("acme", support, request({ topK: 3, trial: 2 })))
    assert.isUndefined(FieldSupport.firstRefusal("acme", support, request({ contextOverflow: "error" })))
    assert.isUndefined(FieldSupport.firstRefusal("acme", support, request({ logprobs: false })))
    assert.strictEqual(FieldSupport.firstRefusal("acme", support, request({ contextOverflow: "shift" }))?.reason._tag, "InvalidRequest")
    assert.strictEqual(
      (FieldSupport.firstRefusal("acme", support, request({ logprobs: true }))?.reason as LlmError.InvalidRequest | undefined)?.field,
      "logprobs"
    )
  })

  it("puts exactly the set param fields on the body, under their wire names", () => {
    assert.deepStrictEqual(FieldSupport.params(support, request({ topK: 5, stop: ["x"], seed: 1 })), { top_k: 5, stop: ["x"] })
    assert.deepStrictEqual(FieldSupport.params(support, request({ stop: [] })), {})
  })

  it("describes rules for tables", () => {
    assert.strictEqual(FieldSupport.describe(FieldSupport.param("top_k")), "`top_k`")
    assert.strictEqual(FieldSupport.describe(support.contextOverflow), "refused except `error`")
  })
})
