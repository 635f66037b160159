import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Embedder, Llm, LlmError, RateLimitPolicy } from "@hasten/core"
import { OpenAi } from "@hasten/providers/openai"
import { Simulator } from "@hasten/testkit"
import { Cause, ConfigProvider, Effect, Exit, Fiber, Layer, Logger, Redacted, Stream } from "effect"
import { deferred, eventually, startScripted } from "./remote-support.js"

const key = Redacted.make("sk-hasten-test-0123456789")

const simulator = (options: Simulator.Options = {}) =>
  Effect.acquireRelease(Effect.promise(() => Simulator.start(options)), (sim) => Effect.promise(() => sim.close()))

const client = (sim: Simulator.Instance, options: Partial<OpenAi.Options> = {}) =>
  OpenAi.make({ apiKey: key, baseURL: sim.openaiBaseUrl, ...options })

const ask = (content: string, options?: Parameters<typeof CompletionRequest.user>[2]) =>
  CompletionRequest.user("gpt-4o-mini", content, options)

const reasonOf = <A>(exit: Exit.Exit<A, LlmError.LlmError>): LlmError.LlmErrorReason => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const error = Exit.isFailure(exit) ? exit.cause.reasons.find((reason) => reason._tag === "Fail") : undefined
  assert.isDefined(error)
  return (error as { error: LlmError.LlmError }).error.reason
}

describe("OpenAi rate-limit policy", () => {
  it("declares OpenAI's accounting for api.openai.com and none for other servers unless told", () => {
    assert.strictEqual(OpenAi.make({}).llm.rateLimitPolicy, RateLimitPolicy.openAi)
    assert.strictEqual(OpenAi.make({ baseURL: "https://api.openai.com/v1" }).llm.rateLimitPolicy, RateLimitPolicy.openAi)
    assert.strictEqual(OpenAi.make({ baseURL: "http://127.0.0.1:8000/v1" }).llm.rateLimitPolicy, RateLimitPolicy.none)
    assert.strictEqual(
      OpenAi.make({ baseURL: "http://127.0.0.1:8000/v1", rateLimitPolicy: RateLimitPolicy.openAi }).llm.rateLimitPolicy,
      RateLimitPolicy.openAi
    )
  })
})

describe("OpenAi against the simulator (official openai SDK)", () => {
  it.live("completes with text, usage, finish reason and parsed rate-limit headers", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ responder: () => "Hello from the simulator.", limits: { rpm: 100, tpm: 100_000 } })
      const { llm } = client(sim)
      const completion = yield* llm.complete(ask("Say hello"))
      assert.strictEqual(completion.text, "Hello from the simulator.")
      assert.strictEqual(completion.finishReason, "stop")
      assert.strictEqual(completion.provider, "openai")
      assert.strictEqual(completion.usage.inputTokens, sim.counters().inputTokens)
      assert.strictEqual(completion.usage.outputTokens, Simulator.tokenize("Hello from the simulator.").length)
      assert.isUndefined(completion.usage.estimated)
      assert.strictEqual(completion.rateLimit?.limitRequests, 100)
      assert.strictEqual(completion.rateLimit?.remainingRequests, 99)
      assert.strictEqual(completion.rateLimit?.limitTokens, 100_000)
      assert.strictEqual(sim.counters().requestsByRoute["POST /v1/chat/completions"], 1)
    }).pipe(Effect.scoped))

  it.live("maps every request field, max_tokens for compatible servers, providerOptions last", () =>
    Effect.gen(function*() {
      const bodies: Array<Record<string, unknown>> = []
      const sim = yield* simulator({
        responder: (request) => {
          bodies.push(request.body as Record<string, unknown>)
          return "{\"ok\":true}"
        }
      })
      const { llm } = client(sim)
      yield* llm.complete(CompletionRequest.makeUnsafe({
        model: "gpt-4o-mini",
        messages: [{ role: "system", content: "be terse" }, { role: "user", content: "json please" }],
        maxTokens: 32,
        temperature: 0,
        topP: 0.5,
        seed: 7,
        stop: ["\n\n"],
        frequencyPenalty: 0.1,
        presencePenalty: 0.2,
        responseFormat: { type: "json", name: "answer", schema: { type: "object", properties: { ok: { type: "boolean" } } } },
        providerOptions: { temperature: 0.3, user: "u-1" }
      }))
      const body = bodies[0]!
      assert.deepStrictEqual(body.messages, [{ role: "system", content: "be terse" }, { role: "user", content: "json please" }])
      assert.strictEqual(body.max_tokens, 32)
      assert.isUndefined(body.max_completion_tokens)
      assert.strictEqual(body.temperature, 0.3) // providerOptions win
      assert.strictEqual(body.top_p, 0.5)
      assert.strictEqual(body.seed, 7)
      assert.deepStrictEqual(body.stop, ["\n\n"])
      assert.strictEqual(body.frequency_penalty, 0.1)
      assert.strictEqual(body.presence_penalty, 0.2)
      assert.strictEqual(body.user, "u-1")
      assert.deepStrictEqual(body.response_format, {
        type: "json_schema",
        json_schema: { name: "answer", schema: { type: "object", properties: { ok: { type: "boolean" } } }, strict: true }
      })
      // api.openai.com gets the current field name
      const official = OpenAi.toChatBody(ask("x", { maxTokens: 5 }))
      assert.strictEqual((official as { max_completion_tokens?: number }).max_completion_tokens, 5)
      assert.isUndefined(official.max_tokens)
    }).pipe(Effect.scoped))

  it.live("streams deltas whose concatenation is the answer; the last chunk carries usage", () =>
    Effect.gen(function*() {
      const answer = "Streaming works one token after another until the end."
      const sim = yield* simulator({ responder: () => answer, limits: { rpm: 50 } })
      const { llm } = client(sim)
      const chunks = Array.from(yield* Stream.runCollect(llm.stream(ask("stream please"))))
      assert.isAbove(chunks.filter((chunk) => chunk.text.length > 0).length, 3)
      assert.strictEqual(chunks.map((chunk) => chunk.text).join(""), answer)
      const last = chunks.at(-1)!
      assert.strictEqual(last.usage?.outputTokens, Simulator.tokenize(answer).length)
      assert.isAbove(last.usage?.inputTokens ?? 0, 0)
      assert.strictEqual(chunks[0]!.rateLimit?.limitRequests, 50)
      const folded = yield* Completion.fromStream(llm.stream(ask("stream please")), { model: "gpt-4o-mini", provider: "openai" })
      assert.strictEqual(folded.text, answer)
      assert.strictEqual(folded.finishReason, "stop")
      assert.isUndefined(folded.usage.estimated)
    }).pipe(Effect.scoped))

  it.live("sends a raw prompt to /v1/completions, streamed and not", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ responder: (request) => `prompt was: ${request.prompt}` })
      const { llm } = client(sim)
      const request = CompletionRequest.makeUnsafe({ model: "gpt-3.5-turbo-instruct", messages: [], prompt: "Once upon" })
      const completion = yield* llm.complete(request)
      assert.strictEqual(completion.text, "prompt was: Once upon")
      const streamed = yield* Completion.fromStream(llm.stream(request), { model: request.model, provider: "openai" })
      assert.strictEqual(streamed.text, "prompt was: Once upon")
      assert.strictEqual(sim.counters().requestsByRoute["POST /v1/completions"], 2)
    }).pipe(Effect.scoped))

  it.live("embeds a batch in input order", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ embeddingDimensions: 8 })
      const { embedder } = client(sim)
      const result = yield* embedder.embed(["alpha", "beta", "gamma"])
      assert.strictEqual(result.vectors.length, 3)
      assert.strictEqual(result.vectors[0]!.length, 8)
      const again = yield* embedder.embed(["gamma"])
      assert.deepStrictEqual(again.vectors[0], result.vectors[2])
      const small = yield* embedder.embed(["alpha"], { dimensions: 4 })
      assert.strictEqual(small.vectors[0]!.length, 4)
    }).pipe(Effect.scoped))

  describe("errors from the simulator", () => {
    it.live("429 rate_limit_exceeded is retryable with retry-after and the requests scope", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ limits: { rpm: 1 } })
        const { llm } = client(sim)
        yield* llm.complete(ask("one"))
        const reason = reasonOf(yield* Effect.exit(llm.complete(ask("two"))))
        assert.strictEqual(reason._tag, "RateLimited")
        assert.strictEqual((reason as LlmError.RateLimited).scope, "requests")
        assert.isAbove((reason as LlmError.RateLimited).retryAfterMillis ?? 0, 0)
        assert.isTrue(LlmError.isRetryableReason(reason))
        assert.strictEqual(sim.counters().requests, 2, "SDK retries are off: one HTTP request per call")
      }).pipe(Effect.scoped))

    it.live("429 on tokens per minute gets the tokens scope", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ limits: { tpm: 50 } })
        const { llm } = client(sim)
        const reason = reasonOf(yield* Effect.exit(llm.complete(ask("a long question", { maxTokens: 100 }))))
        assert.strictEqual(reason._tag, "RateLimited")
        assert.strictEqual((reason as LlmError.RateLimited).scope, "tokens")
      }).pipe(Effect.scoped))

    it.live("insufficient_quota is a quota 429 and not retryable", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ limits: { quotaExhausted: true } })
        const reason = reasonOf(yield* Effect.exit(client(sim).llm.complete(ask("hi"))))
        assert.strictEqual(reason._tag, "RateLimited")
        assert.strictEqual((reason as LlmError.RateLimited).scope, "quota")
        assert.isFalse(LlmError.isRetryableReason(reason))
        assert.strictEqual(sim.counters().requests, 1)
      }).pipe(Effect.scoped))

    it.live("a wrong key is Unauthorized and the key appears nowhere in the error", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ apiKeys: ["the-right-key"] })
        const exit = yield* Effect.exit(client(sim).llm.complete(ask("hi")))
        const reason = reasonOf(exit)
        assert.strictEqual(reason._tag, "Unauthorized")
        const secret = Redacted.value(key)
        assert.notInclude(JSON.stringify(exit), secret)
        assert.notInclude(String(exit), secret)
      }).pipe(Effect.scoped))

    const faults = [
      { kind: "500" as const, tag: "ServerError" },
      { kind: "503" as const, tag: "Overloaded" },
      { kind: "reset" as const, tag: "Transport" }
    ]
    for (const { kind, tag } of faults) {
      it.live(`fault ${kind} maps to ${tag} (retryable), complete and stream`, () =>
        Effect.gen(function*() {
          const sim = yield* simulator({ faults: { rate: 1, kinds: [kind] } })
          const { llm } = client(sim)
          const reason = reasonOf(yield* Effect.exit(llm.complete(ask("hi"))))
          assert.strictEqual(reason._tag, tag)
          assert.isTrue(LlmError.isRetryableReason(reason))
          const streamed = reasonOf(yield* Effect.exit(Stream.runDrain(llm.stream(ask("hi")))))
          assert.strictEqual(streamed._tag, tag)
        }).pipe(Effect.scoped))
    }

    it.live("a hanging server times out as Timeout", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ faults: { rate: 1, kinds: ["hang"] } })
        const reason = reasonOf(yield* Effect.exit(client(sim, { timeout: 150 }).llm.complete(ask("hi"))))
        assert.strictEqual(reason._tag, "Timeout")
        assert.isTrue(LlmError.isRetryableReason(reason))
      }).pipe(Effect.scoped))
  })

  describe("error mapping table (scripted server, official SDK)", () => {
    const cases: ReadonlyArray<{
      readonly name: string
      readonly status: number
      readonly body: unknown
      readonly headers?: Record<string, string>
      readonly tag: LlmError.LlmErrorReason["_tag"]
      readonly retryable: boolean
      readonly scope?: LlmError.RateLimitScope
      readonly retryAfterMillis?: number
    }> = [
      {
        name: "context_length_exceeded",
        status: 400,
        body: {
          error: {
            message: "This model's maximum context length is 128000 tokens.",
            type: "invalid_request_error",
            code: "context_length_exceeded"
          }
        },
        tag: "ContextLengthExceeded",
        retryable: false
      },
      {
        name: "429 with retry-after-ms and exhausted token headers",
        status: 429,
        body: { error: { message: "Rate limit reached.", type: "requests", code: "rate_limit_exceeded" } },
        headers: { "retry-after-ms": "1500", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-limit-tokens": "1000" },
        tag: "RateLimited",
        retryable: true,
        scope: "tokens",
        retryAfterMillis: 1500
      },
      {
        name: "429 insufficient_quota",
        status: 429,
        body: { error: { message: "You exceeded your current quota.", type: "insufficient_quota", code: "insufficient_quota" } },
        tag: "RateLimited",
        retryable: false,
        scope: "quota"
      },
      { name: "200 without choices", status: 200, body: { id: "x", object: "chat.completion" }, tag: "BadResponse", retryable: false },
      {
        name: "401",
        status: 401,
        body: { error: { message: "bad key", type: "invalid_request_error", code: "invalid_api_key" } },
        tag: "Unauthorized",
        retryable: false
      },
      {
        name: "403",
        status: 403,
        body: { error: { message: "region not supported", type: "invalid_request_error" } },
        tag: "Unauthorized",
        retryable: false
      },
      {
        name: "404 unknown model",
        status: 404,
        body: { error: { message: "The model `nope` does not exist", type: "invalid_request_error", code: "model_not_found" } },
        tag: "InvalidRequest",
        retryable: false
      },
      {
        name: "400 bad field",
        status: 400,
        body: { error: { message: "Invalid 'temperature'", type: "invalid_request_error", param: "temperature" } },
        tag: "InvalidRequest",
        retryable: false
      },
      { name: "500", status: 500, body: { error: { message: "boom", type: "server_error" } }, tag: "ServerError", retryable: true },
      { name: "502", status: 502, body: { error: { message: "bad gateway", type: "server_error" } }, tag: "ServerError", retryable: true },
      {
        name: "503 overloaded",
        status: 503,
        body: { error: { message: "The engine is currently overloaded", type: "server_error" } },
        tag: "Overloaded",
        retryable: true,
        retryAfterMillis: 2000,
        headers: { "retry-after": "2" }
      }
    ]
    for (const row of cases) {
      it.live(`${row.name} -> ${row.tag}`, () =>
        Effect.gen(function*() {
          const server = yield* Effect.acquireRelease(
            Effect.promise(() =>
              startScripted(() => ({ status: row.status, body: row.body, ...(row.headers ? { headers: row.headers } : {}) }))
            ),
            (server) => Effect.promise(() => server.close())
          )
          const { llm } = OpenAi.make({ apiKey: key, baseURL: `${server.url}/v1` })
          const exit = yield* Effect.exit(llm.complete(ask("hi")))
          const reason = reasonOf(exit)
          assert.strictEqual(reason._tag, row.tag)
          assert.strictEqual(LlmError.isRetryableReason(reason), row.retryable)
          if (row.scope !== undefined) assert.strictEqual((reason as LlmError.RateLimited).scope, row.scope)
          if (row.retryAfterMillis !== undefined) {
            assert.strictEqual((reason as LlmError.RateLimited | LlmError.Overloaded).retryAfterMillis, row.retryAfterMillis)
          }
          assert.strictEqual(server.requests.length, 1, "no SDK retry")
        }).pipe(Effect.scoped))
    }

    it.live("a server echoing the key in its error body never leaks it", () =>
      Effect.gen(function*() {
        const server = yield* Effect.acquireRelease(
          Effect.promise(() =>
            startScripted((request) => ({
              status: 401,
              body: {
                error: { message: `Incorrect API key provided: ${String(request.headers.authorization)}`, type: "invalid_request_error" }
              }
            }))
          ),
          (server) => Effect.promise(() => server.close())
        )
        const exit = yield* Effect.exit(OpenAi.make({ apiKey: key, baseURL: `${server.url}/v1` }).llm.complete(ask("hi")))
        assert.strictEqual(server.requests[0]!.headers.authorization, `Bearer ${Redacted.value(key)}`)
        const reason = reasonOf(exit)
        assert.include(reason.description, "[redacted]")
        assert.notInclude(JSON.stringify(exit), Redacted.value(key))
        assert.notInclude(String(exit), Redacted.value(key))
      }).pipe(Effect.scoped))
  })

  it.live("an error payload in the middle of a stream is a retryable ServerError, after the text so far", () =>
    Effect.gen(function*() {
      const chunk = (content: string) =>
        `data: ${
          JSON.stringify({
            id: "c1",
            object: "chat.completion.chunk",
            created: 1,
            model: "gpt-4o-mini",
            choices: [{ index: 0, delta: { content }, finish_reason: null }]
          })
        }\n\n`
      const sse = chunk("Hel") + chunk("lo") +
        `data: ${JSON.stringify({ error: { message: "The server had an error", type: "server_error" } })}\n\n`
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startScripted(() => ({ status: 200, raw: sse, headers: { "content-type": "text/event-stream" } }))),
        (server) => Effect.promise(() => server.close())
      )
      const texts: Array<string> = []
      const exit = yield* Effect.exit(Stream.runForEach(
        OpenAi.make({ apiKey: key, baseURL: `${server.url}/v1` }).llm.stream(ask("hi")),
        (chunk) => Effect.sync(() => texts.push(chunk.text))
      ))
      const reason = reasonOf(exit)
      assert.strictEqual(reason._tag, "ServerError")
      assert.isTrue(LlmError.isRetryableReason(reason))
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
        const fiber = yield* Effect.forkChild(client(sim).llm.complete(ask("never answered")))
        yield* Effect.promise(() => arrived.promise)
        assert.strictEqual(sim.counters().inFlight, 1)
        yield* Fiber.interrupt(fiber)
        yield* eventually(() => sim.counters().aborted === 1 && sim.counters().inFlight === 0)
      }).pipe(Effect.scoped))

    it.live("stopping a stream early aborts the HTTP stream", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({
          responder: () => "one two three four five six seven eight nine ten eleven twelve",
          latency: { ttftMs: 0, perTokenMs: 200 }
        })
        const first = yield* Stream.runCollect(
          client(sim).llm.stream(ask("stream")).pipe(Stream.filter((chunk) => chunk.text.length > 0), Stream.take(1))
        )
        assert.strictEqual(Array.from(first).length, 1)
        yield* eventually(() => sim.counters().aborted === 1 && sim.counters().inFlight === 0)
        assert.isBelow(sim.counters().outputTokens, 12)
      }).pipe(Effect.scoped))
  })

  describe("configuration", () => {
    const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))

    it.live("keys never reach logs: a failed call logged with its cause, and the options object", () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const capture = Logger.make((options) => {
          lines.push(`${JSON.stringify(options.message)} ${Cause.pretty(options.cause)}`)
        })
        const sim = yield* simulator({ apiKeys: ["someone-else"] })
        const options = { apiKey: key, baseURL: sim.openaiBaseUrl }
        yield* OpenAi.make(options).llm.complete(ask("hi")).pipe(
          Effect.tapCause((cause) => Effect.logError("call failed", cause)),
          Effect.ignore,
          Effect.andThen(Effect.logInfo("provider options", options)),
          Effect.provide(Logger.layer([capture]))
        )
        assert.strictEqual(lines.length, 2)
        assert.include(lines[0]!, "Unauthorized")
        for (const line of lines) assert.notInclude(line, Redacted.value(key))
      }).pipe(Effect.scoped))

    it.live("layerConfig fails at construction naming OPENAI_API_KEY when it is missing", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Layer.build(OpenAi.layerConfig()).pipe(Effect.scoped, withEnv({})))
        assert.isTrue(Exit.isFailure(exit))
        assert.include(String(exit), "OPENAI_API_KEY")
        const error = yield* Effect.flip(Layer.build(OpenAi.layerConfig()).pipe(Effect.scoped, withEnv({})))
        assert.instanceOf(error, OpenAi.ProviderError)
        assert.strictEqual(error.reason._tag, "ProviderConfigError")
        assert.deepStrictEqual(error.reason._tag === "ProviderConfigError" ? [error.reason.provider, error.reason.variable] : [], [
          "openai",
          "OPENAI_API_KEY"
        ])
      }))

    it.live("layerConfig reads OPENAI_API_KEY and OPENAI_BASE_URL and provides Llm and Embedder", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ apiKeys: ["from-env-key-42"], responder: () => "configured" })
        const { completion, vectors } = yield* Effect.gen(function*() {
          const completion = yield* Llm.complete(ask("hi"))
          const vectors = yield* Embedder.embed(["a"])
          return { completion, vectors }
        }).pipe(
          Effect.provide(OpenAi.layerConfig()),
          withEnv({ OPENAI_API_KEY: "from-env-key-42", OPENAI_BASE_URL: sim.openaiBaseUrl })
        )
        assert.strictEqual(completion.text, "configured")
        assert.strictEqual(vectors.vectors.length, 1)
      }).pipe(Effect.scoped))
  })
})
