import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Llm, LlmError } from "@hasten/core"
import { Anthropic } from "@hasten/providers/anthropic"
import { Simulator } from "@hasten/testkit"
import { ConfigProvider, Effect, Exit, Fiber, Layer, Redacted, Stream } from "effect"
import { deferred, eventually, startScripted } from "./remote-support.js"

const key = Redacted.make("sk-ant-hasten-test-abcdef")
const model = "claude-3-5-haiku-latest"

const simulator = (options: Simulator.Options = {}) =>
  Effect.acquireRelease(Effect.promise(() => Simulator.start(options)), (sim) => Effect.promise(() => sim.close()))

const client = (sim: { readonly anthropicBaseUrl: string }, options: Partial<Anthropic.Options> = {}) =>
  Anthropic.make({ apiKey: key, baseURL: sim.anthropicBaseUrl, ...options })

const ask = (content: string, options?: Parameters<typeof CompletionRequest.user>[2]) => CompletionRequest.user(model, content, options)

const reasonOf = <A>(exit: Exit.Exit<A, LlmError.LlmError>): LlmError.LlmErrorReason => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const failure = Exit.isFailure(exit) ? exit.cause.reasons.find((reason) => reason._tag === "Fail") : undefined
  assert.isDefined(failure)
  return (failure as { error: LlmError.LlmError }).error.reason
}

describe("Anthropic against the simulator (official @anthropic-ai/sdk)", () => {
  it.live("completes with the system prompt extracted, usage and anthropic-ratelimit headers", () =>
    Effect.gen(function*() {
      const seen: Array<Simulator.ResponderRequest> = []
      const sim = yield* simulator({
        responder: (request) => {
          seen.push(request)
          return "Bonjour, tout le monde."
        },
        limits: { rpm: 20, tpm: 10_000 }
      })
      const completion = yield* client(sim).complete(CompletionRequest.makeUnsafe({
        model,
        messages: [
          { role: "system", content: "Answer in French." },
          { role: "user", content: "Say hello" }
        ],
        maxTokens: 50,
        temperature: 0,
        topK: 5,
        stop: ["###"]
      }))
      assert.strictEqual(completion.text, "Bonjour, tout le monde.")
      assert.strictEqual(completion.finishReason, "stop")
      assert.strictEqual(completion.provider, "anthropic")
      assert.strictEqual(completion.usage.outputTokens, Simulator.tokenize("Bonjour, tout le monde.").length)
      assert.strictEqual(completion.usage.inputTokens, sim.counters().inputTokens)
      assert.strictEqual(completion.rateLimit?.limitRequests, 20)
      assert.strictEqual(completion.rateLimit?.remainingRequests, 19)
      assert.strictEqual(completion.rateLimit?.limitInputTokens, 10_000)
      const body = seen[0]!.body as Record<string, unknown>
      assert.strictEqual(body.system, "Answer in French.")
      assert.deepStrictEqual(body.messages, [{ role: "user", content: "Say hello" }])
      assert.strictEqual(body.max_tokens, 50)
      assert.strictEqual(body.top_k, 5)
      assert.deepStrictEqual(body.stop_sequences, ["###"])
    }).pipe(Effect.scoped))

  it.live("max_tokens reaches the model and a cut answer finishes with length", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ responder: () => "one two three four five six seven eight" })
      const completion = yield* client(sim).complete(ask("count", { maxTokens: 3 }))
      assert.strictEqual(completion.finishReason, "length")
      assert.strictEqual(completion.usage.outputTokens, 3)
    }).pipe(Effect.scoped))

  it.live("streams text deltas; the final chunk carries usage and the stop reason", () =>
    Effect.gen(function*() {
      const answer = "A streamed answer arrives in several small pieces."
      const sim = yield* simulator({ responder: () => answer, limits: { rpm: 9 } })
      const chunks = Array.from(yield* Stream.runCollect(client(sim).stream(ask("stream please"))))
      assert.isAbove(chunks.filter((chunk) => chunk.text.length > 0).length, 3)
      assert.strictEqual(chunks.map((chunk) => chunk.text).join(""), answer)
      const last = chunks.at(-1)!
      assert.strictEqual(last.finishReason, "stop")
      assert.strictEqual(last.usage?.outputTokens, Simulator.tokenize(answer).length)
      assert.isAbove(last.usage?.inputTokens ?? 0, 0)
      assert.strictEqual(chunks.filter((chunk) => chunk.rateLimit !== undefined).length, 1)
      assert.strictEqual(chunks.find((chunk) => chunk.rateLimit !== undefined)?.rateLimit?.limitRequests, 9)
      const folded = yield* Completion.fromStream(client(sim).stream(ask("stream please")), { model, provider: "anthropic" })
      assert.strictEqual(folded.text, answer)
      assert.isUndefined(folded.usage.estimated)
    }).pipe(Effect.scoped))

  it.live("reports prompt-cache writes, then reads, for a cached system prompt (complete and stream)", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ responder: () => "ok" })
      const llm = client(sim, { promptCaching: true })
      const system = "You are a careful assistant. ".repeat(40)
      const request = CompletionRequest.makeUnsafe({
        model,
        messages: [{ role: "system", content: system }, { role: "user", content: "hi" }]
      })
      const first = yield* llm.complete(request)
      assert.isAbove(first.usage.cacheWriteInputTokens ?? 0, 0)
      assert.isUndefined(first.usage.cachedInputTokens)
      const second = yield* llm.complete(request)
      assert.strictEqual(second.usage.cachedInputTokens, first.usage.cacheWriteInputTokens)
      assert.isUndefined(second.usage.cacheWriteInputTokens)
      assert.strictEqual(second.usage.inputTokens, first.usage.inputTokens)
      const streamed = yield* Completion.fromStream(llm.stream(request), { model, provider: "anthropic" })
      assert.strictEqual(streamed.usage.cachedInputTokens, first.usage.cacheWriteInputTokens)
    }).pipe(Effect.scoped))

  describe("errors from the simulator", () => {
    const cases: ReadonlyArray<{
      readonly name: string
      readonly options: Simulator.Options
      readonly tag: LlmError.LlmErrorReason["_tag"]
      readonly retryable: boolean
      readonly scope?: LlmError.RateLimitScope
    }> = [
      { name: "529 overloaded", options: { faults: { rate: 1, kinds: ["503"] } }, tag: "Overloaded", retryable: true },
      { name: "500 api_error", options: { faults: { rate: 1, kinds: ["500"] } }, tag: "ServerError", retryable: true },
      { name: "connection reset", options: { faults: { rate: 1, kinds: ["reset"] } }, tag: "Transport", retryable: true },
      {
        name: "credit balance too low",
        options: { limits: { quotaExhausted: true } },
        tag: "RateLimited",
        retryable: false,
        scope: "quota"
      },
      { name: "invalid key", options: { apiKeys: ["another-key"] }, tag: "Unauthorized", retryable: false }
    ]
    for (const row of cases) {
      it.live(`${row.name} -> ${row.tag}`, () =>
        Effect.gen(function*() {
          const sim = yield* simulator(row.options)
          const exit = yield* Effect.exit(client(sim).complete(ask("hi")))
          const reason = reasonOf(exit)
          assert.strictEqual(reason._tag, row.tag)
          assert.strictEqual(LlmError.isRetryableReason(reason), row.retryable)
          if (row.scope !== undefined) assert.strictEqual((reason as LlmError.RateLimited).scope, row.scope)
          assert.notInclude(String(exit), Redacted.value(key))
          const streamed = reasonOf(yield* Effect.exit(Stream.runDrain(client(sim).stream(ask("hi")))))
          assert.strictEqual(streamed._tag, row.tag)
          assert.strictEqual(sim.counters().requests, 2, "one HTTP request per call: SDK retries are off")
        }).pipe(Effect.scoped))
    }

    it.live("429 is RateLimited with retry-after and the requests scope from anthropic-ratelimit headers", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ limits: { rpm: 1 } })
        yield* client(sim).complete(ask("one"))
        const reason = reasonOf(yield* Effect.exit(client(sim).complete(ask("two"))))
        assert.strictEqual(reason._tag, "RateLimited")
        assert.strictEqual((reason as LlmError.RateLimited).scope, "requests")
        assert.isAbove((reason as LlmError.RateLimited).retryAfterMillis ?? 0, 0)
        assert.isTrue(LlmError.isRetryableReason(reason))
      }).pipe(Effect.scoped))

    it.live("a hanging server is a Timeout", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ faults: { rate: 1, kinds: ["hang"] } })
        const reason = reasonOf(yield* Effect.exit(client(sim, { timeout: 150 }).complete(ask("hi"))))
        assert.strictEqual(reason._tag, "Timeout")
      }).pipe(Effect.scoped))
  })

  describe("error mapping table (scripted server)", () => {
    const cases = [
      {
        name: "prompt is too long",
        status: 400,
        body: { type: "error", error: { type: "invalid_request_error", message: "prompt is too long: 210000 tokens > 200000 maximum" } },
        tag: "ContextLengthExceeded"
      },
      {
        name: "529 with retry-after",
        status: 529,
        body: { type: "error", error: { type: "overloaded_error", message: "Overloaded" } },
        headers: { "retry-after": "3" },
        tag: "Overloaded",
        retryAfterMillis: 3000
      },
      { name: "200 without content", status: 200, body: { id: "msg_1", type: "message" }, tag: "BadResponse" },
      {
        name: "403 permission",
        status: 403,
        body: { type: "error", error: { type: "permission_error", message: "no access" } },
        tag: "Unauthorized"
      },
      {
        name: "404 model",
        status: 404,
        body: { type: "error", error: { type: "not_found_error", message: "model: nope" } },
        tag: "InvalidRequest"
      },
      {
        name: "429 on output tokens",
        status: 429,
        body: { type: "error", error: { type: "rate_limit_error", message: "This request would exceed your rate limit" } },
        headers: {
          "anthropic-ratelimit-requests-limit": "50",
          "anthropic-ratelimit-requests-remaining": "40",
          "anthropic-ratelimit-output-tokens-limit": "8000",
          "anthropic-ratelimit-output-tokens-remaining": "0",
          "retry-after": "7"
        },
        tag: "RateLimited",
        scope: "output_tokens",
        retryAfterMillis: 7000
      }
    ] as const
    for (const row of cases) {
      it.live(`${row.name} -> ${row.tag}`, () =>
        Effect.gen(function*() {
          const server = yield* Effect.acquireRelease(
            Effect.promise(() =>
              startScripted(() => ({ status: row.status, body: row.body, ...("headers" in row ? { headers: row.headers } : {}) }))
            ),
            (server) => Effect.promise(() => server.close())
          )
          const reason = reasonOf(yield* Effect.exit(client({ anthropicBaseUrl: server.url }).complete(ask("hi"))))
          assert.strictEqual(reason._tag, row.tag)
          if ("scope" in row) assert.strictEqual((reason as LlmError.RateLimited).scope, row.scope)
          if ("retryAfterMillis" in row) {
            assert.strictEqual((reason as LlmError.Overloaded).retryAfterMillis, row.retryAfterMillis)
          }
          assert.strictEqual(server.requests.length, 1)
          const auth = server.requests[0]!.headers["x-api-key"] ?? server.requests[0]!.headers.authorization
          assert.include(String(auth), Redacted.value(key))
        }).pipe(Effect.scoped))
    }
  })

  it.live("an overloaded_error event in the middle of a stream is Overloaded, after the text so far", () =>
    Effect.gen(function*() {
      const sse = [
        `event: message_start\ndata: ${
          JSON.stringify({
            type: "message_start",
            message: {
              id: "msg_1",
              type: "message",
              role: "assistant",
              model,
              content: [],
              stop_reason: null,
              stop_sequence: null,
              usage: { input_tokens: 5, output_tokens: 1 }
            }
          })
        }\n\n`,
        `event: content_block_start\ndata: ${
          JSON.stringify({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } })
        }\n\n`,
        `event: content_block_delta\ndata: ${
          JSON.stringify({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hello" } })
        }\n\n`,
        `event: error\ndata: ${JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })}\n\n`
      ].join("")
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startScripted(() => ({ status: 200, raw: sse, headers: { "content-type": "text/event-stream" } }))),
        (server) => Effect.promise(() => server.close())
      )
      const texts: Array<string> = []
      const exit = yield* Effect.exit(Stream.runForEach(
        client({ anthropicBaseUrl: server.url }).stream(ask("hi")),
        (chunk) => Effect.sync(() => texts.push(chunk.text))
      ))
      assert.strictEqual(reasonOf(exit)._tag, "Overloaded")
      assert.strictEqual(texts.join(""), "Hello")
    }).pipe(Effect.scoped))

  describe("interruption", () => {
    it.live("interrupting complete aborts the HTTP request", () =>
      Effect.gen(function*() {
        const arrived = deferred()
        const sim = yield* simulator({
          responder: async () => {
            arrived.resolve()
            return await new Promise<string>(() => {})
          }
        })
        const fiber = yield* Effect.forkChild(client(sim).complete(ask("never answered")))
        yield* Effect.promise(() => arrived.promise)
        yield* Fiber.interrupt(fiber)
        yield* eventually(() => sim.counters().aborted === 1 && sim.counters().inFlight === 0)
      }).pipe(Effect.scoped))

    it.live("stopping a stream early aborts the HTTP stream", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({
          responder: () => "one two three four five six seven eight nine ten eleven twelve",
          latency: { perTokenMs: 200 }
        })
        yield* Stream.runDrain(client(sim).stream(ask("stream")).pipe(Stream.filter((chunk) => chunk.text.length > 0), Stream.take(1)))
        yield* eventually(() => sim.counters().aborted === 1 && sim.counters().inFlight === 0)
        assert.isBelow(sim.counters().outputTokens, 12)
      }).pipe(Effect.scoped))
  })

  describe("configuration", () => {
    const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))

    it.live("layerConfig fails naming ANTHROPIC_API_KEY when it is missing", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Layer.build(Anthropic.layerConfig()).pipe(Effect.scoped, withEnv({})))
        assert.isTrue(Exit.isFailure(exit))
        assert.include(String(exit), "ANTHROPIC_API_KEY")
      }))

    it.live("layerConfig reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ apiKeys: ["env-anthropic-key"], responder: () => "configured" })
        const completion = yield* Llm.complete(ask("hi")).pipe(
          Effect.provide(Anthropic.layerConfig()),
          withEnv({ ANTHROPIC_API_KEY: "env-anthropic-key", ANTHROPIC_BASE_URL: sim.anthropicBaseUrl })
        )
        assert.strictEqual(completion.text, "configured")
      }).pipe(Effect.scoped))
  })
})
