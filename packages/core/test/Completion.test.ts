import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Llm, RateLimitPolicy } from "@hasten/core"
import { Effect, Exit, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"

const chunk = (text: string, extra: Partial<Completion.CompletionChunk> = {}) => new Completion.CompletionChunk({ text, ...extra })

describe("Completion.fromStream", () => {
  it.effect("joins deltas, takes usage and finish reason from the last chunk, times the first token", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000)
      const stream = Stream.fromEffect(Effect.as(Effect.sleep("100 millis"), chunk("Hel"))).pipe(
        Stream.concat(Stream.fromEffect(Effect.as(Effect.sleep("50 millis"), chunk("lo")))),
        Stream.concat(Stream.make(chunk("", { finishReason: "stop", usage: { inputTokens: 3, outputTokens: 2 } })))
      )
      const fiber = yield* Effect.forkChild(Completion.fromStream(stream, { model: "m", provider: "p" }))
      yield* TestClock.adjust("1 second")
      const completion = yield* Fiber.join(fiber)
      assert.strictEqual(completion.text, "Hello")
      assert.strictEqual(completion.finishReason, "stop")
      assert.deepStrictEqual(completion.usage, { inputTokens: 3, outputTokens: 2 })
      assert.deepStrictEqual(completion.timing, { start: 1_000, firstToken: 1_100, end: 1_150 })
    }))

  it.effect("counts chunk tokens as an estimate when no usage arrives, and fails with the stream's error", () =>
    Effect.gen(function*() {
      const completion = yield* Completion.fromStream(Stream.make(chunk("a", { tokens: 1 }), chunk("b", { tokens: 2 })), {
        model: "m",
        provider: "p"
      })
      assert.deepStrictEqual(completion.usage, { inputTokens: 0, outputTokens: 3, estimated: true })
      assert.strictEqual(completion.finishReason, "unknown")
      const exit = yield* Effect.exit(Completion.fromStream(Stream.fail("boom"), { model: "m", provider: "p" }))
      assert.deepStrictEqual(exit, Exit.fail("boom"))
    }))

  it.effect("concatenates the chunks' logprobs in order, and toChunks carries them back", () =>
    Effect.gen(function*() {
      const a = { token: "He", logprob: -0.5, bytes: [72, 101], topLogprobs: [{ token: "He", logprob: -0.5 }] }
      const b = { token: "llo", logprob: -1.25 }
      const completion = yield* Completion.fromStream(
        Stream.make(chunk("He", { logprobs: [a] }), chunk("llo", { logprobs: [b] }), chunk("", { finishReason: "stop" })),
        { model: "m", provider: "p" }
      )
      assert.deepStrictEqual(completion.logprobs, [a, b])
      assert.deepStrictEqual(Completion.toChunks(completion)[0]!.logprobs, [a, b])
      const none = yield* Completion.fromStream(Stream.make(chunk("x")), { model: "m", provider: "p" })
      assert.isUndefined(none.logprobs)
    }))
})

describe("Llm", () => {
  const request = CompletionRequest.user("echo-model", "hello world", { temperature: 0 })

  it.effect("layerEcho completes and streams the same text", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(request)
      assert.strictEqual(completion.text, "echo: hello world")
      assert.deepStrictEqual(completion.usage, { inputTokens: 2, outputTokens: 3 })
      const chunks = yield* Stream.runCollect(Llm.stream(request))
      assert.strictEqual(chunks.map((c) => c.text).join(""), completion.text)
      assert.strictEqual(chunks.at(-1)!.finishReason, "stop")
    }).pipe(Effect.provide(Llm.Llm.layerEcho)))

  it.effect("middleware wraps the Llm below it", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(request)
      assert.strictEqual(completion.text, "ECHO: HELLO WORLD")
    }).pipe(Effect.provide(
      Llm.middleware((inner) =>
        Effect.succeed(Llm.fromComplete(inner.name, (r) =>
          Effect.map(inner.complete(r), (c) =>
            new Completion.Completion({ ...c, text: c.text.toUpperCase() }))))
      ).pipe(Layer.provide(Llm.Llm.layerEcho))
    )))

  it.effect("middleware passes the provider's rate-limit policy up unless it declares its own", () =>
    Effect.gen(function*() {
      const provider = Layer.succeed(Llm.Llm, {
        ...Llm.fromComplete("p", () => Effect.die("unused")),
        rateLimitPolicy: RateLimitPolicy.openAi
      })
      const plain = Llm.middleware((inner) => Effect.succeed(Llm.fromComplete(inner.name, inner.complete)))
      const own = Llm.middleware((inner) =>
        Effect.succeed({ ...Llm.fromComplete(inner.name, inner.complete), rateLimitPolicy: RateLimitPolicy.none })
      )
      const through = yield* Effect.service(Llm.Llm).pipe(Effect.provide(plain.pipe(Layer.provide(plain), Layer.provide(provider))))
      assert.strictEqual(through.rateLimitPolicy, RateLimitPolicy.openAi)
      const overridden = yield* Effect.service(Llm.Llm).pipe(Effect.provide(own.pipe(Layer.provide(provider))))
      assert.strictEqual(overridden.rateLimitPolicy, RateLimitPolicy.none)
      const unknown = yield* Effect.service(Llm.Llm).pipe(Effect.provide(plain.pipe(Layer.provide(Llm.Llm.layerEcho))))
      assert.isUndefined(unknown.rateLimitPolicy)
    }))

  it.effect("middleware passes the provider's endpoint identity up unless it declares its own", () =>
    Effect.gen(function*() {
      const provider = Layer.succeed(Llm.Llm, { ...Llm.fromComplete("p", () => Effect.die("unused")), endpoint: "http://a/v1" })
      const plain = Llm.middleware((inner) => Effect.succeed(Llm.fromComplete(inner.name, inner.complete)))
      const own = Llm.middleware((inner) => Effect.succeed({ ...Llm.fromComplete(inner.name, inner.complete), endpoint: "router" }))
      const through = yield* Effect.service(Llm.Llm).pipe(Effect.provide(plain.pipe(Layer.provide(plain), Layer.provide(provider))))
      assert.strictEqual(through.endpoint, "http://a/v1")
      const overridden = yield* Effect.service(Llm.Llm).pipe(Effect.provide(own.pipe(Layer.provide(provider))))
      assert.strictEqual(overridden.endpoint, "router")
    }))
})

describe("CompletionRequest", () => {
  it.effect("rejects a request without messages or prompt, naming the problem", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(CompletionRequest.make({ model: "m", messages: [] }))
      assert.strictEqual(error._tag, "InvalidCompletionRequest")
      assert.match(error.message, /messages or a prompt/)
    }))

  it.effect("rejects a request with both messages and a prompt (a backend would ignore one)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(CompletionRequest.make({ model: "m", messages: [{ role: "user", content: "x" }], prompt: "y" }))
      assert.match(error.message, /messages or a prompt, not both/)
      assert.strictEqual(CompletionRequest.makeUnsafe({ model: "m", messages: [], prompt: "y" }).prompt, "y")
      assert.strictEqual(CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "user", content: "x" }], prompt: "" }).prompt, "")
    }))

  it.effect("rejects topLogprobs without logprobs: true, and more than 20", () =>
    Effect.gen(function*() {
      const messages = [{ role: "user" as const, content: "x" }]
      const alone = yield* Effect.flip(CompletionRequest.make({ model: "m", messages, topLogprobs: 2 }))
      assert.match(alone.message, /topLogprobs needs logprobs: true/)
      assert.throws(() => CompletionRequest.makeUnsafe({ model: "m", messages, logprobs: false, topLogprobs: 2 }), /topLogprobs/)
      const many = yield* Effect.flip(CompletionRequest.make({ model: "m", messages, logprobs: true, topLogprobs: 21 }))
      assert.match(many.message, /topLogprobs/)
      assert.strictEqual(CompletionRequest.makeUnsafe({ model: "m", messages, logprobs: true, topLogprobs: 20 }).topLogprobs, 20)
    }))

  it.effect("rejects out-of-range sampling fields, naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(CompletionRequest.make({ model: "m", messages: [{ role: "user", content: "x" }], topP: 2 }))
      assert.match(error.message, /topP/)
      const negative = yield* Effect.flip(CompletionRequest.make({ model: "m", messages: [{ role: "user", content: "x" }], maxTokens: -1 }))
      assert.match(negative.message, /maxTokens/)
    }))

  it("makeUnsafe throws make's typed errors: the field that failed, or the missing content", () => {
    const thrown = (input: CompletionRequest.CompletionRequestInput) => {
      try {
        CompletionRequest.makeUnsafe(input)
      } catch (error) {
        return error
      }
      return assert.fail("makeUnsafe did not throw")
    }
    const range = thrown({ model: "m", messages: [], prompt: "x", temperature: -1 })
    assert.instanceOf(range, CompletionRequest.InvalidCompletionRequest)
    assert.match((range as CompletionRequest.InvalidCompletionRequest).message, /temperature/)
    const empty = thrown({ model: "m", messages: [] })
    assert.instanceOf(empty, CompletionRequest.InvalidCompletionRequest)
    assert.strictEqual((empty as CompletionRequest.InvalidCompletionRequest).message, "a request needs messages or a prompt")
    assert.instanceOf(
      CompletionRequest.makeUnsafe({ model: "m", messages: [], prompt: "x", maxTokens: 3 }),
      CompletionRequest.CompletionRequest
    )
  })

  it("renders prompt text from messages or the raw prompt", () => {
    assert.strictEqual(CompletionRequest.promptText(CompletionRequest.makeUnsafe({ model: "m", messages: [], prompt: "raw" })), "raw")
    assert.strictEqual(
      CompletionRequest.promptText(
        CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "system", content: "s" }, { role: "user", content: "u" }] })
      ),
      "system: s\nuser: u"
    )
  })
})
