/**
 * No request field is silently dropped: for every provider (and every OpenAI-compatible
 * server kind) each field either changes what goes on the wire, is refused with an
 * `InvalidRequest` naming it and the provider, or only tells requests apart (`trial`).
 * Then the same through the official SDKs against the simulator: compat parameters,
 * logprobs, Anthropic's JSON through a forced tool, Replicate's model input schemas.
 */
import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, FieldSupport, Llm, LlmError } from "@hasten/core"
import { Anthropic } from "@hasten/providers/anthropic"
import { OpenAi } from "@hasten/providers/openai"
import { Replicate } from "@hasten/providers/replicate"
import { Router } from "@hasten/providers/router"
import { Simulator } from "@hasten/testkit"
import { Context, Effect, Layer, Redacted, Stream } from "effect"
import { startScripted } from "./remote-support.js"

type Input = CompletionRequest.CompletionRequestInput
const user = { model: "m", messages: [{ role: "user" as const, content: "hi" }] }

/** Two requests that differ only in one field; the record's type makes a new field a compile error here. */
const pairs: Record<CompletionRequest.Field, readonly [Input, Input]> = {
  model: [user, { ...user, model: "n" }],
  messages: [user, { ...user, messages: [{ role: "user", content: "ho" }] }],
  prompt: [{ model: "m", messages: [], prompt: "a" }, { model: "m", messages: [], prompt: "b" }],
  maxTokens: [user, { ...user, maxTokens: 5 }],
  temperature: [user, { ...user, temperature: 0.5 }],
  topP: [user, { ...user, topP: 0.5 }],
  topK: [user, { ...user, topK: 5 }],
  seed: [user, { ...user, seed: 1 }],
  stop: [user, { ...user, stop: ["x"] }],
  adapter: [user, { ...user, adapter: "lora-a" }],
  responseFormat: [user, { ...user, responseFormat: { type: "json", schema: { type: "object" } } }],
  repeatPenalty: [user, { ...user, repeatPenalty: 1.2 }],
  frequencyPenalty: [user, { ...user, frequencyPenalty: 0.3 }],
  presencePenalty: [user, { ...user, presencePenalty: 0.3 }],
  penaltyWindow: [user, { ...user, penaltyWindow: 32 }],
  logprobs: [user, { ...user, logprobs: true }],
  topLogprobs: [{ ...user, logprobs: true }, { ...user, logprobs: true, topLogprobs: 2 }],
  contextOverflow: [user, { ...user, contextOverflow: "truncate" }],
  providerOptions: [user, { ...user, providerOptions: { extra: 1 } }],
  trial: [user, { ...user, trial: 1 }]
}

interface Wire {
  readonly name: string
  readonly support: FieldSupport.FieldSupport
  /** The refusal of a request, if any (field rules, and for Replicate the model's schema). */
  readonly refusal: (request: CompletionRequest.CompletionRequest) => LlmError.LlmError | undefined
  readonly body: (request: CompletionRequest.CompletionRequest) => unknown
}

const openAiWire = (compat: OpenAi.Compat): Wire => ({
  name: `openai (${compat})`,
  support: OpenAi.fieldSupport(compat),
  refusal: (request) => FieldSupport.firstRefusal("openai", OpenAi.fieldSupport(compat), request),
  body: (request) =>
    request.messages.length === 0
      ? OpenAi.toCompletionBody(request, { compat })
      : OpenAi.toChatBody(request, { compat, baseURL: "http://127.0.0.1:1/v1" })
})

const replicateWire = (declared: ReadonlySet<string>, label: string): Wire => ({
  name: `replicate (${label})`,
  support: Replicate.fieldSupport,
  refusal: (request) =>
    FieldSupport.firstRefusal("replicate", Replicate.fieldSupport, request) ??
      Replicate.schemaRefusal("acme/model", Replicate.schemaFields(request), declared),
  // the model is the prediction's route, the rest its input
  body: (request) => ({ model: request.model, input: Replicate.toInput(request, request.model, declared) })
})

const allReplicateInputs = new Set(Object.values(Replicate.modelInputs).flat())

const wires: ReadonlyArray<Wire> = [
  ...OpenAi.compats.map(openAiWire),
  {
    name: "anthropic",
    support: Anthropic.fieldSupport,
    refusal: (request) => FieldSupport.firstRefusal("anthropic", Anthropic.fieldSupport, request),
    body: (request) => Anthropic.toBody(request)
  },
  replicateWire(allReplicateInputs, "a model declaring every input"),
  replicateWire(new Set(["prompt", "system_prompt", "max_tokens", "temperature", "top_p"]), "a model declaring the basics")
]

describe("no silent drops", () => {
  for (const wire of wires) {
    it(`${wire.name}: every field changes the wire body, is refused naming itself, or only tells requests apart`, () => {
      for (const field of CompletionRequest.fields) {
        const [a, b] = pairs[field].map((input) => CompletionRequest.makeUnsafe(input))
        const refusal = wire.refusal(b!)
        if (refusal !== undefined && wire.refusal(a!) !== undefined) {
          // the pair's common part is refused already (topLogprobs needs logprobs): the field never reaches the wire
          assert.strictEqual(refusal.reason._tag, "InvalidRequest", `${wire.name}: ${field}`)
          continue
        }
        if (refusal !== undefined) {
          assert.strictEqual(refusal.reason._tag, "InvalidRequest", `${wire.name}: ${field}`)
          assert.strictEqual((refusal.reason as LlmError.InvalidRequest).field, field, `${wire.name}: ${field} refused as another field`)
          assert.include(refusal.message, "does not support the request field", `${wire.name}: ${field}`)
          continue
        }
        assert.notStrictEqual(wire.support[field]._tag, "refused", `${wire.name}: ${field} is declared refused but passed`)
        if (wire.support[field]._tag === "identity") {
          assert.deepStrictEqual(wire.body(b!), wire.body(a!), `${wire.name}: identity field ${field} reached the wire`)
        } else {
          assert.notDeepEqual(wire.body(b!), wire.body(a!), `${wire.name}: ${field} was accepted and dropped`)
        }
      }
    })
  }

  it("remote providers accept contextOverflow: \"error\" (what they do anyway) and refuse the other strategies", () => {
    for (const wire of wires) {
      assert.isUndefined(wire.refusal(CompletionRequest.makeUnsafe({ ...user, contextOverflow: "error" })), wire.name)
      assert.strictEqual(
        (wire.refusal(CompletionRequest.makeUnsafe({ ...user, contextOverflow: "shift" }))?.reason as LlmError.InvalidRequest | undefined)
          ?.field,
        "contextOverflow"
      )
    }
  })
})

const simulator = (options: Simulator.Options = {}) =>
  Effect.acquireRelease(Effect.promise(() => Simulator.start(options)), (sim) => Effect.promise(() => sim.close()))

const recording = () => {
  const bodies: Array<Record<string, unknown>> = []
  return {
    bodies,
    responder: (request: Simulator.ResponderRequest) => {
      bodies.push(request.body as Record<string, unknown>)
      return "{\"ok\": true}"
    }
  }
}

const ask = (input: Partial<Input>) => CompletionRequest.makeUnsafe({ ...user, model: "served-model", ...input })
const openAiKey = Redacted.make("sk-hasten-test-0123456789")

describe("OpenAI-compatible servers by kind (official openai SDK, simulator)", () => {
  it.live("vLLM gets top_k, repetition_penalty and the adapter as the model; llama.cpp gets top_k, repeat_penalty, repeat_last_n", () =>
    Effect.gen(function*() {
      const { bodies, responder } = recording()
      const sim = yield* simulator({ responder })
      const vllm = OpenAi.make({ apiKey: openAiKey, baseURL: sim.openaiBaseUrl, compat: "vllm", name: "vllm" }).llm
      yield* vllm.complete(ask({ topK: 7, repeatPenalty: 1.1, adapter: "sql-lora" }))
      assert.strictEqual(bodies[0]!.top_k, 7)
      assert.strictEqual(bodies[0]!.repetition_penalty, 1.1)
      assert.strictEqual(bodies[0]!.model, "sql-lora")
      const llamaCpp = OpenAi.make({ apiKey: openAiKey, baseURL: sim.openaiBaseUrl, compat: "llama.cpp" }).llm
      yield* llamaCpp.complete(ask({ topK: 7, repeatPenalty: 1.1, penaltyWindow: 32 }))
      assert.strictEqual(bodies[1]!.top_k, 7)
      assert.strictEqual(bodies[1]!.repeat_penalty, 1.1)
      assert.strictEqual(bodies[1]!.repeat_last_n, 32)
      assert.strictEqual(bodies[1]!.model, "served-model")
      assert.isUndefined(bodies[1]!.repetition_penalty)
    }).pipe(Effect.scoped))

  it.live("an undeclared server and Ollama refuse topK before any HTTP request, naming the field and provider", () =>
    Effect.gen(function*() {
      const sim = yield* simulator()
      for (const compat of [undefined, "ollama"] as const) {
        const { llm } = OpenAi.make({ apiKey: openAiKey, baseURL: sim.openaiBaseUrl, name: "compat", compat })
        const error = yield* Effect.flip(llm.complete(ask({ topK: 7 })))
        assert.strictEqual(error.provider, "compat")
        assert.strictEqual((error.reason as LlmError.InvalidRequest).field, "topK")
        assert.isFalse(error.retryable)
        const streamed = yield* Effect.flip(Stream.runDrain(llm.stream(ask({ penaltyWindow: 8 }))))
        assert.strictEqual((streamed.reason as LlmError.InvalidRequest).field, "penaltyWindow")
      }
      assert.strictEqual(sim.counters().requests, 0)
    }).pipe(Effect.scoped))
})

describe("OpenAI logprobs (official openai SDK, simulator)", () => {
  it.live("complete and stream return the simulator's per-token logprobs with the asked alternatives", () =>
    Effect.gen(function*() {
      const sim = yield* simulator()
      const { llm } = OpenAi.make({ apiKey: openAiKey, baseURL: sim.openaiBaseUrl })
      const request = ask({ logprobs: true, topLogprobs: 2, temperature: 0 })
      const completion = yield* llm.complete(request)
      const logprobs = completion.logprobs!
      assert.strictEqual(logprobs.map((entry) => entry.token).join(""), completion.text)
      for (const entry of logprobs) {
        assert.isAtMost(entry.logprob, 0)
        assert.deepStrictEqual(entry.bytes, [...Buffer.from(entry.token, "utf8")])
        assert.strictEqual(entry.topLogprobs!.length, 2)
        assert.strictEqual(entry.topLogprobs![0]!.token, entry.token)
      }
      const streamed = yield* Completion.fromStream(llm.stream(request), { model: request.model, provider: "openai" })
      assert.deepStrictEqual(streamed.logprobs, logprobs)
      const plain = yield* llm.complete(ask({ temperature: 0 }))
      assert.isUndefined(plain.logprobs)
    }).pipe(Effect.scoped))

  it.live("a raw prompt gets the legacy completions' logprobs; more than 5 alternatives there is refused", () =>
    Effect.gen(function*() {
      const sim = yield* simulator()
      const { llm } = OpenAi.make({ apiKey: openAiKey, baseURL: sim.openaiBaseUrl })
      const raw = CompletionRequest.makeUnsafe({ model: "m", messages: [], prompt: "Once", logprobs: true, topLogprobs: 3 })
      const completion = yield* llm.complete(raw)
      assert.strictEqual(completion.logprobs!.map((entry) => entry.token).join(""), completion.text)
      assert.strictEqual(completion.logprobs![0]!.topLogprobs!.length, 3)
      const streamed = yield* Completion.fromStream(llm.stream(raw), { model: "m", provider: "openai" })
      assert.deepStrictEqual(streamed.logprobs, completion.logprobs)
      const error = yield* Effect.flip(
        llm.complete(CompletionRequest.makeUnsafe({ model: "m", messages: [], prompt: "Once", logprobs: true, topLogprobs: 6 }))
      )
      assert.strictEqual((error.reason as LlmError.InvalidRequest).field, "topLogprobs")
    }).pipe(Effect.scoped))

  it.live("an endpoint that ignores logprobs fails with BadResponse instead of a completion without them", () =>
    Effect.gen(function*() {
      const sse = [
        {
          id: "x",
          object: "chat.completion.chunk",
          created: 0,
          model: "m",
          choices: [{ index: 0, delta: { content: "hi" }, logprobs: null, finish_reason: null }]
        },
        {
          id: "x",
          object: "chat.completion.chunk",
          created: 0,
          model: "m",
          choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }]
        }
      ].map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`).join("") + "data: [DONE]\n\n"
      const server = yield* Effect.acquireRelease(
        Effect.promise(() =>
          startScripted((request) =>
            JSON.parse(request.body).stream === true ?
              {
                status: 200,
                raw: sse,
                headers: { "content-type": "text/event-stream" }
              } :
              ({
                status: 200,
                body: {
                  id: "x",
                  object: "chat.completion",
                  created: 0,
                  model: "m",
                  choices: [{ index: 0, message: { role: "assistant", content: "hi" }, logprobs: null, finish_reason: "stop" }],
                  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
                }
              })
          )
        ),
        (server) => Effect.promise(() => server.close())
      )
      const { llm } = OpenAi.make({ apiKey: openAiKey, baseURL: `${server.url}/v1` })
      const error = yield* Effect.flip(llm.complete(ask({ logprobs: true })))
      assert.strictEqual(error.reason._tag, "BadResponse")
      assert.match(error.message, /logprobs/)
      const streamed = yield* Effect.flip(Stream.runCollect(llm.stream(ask({ logprobs: true }))))
      assert.strictEqual(streamed.reason._tag, "BadResponse")
      // without logprobs asked, the same stream is fine
      const text = Array.from(yield* Stream.runCollect(llm.stream(ask({})))).map((chunk) => chunk.text).join("")
      assert.strictEqual(text, "hi")
    }).pipe(Effect.scoped))
})

describe("Anthropic JSON output through a forced tool (official SDK, simulator)", () => {
  it.live("sends the schema as the forced tool and returns its input as the text, complete and streamed", () =>
    Effect.gen(function*() {
      const seen: Array<Record<string, unknown>> = []
      const sim = yield* simulator({
        responder: (request) => {
          seen.push(request.body as Record<string, unknown>)
          return "{\"answer\": 4}"
        }
      })
      const llm = Anthropic.make({ apiKey: Redacted.make("sk-ant-test-abcdef"), baseURL: sim.anthropicBaseUrl })
      const schema = { type: "object", properties: { answer: { type: "number" } }, required: ["answer"] }
      const request = ask({ model: "claude-3-5-haiku-latest", responseFormat: { type: "json", name: "sum", schema } })
      const completion = yield* llm.complete(request)
      assert.deepStrictEqual(JSON.parse(completion.text), { answer: 4 })
      assert.strictEqual(completion.finishReason, "stop")
      assert.deepStrictEqual(seen[0]!.tools, [{
        name: "sum",
        description: "Answer by calling this tool with the response as its input.",
        input_schema: schema
      }])
      assert.deepStrictEqual(seen[0]!.tool_choice, { type: "tool", name: "sum" })
      const streamed = yield* Completion.fromStream(llm.stream(request), { model: request.model, provider: "anthropic" })
      assert.deepStrictEqual(JSON.parse(streamed.text), { answer: 4 })
      assert.strictEqual(streamed.finishReason, "stop")
    }).pipe(Effect.scoped))

  it("accepts a seed at temperature 0, where it changes nothing (an evaluator's seeded greedy runs)", () => {
    const greedy = CompletionRequest.makeUnsafe({ ...user, temperature: 0, seed: 7 })
    assert.isUndefined(FieldSupport.firstRefusal("anthropic", Anthropic.fieldSupport, greedy))
    const sampled = CompletionRequest.makeUnsafe({ ...user, temperature: 0.7, seed: 7 })
    assert.strictEqual(
      (FieldSupport.firstRefusal("anthropic", Anthropic.fieldSupport, sampled)?.reason as LlmError.InvalidRequest | undefined)?.field,
      "seed"
    )
  })

  it.live("refuses seed, penalties and logprobs before any HTTP request", () =>
    Effect.gen(function*() {
      const sim = yield* simulator()
      const llm = Anthropic.make({ apiKey: Redacted.make("sk-ant-test-abcdef"), baseURL: sim.anthropicBaseUrl })
      for (
        const [field, input] of [["seed", { seed: 1 }], ["frequencyPenalty", { frequencyPenalty: 0.2 }], ["logprobs", {
          logprobs: true
        }]] as const
      ) {
        const error = yield* Effect.flip(llm.complete(ask(input)))
        assert.strictEqual(error.provider, "anthropic")
        assert.strictEqual((error.reason as LlmError.InvalidRequest).field, field)
      }
      const array = yield* Effect.flip(llm.complete(ask({ responseFormat: { type: "json", schema: { type: "array" } } })))
      assert.strictEqual((array.reason as LlmError.InvalidRequest).field, "responseFormat")
      assert.match(array.message, /input must be an object/)
      assert.strictEqual(sim.counters().requests, 0)
    }).pipe(Effect.scoped))
})

describe("Replicate fields by the model's input schema (official SDK, simulator)", () => {
  it.live("sends repeatPenalty to a model that declares repetition_penalty, refuses it for one that does not; one schema fetch per model", () =>
    Effect.gen(function*() {
      const inputs: Array<Record<string, unknown>> = []
      const sim = yield* simulator({
        replicateInputs: { "acme/tiny": ["prompt", "max_tokens", "temperature", "repetition_penalty", "json_schema"] },
        responder: (request) => {
          inputs.push((request.body as { input: Record<string, unknown> }).input)
          return "{}"
        }
      })
      const llm = Replicate.make({ apiToken: Redacted.make("r8_test_token_0123"), baseUrl: sim.replicateBaseUrl })
      yield* llm.complete(ask({ model: "acme/tiny", repeatPenalty: 1.3 }))
      yield* llm.complete(ask({ model: "acme/tiny", responseFormat: { type: "json", schema: { type: "object" } } }))
      assert.strictEqual(inputs[0]!.repetition_penalty, 1.3)
      assert.strictEqual(inputs[1]!.json_schema, "{\"type\":\"object\"}")
      const refused = yield* Effect.flip(llm.complete(ask({ model: "meta/meta-llama-3-70b-instruct", repeatPenalty: 1.3 })))
      assert.strictEqual(refused.provider, "replicate")
      assert.strictEqual((refused.reason as LlmError.InvalidRequest).field, "repeatPenalty")
      assert.match(refused.message, /meta\/meta-llama-3-70b-instruct's input schema has no `repetition_penalty` or `repeat_penalty`/)
      const counters = sim.counters()
      assert.strictEqual(counters.requestsByRoute["GET /v1/models/:owner/:name"], 2)
      assert.strictEqual(counters.requestsByRoute["POST /v1/models/:owner/:name/predictions"], 2)
      const logprobs = yield* Effect.flip(llm.complete(ask({ model: "acme/tiny", logprobs: true })))
      assert.strictEqual((logprobs.reason as LlmError.InvalidRequest).field, "logprobs")
    }).pipe(Effect.scoped))
})

describe("endpoint identity", () => {
  it("is the base URL, so two compatible servers under one name differ", () => {
    const a = OpenAi.make({ baseURL: "http://127.0.0.1:8001/v1/", name: "vllm" }).llm
    const b = OpenAi.make({ baseURL: "http://127.0.0.1:8002/v1", name: "vllm" }).llm
    assert.strictEqual(a.endpoint, "http://127.0.0.1:8001/v1")
    assert.notStrictEqual(a.endpoint, b.endpoint)
    assert.strictEqual(OpenAi.make({}).llm.endpoint, "https://api.openai.com/v1")
    assert.strictEqual(Anthropic.make({ apiKey: Redacted.make("k") }).endpoint, "https://api.anthropic.com")
    assert.strictEqual(Replicate.make({ apiToken: Redacted.make("k") }).endpoint, "https://api.replicate.com/v1")
  })
})

describe("a router's endpoint identity", () => {
  it.effect("names the endpoints it routes over, so two routers over different servers key apart", () =>
    Effect.gen(function*() {
      const gpu = (port: number) => ({
        name: `gpu-${port}`,
        layer: OpenAi.layer({ baseURL: `http://127.0.0.1:${port}/v1`, name: "vllm" })
      })
      const over = (first: number, second: number) =>
        Effect.map(
          Effect.scoped(Layer.build(Router.layer({ endpoints: [gpu(first), gpu(second)] }))),
          (context) => Context.get(context, Llm.Llm).endpoint
        )
      const a = yield* over(8001, 8002)
      assert.strictEqual(a, "router:http://127.0.0.1:8001/v1,http://127.0.0.1:8002/v1")
      assert.notStrictEqual(yield* over(8003, 8004), a)
    }))
})
