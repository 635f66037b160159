import { assert, describe, it } from "@effect/vitest"
import type { Dataset } from "@hasten/evaluator"
import { Evaluator, Report, Scorer, Stack } from "@hasten/evaluator"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { calls, questionOf, scripted } from "./fakes.js"

const dataset: Dataset.Dataset = {
  name: "toy",
  items: Array.from({ length: 6 }, (_, index) => ({ id: `toy:${index}`, index, question: `What is ${index} + ${index}?`, answer: String(index * 2) })),
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
          candidates: [{
            name: "fake",
            model: "m",
            llm: Stack.wrap(scripted("fake", (request) => `#### ${Number(/What is (\d+)/.exec(questionOf(request))![1]) * 2}`, candidateCalls), { cache })
          }],
          judge: { name: "judge", model: "j", llm: Stack.wrap(scripted("judge", () => "{\"score\": 1, \"reason\": \"ok\"}", judgeCalls), { cache }) }
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
      assert.strictEqual(Report.reportJson(warm.report), Report.reportJson(cold.report))
    }))
})
