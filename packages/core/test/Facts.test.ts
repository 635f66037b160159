import { assert, describe, it } from "@effect/vitest"
import { Completion, Facts } from "@hasten/core"
import { Effect, Exit, Schema, Stream } from "effect"

const completion = (facts?: Facts.Facts) =>
  new Completion.Completion({
    text: "hi",
    finishReason: "stop",
    usage: { inputTokens: 1, outputTokens: 1 },
    model: "m",
    provider: "p",
    timing: { start: 0, end: 1 },
    ...(facts !== undefined ? { facts } : {})
  })

describe("Facts", () => {
  it("merge keeps both sides' facts and lets the second win where both name one", () => {
    assert.deepStrictEqual(
      Facts.merge({ retries: 1, queueWaitMillis: 5 }, { batchSize: 4, queueWaitMillis: 50 }),
      { retries: 1, queueWaitMillis: 50, batchSize: 4 }
    )
    assert.deepStrictEqual(Facts.merge({ retries: 2 })({ endpoint: "a" }), { endpoint: "a", retries: 2 })
    assert.deepStrictEqual(Facts.merge(Facts.empty, { polls: 3 }), { polls: 3 })
  })

  it("decoding rejects a fact of the wrong type", () => {
    const decode = Schema.decodeUnknownExit(Facts.Facts)
    assert.isTrue(Exit.isSuccess(decode({ retries: 2, speculative: { acceptanceRate: 0.5, perPosition: [0.9] } })))
    assert.isTrue(Exit.isFailure(decode({ retries: "2" })))
    assert.isTrue(Exit.isFailure(decode({ retries: 1.5 })))
    assert.isTrue(Exit.isFailure(decode({ rateLimitWaitMillis: -1 })))
    assert.isTrue(Exit.isFailure(decode({ speculative: { drafted: 3 } })))
  })

  it.effect("annotate passes facts down to the effect it wraps, nested annotations merged", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Facts.CurrentFacts, {})
      const inner = yield* Effect.service(Facts.CurrentFacts).pipe(
        Facts.annotate({ queueWaitMillis: 7 }),
        Facts.annotate({ batchSize: 3, queueWaitMillis: 1 })
      )
      assert.deepStrictEqual(inner, { batchSize: 3, queueWaitMillis: 7 })
      assert.deepStrictEqual(yield* Facts.CurrentFacts, {})
    }))
})

describe("Completion facts", () => {
  it("withFacts merges over the completion's facts", () => {
    assert.deepStrictEqual(Completion.withFacts(completion(), { batchSize: 2 }).facts, { batchSize: 2 })
    const merged = Completion.withFacts({ batchSize: 2, queueWaitMillis: 9 })(completion({ retries: 1, queueWaitMillis: 3 }))
    assert.deepStrictEqual(merged.facts, { retries: 1, queueWaitMillis: 9, batchSize: 2 })
    assert.strictEqual(merged.text, "hi")
  })

  it("withFacts gives a real Completion: same class, schema-valid, equal to one built by the constructor, the original untouched", () => {
    const original = completion({ retries: 1 })
    const merged = Completion.withFacts(original, { batchSize: 2 })
    assert.instanceOf(merged, Completion.Completion)
    assert.isTrue(Schema.is(Completion.Completion)(merged))
    const built = new Completion.Completion({ ...original, facts: { retries: 1, batchSize: 2 } })
    assert.deepStrictEqual(merged, built)
    assert.deepStrictEqual(Schema.encodeSync(Completion.Completion)(merged), Schema.encodeSync(Completion.Completion)(built))
    assert.deepStrictEqual(original.facts, { retries: 1 })
  })

  it.effect("fromStream merges the facts of every chunk and toChunks carries them", () =>
    Effect.gen(function*() {
      const folded = yield* Completion.fromStream(
        Stream.make(
          new Completion.CompletionChunk({ text: "a", facts: { endpoint: "x", routerAttempts: 1 } }),
          new Completion.CompletionChunk({ text: "b" }),
          new Completion.CompletionChunk({ text: "", finishReason: "stop", facts: { retries: 2, routerAttempts: 2 } })
        ),
        { model: "m", provider: "p" }
      )
      assert.deepStrictEqual(folded.facts, { endpoint: "x", routerAttempts: 2, retries: 2 })
      assert.deepStrictEqual(Completion.toChunks(folded)[0]!.facts, folded.facts)
    }))

  it("facts survive a JSON round trip of the schema", () => {
    const facts: Facts.Facts = {
      retries: 1,
      rateLimitWaitMillis: 12.5,
      backoffMillis: 3,
      timeouts: 0,
      batchSize: 8,
      queueWaitMillis: 40,
      speculative: { drafter: "ngram", acceptanceRate: 0.5, perPosition: [0.75, 0.25], targetEvaluations: 4 },
      endpoint: "a",
      routerAttempts: 1,
      predictionId: "p1",
      polls: 0
    }
    const json = JSON.stringify(Schema.encodeSync(Completion.Completion)(completion(facts)))
    const back = Schema.decodeUnknownSync(Completion.Completion)(JSON.parse(json))
    assert.deepStrictEqual(back.facts, facts)
  })
})
