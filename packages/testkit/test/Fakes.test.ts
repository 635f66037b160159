import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Embedder, Llm, LlmError } from "@hasten/core"
import { Fakes, Simulator } from "@hasten/testkit"
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import OpenAI from "openai"

const request = (content: string, extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
  CompletionRequest.makeUnsafe({ model: "gpt-4o-mini", messages: [{ role: "user", content }], ...extra })

describe("Fakes.llm", () => {
  it.effect("answers scripted responses in order, repeating the last, and records calls", () => {
    const fake = Fakes.llm({ responses: ["first", "second"] })
    return Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const texts: Array<string> = []
      for (const content of ["a", "b", "c"]) texts.push((yield* llm.complete(request(content))).text)
      assert.deepStrictEqual(texts, ["first", "second", "second"])
      assert.deepStrictEqual(fake.calls.map((call) => [call.index, call.method, call.request.messages[0]!.content]), [
        [0, "complete", "a"],
        [1, "complete", "b"],
        [2, "complete", "c"]
      ])
      const completion = yield* llm.complete(request("how many tokens?", { maxTokens: 1 }))
      assert.strictEqual(completion.text, "seco")
      assert.strictEqual(completion.finishReason, "length")
      assert.deepStrictEqual(completion.usage, { inputTokens: Simulator.countTokens("how many tokens?"), outputTokens: 1 })
      assert.strictEqual(completion.provider, "fake")
    }).pipe(Effect.provide(fake.layer))
  })

  it.effect("respond computes the answer; the default equals the simulator's default responder", () =>
    Effect.gen(function*() {
      const echo = Fakes.llm({ respond: (req) => `echo ${req.messages.at(-1)!.content}` })
      assert.strictEqual((yield* echo.service.complete(request("hi"))).text, "echo hi")
      const plain = Fakes.llm()
      const text = (yield* plain.service.complete(request("hi"))).text
      assert.strictEqual(
        text,
        Simulator.defaultResponder({
          api: "openai",
          route: "",
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "hi" }],
          body: {}
        })
      )
    }))

  it.effect("sleeps through the Clock, so TestClock controls latency", () =>
    Effect.gen(function*() {
      const fake = Fakes.llm({ responses: ["late"], latency: "10 seconds" })
      const fiber = yield* Effect.forkChild(fake.service.complete(request("x")))
      yield* TestClock.adjust("9 seconds")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 second")
      const completion = yield* Fiber.join(fiber)
      assert.strictEqual(completion.text, "late")
      assert.strictEqual(completion.timing.end - completion.timing.start, 10_000)
    }))

  it.effect("fails the chosen calls with an LlmError carrying the reason", () =>
    Effect.gen(function*() {
      const fake = Fakes.llm({
        responses: ["ok"],
        failWith: { 1: new LlmError.RateLimited({ scope: "requests", retryAfterMillis: 500, description: "slow down" }) }
      })
      const first = yield* fake.service.complete(request("a"))
      assert.strictEqual(first.text, "ok")
      const second = yield* Effect.flip(fake.service.complete(request("b")))
      assert.instanceOf(second, LlmError.LlmError)
      assert.strictEqual(second.reason._tag, "RateLimited")
      assert.isTrue(second.retryable)
      const third = yield* fake.service.complete(request("c"))
      assert.strictEqual(third.text, "ok")
      assert.strictEqual(fake.calls.length, 3)
    }))

  it.effect("streams one chunk per token; the last chunk carries finish reason and usage; perTokenLatency paces it", () =>
    Effect.gen(function*() {
      const fake = Fakes.llm({ responses: ["one two three"], perTokenLatency: "1 second" })
      const fiber = yield* Effect.forkChild(Stream.runCollect(fake.service.stream(request("s"))))
      yield* TestClock.adjust("3 seconds")
      const chunks = Array.from(yield* Fiber.join(fiber))
      assert.deepStrictEqual(chunks.map((chunk) => chunk.text), Simulator.tokenize("one two three"))
      assert.strictEqual(chunks.at(-1)!.finishReason, "stop")
      assert.strictEqual(chunks.at(-1)!.usage?.outputTokens, 4)
      const folded = yield* Completion.fromStream(fake.service.stream(request("s")).pipe(Stream.take(100)), {
        model: "m",
        provider: "fake"
      }).pipe(
        Effect.forkChild,
        Effect.tap(() => TestClock.adjust("3 seconds")),
        Effect.flatMap(Fiber.join)
      )
      assert.strictEqual(folded.text, "one two three")
      assert.strictEqual(fake.calls[0]!.method, "stream")
    }))
})

describe("Fakes.embedder", () => {
  it.effect("hashes texts to unit vectors, equal to the simulator's vectors for the same model", () =>
    Effect.gen(function*() {
      const fake = Fakes.embedder({ dimensions: 8 })
      const result = yield* Embedder.embed(["a cat", "a dog", "a cat"]).pipe(Effect.provide(fake.layer))
      assert.strictEqual(result.vectors.length, 3)
      assert.deepStrictEqual(result.vectors[0], result.vectors[2])
      assert.notDeepEqual(result.vectors[0], result.vectors[1])
      assert.approximately(Math.hypot(...result.vectors[0]!), 1, 1e-9)
      assert.strictEqual(result.usage.inputTokens, 3 * Simulator.countTokens("a cat"))
      const sim = yield* Effect.promise(() => Simulator.start())
      const remote = yield* Effect.promise(() =>
        new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "k", maxRetries: 0 }).embeddings.create({
          model: "text-embedding-3-small",
          input: "a cat",
          dimensions: 8,
          encoding_format: "float"
        })
      )
      yield* Effect.promise(() => sim.close())
      assert.deepStrictEqual(remote.data[0]!.embedding, result.vectors[0])
      const failing = Fakes.embedder({ failWith: { 0: new LlmError.Timeout({ description: "slow" }) } })
      const error = yield* Effect.flip(failing.service.embed(["x"]))
      assert.strictEqual(error.reason._tag, "Timeout")
    }))
})
