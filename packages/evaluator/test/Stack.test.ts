import { assert, describe, it } from "@effect/vitest"
import { Llm } from "@hasten/core"
import type { Dataset } from "@hasten/evaluator"
import { Evaluator, Report, Scorer, Stack } from "@hasten/evaluator"
import { PerfLogger } from "@hasten/perf-logger"
import { Effect, Layer } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { calls, questionOf, scripted } from "./fakes.js"

const dataset: Dataset.Dataset = {
  name: "toy",
  items: Array.from(
    { length: 6 },
    (_, index) => ({ id: `toy:${index}`, index, question: `What is ${index} + ${index}?`, answer: String(index * 2) })
  ),
  report: { source: "memory", rows: 6, loaded: 6, skipped: [] }
}

describe("Stack (cache middleware)", () => {
  it.effect("a warm re-run is served from the SQLite cache: zero upstream calls, identical report", () =>
    Effect.gen(function*() {
      const path = Path.join(mkdtempSync(Path.join(tmpdir(), "hasten-stack-")), "cache.db")
      const candidateCalls = calls()
      const judgeCalls = calls()
      const options = () => {
        const cache = Stack.cacheStore({ path })
        return {
          dataset,
          scorer: Scorer.judge(),
          trials: 2,
          temperature: 0.7,
          candidates: [{
            name: "fake",
            model: "m",
            llm: Stack.wrap(
              scripted("fake", (request) => `#### ${Number(/What is (\d+)/.exec(questionOf(request))![1]) * 2}`, candidateCalls),
              { cache }
            )
          }],
          judge: {
            name: "judge",
            model: "j",
            llm: Stack.wrap(scripted("judge", () => "{\"score\": 1, \"reason\": \"ok\"}", judgeCalls), { cache })
          }
        }
      }
      const cold = yield* Evaluator.run(options())
      assert.strictEqual(candidateCalls.requests.length, 12)
      assert.strictEqual(judgeCalls.requests.length, 12)
      assert.strictEqual(cold.timing.cachedCalls, 0)
      const warm = yield* Evaluator.run(options())
      assert.strictEqual(candidateCalls.requests.length, 12)
      assert.strictEqual(judgeCalls.requests.length, 12)
      assert.strictEqual(warm.timing.cachedCalls, 12)
      assert.strictEqual(warm.timing.upstreamCalls, 0)
      assert.deepStrictEqual(cold.timing.judge, { calls: 12, cachedCalls: 0, upstreamCalls: 12 })
      assert.deepStrictEqual(warm.timing.judge, { calls: 12, cachedCalls: 12, upstreamCalls: 0 })
      assert.strictEqual(Report.reportJson(warm.report), Report.reportJson(cold.report))
    }))

  it.effect("lazy: a run served entirely from the cache never builds the provider", () =>
    Effect.gen(function*() {
      const path = Path.join(mkdtempSync(Path.join(tmpdir(), "hasten-lazy-")), "cache.db")
      let builds = 0
      const provider = Layer.unwrap(Effect.sync(() => {
        builds++
        return scripted("fake", () => "#### 0")
      }))
      const options = () => ({
        dataset,
        scorer: Scorer.gsm8k(),
        candidates: [{ name: "fake", model: "m", llm: Stack.wrap(Stack.lazy("fake", provider), { cache: Stack.cacheStore({ path }) }) }]
      })
      yield* Evaluator.run(options())
      assert.strictEqual(builds, 1)
      const warm = yield* Evaluator.run(options())
      assert.strictEqual(builds, 1)
      assert.strictEqual(warm.timing.cachedCalls, 6)
    }))

  it.effect("lazy: a provider that fails to start turns into item errors naming the cause; check fails eagerly", () =>
    Effect.gen(function*() {
      const broken = Layer.effect(Llm.Llm, Effect.fail(new Error("no such model")))
      const result = yield* Evaluator.run({
        dataset,
        scorer: Scorer.gsm8k(),
        candidates: [{ name: "x", model: "m", llm: Stack.lazy("local", broken) }]
      })
      const summary = result.report.results[0]!.summary
      assert.deepStrictEqual(summary.errorsByTag, { "LlmError.InvalidRequest": 6 })
      assert.match(result.report.results[0]!.items[0]!.error!.message, /provider failed to start: no such model/)
      const eager = yield* Effect.flip(
        Evaluator.run({
          dataset,
          scorer: Scorer.gsm8k(),
          candidates: [{ name: "x", model: "m", llm: Stack.lazy("local", broken, Effect.fail(new Error("model not found: m"))) }]
        })
      )
      assert.match(eager.message, /candidate x failed to start: model not found: m/)
    }))

  it.effect("stacks sharing a recorder and a rate limiter keep their own providers", () =>
    Effect.gen(function*() {
      const perf = PerfLogger.layerMemory()
      const rateLimit = Layer.effect(Llm.Llm, Effect.service(Llm.Llm)) // a pass-through middleware value shared by both stacks
      const a = Stack.wrap(scripted("a", () => "#### 1"), { perf, rateLimit })
      const b = Stack.wrap(scripted("b", () => "#### 2"), { perf, rateLimit })
      const result = yield* Evaluator.run({
        dataset,
        scorer: Scorer.gsm8k(),
        questions: 1,
        candidates: [{ name: "a", model: "m", llm: a }, { name: "b", model: "m", llm: b }]
      })
      assert.deepStrictEqual(result.report.results.map((candidate) => candidate.items[0]!.output), ["#### 1", "#### 2"])
    }))
})
