import { assert, describe, it } from "@effect/vitest"
import { Batcher, BatcherError } from "@hasten/batcher"
import { Embedder, Llm } from "@hasten/core"
import { Cause, ConfigProvider, Effect, Exit, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { ask, makeEmbedUpstream, makeUpstream } from "./fakes.js"

const fork = (content: string) => Effect.forkChild(Llm.complete(ask(content)))

describe("Batcher.layer", () => {
  it.effect("bad options: the layer dies with BatcherError naming the field, every problem listed", () =>
    Effect.gen(function*() {
      const build = (options: Batcher.Options) =>
        Effect.exit(Effect.scoped(Layer.build(Batcher.layer(options).pipe(Layer.provide(Llm.Llm.layerEcho)))))
      const exit = yield* build({ maxBatchSize: 0, concurrency: { max: 4, memoryFraction: 2 }, window: "soon" as never })
      assert.isTrue(Exit.isFailure(exit))
      const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
      assert.instanceOf(error, BatcherError.BatcherError)
      assert.strictEqual(error.reason.field, "maxBatchSize")
      assert.strictEqual(
        error.message,
        "invalid batcher options: maxBatchSize must be a positive integer, got 0; window must be a duration (\"50 millis\", milliseconds), got soon; concurrency.memoryFraction must be in (0, 1], got 2"
      )
      assert.isTrue(Exit.isSuccess(yield* build({ maxBatchSize: 8, window: "20 millis", concurrency: 4 })))
      const embedder = yield* Effect.exit(
        Effect.scoped(Layer.build(Batcher.layerEmbedder({ maxBatchSize: -1 }).pipe(Layer.provide(Embedder.Embedder.layerHash))))
      )
      assert.strictEqual(
        (Cause.squash((embedder as Exit.Failure<unknown, unknown>).cause) as BatcherError.BatcherError).reason.field,
        "maxBatchSize"
      )
    }))

  it.effect("flushes nothing before the window and one batch of 3 at the window", () => {
    const upstream = makeUpstream()
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["a", "b", "c"], fork)
      yield* TestClock.adjust("49 millis")
      assert.strictEqual(upstream.calls.length, 0)
      yield* TestClock.adjust("1 millis")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(results.map((r) => r.text), ["re: a", "re: b", "re: c"])
      assert.deepStrictEqual(results.map((r) => r.facts?.batchSize), [3, 3, 3])
      assert.deepStrictEqual(results.map((r) => r.facts?.queueWaitMillis), [50, 50, 50])
      assert.strictEqual(upstream.calls.length, 3)
      // the layer below sees the batch facts while it runs (so a perf-logger there records them)
      assert.deepStrictEqual(upstream.calls.map((c) => c.facts), [1, 2, 3].map(() => ({ batchSize: 3, queueWaitMillis: 50 })))
    }).pipe(Effect.provide(Batcher.layer({ window: "50 millis", maxBatchSize: 8 }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("dispatches as soon as a batch is full, without waiting for the window", () => {
    const upstream = makeUpstream()
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["1", "2", "3", "4", "5"], fork)
      yield* Effect.yieldNow
      yield* Effect.yieldNow
      // The first 4 filled a batch and went at t=0; the 5th waits for its own window.
      assert.strictEqual(upstream.calls.length, 4)
      yield* TestClock.adjust("100 millis")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(results.map((r) => r.facts?.batchSize), [4, 4, 4, 4, 1])
      assert.deepStrictEqual(upstream.calls.map((c) => c.at), [0, 0, 0, 0, 100])
    }).pipe(Effect.provide(Batcher.layer({ window: "100 millis", maxBatchSize: 4 }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("a bad item fails only its own caller", () => {
    const upstream = makeUpstream()
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["ok-1", "bad", "ok-2"], fork)
      yield* TestClock.adjust("10 millis")
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      assert.isTrue(Exit.isSuccess(exits[0]!))
      assert.isTrue(Exit.isFailure(exits[1]!))
      assert.isTrue(Exit.isSuccess(exits[2]!))
    }).pipe(Effect.provide(Batcher.layer({ window: "10 millis" }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("a defect in the backend fails the waiting callers instead of leaving them hanging", () => {
    const upstream = makeUpstream()
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["x", "defect"], fork)
      yield* TestClock.adjust("10 millis")
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      assert.isTrue(Exit.isSuccess(exits[0]!))
      assert.isTrue(Exit.hasDies(exits[1]!))
    }).pipe(Effect.provide(Batcher.layer({ window: "10 millis" }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("an interrupted caller does not cancel the others in its batch", () => {
    const upstream = makeUpstream("20 millis")
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["a", "b", "c"], fork)
      yield* TestClock.adjust("10 millis") // dispatched, now running upstream
      yield* Fiber.interrupt(fibers[1]!)
      yield* TestClock.adjust("20 millis")
      const a = yield* Fiber.join(fibers[0]!)
      const c = yield* Fiber.join(fibers[2]!)
      assert.deepStrictEqual([a.text, c.text], ["re: a", "re: c"])
    }).pipe(Effect.provide(Batcher.layer({ window: "10 millis" }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("an item interrupted before dispatch never reaches the backend", () => {
    const upstream = makeUpstream()
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["keep", "drop"], fork)
      yield* Fiber.interrupt(fibers[1]!)
      yield* TestClock.adjust("10 millis")
      yield* Fiber.join(fibers[0]!)
      assert.deepStrictEqual(upstream.calls.map((c) => c.content), ["keep"])
    }).pipe(Effect.provide(Batcher.layer({ window: "10 millis" }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("disabled mode passes calls straight through", () => {
    const upstream = makeUpstream()
    return Effect.gen(function*() {
      const result = yield* Llm.complete(ask("now"))
      assert.strictEqual(result.text, "re: now")
      assert.isUndefined(result.facts?.batchSize)
    }).pipe(Effect.provide(Batcher.layer({ enabled: false }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("items of different batches share the slots: a new item starts as soon as one finishes", () => {
    const upstream = makeUpstream("30 millis")
    return Effect.gen(function*() {
      const first = yield* Effect.forEach(["a", "b", "c"], fork) // batch 1 at t=0 (full at 3)
      const second = yield* Effect.forEach(["d", "e", "f"], fork) // batch 2 at t=0, waits for slots
      yield* TestClock.adjust("30 millis")
      yield* TestClock.adjust("30 millis")
      yield* TestClock.adjust("30 millis")
      yield* Effect.forEach([...first, ...second], Fiber.join)
      assert.strictEqual(upstream.peak(), 2)
      // continuous: starts at 0,0 then 30,30 then 60,60 — not "wait for the whole batch"
      assert.deepStrictEqual(upstream.calls.map((c) => c.at).sort((x, y) => x - y), [0, 0, 30, 30, 60, 60])
    }).pipe(Effect.provide(Batcher.layer({ window: "10 millis", maxBatchSize: 3, concurrency: 2 }).pipe(Layer.provide(upstream.layer))))
  })

  it.effect("halves the size after an allocation failure and retries that item", () => {
    const upstream = makeUpstream()
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["oom", "y"], fork)
      yield* TestClock.adjust("10 millis")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.strictEqual(results[0]!.text, "re: oom")
      assert.strictEqual(upstream.calls.filter((c) => c.content === "oom").length, 2)
    }).pipe(Effect.provide(Batcher.layer({ window: "10 millis", concurrency: { max: 8, initial: 8 } }).pipe(Layer.provide(upstream.layer))))
  })
})

describe("Batcher.config", () => {
  it.effect("reads BATCH_SIZE and BATCH_TIMEOUT (seconds) with the seeds' defaults", () =>
    Effect.gen(function*() {
      const defaults = yield* Batcher.config.parse(ConfigProvider.fromUnknown({}))
      assert.strictEqual(defaults.maxBatchSize, 32)
      assert.strictEqual(defaults.enabled, true)
      const custom = yield* Batcher.config.parse(
        ConfigProvider.fromUnknown({ BATCH_SIZE: "8", BATCH_TIMEOUT: "0.25", BATCHING_ENABLED: "false" })
      )
      assert.strictEqual(custom.maxBatchSize, 8)
      assert.strictEqual(custom.enabled, false)
    }))

  it.effect("layerConfig(options): explicit options win over the environment", () => {
    const upstream = makeUpstream()
    const env = ConfigProvider.layer(ConfigProvider.fromUnknown({ BATCH_SIZE: "8", BATCH_TIMEOUT: "1", BATCHING_ENABLED: "false" }))
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(["a", "b", "c"], fork)
      yield* TestClock.adjust("50 millis") // options' window, not the environment's 1 s
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(results.map((r) => r.facts?.batchSize), [3, 3, 3]) // batching on, against BATCHING_ENABLED=false
    }).pipe(
      Effect.provide(Batcher.layerConfig({ enabled: true, window: "50 millis" }).pipe(Layer.provide(upstream.layer), Layer.provide(env)))
    )
  })

  it.effect("fails naming the variable on a bad value", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Batcher.config.parse(ConfigProvider.fromUnknown({ BATCH_SIZE: "abc" })))
      assert.match(String(error), /BATCH_SIZE/)
      const negative = yield* Effect.flip(Batcher.config.parse(ConfigProvider.fromUnknown({ BATCH_TIMEOUT: "-1" })))
      assert.match(String(negative), /BATCH_TIMEOUT/)
    }))
})

describe("Batcher.layerEmbedder", () => {
  it.effect("merges concurrent embed calls into one array call", () => {
    const upstream = makeEmbedUpstream()
    return Effect.gen(function*() {
      const results = yield* Effect.forEach(["a", "bb", "ccc"], (text) => Embedder.embed([text]), { concurrency: "unbounded" })
        .pipe(Effect.forkChild, Effect.tap(() => TestClock.adjust("20 millis")), Effect.flatMap(Fiber.join))
      assert.deepStrictEqual(results.map((r) => r.vectors[0]), [[1], [2], [3]])
      assert.strictEqual(upstream.calls.length, 1)
      assert.deepStrictEqual(upstream.calls[0], ["a", "bb", "ccc"])
    }).pipe(Effect.provide(Batcher.layerEmbedder().pipe(Layer.provide(upstream.layer))))
  })

  it.effect("isolates a bad text: only its caller fails", () => {
    const upstream = makeEmbedUpstream()
    return Effect.gen(function*() {
      const fiber = yield* Effect.forEach(["good", "bad"], (text) => Effect.exit(Embedder.embed([text])), { concurrency: "unbounded" })
        .pipe(Effect.forkChild)
      yield* TestClock.adjust("20 millis")
      const [good, bad] = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isSuccess(good!))
      assert.isTrue(Exit.isFailure(bad!))
    }).pipe(Effect.provide(Batcher.layerEmbedder().pipe(Layer.provide(upstream.layer))))
  })
})
