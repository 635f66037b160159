/**
 * The evaluator on real parts: the stories260K GGUF model through `Local.layer`, and an
 * OpenAI-SDK judge against the testkit simulator over real HTTP.
 */
import { assert, describe, it } from "@effect/vitest"
import { Dataset, Evaluator, Report, Scorer, Stack } from "@hasten/evaluator"
import { Local } from "@hasten/providers/local"
import { OpenAi } from "@hasten/providers/openai"
import { Simulator } from "@hasten/testkit"
import { Effect, Redacted } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { judgeResponder } from "./fakes.js"

const model = Local.layer({ model: "stories260K.gguf", threads: 1 })

describe("with the local fixture model and the simulator", () => {
  it.effect("evaluates GSM8K on stories260K with a simulated judge; deterministic across runs", () =>
    Effect.gen(function*() {
      const sim = yield* Effect.promise(() => Simulator.start({ seed: 1, responder: judgeResponder }))
      yield* Effect.addFinalizer(() => Effect.promise(() => sim.close()))
      const dataset = yield* Dataset.load("gsm8k")
      const judge = OpenAi.layer({ baseURL: sim.openaiBaseUrl, apiKey: Redacted.make("sk-test"), model: "gpt-4o-mini" })
      const options: Evaluator.Options = {
        dataset,
        scorer: Scorer.judge(),
        questions: 4,
        maxTokens: 24,
        candidates: [{ name: "local:stories260K.gguf", model: "stories260K", llm: model }],
        judge: { name: "openai:gpt-4o-mini", model: "gpt-4o-mini", llm: judge, concurrency: 4 }
      }
      const first = yield* Evaluator.run(options)
      const summary = first.report.results[0]!.summary
      assert.deepStrictEqual([summary.total, summary.scored, summary.errors], [4, 4, 0])
      assert.strictEqual(sim.counters().requests, 4)
      const item = first.report.results[0]!.items[0]!
      assert.isTrue((item.output ?? "").length > 0)
      assert.strictEqual(typeof item.details?.reason, "string")
      const second = yield* Evaluator.run(options)
      assert.strictEqual(Report.reportJson(second.report), Report.reportJson(first.report))
    }), { timeout: 60_000 })

  it.effect(
    "judge faults from the simulator are isolated item errors; a warm cache then skips the candidate",
    () =>
      Effect.gen(function*() {
        const sim = yield* Effect.promise(() =>
          Simulator.start({ seed: 3, responder: judgeResponder, faults: { rate: 1, kinds: ["500"] } })
        )
        yield* Effect.addFinalizer(() => Effect.promise(() => sim.close()))
        const dataset = yield* Dataset.load("gsm8k")
        const cache = Stack.cacheStore({ path: Path.join(mkdtempSync(Path.join(tmpdir(), "hasten-int-")), "cache.db") })
        const options: Evaluator.Options = {
          dataset,
          scorer: Scorer.judge(),
          questions: 3,
          maxTokens: 16,
          candidates: [{ name: "local", model: "stories260K", llm: Stack.wrap(model, { cache }) }],
          judge: {
            name: "judge",
            model: "gpt-4o-mini",
            llm: Stack.wrap(OpenAi.layer({ baseURL: sim.openaiBaseUrl, apiKey: Redacted.make("sk-test"), model: "gpt-4o-mini" }), { cache })
          }
        }
        const result = yield* Evaluator.run(options)
        const summary = result.report.results[0]!.summary
        assert.deepStrictEqual([summary.scored, summary.errors], [0, 3])
        assert.deepStrictEqual(summary.errorsByTag, { "LlmError.ServerError": 3 })
        assert.strictEqual(result.timing.cachedCalls, 0)
        const warm = yield* Evaluator.run(options)
        assert.strictEqual(warm.timing.cachedCalls, 3)
      }),
    { timeout: 60_000 }
  )

  it.effect(
    "trials at temperature > 0 on stories260K: each trial's own seed gives different answers, reproducibly",
    () =>
      Effect.gen(function*() {
        const dataset = yield* Dataset.load("gsm8k")
        const options: Evaluator.Options = {
          dataset,
          scorer: Scorer.exactMatch,
          questions: 2,
          trials: 3,
          temperature: 1,
          maxTokens: 12,
          candidates: [{ name: "local", model: "stories260K", llm: model }]
        }
        const first = yield* Evaluator.run(options)
        const items = first.report.results[0]!.items
        const outputs = (itemId: string) => items.filter((item) => item.itemId === itemId).map((item) => item.output)
        // with one seed for every trial the three answers would be identical; with a seed per trial they differ
        for (const itemId of first.report.config.selection) assert.isAbove(new Set(outputs(itemId)).size, 1, itemId)
        const second = yield* Evaluator.run(options)
        assert.deepStrictEqual(second.report.results[0]!.items.map((item) => item.output), items.map((item) => item.output))
      }),
    { timeout: 60_000 }
  )
})
