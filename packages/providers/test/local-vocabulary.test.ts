// TinyStories-656K's vocabulary has no byte-fallback tokens: llama.cpp's tokenizer aborts
// the whole process (an uncatchable std::out_of_range) on a character none of its pieces
// contains. The provider must map such text to something the vocabulary can encode.
import { assert, describe, it, layer } from "@effect/vitest"
import { CompletionRequest, Embedder, Llm, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Layer } from "effect"
import * as VocabularyText from "../src/internal/vocabularyText.js"

describe("VocabularyText", () => {
  const tokens = ["<unk>", "<s>", "</s>", "\u2581it", "'", "s", "\u2581cafe", "e", "-", "\""]
  const types = [2, 3, 3, 1, 1, 1, 1, 1, 1, 1]
  it("maps unknown characters to ASCII equivalents, strips accents, else a space", () => {
    const sanitize = VocabularyText.make(tokens, types)
    assert.strictEqual(sanitize("it’s"), "it's")
    assert.strictEqual(sanitize("café"), "cafe")
    assert.strictEqual(sanitize("it–s 🙂"), "it-s  ")
    assert.strictEqual(sanitize("“it”"), "\"it\"")
  })
  it("leaves text alone when the vocabulary has byte fallback (token type 6) or unknown types", () => {
    assert.strictEqual(VocabularyText.make([...tokens, "<0xE2>"], [...types, 6])("it’s 🙂"), "it’s 🙂")
    assert.strictEqual(VocabularyText.make(tokens, undefined)("it’s"), "it’s")
  })
})

const Tiny = Local.layerWithPool({ model: "TinyStories-656K-Q8_0.gguf", contextSize: 128 }).pipe(Layer.provideMerge(ModelPool.layer()))

layer(Tiny, { timeout: "60 seconds" })("TinyStories-656K with text outside its vocabulary", (it) => {
  it.effect("completes, streams, tokenizes and embeds curly quotes, accents and emoji without aborting the process", () =>
    Effect.gen(function*() {
      const text = "It’s a “café” day 🙂 — Lily’s dog ran."
      const completion = yield* Llm.complete(
        CompletionRequest.makeUnsafe({ model: "t", messages: [], prompt: text, temperature: 0, maxTokens: 8, stop: ["’s"] })
      )
      assert.isAbove(completion.usage.inputTokens, 5)
      const chat = yield* Llm.complete(CompletionRequest.user("t", text, { temperature: 0, maxTokens: 4 }))
      assert.isAbove(chat.usage.outputTokens, 0)
      const model = yield* Effect.service(TokenModel.TokenModel)
      const ids = yield* model.tokenize(text)
      assert.isAbove(ids.length, 5)
      const embeddings = yield* Embedder.embed([text])
      assert.strictEqual(embeddings.vectors.length, 1)
    }))
})
