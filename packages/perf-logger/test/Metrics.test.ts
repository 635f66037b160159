import { assert, describe, it } from "@effect/vitest"
import { Llm } from "@hasten/core"
import { Effect, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import { PerfLogger } from "../src/index.js"
import * as Scripted from "./fixtures/ScriptedLlm.js"

const Measured = PerfLogger.layer.pipe(
  Layer.provideMerge(Scripted.layer),
  Layer.provideMerge(PerfLogger.layerMemory({
    prices: { "fake-model": { input: 1, output: 2, cachedInput: 0.5 } }
  }))
)

/** Runs `program` with the measured fake, advancing the TestClock until it is done. */
const run = <A, E>(program: Effect.Effect<A, E, Llm.Llm | PerfLogger.PerfLogger>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(program)
    yield* TestClock.adjust("1 hour")
    const result = yield* Fiber.join(fiber)
    const summary = yield* PerfLogger.summary
    return { result, summary }
  }).pipe(Effect.provide(Measured))

const collect = (script: Scripted.Script) => Llm.stream(Scripted.request(script)).pipe(Stream.runCollect)

describe("quantiles", () => {
  it("nearest rank: the smallest sample with at least p of the samples at or below it", () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7]
    assert.strictEqual(PerfLogger.quantile(sorted, 0.5), 4)
    // ceil(0.9 · 7) = 7th sample (rounding would pick the 6th)
    assert.strictEqual(PerfLogger.quantile(sorted, 0.9), 7)
    assert.strictEqual(PerfLogger.quantile(sorted, 0.01), 1)
    assert.isNaN(PerfLogger.quantile([], 0.5))
  })
})

describe("long runs", () => {
  it("past 10,000 samples a distribution is a sketch: quantiles within 1%, count, mean, min and max exact", () => {
    // a long streaming run: 60 streams × 5,000 tokens = 300,000 inter-token samples
    let seed = 7
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647
    const all: Array<number> = []
    const events: Array<PerfLogger.Event> = [{ type: "run_start", runId: "long", t: 0, pid: 1, node: "v24" }]
    for (let call = 0; call < 60; call++) {
      const itlMs: Array<number> = []
      for (let token = 0; token < 5_000; token++) {
        // log-normal-ish latencies with a long tail, rounded as the events are
        const value = Math.round(Math.exp(1 + 1.5 * (random() + random() + random() - 1.5)) * 1000) / 1000
        itlMs.push(value)
        all.push(value)
      }
      events.push({
        type: "call",
        op: "stream",
        provider: "p",
        model: "m",
        start: call * 10_000,
        latencyMs: 9_000,
        ok: true,
        ttftMs: 5,
        itlMs,
        outputTokens: 5_001,
        chunks: 5_001
      })
    }
    const itl = PerfLogger.summarize(events).overall.itlMs!
    const sorted = Float64Array.from(all).sort()
    assert.strictEqual(itl.relativeError, 0.01)
    assert.strictEqual(itl.count, 300_000)
    assert.strictEqual(itl.min, sorted[0])
    assert.strictEqual(itl.max, sorted[sorted.length - 1])
    const mean = all.reduce((sum, value) => sum + value, 0) / all.length
    assert.closeTo(itl.mean, mean, 0.001)
    for (const [p, got] of [[0.5, itl.p50], [0.9, itl.p90], [0.99, itl.p99]] as const) {
      const exact = PerfLogger.quantile(sorted, p)
      assert.isAtMost(Math.abs(got - exact) / exact, 0.01 + 1e-6, `p${p * 100}: ${got} vs exact ${exact}`)
    }
    // 60 latencies: still exact, no error bound
    assert.isUndefined(PerfLogger.summarize(events).overall.latencyMs!.relativeError)
  })
})

describe("metric definitions on scripted timings", () => {
  it.effect("end-to-end latency quantiles, tokens/s, requests/s and TPOT of sequential completions", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.forEach([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], (latencyMs) =>
        Llm.complete(Scripted.request({ latencyMs, outputTokens: 5 }))))
      const stats = summary.overall
      assert.strictEqual(stats.calls, 10)
      // nearest rank: p50 = 5th of 10, p90 = 9th, p99 = 10th
      assert.deepStrictEqual(stats.latencyMs, { count: 10, mean: 55, min: 10, p50: 50, p90: 90, p99: 100, max: 100 })
      // 50 output tokens over 550 ms of back-to-back calls
      assert.strictEqual(stats.outputTokensPerSecond, 90.909)
      assert.strictEqual(stats.requestsPerSecond, 18.182)
      // non-streamed: latency / provider-reported output tokens = 2, 4, ..., 20 ms
      assert.strictEqual(stats.tpotMs?.p50, 10)
      assert.strictEqual(stats.tpotMs?.max, 20)
      assert.isNull(stats.ttftMs)
      assert.deepStrictEqual(stats.tokens, { input: 30, output: 50, cachedInput: 0 })
      assert.deepStrictEqual(Object.keys(summary.byModel), ["scripted/fake-model"])
    }))

  it.effect("TTFT, ITL (first token excluded) and TPOT of a one-token-per-chunk stream", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(collect({
        chunks: [
          { afterMs: 100, text: "a" },
          { afterMs: 20, text: "b" },
          { afterMs: 20, text: "c" },
          { afterMs: 20, text: "d" },
          { afterMs: 20, text: "e" }
        ]
      }))
      const stats = summary.overall
      assert.strictEqual(stats.streams, 1)
      assert.strictEqual(stats.ttftMs?.p50, 100)
      assert.deepStrictEqual(stats.itlMs, { count: 4, mean: 20, min: 20, p50: 20, p90: 20, p99: 20, max: 20 })
      assert.strictEqual(stats.latencyMs?.p50, 180)
      // (180 - 100) / (5 - 1)
      assert.strictEqual(stats.tpotMs?.p50, 20)
    }))

  it.effect("multi-token chunks: each token of a chunk gets gap / tokens; TPOT uses usage.outputTokens", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(collect({
        outputTokens: 6,
        chunks: [
          { afterMs: 50, text: "one two", tokens: 2 },
          { afterMs: 30, text: "three four five", tokens: 3 },
          { afterMs: 40, text: "six", tokens: 1 }
        ]
      }))
      const stats = summary.overall
      assert.strictEqual(stats.ttftMs?.p50, 50)
      // samples 10, 10, 10, 40: the first chunk's tokens are not inter-token samples
      assert.deepStrictEqual(stats.itlMs, { count: 4, mean: 17.5, min: 10, p50: 10, p90: 40, p99: 40, max: 40 })
      // (120 - 50) / (6 - 1)
      assert.strictEqual(stats.tpotMs?.p50, 14)
      assert.strictEqual(stats.tokens.output, 6)
    }))

  it.effect("TPOT follows the provider's token count, not the chunk count or the text", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(collect({
        outputTokens: 11,
        chunks: [
          { afterMs: 10, text: "many words in one chunk" },
          { afterMs: 100, text: "and more words here" }
        ]
      }))
      // (110 - 10) / (11 - 1)
      assert.strictEqual(summary.overall.tpotMs?.p50, 10)
      assert.strictEqual(summary.overall.tokens.output, 11)
    }))

  it.effect("a stream without usage counts token-bearing chunks and marks the count estimated", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.gen(function*() {
        yield* collect({ noUsage: true, chunks: [{ afterMs: 5, text: "x" }, { afterMs: 5, text: "" }, { afterMs: 5, text: "y" }] })
        const perf = yield* PerfLogger.PerfLogger
        return perf
      }))
      assert.strictEqual(summary.overall.tokens.output, 2)
      assert.strictEqual(summary.overall.itlMs?.p50, 10)
    }))

  it.effect("errors by class, retries and rate-limit wait, cache hits apart from upstream latency", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.gen(function*() {
        yield* Effect.ignore(Llm.complete(Scripted.request({ latencyMs: 5, fail: "RateLimited" })))
        yield* Effect.ignore(Llm.complete(Scripted.request({ latencyMs: 5, fail: "RateLimited" })))
        yield* Effect.ignore(Llm.complete(Scripted.request({ latencyMs: 5, fail: "Timeout" })))
        yield* Effect.ignore(
          Llm.stream(Scripted.request({ fail: "ServerError", chunks: [{ afterMs: 1, text: "a" }] })).pipe(Stream.runDrain)
        )
        yield* Llm.complete(
          Scripted.request({ latencyMs: 300, facts: { retries: 2, rateLimitWaitMillis: 250, backoffMillis: 40, timeouts: 1 } })
        )
        yield* Llm.complete(Scripted.request({ latencyMs: 100, facts: { retries: 1, rateLimitWaitMillis: 50, backoffMillis: 2 } }))
        // a hit replays the facts of the call that filled the cache: not this call's retries
        yield* Llm.complete(Scripted.request({ latencyMs: 1, cached: true, facts: { retries: 5, rateLimitWaitMillis: 900, batchSize: 4 } }))
        yield* Llm.complete(Scripted.request({ latencyMs: 3, cached: true }))
      }))
      const stats = summary.overall
      assert.strictEqual(stats.errors, 4)
      assert.deepStrictEqual(stats.errorsByClass, { RateLimited: 2, Timeout: 1, ServerError: 1 })
      assert.deepStrictEqual(stats.retries, {
        total: 3,
        retriedCalls: 2,
        rateLimitWaitMs: 300,
        rateLimitWaitMaxMs: 250,
        backoffMs: 42,
        timeouts: 1
      })
      assert.isNull(stats.batch)
      assert.deepStrictEqual(stats.cache, { hits: 2, misses: 2, hitRate: 0.5 })
      // upstream latency only has the two real calls; hits are reported apart
      assert.deepStrictEqual(stats.latencyMs, { count: 2, mean: 200, min: 100, p50: 100, p90: 300, p99: 300, max: 300 })
      assert.deepStrictEqual(stats.cacheHitLatencyMs, { count: 2, mean: 2, min: 1, p50: 1, p90: 3, p99: 3, max: 3 })
    }))

  it.effect("batch sizes, queue wait and speculative acceptance (weighted by target evaluations)", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.gen(function*() {
        yield* Llm.complete(Scripted.request({ facts: { batchSize: 4, queueWaitMillis: 10 } }))
        yield* Llm.complete(Scripted.request({ facts: { batchSize: 8, queueWaitMillis: 30 } }))
        yield* Llm.complete(Scripted.request({
          facts: { speculative: { acceptanceRate: 0.5, meanAcceptedLength: 2, perPosition: [0.8, 0.4], targetEvaluations: 10 } }
        }))
        yield* Llm.complete(Scripted.request({
          facts: {
            speculative: { acceptanceRate: 0.8, meanAcceptedLength: 3, perPosition: [1, 0.7, 0.5], targetEvaluations: 30 }
          }
        }))
      }))
      const stats = summary.overall
      assert.strictEqual(stats.batch?.sizes.mean, 6)
      assert.strictEqual(stats.batch?.sizes.max, 8)
      assert.strictEqual(stats.batch?.queueWaitMs?.p50, 10)
      assert.strictEqual(stats.batch?.queueWaitMs?.max, 30)
      // (0.5·10 + 0.8·30) / 40, (2·10 + 3·30) / 40, per position (0.8·10 + 1·30) / 40, (0.4·10 + 0.7·30) / 40, 0.5
      assert.deepStrictEqual(stats.speculative, {
        calls: 2,
        acceptanceRate: 0.725,
        meanAcceptedLength: 2.75,
        perPosition: [0.95, 0.625, 0.5]
      })
    }))

  it.effect("cost from the price table: cached input at its own price, cache hits free", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.gen(function*() {
        yield* Llm.complete(Scripted.request({ inputTokens: 1000, cachedInputTokens: 200, outputTokens: 500 }))
        yield* Llm.complete(Scripted.request({ inputTokens: 1000, outputTokens: 500, cached: true }))
        yield* Llm.complete(Scripted.request({ inputTokens: 1000, outputTokens: 500 }, "unpriced-model"))
      }))
      // (800·1 + 200·0.5 + 500·2) / 1e6
      assert.strictEqual(summary.cost?.totalUsd, 0.0019)
      assert.deepStrictEqual(summary.cost?.unpricedModels, ["scripted/unpriced-model"])
    }))

  it.effect("stages: calls are attributed to the stage and items/s uses the stage's wall time", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.gen(function*() {
        yield* Effect.forEach(
          [1, 2, 3, 4],
          () => PerfLogger.stage("classify", Llm.complete(Scripted.request({ latencyMs: 100 }))),
          { concurrency: 2 }
        )
        yield* PerfLogger.stage(
          "batch",
          Effect.gen(function*() {
            yield* Effect.sleep(500)
            yield* PerfLogger.recordItems("batch", 10)
          })
        )
        yield* Llm.complete(Scripted.request({ latencyMs: 1 }))
      }))
      const classify = summary.byStage["classify"]!
      assert.strictEqual(classify.invocations, 4)
      assert.strictEqual(classify.items, 4)
      assert.strictEqual(classify.calls, 4)
      assert.strictEqual(classify.wallMs, 200)
      assert.strictEqual(classify.itemsPerSecond, 20)
      assert.strictEqual(classify.durationMs?.p50, 100)
      const batch = summary.byStage["batch"]!
      assert.strictEqual(batch.items, 10)
      assert.strictEqual(batch.itemsPerSecond, 20)
      assert.strictEqual(batch.calls, 0)
      assert.strictEqual(summary.overall.calls, 5)
    }))

  it.effect("aggregates per provider/model, and the overall numbers are the sum of the groups", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.gen(function*() {
        yield* Llm.complete(Scripted.request({ latencyMs: 10, outputTokens: 1 }, "small"))
        yield* Llm.complete(Scripted.request({ latencyMs: 30, outputTokens: 1 }, "small"))
        yield* Llm.complete(Scripted.request({ latencyMs: 100, outputTokens: 9, responseModel: "large-2025" }, "large"))
      }))
      assert.deepStrictEqual(Object.keys(summary.byModel).sort(), ["scripted/large", "scripted/small"])
      assert.strictEqual(summary.byModel["scripted/small"]?.latencyMs?.p90, 30)
      assert.strictEqual(summary.byModel["scripted/large"]?.tokens.output, 9)
      assert.strictEqual(summary.overall.calls, 3)
      assert.strictEqual(summary.overall.tokens.output, 11)
      assert.strictEqual(summary.overall.latencyMs?.max, 100)
    }))

  it.effect("a stream the consumer stops early is a success with the tokens it delivered; a defect is a Defect", () =>
    Effect.gen(function*() {
      const { summary } = yield* run(Effect.gen(function*() {
        yield* Llm.stream(Scripted.request({ chunks: [{ afterMs: 5, text: "a" }, { afterMs: 5, text: "b" }, { afterMs: 5, text: "c" }] }))
          .pipe(Stream.take(1), Stream.runDrain)
        yield* Effect.exit(
          Llm.stream(Scripted.request({ chunks: [{ afterMs: 1, text: "a" }] })).pipe(
            Stream.mapEffect(() => Effect.die("bug")),
            Stream.runDrain
          )
        )
      }))
      assert.deepStrictEqual(summary.overall.errorsByClass, { Defect: 1 })
      assert.strictEqual(summary.overall.calls, 2)
      assert.strictEqual(summary.overall.succeeded, 1)
      // one chunk delivered before the consumer stopped; no usage chunk arrived
      assert.strictEqual(summary.overall.tokens.output, 1)
      assert.strictEqual(summary.overall.latencyMs?.p50, 5)
    }))

  it.effect("a completion interrupted by its caller is recorded as Interrupted with the time it ran", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Llm.complete(Scripted.request({ latencyMs: 100 })))
      yield* TestClock.adjust("40 millis")
      yield* Fiber.interrupt(fiber)
      const summary = yield* PerfLogger.summary
      assert.deepStrictEqual(summary.overall.errorsByClass, { Interrupted: 1 })
      assert.strictEqual(summary.overall.activeMs, 40)
    }).pipe(Effect.provide(Measured)))
})
