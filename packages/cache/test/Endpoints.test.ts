/**
 * The cache over real providers: two OpenAI-compatible servers (testkit simulators) that
 * serve the same model id under one provider name never share entries, and logprobs are
 * stored and replayed, for `complete` and `stream`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cache, CacheStore, MemoryStore } from "@hasten/cache"
import { Completion, CompletionRequest, Llm } from "@hasten/core"
import { OpenAi } from "@hasten/providers/openai"
import { Simulator } from "@hasten/testkit"
import { Effect, Layer, Redacted } from "effect"

const simulator = (options: Simulator.Options = {}) =>
  Effect.acquireRelease(Effect.promise(() => Simulator.start(options)), (sim) => Effect.promise(() => sim.close()))

const vllm = (sim: Simulator.Instance) =>
  OpenAi.layer({ baseURL: sim.openaiBaseUrl, apiKey: Redacted.make("none"), name: "vllm", compat: "vllm" })

const request = CompletionRequest.makeUnsafe({
  model: "meta-llama/Llama-3-8B-Instruct",
  messages: [{ role: "user", content: "Name a colour." }],
  temperature: 0
})

/** `effect` run against the cache over `upstream`, with the store shared through `store`. */
const through = <A, E>(upstream: Layer.Layer<Llm.Llm>, store: Layer.Layer<CacheStore.CacheStore>, effect: Effect.Effect<A, E, Llm.Llm>) =>
  effect.pipe(Effect.provide(Cache.layerFromStore().pipe(Layer.provide(upstream), Layer.provide(store))))

describe("the cache keys on the endpoint", () => {
  it.live("two compatible servers with the same model id and provider name keep separate entries", () =>
    Effect.gen(function*() {
      const first = yield* simulator({ responder: () => "red" })
      const second = yield* simulator({ responder: () => "blue" })
      const store = yield* Layer.build(MemoryStore.layer())
      const run = (sim: Simulator.Instance) => through(vllm(sim), Layer.succeedContext(store), Llm.complete(request))
      assert.strictEqual((yield* run(first)).text, "red")
      const fromSecond = yield* run(second)
      assert.strictEqual(fromSecond.text, "blue", "the second server's answer, not the first one's entry")
      assert.isUndefined(fromSecond.cached)
      const again = yield* run(second)
      assert.strictEqual(again.text, "blue")
      assert.isTrue(again.cached)
      assert.strictEqual((yield* run(first)).cached, true)
      assert.strictEqual(first.counters().requests, 1)
      assert.strictEqual(second.counters().requests, 1)
    }).pipe(Effect.scoped))
})

describe("logprobs in the cache", () => {
  it.live("are stored and replayed for complete and stream, and a request with logprobs is its own entry", () =>
    Effect.gen(function*() {
      const sim = yield* simulator()
      const store = yield* Layer.build(MemoryStore.layer())
      const withLogprobs = CompletionRequest.makeUnsafe({ ...request, logprobs: true, topLogprobs: 2 })
      const run = <A, E>(effect: Effect.Effect<A, E, Llm.Llm>) => through(vllm(sim), Layer.succeedContext(store), effect)
      const plain = yield* run(Llm.complete(request))
      assert.isUndefined(plain.logprobs)
      const fresh = yield* run(Llm.complete(withLogprobs))
      assert.isUndefined(fresh.cached, "logprobs are part of the key: no hit on the plain entry")
      assert.isAbove(fresh.logprobs!.length, 0)
      const replayed = yield* run(Llm.complete(withLogprobs))
      assert.isTrue(replayed.cached)
      assert.deepStrictEqual(replayed.logprobs, fresh.logprobs)
      const streamRequest = CompletionRequest.makeUnsafe({ ...withLogprobs, trial: 1 })
      const streamed = yield* run(Completion.fromStream(Llm.stream(streamRequest), { model: request.model, provider: "vllm" }))
      const streamedAgain = yield* run(Completion.fromStream(Llm.stream(streamRequest), { model: request.model, provider: "vllm" }))
      assert.isTrue(streamedAgain.cached)
      assert.deepStrictEqual(streamedAgain.logprobs, streamed.logprobs)
      assert.deepStrictEqual(streamed.logprobs, fresh.logprobs)
      assert.strictEqual(sim.counters().requests, 3)
    }).pipe(Effect.scoped))
})
