/**
 * Sampled speculative decoding over `Local.layer`'s TokenModel: with a top-k request the
 * backend's `appendDistributions` returns each position's sampling distribution from
 * llama.cpp's own sampler chain (temperature, then top-k) instead of all logits; it must be
 * the distribution `Sampling.transform` computes from the logits, and a seeded request must
 * give the same text with and without it.
 */
import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm, TokenModel } from "@hasten/core"
import { Local } from "@hasten/providers/local"
import { Effect, Layer } from "effect"
import * as NodePath from "node:path"
import * as Drafter from "../src/Drafter.js"
import * as Sampling from "../src/Sampling.js"
import * as Speculative from "../src/Speculative.js"
import * as Llama from "./support/Llama.js"

const sampling = { temperature: 0.8, topK: 5 }

for (const file of ["stories260K.gguf", "TinyStories-656K-Q8_0.gguf"]) {
  describe(file, () => {
    const local = (contextSize: number) => Local.layer({ model: NodePath.join(Llama.modelsDir(), file), contextSize })
    const tokenModel = (contextSize: number) =>
      Layer.effect(TokenModel.TokenModel, Effect.service(TokenModel.TokenModel)).pipe(Layer.provide(local(contextSize)))
    /** The same TokenModel with only the core `TokenSequence` operations (no extensions). */
    const plainOnly = (layer: Layer.Layer<TokenModel.TokenModel, unknown>) =>
      Layer.effect(
        TokenModel.TokenModel,
        Effect.map(Effect.service(TokenModel.TokenModel), (model) => ({
          ...model,
          sequence: () =>
            Effect.map(model.sequence(), (sequence) => ({ tokens: sequence.tokens, append: sequence.append, truncate: sequence.truncate }))
        }))
      ).pipe(Layer.provide(layer))

    it.effect(
      "appendDistributions: the sampler chain's candidates are Sampling.transform of the logits, from `from` on",
      () =>
        Effect.scoped(Effect.gen(function*() {
          const model = yield* TokenModel.TokenModel
          const sequence = (yield* model.sequence()) as Drafter.ExtendedSequence
          const prompt = yield* model.tokenize("Once upon a time there was", { addBos: true })
          yield* sequence.append(prompt.slice(0, 3))
          const base = sequence.tokens().length
          const rest = prompt.slice(3)
          const full = yield* sequence.append(rest)
          yield* sequence.truncate(base)
          const raw = yield* sequence.appendDistributions!(rest, 2)
          assert.strictEqual(raw.length, rest.length - 2)
          yield* sequence.truncate(base)
          const into = Array.from({ length: rest.length - 2 }, () => new Float32Array(model.vocabularySize).fill(1))
          const sampled = yield* sequence.appendDistributions!(rest, 2, sampling, into)
          assert.strictEqual(sampled.length, rest.length - 2)
          // written into the caller's arrays (cleared first), nothing allocated
          for (const [i, distribution] of sampled.entries()) assert.strictEqual(distribution, into[i])
          assert.deepStrictEqual(sequence.tokens(), prompt)
          for (const [i, distribution] of sampled.entries()) {
            const expected = Sampling.transform(full[i + 2]!, sampling)
            let kept = 0
            for (let token = 0; token < expected.length; token++) {
              assert.isAtMost(Math.abs(raw[i]![token]! - full[i + 2]![token]!), 1e-6)
              assert.isAtMost(Math.abs(distribution[token]! - expected[token]!), 1e-5, `token ${token} at position ${i + 2}`)
              if (distribution[token]! > 0) kept++
            }
            assert.strictEqual(kept, sampling.topK)
          }
        })).pipe(Effect.provide(tokenModel(512))),
      60_000
    )

    it.effect(
      "a seeded top-k request gives the same text with the backend's sampler chain as with the logits",
      () =>
        Effect.gen(function*() {
          const request = CompletionRequest.makeUnsafe({
            model: "m",
            messages: [],
            prompt: "Once upon a time",
            ...sampling,
            seed: 3,
            maxTokens: 40
          })
          const run = (target: Layer.Layer<TokenModel.TokenModel, unknown>, draft: Layer.Layer<TokenModel.TokenModel, unknown>) =>
            Llm.complete(request).pipe(
              Effect.provide(Speculative.layer({ drafter: Drafter.modelLayer(draft), gamma: 3 }).pipe(Layer.provide(target)))
            )
          const native = yield* run(tokenModel(512), tokenModel(384))
          const logits = yield* run(plainOnly(tokenModel(512)), plainOnly(tokenModel(384)))
          assert.isAbove(native.usage.outputTokens, 10)
          assert.strictEqual(native.text, logits.text)
        }),
      120_000
    )
  })
}
