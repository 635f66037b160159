import { assert, describe, it } from "@effect/vitest"
import { Batcher } from "@hasten/batcher"
import { CompletionRequest, Llm } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Layer } from "effect"

const prompts = [
  "Once upon a time",
  "The little dog",
  "Tom and Sue went",
  "One day, a bird",
  "The sun was",
  "Lily wanted to",
  "In the park there",
  "Ben had a red",
  "The cat said",
  "Mom gave her",
  "It was a cold",
  "The big tree",
  "Sam liked to",
  "A small fish",
  "The girl saw",
  "They played with"
]
const request = (prompt: string) =>
  CompletionRequest.makeUnsafe({ model: "stories260K", messages: [], prompt, temperature: 0, maxTokens: 24 })

const Pool = ModelPool.layer()

describe("Batcher over the local model (stories260K)", () => {
  it.effect("16 items on 8 sequences give exactly the unbatched greedy outputs", () =>
    Effect.gen(function*() {
      const sequential = yield* Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt))).pipe(
        Effect.provide(Local.layerWithPool({ model: "stories260K.gguf", sequences: 1, contextSize: 128 }))
      )
      const batched = yield* Effect.forEach(prompts, (prompt) => Llm.complete(request(prompt)), { concurrency: "unbounded" }).pipe(
        Effect.provide(
          Batcher.layer({ window: "5 millis", maxBatchSize: 16, concurrency: 8 }).pipe(
            Layer.provide(Local.layerWithPool({ model: "stories260K.gguf", sequences: 8, contextSize: 128 }))
          )
        )
      )
      assert.deepStrictEqual(batched.map((c) => c.text), sequential.map((c) => c.text))
      assert.deepStrictEqual(batched.map((c) => c.facts?.batchSize), prompts.map(() => 16))
      assert.isTrue(sequential.every((c) => c.usage.outputTokens > 0))
    }).pipe(Effect.provide(Pool)), { timeout: 120_000 })
})
