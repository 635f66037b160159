// The README's plain async TypeScript wiring, run against the simulator judge.
import { Dataset, Evaluator, Scorer, Stack } from "@hasten/evaluator"
import { Local } from "@hasten/providers/local"
import { OpenAi } from "@hasten/providers/openai"
import { Simulator } from "@hasten/testkit"
import { Effect, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { simulatorOptions } from "../src/Judge.js"

const stories = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "data", "stories.jsonl")
let sim: Simulator.Instance
beforeAll(async () => {
  sim = await Simulator.start(simulatorOptions({ ttftMs: 0, perTokenMs: 0 }))
})
afterAll(() => sim.close())

describe("plain async TypeScript (Evaluator.runPromise)", () => {
  it("evaluates with a cached candidate and judge; the re-run makes no upstream call", async () => {
    const cache = Stack.cacheStore({ path: Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-eval-adapters-")), "cache.db") })
    const base = Stack.wrap(Stack.lazy("local", Local.layer({ model: "stories260K.gguf", threads: 1, contextSize: 512 })), { cache })
    const judge = Stack.wrap(OpenAi.layer({ model: "gpt-4o-mini", baseURL: sim.openaiBaseUrl, apiKey: Redacted.make("sk-test") }), {
      cache
    })
    const options: Evaluator.Options = {
      dataset: await Effect.runPromise(Dataset.load(stories)),
      scorer: Scorer.judge({ prompt: (item) => [{ role: "user", content: item.question }] }),
      candidates: [
        { name: "local:stories260K.gguf", model: "stories260K", llm: base }
      ],
      judge: { name: "openai:gpt-4o-mini", model: "gpt-4o-mini", llm: judge },
      questions: 2,
      seed: 42,
      maxTokens: 16
    }
    const first = await Evaluator.runPromise(options)
    expect(first.report.results.map((result) => result.summary.scored)).toEqual([2])
    expect(first.timing.upstreamCalls).toBe(2)
    const judgeCalls = sim.counters().requests
    expect(judgeCalls).toBe(2)
    const again = await Evaluator.runPromise(options)
    expect(again.timing.upstreamCalls).toBe(0)
    expect(sim.counters().requests).toBe(judgeCalls)
    expect(again.report).toEqual(first.report)
  }, 60_000)
})
