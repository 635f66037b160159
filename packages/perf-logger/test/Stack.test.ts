/**
 * perf-logger in the README's stack order: the batcher sits above it, so the facts the
 * batcher knows (batch size, queue wait) must reach perf-logger from above.
 */
import { assert, describe, it } from "@effect/vitest"
import { Batcher } from "@hasten/batcher"
import { Facts, Llm } from "@hasten/core"
import { Effect, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { PerfLogger } from "../src/index.js"
import * as Scripted from "./fixtures/ScriptedLlm.js"

const callEvents = (dir: string, runId: string) =>
  Fs.readFileSync(Path.join(dir, runId, "events.jsonl"), "utf8").split("\n")
    .filter((line) => line.length > 0).map((line) => JSON.parse(line)).filter((event) => event.type === "call")

describe("README stack order (Batcher → PerfLogger.layer → provider)", () => {
  it.effect("the real Batcher's batch size and queue wait reach perf-logger's events and summary", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-stack-"))
      const Stack = Batcher.layer({ window: "50 millis", maxBatchSize: 8 }).pipe(
        Layer.provide(PerfLogger.layer),
        Layer.provide(Scripted.layer),
        Layer.provideMerge(PerfLogger.layerRun({ dir, runId: "stack", console: false, summaryInterval: false, flush: "event" }))
      )
      const live = yield* Effect.gen(function*() {
        const fibers = yield* Effect.forEach(
          [10, 20, 30],
          (latencyMs) => Effect.forkChild(Llm.complete(Scripted.request({ latencyMs, facts: { retries: 1 } })))
        )
        yield* TestClock.adjust("1 second")
        const completions = yield* Effect.forEach(fibers, Fiber.join)
        // what the caller sees: the batch facts over the provider's own
        assert.deepStrictEqual(
          completions.map((completion) => completion.facts),
          [1, 2, 3].map(() => ({ retries: 1, batchSize: 3, queueWaitMillis: 50 }))
        )
        return yield* PerfLogger.summary
      }).pipe(Effect.provide(Stack))
      const calls = callEvents(dir, "stack")
      assert.deepStrictEqual(calls.map((event) => [event.batchSize, event.queueWaitMs, event.retries]), [[3, 50, 1], [3, 50, 1], [
        3,
        50,
        1
      ]])
      assert.strictEqual(live.overall.batch?.sizes.count, 3)
      assert.strictEqual(live.overall.batch?.sizes.mean, 3)
      assert.strictEqual(live.overall.batch?.queueWaitMs?.p50, 50)
      // perf-logger measured the calls below the batcher: provider latency, not the batch window
      assert.deepStrictEqual(live.overall.latencyMs?.max, 30)
      const written = JSON.parse(Fs.readFileSync(Path.join(dir, "stack", "summary.json"), "utf8"))
      assert.deepStrictEqual(written.overall.batch, live.overall.batch)
    }))
})

describe("facts from the layers above", () => {
  it.effect("facts passed down from above are recorded for streams and failed calls too, merged over the call's own", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-stack-"))
      const Measured = PerfLogger.layer.pipe(
        Layer.provide(Scripted.layer),
        Layer.provideMerge(PerfLogger.layerRun({ dir, runId: "above", console: false, summaryInterval: false, flush: "event" }))
      )
      yield* Effect.gen(function*() {
        const fiber = yield* Effect.forkChild(Effect.gen(function*() {
          yield* Llm.stream(Scripted.request({ chunks: [{ afterMs: 1, text: "a" }], facts: { retries: 2, queueWaitMillis: 1 } })).pipe(
            Stream.runDrain,
            Facts.annotate({ batchSize: 2, queueWaitMillis: 7 })
          )
          yield* Effect.ignore(Llm.complete(Scripted.request({ fail: "Timeout" })).pipe(Facts.annotate({ batchSize: 5 })))
          yield* Llm.complete(Scripted.request({}))
        }))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(fiber)
      }).pipe(Effect.provide(Measured))
      const [stream, failed, plain] = callEvents(dir, "above")
      assert.deepStrictEqual([stream.op, stream.retries, stream.batchSize, stream.queueWaitMs], ["stream", 2, 2, 7])
      assert.deepStrictEqual([failed.ok, failed.batchSize], [false, 5])
      assert.isUndefined(plain.batchSize)
    }))
})

describe("local model memory", () => {
  it.effect("a model's memory fact is recorded once per model, summarized beside RSS, and shown in the table and report", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "perf-logger-memory-"))
      const memory = {
        model: "stories",
        weightsBytes: 3 * 2 ** 20,
        kvCacheBytes: 2 ** 20,
        computeBytes: 2 ** 19,
        contextSize: 256,
        sequences: 4
      }
      const Stack = PerfLogger.layer.pipe(
        Layer.provide(Scripted.layer),
        Layer.provideMerge(PerfLogger.layerRun({ dir, runId: "memory", console: false, summaryInterval: false, flush: "event" }))
      )
      const live = yield* Effect.gen(function*() {
        yield* Effect.forEach([1, 2, 3], () => Llm.complete(Scripted.request({ facts: { modelMemory: memory } })))
        // a cache hit's facts describe the call that filled it: not a new measurement
        yield* Llm.complete(Scripted.request({ cached: true, facts: { modelMemory: { ...memory, sequences: 99 } } }))
        return yield* PerfLogger.summary
      }).pipe(Effect.provide(Stack))
      const events = Fs.readFileSync(Path.join(dir, "memory", "events.jsonl"), "utf8").split("\n").filter((line) => line.length > 0)
        .map((line) => JSON.parse(line))
      assert.strictEqual(events.filter((event) => event.type === "model_memory").length, 1)
      const expected = { ...memory, totalBytes: 4.5 * 2 ** 20 }
      assert.deepStrictEqual(live.modelMemory, [expected])
      const written = JSON.parse(Fs.readFileSync(Path.join(dir, "memory", "summary.json"), "utf8"))
      assert.deepStrictEqual(written.modelMemory, [expected])
      assert.include(
        PerfLogger.renderSummary(live),
        "model stories: 4.5 MiB (weights 3.0 MiB, KV cache 1.0 MiB for 4 x 256 tokens, compute 0.5 MiB)"
      )
      const html = Fs.readFileSync(Path.join(dir, "memory", "report.html"), "utf8")
      assert.include(html, "<td>stories</td><td>3.0 MiB</td><td>1.0 MiB</td><td>0.5 MiB</td><td>4.5 MiB</td><td>4 × 256</td>")
      // a run read back from its events gives the same summary
      assert.deepStrictEqual(
        PerfLogger.summarize(PerfLogger.parseEvents(events.map((event) => JSON.stringify(event)).join("\n"))).modelMemory,
        [
          expected
        ]
      )
    }))
})
