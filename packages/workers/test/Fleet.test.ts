/**
 * Fleet-wide middleware on a real redis-server, with the official OpenAI SDK against the
 * testkit simulator. Two stacks built separately (each its own Redis connection, as two
 * processes would have) share one Redis: identical calls in flight make one upstream call,
 * and a fleet-wide concurrency limit holds across both. Each test also runs the same load
 * without the layer, to show what it prevents.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm } from "@hasten/core"
import { OpenAi } from "@hasten/providers/openai"
import { RedisServer, Simulator } from "@hasten/testkit"
import { FleetConcurrency, FleetSingleFlight } from "@hasten/workers"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"

let redis: RedisServer.RedisServer
beforeAll(async () => {
  redis = await RedisServer.start()
})
afterAll(async () => {
  await redis?.stop()
})

const provider = (sim: Simulator.Instance) =>
  OpenAi.layer({ model: "gpt-4o-mini", apiKey: Redacted.make("sk-test"), baseURL: sim.openaiBaseUrl })

/** Runs `calls` requests at once on each of two separately built stacks. */
const twoProcesses = async (
  stack: () => Layer.Layer<Llm.Llm, unknown>,
  requests: (index: number) => CompletionRequest.CompletionRequest,
  calls: number
) => {
  const runtimes = [ManagedRuntime.make(stack()), ManagedRuntime.make(stack())]
  try {
    const results = await Promise.all(
      runtimes.map((runtime) =>
        runtime.runPromise(Effect.forEach(Array.from({ length: calls }, (_, index) => index), (index) => Llm.complete(requests(index)), {
          concurrency: "unbounded"
        }))
      )
    )
    return results.flat()
  } finally {
    await Promise.all(runtimes.map((runtime) => runtime.dispose()))
  }
}

describe("FleetSingleFlight", () => {
  it("identical deterministic calls in flight in two stacks make one upstream call; without it, one each", async () => {
    const sim = await Simulator.start({ seed: 1, latency: { ttftMs: 300, perTokenMs: 1 } })
    try {
      const same = () => CompletionRequest.user("gpt-4o-mini", "what is 6 x 7?", { temperature: 0, maxTokens: 8 })
      const coalesced = await twoProcesses(
        () => Llm.stack(provider(sim), FleetSingleFlight.layer({ redis: redis.url, namespace: "t1" })),
        same,
        20
      )
      assert.strictEqual(coalesced.length, 40)
      assert.strictEqual(new Set(coalesced.map((completion) => completion.text)).size, 1)
      assert.strictEqual(sim.counters().requests, 1)
      sim.reset()
      await twoProcesses(() => provider(sim), same, 20)
      assert.strictEqual(sim.counters().requests, 40)
    } finally {
      await sim.close()
    }
  })

  it("a call that is not deterministic (no temperature 0, no seed) is never coalesced", async () => {
    const sim = await Simulator.start({ seed: 2, latency: { ttftMs: 100 } })
    try {
      await twoProcesses(
        () => Llm.stack(provider(sim), FleetSingleFlight.layer({ redis: redis.url, namespace: "t2" })),
        () => CompletionRequest.user("gpt-4o-mini", "tell me a story", { maxTokens: 8 }),
        3
      )
      assert.strictEqual(sim.counters().requests, 6)
    } finally {
      await sim.close()
    }
  })
})

describe("FleetConcurrency", () => {
  it("two stacks sharing a limit of 2 never have more than 2 calls in flight together; without it, all at once", async () => {
    const sim = await Simulator.start({ seed: 3, latency: { ttftMs: 150, perTokenMs: 1 } })
    try {
      const distinct = (index: number) => CompletionRequest.user("gpt-4o-mini", `question ${index}`, { temperature: 0, maxTokens: 4 })
      const limited = await twoProcesses(
        () => Llm.stack(provider(sim), FleetConcurrency.layer({ redis: redis.url, limit: 2, key: "t3" })),
        distinct,
        6
      )
      assert.strictEqual(limited.length, 12)
      assert.strictEqual(sim.counters().requests, 12)
      assert.isAtMost(sim.counters().peakConcurrency, 2)
      sim.reset()
      await twoProcesses(() => provider(sim), distinct, 6)
      assert.isAbove(sim.counters().peakConcurrency, 2)
    } finally {
      await sim.close()
    }
  })

  it("rejects a limit below 1 with InvalidOptions naming the field", async () => {
    const sim = await Simulator.start({ seed: 4 })
    try {
      const runtime = ManagedRuntime.make(Llm.stack(provider(sim), FleetConcurrency.layer({ redis: redis.url, limit: 0 })))
      const error = await runtime.runPromise(Effect.void).then(() => undefined, (error: unknown) => error)
      assert.match(String(error), /limit: an integer >= 1, got 0/)
      await runtime.dispose()
    } finally {
      await sim.close()
    }
  })
})
