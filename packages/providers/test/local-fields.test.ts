/**
 * The local provider's request fields on the real fixtures: logprobs exact against an
 * independent softmax of the logits (TokenModel), the context-overflow strategies, and
 * refusals.
 */
import { assert, layer } from "@effect/vitest"
import { Completion, CompletionRequest, Llm, LlmError, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Layer, Stream } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { writeLoraAdapter } from "./local-lora-fixture.js"

const CONTEXT = 256

const request = (extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
  CompletionRequest.makeUnsafe({ model: "stories260K", messages: [], prompt: "Once upon a time", temperature: 0, maxTokens: 12, ...extra })

const Stories = Local.layerWithPool({ model: "stories260K.gguf", sequences: 2, contextSize: CONTEXT }).pipe(
  Layer.provideMerge(ModelPool.layer())
)

layer(Stories, { timeout: "60 seconds" })("Local fields (stories260K)", (it) => {
  it.effect("logprobs are the log-softmax of the model's logits at each generated position, top alternatives sorted", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(request({ logprobs: true, topLogprobs: 3 }))
      const logprobs = completion.logprobs!
      assert.strictEqual(logprobs.length, completion.usage.outputTokens)
      assert.strictEqual(logprobs.map((entry) => entry.token).join(""), completion.text)
      // independently: greedy decoding on TokenModel's softmax distributions (temperature 0
      // picks the argmax), one append per step, on its own sequence
      const model = yield* TokenModel.TokenModel
      const tokens: Array<number> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const sequence = yield* model.sequence()
        let distribution = (yield* sequence.append(yield* model.tokenize("Once upon a time", { addBos: true }))).at(-1)!
        for (let i = 0; i < logprobs.length; i++) {
          const token = TokenModel.argmax(distribution)
          tokens.push(token)
          // one token per pass here, one batch there: float32 logits differ in the 4th decimal
          assert.closeTo(logprobs[i]!.logprob, Math.log(distribution[token]!), 1e-2, `position ${i}`)
          distribution = (yield* sequence.append([token]))[0]!
        }
      }))
      assert.strictEqual(yield* model.detokenize(tokens), completion.text)
      // exact: the same positions evaluated in one batch, as the provider does, give the same numbers
      const prompt = yield* model.tokenize("Once upon a time", { addBos: true })
      const distributions = yield* TokenModel.evaluate(model, prompt, tokens.slice(0, -1))
      for (let i = 0; i < tokens.length; i++) {
        const distribution = distributions[i]!
        assert.closeTo(logprobs[i]!.logprob, Math.log(distribution[tokens[i]!]!), 1e-5, `position ${i}`)
        const top = logprobs[i]!.topLogprobs!
        assert.strictEqual(top.length, 3)
        // greedy: the generated token is the most likely one
        assert.strictEqual(top[0]!.token, logprobs[i]!.token)
        assert.closeTo(top[0]!.logprob, logprobs[i]!.logprob, 1e-9)
        const ranked = [...distribution].sort((a, b) => b - a)
        assert.closeTo(top[1]!.logprob, Math.log(ranked[1]!), 1e-5)
        assert.closeTo(top[2]!.logprob, Math.log(ranked[2]!), 1e-5)
      }
      const sum = logprobs.reduce((total, entry) => total + entry.logprob, 0)
      assert.isBelow(sum, 0)
      // streams carry the same logprobs (on the last chunk)
      const streamed = yield* Completion.fromStream(Llm.stream(request({ logprobs: true, topLogprobs: 3 })), {
        model: "m",
        provider: "local"
      })
      assert.deepStrictEqual(streamed.logprobs, logprobs)
      const plain = yield* Llm.complete(request())
      assert.isUndefined(plain.logprobs)
      assert.strictEqual(plain.text, completion.text)
    }))

  it.effect("error (the default): an oversized prompt fails with context_length_exceeded and the numbers", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Llm.complete(request({ prompt: "Once upon a time ".repeat(80) })))
      const reason = error.reason as LlmError.ContextLengthExceeded
      assert.strictEqual(reason._tag, "ContextLengthExceeded")
      assert.match(
        reason.description,
        /^context_length_exceeded: the prompt has \d+ tokens and maxTokens is 12, more than the context size of 256/
      )
      assert.strictEqual(reason.contextSize, CONTEXT)
      assert.strictEqual(reason.maxTokens, 12)
      assert.isAbove(reason.promptTokens!, CONTEXT - 12)
    }))

  it.effect("truncate keeps the end of a raw prompt that fits and reports the dropped tokens", () =>
    Effect.gen(function*() {
      const long = "Once upon a time ".repeat(80)
      const completion = yield* Llm.complete(request({ prompt: long, contextOverflow: "truncate" }))
      assert.strictEqual(completion.usage.inputTokens, CONTEXT - 12)
      const model = yield* TokenModel.TokenModel
      const all = (yield* model.tokenize(long)).length + 1
      assert.strictEqual(completion.facts?.droppedPromptTokens, all - (CONTEXT - 12))
      assert.strictEqual(completion.usage.outputTokens, 12)
      const fits = yield* Llm.complete(request({ contextOverflow: "truncate" }))
      assert.isUndefined(fits.facts?.droppedPromptTokens)
    }))

  it.effect("truncate keeps the system prompt and the most recent turns of a chat", () =>
    Effect.gen(function*() {
      const turn = (role: "user" | "assistant", i: number) => ({ role, content: `Turn ${i}: the little dog ran to the park and played.` })
      const messages = [
        { role: "system" as const, content: "Tell a story." },
        ...Array.from({ length: 30 }, (_, i) => turn(i % 2 === 0 ? "user" : "assistant", i))
      ]
      const chat = (contextOverflow?: "truncate") =>
        CompletionRequest.makeUnsafe({
          model: "m",
          messages,
          temperature: 0,
          maxTokens: 8,
          ...(contextOverflow ? { contextOverflow } : {})
        })
      const refused = yield* Effect.flip(Llm.complete(chat()))
      assert.strictEqual(refused.reason._tag, "ContextLengthExceeded")
      const completion = yield* Llm.complete(chat("truncate"))
      assert.isAtMost(completion.usage.inputTokens, CONTEXT - 8)
      assert.isAbove(completion.facts?.droppedPromptTokens ?? 0, 0)
      // what was kept is the system prompt and the most recent turns that fit: the longest such suffix
      const local = yield* Local.LocalModel
      let expected = 0
      for (let kept = 1; kept < messages.length; kept++) {
        const tokens = yield* local.countPromptTokens(
          CompletionRequest.makeUnsafe({ model: "m", messages: [messages[0]!, ...messages.slice(-kept)] })
        )
        if (tokens > CONTEXT - 8) break
        expected = tokens
      }
      assert.isAbove(expected, 0)
      assert.strictEqual(completion.usage.inputTokens, expected)
      const all = yield* local.countPromptTokens(CompletionRequest.makeUnsafe({ model: "m", messages }))
      assert.strictEqual(completion.facts?.droppedPromptTokens, all - expected)
      const tooBig = CompletionRequest.makeUnsafe({
        model: "m",
        messages: [{ role: "system", content: "Tell a story. ".repeat(120) }, { role: "user", content: "Go." }],
        maxTokens: 8,
        contextOverflow: "truncate"
      })
      const error = yield* Effect.flip(Llm.complete(tooBig))
      assert.match(error.message, /the system prompt and the last turn alone do not fit/)
    }))

  it.effect("shift lets a generation run past the window (facts.contextShifted); error stops it", () =>
    Effect.gen(function*() {
      const long = request({ maxTokens: 300, contextOverflow: "shift" })
      const shifted = yield* Llm.complete(long)
      assert.strictEqual(shifted.usage.outputTokens, 300)
      assert.isTrue(shifted.facts?.contextShifted)
      const bounded = yield* Effect.flip(Llm.complete(request({ maxTokens: 300 })))
      assert.strictEqual(bounded.reason._tag, "ContextLengthExceeded")
      const refused = yield* Effect.flip(Llm.complete(request({ maxTokens: 300, contextOverflow: "shift", logprobs: true })))
      assert.strictEqual((refused.reason as LlmError.InvalidRequest).field, "logprobs")
    }))

  it.effect("refuses providerOptions, naming the field and the provider", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Llm.complete(request({ providerOptions: { mirostat: 2 } })))
      assert.strictEqual(error.provider, "local")
      assert.strictEqual((error.reason as LlmError.InvalidRequest).field, "providerOptions")
      const streamed = yield* Effect.flip(Stream.runDrain(Llm.stream(request({ providerOptions: { mirostat: 2 } }))))
      assert.strictEqual((streamed.reason as LlmError.InvalidRequest).field, "providerOptions")
    }))
})

layer(
  Local.layerWithPool({ model: "stories260K.gguf", contextSize: CONTEXT, contextOverflow: "truncate" }).pipe(
    Layer.provideMerge(ModelPool.layer())
  ),
  { timeout: "60 seconds" }
)("Local fields: the layer's contextOverflow", (it) => {
  it.effect("applies to requests that set none; a request's own strategy wins", () =>
    Effect.gen(function*() {
      const long = "Once upon a time ".repeat(80)
      const completion = yield* Llm.complete(request({ prompt: long }))
      assert.isAbove(completion.facts?.droppedPromptTokens ?? 0, 0)
      const error = yield* Effect.flip(Llm.complete(request({ prompt: long, contextOverflow: "error" })))
      assert.strictEqual(error.reason._tag, "ContextLengthExceeded")
    }))
})

layer(
  Local.layerWithPool({ model: "stories260K.gguf", contextSize: CONTEXT }).pipe(Layer.provideMerge(ModelPool.layer())),
  { timeout: "60 seconds" }
)("Local fields: logprobs under a LoRA adapter", (it) => {
  it.effect("come from the adapter's context: they score the adapter's own greedy choices as most likely", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-lora-logprobs-"))
      const adapter = Path.join(dir, "adapter.gguf")
      writeLoraAdapter(adapter, { seed: 1 })
      const base = yield* Llm.complete(request({ logprobs: true, topLogprobs: 1 }))
      const adapted = yield* Llm.complete(request({ logprobs: true, topLogprobs: 1, adapter }))
      assert.notStrictEqual(adapted.text, base.text)
      // greedy under the adapter: each generated token is the adapter distribution's argmax,
      // which base-model logprobs would not say
      for (const entry of adapted.logprobs!) assert.strictEqual(entry.topLogprobs![0]!.token, entry.token)
      assert.notDeepEqual(adapted.logprobs, base.logprobs)
      Fs.rmSync(dir, { recursive: true })
    }))
})
