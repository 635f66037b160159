// The root README's full stack, built exactly as shown there, against the testkit OpenAI
// simulator: if the README's snippet stops compiling or working, this fails.
import { assert, describe, it } from "@effect/vitest"
import { Batcher } from "@hasten/batcher"
import { Cache } from "@hasten/cache"
import { CompletionRequest, Llm } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { OpenAi } from "@hasten/providers/openai"
import { RateLimit } from "@hasten/rate-limit"
import { Simulator } from "@hasten/testkit"
import { ConfigProvider, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

describe("the README's stack", () => {
  it.live(
    "Cache → Batcher → PerfLogger → RateLimit → OpenAI answers through the official SDK, then from the cache",
    () =>
      Effect.acquireUseRelease(
        Effect.promise(() => Simulator.start({ seed: 1, limits: { rpm: 600, tpm: 100_000 } })),
        (sim) =>
          Effect.gen(function*() {
            const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-readme-"))
            const Stack = Llm.stack(
              OpenAi.layerConfig(),
              Cache.layer({ store: "sqlite", path: Path.join(dir, "cache.db") }),
              Batcher.layerConfig(),
              PerfLogger.layer,
              RateLimit.layerConfig()
            ).pipe(Layer.provide(PerfLogger.layerRun({ dir, console: false })))
            const env = ConfigProvider.layer(ConfigProvider.fromUnknown({
              OPENAI_API_KEY: "sk-readme",
              OPENAI_BASE_URL: sim.openaiBaseUrl,
              BATCH_TIMEOUT: "0.01",
              RPS_LIMIT: "50"
            }))
            const answer = Llm.complete(CompletionRequest.user("gpt-4o-mini", "2+2?", { temperature: 0 }))
            const [first, second] = yield* Effect.all([answer, Effect.sleep("10 millis").pipe(Effect.andThen(answer))], { concurrency: 1 })
              .pipe(
                Effect.provide(Stack),
                Effect.provide(env)
              )
            assert.isAbove(first.text.length, 0)
            assert.strictEqual(first.provider, "openai")
            assert.isTrue(second.cached)
            assert.strictEqual(second.text, first.text)
            assert.strictEqual(sim.counters().requestsByRoute["POST /v1/chat/completions"], 1)
            // the batcher sits above perf-logger: its facts reach perf-logger's event all the same
            const run = Fs.readdirSync(dir).find((name) => Fs.statSync(Path.join(dir, name)).isDirectory())!
            const calls = Fs.readFileSync(Path.join(dir, run, "events.jsonl"), "utf8").split("\n")
              .filter((line) => line.includes("\"type\":\"call\"")).map((line) => JSON.parse(line))
            assert.deepStrictEqual(calls.map((event) => event.batchSize), [1])
          }),
        (sim) => Effect.promise(() => sim.close())
      ),
    { timeout: 60_000 }
  )
})
