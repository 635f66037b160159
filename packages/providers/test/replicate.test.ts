import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Llm, LlmError } from "@hasten/core"
import { Replicate } from "@hasten/providers/replicate"
import { Simulator } from "@hasten/testkit"
import { ConfigProvider, Context, Effect, Exit, Fiber, Layer, Redacted, Scope, Stream } from "effect"
import { deferred, eventually } from "./remote-support.js"

const token = Redacted.make("r8_hasten_test_token_0123")
const model = "meta/meta-llama-3-70b-instruct"
const createRoute = "POST /v1/models/:owner/:name/predictions"

const simulator = (options: Simulator.Options = {}) =>
  Effect.acquireRelease(Effect.promise(() => Simulator.start(options)), (sim) => Effect.promise(() => sim.close()))

const client = (sim: Simulator.Instance, options: Partial<Replicate.Options> = {}) =>
  Replicate.make({ apiToken: token, baseUrl: sim.replicateBaseUrl, poll: { initial: 10, max: 50 }, ...options })

const ask = (content: string, options?: Parameters<typeof CompletionRequest.user>[2]) => CompletionRequest.user(model, content, options)

const reasonOf = <A>(exit: Exit.Exit<A, LlmError.LlmError>): LlmError.LlmErrorReason => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const failure = Exit.isFailure(exit) ? exit.cause.reasons.find((reason) => reason._tag === "Fail") : undefined
  assert.isDefined(failure)
  return (failure as { error: LlmError.LlmError }).error.reason
}

/** A fetch that drops `metrics` from prediction bodies: a model that reports no token counts. */
const withoutMetrics: typeof globalThis.fetch = async (input, init) => {
  const response = await fetch(input, init)
  if (!(response.headers.get("content-type") ?? "").includes("json")) return response
  const body = await response.json() as Record<string, unknown>
  delete body.metrics
  return new Response(JSON.stringify(body), { status: response.status, headers: response.headers })
}

describe("Replicate against the simulator (official replicate SDK)", () => {
  it.live("completes in one Prefer: wait request with usage from the prediction's metrics", () =>
    Effect.gen(function*() {
      const seen: Array<Simulator.ResponderRequest> = []
      const sim = yield* simulator({
        responder: (request) => {
          seen.push(request)
          return "Llamas are camelids."
        }
      })
      const completion = yield* client(sim).complete(CompletionRequest.makeUnsafe({
        model,
        messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "What is a llama?" }],
        maxTokens: 40,
        temperature: 0.2,
        topP: 0.9,
        seed: 11,
        stop: ["\n", "###"]
      }))
      assert.strictEqual(completion.text, "Llamas are camelids.")
      assert.strictEqual(completion.provider, "replicate")
      assert.strictEqual(completion.usage.outputTokens, Simulator.tokenize("Llamas are camelids.").length)
      assert.strictEqual(completion.usage.inputTokens, sim.counters().inputTokens)
      assert.isUndefined(completion.usage.estimated)
      assert.strictEqual(completion.facts?.polls, 0)
      const counters = sim.counters()
      assert.strictEqual(counters.requestsByRoute[createRoute], 1)
      assert.strictEqual(counters.requestsByRoute["GET /v1/predictions/:id"], undefined, "Prefer: wait needed no polling")
      assert.deepStrictEqual((seen[0]!.body as { input: unknown }).input, {
        prompt: "What is a llama?",
        system_prompt: "Be brief.",
        max_tokens: 40,
        temperature: 0.2,
        top_p: 0.9,
        seed: 11,
        stop_sequences: "\n,###"
      })
      assert.strictEqual(counters.cancellations, 0)
    }).pipe(Effect.scoped))

  it("maps inputs per model family", () => {
    const request = CompletionRequest.makeUnsafe({
      model: "meta/llama-2-70b-chat",
      messages: [{ role: "user", content: "hi" }],
      maxTokens: 9,
      providerOptions: { top_k: 3, temperature: 0.5 }
    })
    assert.deepStrictEqual(Replicate.toInput(request, request.model), { prompt: "hi", max_new_tokens: 9, top_k: 3, temperature: 0.5 })
    const chat = CompletionRequest.makeUnsafe({
      model,
      messages: [
        { role: "system", content: "S" },
        { role: "user", content: "U1" },
        { role: "assistant", content: "A1" },
        { role: "user", content: "U2" }
      ]
    })
    const input = Replicate.toInput(chat, model)
    assert.strictEqual(input.prompt_template, "{prompt}")
    assert.strictEqual(
      input.prompt,
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
  })

  it("polls with capped exponential backoff, not a fixed interval", () => {
    const delays = Array.from({ length: 8 }, (_, attempt) => Replicate.pollDelay(attempt))
    assert.deepStrictEqual(delays, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000])
    assert.deepStrictEqual(
      Array.from({ length: 4 }, (_, attempt) => Replicate.pollDelay(attempt, { initial: "100 millis", factor: 3, max: "1 second" })),
      [100, 300, 900, 1000]
    )
  })

  it("joins token arrays once", () => {
    assert.strictEqual(Replicate.joinOutput(["a", "b", " c"]), "ab c")
    assert.strictEqual(Replicate.joinOutput("whole"), "whole")
    assert.strictEqual(Replicate.joinOutput(null), "")
  })

  it.live("reports length when the model stopped at maxTokens (complete and stream)", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ responder: () => "one two three four five six seven eight" })
      const cut = yield* client(sim).complete(ask("count", { maxTokens: 3 }))
      assert.strictEqual(cut.finishReason, "length")
      assert.strictEqual(cut.usage.outputTokens, 3)
      const streamed = yield* Completion.fromStream(client(sim).stream(ask("count", { maxTokens: 3 })), { model, provider: "replicate" })
      assert.strictEqual(streamed.finishReason, "length")
      const whole = yield* client(sim).complete(ask("count", { maxTokens: 50 }))
      assert.strictEqual(whole.finishReason, "stop")
    }).pipe(Effect.scoped))

  it.live("falls back to polling when the prediction outlives Prefer: wait", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ responder: () => "Slow but done.", latency: { ttftMs: 1300 } })
      const completion = yield* client(sim, { preferWaitSeconds: 1 }).complete(ask("take your time"))
      assert.strictEqual(completion.text, "Slow but done.")
      assert.isAbove(completion.facts?.polls as number, 0)
      assert.isAtLeast(sim.counters().requestsByRoute["GET /v1/predictions/:id"] ?? 0, 1)
      assert.strictEqual(sim.counters().cancellations, 0)
    }).pipe(Effect.scoped))

  it.live("streams output events; the last chunk carries usage and the prediction id", () =>
    Effect.gen(function*() {
      const answer = "Streaming from a prediction, token by token, until done."
      const sim = yield* simulator({ responder: () => answer, latency: { perTokenMs: 2 } })
      const chunks = Array.from(yield* Stream.runCollect(client(sim).stream(ask("stream it"))))
      assert.strictEqual(chunks.map((chunk) => chunk.text).join(""), answer)
      assert.isAbove(chunks.filter((chunk) => chunk.text.length > 0).length, 3)
      const last = chunks.at(-1)!
      assert.strictEqual(last.finishReason, "stop")
      assert.strictEqual(last.usage?.outputTokens, Simulator.tokenize(answer).length)
      assert.isUndefined(last.usage?.estimated)
      assert.isString(last.facts?.predictionId)
      assert.strictEqual(sim.counters().requestsByRoute["GET /replicate/stream/:id"], 1)
      const folded = yield* Completion.fromStream(client(sim).stream(ask("stream it")), { model, provider: "replicate" })
      assert.strictEqual(folded.text, answer)
      assert.strictEqual(sim.counters().cancellations, 0)
    }).pipe(Effect.scoped))

  it.live("estimates usage with gpt-tokenizer when the prediction reports no metrics", () =>
    Effect.gen(function*() {
      const sim = yield* simulator({ responder: () => "An answer without metrics." })
      const llm = client(sim, { fetch: withoutMetrics })
      const completion = yield* llm.complete(ask("count my tokens"))
      assert.strictEqual(completion.text, "An answer without metrics.")
      assert.isTrue(completion.usage.estimated)
      assert.isAbove(completion.usage.inputTokens, 0)
      assert.isAbove(completion.usage.outputTokens, 0)
      const streamed = yield* Completion.fromStream(llm.stream(ask("count my tokens")), { model, provider: "replicate" })
      assert.isTrue(streamed.usage.estimated)
      assert.strictEqual(streamed.usage.outputTokens, completion.usage.outputTokens)
    }).pipe(Effect.scoped))

  describe("errors (one HTTP request per call: the SDK's own retries are suppressed)", () => {
    const cases: ReadonlyArray<{
      readonly name: string
      readonly options: Simulator.Options
      readonly tag: LlmError.LlmErrorReason["_tag"]
      readonly retryable: boolean
      readonly scope?: LlmError.RateLimitScope
    }> = [
      {
        name: "402 insufficient credit",
        options: { limits: { quotaExhausted: true } },
        tag: "RateLimited",
        retryable: false,
        scope: "quota"
      },
      { name: "401 bad token", options: { apiKeys: ["r8_other"] }, tag: "Unauthorized", retryable: false },
      { name: "500", options: { faults: { rate: 1, kinds: ["500"] } }, tag: "ServerError", retryable: true },
      { name: "503 overloaded", options: { faults: { rate: 1, kinds: ["503"] } }, tag: "Overloaded", retryable: true },
      { name: "connection reset", options: { faults: { rate: 1, kinds: ["reset"] } }, tag: "Transport", retryable: true }
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
          assert.strictEqual(sim.counters().requests, 1)
          assert.notInclude(String(exit), Redacted.value(token))
          const streamed = reasonOf(yield* Effect.exit(Stream.runDrain(client(sim).stream(ask("hi")))))
          assert.strictEqual(streamed._tag, row.tag)
          assert.strictEqual(sim.counters().requests, 2)
        }).pipe(Effect.scoped))
    }

    it.live("429 is a retryable RateLimited with retry-after, sent once", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ limits: { rpm: 1 } })
        yield* client(sim).complete(ask("one"))
        const reason = reasonOf(yield* Effect.exit(client(sim).complete(ask("two"))))
        assert.strictEqual(reason._tag, "RateLimited")
        assert.isAbove((reason as LlmError.RateLimited).retryAfterMillis ?? 0, 0)
        assert.isTrue(LlmError.isRetryableReason(reason))
        assert.strictEqual(sim.counters().requestsByRoute[createRoute], 2)
      }).pipe(Effect.scoped))

    it.live("a model name that is not owner/name fails before any request, naming it", () =>
      Effect.gen(function*() {
        const sim = yield* simulator()
        const reason = reasonOf(yield* Effect.exit(client(sim).complete(CompletionRequest.user("llama-3", "hi"))))
        assert.strictEqual(reason._tag, "InvalidRequest")
        assert.include(reason.description, "\"llama-3\"")
        assert.strictEqual(sim.counters().requests, 0)
      }).pipe(Effect.scoped))

    it.live("an invalid input is InvalidRequest (422)", () =>
      Effect.gen(function*() {
        const sim = yield* simulator()
        const reason = reasonOf(yield* Effect.exit(client(sim).complete(ask("hi", { providerOptions: { max_tokens: "many" } }))))
        assert.strictEqual(reason._tag, "InvalidRequest")
        assert.include(reason.description, "max_tokens")
      }).pipe(Effect.scoped))
  })

  describe("cancellation: a prediction never keeps running after we gave up", () => {
    it.live("interrupting while polling cancels the prediction before the interruption returns", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ latency: { ttftMs: 5_000 } })
        const fiber = yield* Effect.forkChild(client(sim, { preferWaitSeconds: 1 }).complete(ask("slow")))
        yield* eventually(() => (sim.counters().requestsByRoute["GET /v1/predictions/:id"] ?? 0) >= 1)
        yield* Fiber.interrupt(fiber)
        assert.strictEqual(sim.counters().cancellations, 1)
        assert.strictEqual(sim.counters().inFlight, 0)
      }).pipe(Effect.scoped))

    it.live("interrupting during Prefer: wait cancels the prediction as soon as its id arrives; closing the layer waits for it", () =>
      Effect.gen(function*() {
        const arrived = deferred()
        const sim = yield* simulator({
          responder: () => {
            arrived.resolve()
            return "never delivered"
          },
          latency: { ttftMs: 10_000 }
        })
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          Replicate.layer({ apiToken: token, baseUrl: sim.replicateBaseUrl, preferWaitSeconds: 1 }),
          scope
        )
        const llm = Context.get(context, Llm.Llm)
        const fiber = yield* Effect.forkChild(llm.complete(ask("slow")))
        yield* Effect.promise(() => arrived.promise)
        yield* Fiber.interrupt(fiber)
        assert.strictEqual(sim.counters().inFlight, 1, "still running: its id is not known yet")
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual(sim.counters().cancellations, 1)
        assert.strictEqual(sim.counters().inFlight, 0)
      }).pipe(Effect.scoped))

    it.live("a timeout fails with Timeout and cancels the prediction", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ latency: { ttftMs: 10_000 } })
        const llm = client(sim, { preferWaitSeconds: 1, timeout: "1200 millis" })
        const reason = reasonOf(yield* Effect.exit(llm.complete(ask("slow"))))
        assert.strictEqual(reason._tag, "Timeout")
        assert.strictEqual(sim.counters().cancellations, 1)
        assert.strictEqual(sim.counters().inFlight, 0)
      }).pipe(Effect.scoped))

    it.live("a stream that outlives its timeout fails with Timeout and cancels the prediction", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({
          responder: () => "one two three four five six seven eight nine ten",
          latency: { perTokenMs: 150 }
        })
        const texts: Array<string> = []
        const exit = yield* Effect.exit(Stream.runForEach(
          client(sim, { timeout: "400 millis" }).stream(ask("stream")),
          (chunk) => Effect.sync(() => texts.push(chunk.text))
        ))
        assert.strictEqual(reasonOf(exit)._tag, "Timeout")
        assert.isAbove(texts.join("").length, 0)
        assert.strictEqual(sim.counters().cancellations, 1)
        assert.strictEqual(sim.counters().inFlight, 0)
      }).pipe(Effect.scoped))

    it.live("stopping a stream early cancels the prediction", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({
          responder: () => "one two three four five six seven eight nine ten",
          latency: { perTokenMs: 100 }
        })
        const first = yield* Stream.runCollect(
          client(sim).stream(ask("stream")).pipe(Stream.filter((chunk) => chunk.text.length > 0), Stream.take(1))
        )
        assert.strictEqual(Array.from(first).length, 1)
        assert.strictEqual(sim.counters().cancellations, 1)
        assert.strictEqual(sim.counters().inFlight, 0)
      }).pipe(Effect.scoped))
  })

  describe("configuration", () => {
    const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))

    it.live("layerConfig fails naming REPLICATE_API_TOKEN when it is missing", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Layer.build(Replicate.layerConfig()).pipe(Effect.scoped, withEnv({})))
        assert.isTrue(Exit.isFailure(exit))
        assert.include(String(exit), "REPLICATE_API_TOKEN")
      }))

    it.live("layerConfig reads REPLICATE_API_TOKEN and REPLICATE_BASE_URL", () =>
      Effect.gen(function*() {
        const sim = yield* simulator({ apiKeys: ["r8_from_env"], responder: () => "configured" })
        const completion = yield* Llm.complete(ask("hi")).pipe(
          Effect.provide(Replicate.layerConfig()),
          withEnv({ REPLICATE_API_TOKEN: "r8_from_env", REPLICATE_BASE_URL: sim.replicateBaseUrl })
        )
        assert.strictEqual(completion.text, "configured")
      }).pipe(Effect.scoped))
  })
})
