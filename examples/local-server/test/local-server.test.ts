import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { run } from "../src/LoadTest.js"

describe("examples/local-server (quick)", () => {
  it.live(
    "serves chat, embeddings and models to the openai SDK at 1 and N clients, and repeats deterministically",
    () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const result = yield* run({
          model: "stories260K.gguf",
          sequences: 4,
          clients: 4,
          requests: 8,
          maxTokens: 12,
          port: 0,
          cache: true,
          log: (line) => lines.push(line)
        })
        assert.strictEqual(result.phases.length, 3)
        assert.isTrue(result.phases.every((p) => p.requests === 8 && p.outputTokens > 0))
        // 2 setup requests (models, embeddings) + 3 phases of 8
        assert.strictEqual(result.served, 26)
        assert.isTrue(lines.some((line) => line.startsWith("request-level concurrency:")))
        // temperature 0 and the same prompts: the repeated phase returns the same tokens
        assert.strictEqual(result.phases[2]!.outputTokens, result.phases[1]!.outputTokens)
      }),
    { timeout: 120_000 }
  )

  it.live("a missing model says how to provide one", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        run({ model: "absent.gguf", sequences: 1, clients: 1, requests: 1, maxTokens: 1, port: 0, cache: false, log: () => {} })
      )
      assert.match(error.message, /model not found.*HASTEN_MODEL/s)
    }))
})
