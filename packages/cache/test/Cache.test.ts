import { assert, describe, it } from "@effect/vitest"
import { Cache, CachePayload, CacheStore, MemoryStore } from "@hasten/cache"
import { Completion, CompletionRequest, Embedder, Llm, RateLimitPolicy, RequestKey } from "@hasten/core"
import { Cause, ConfigProvider, Effect, Exit, Fiber, Layer, Logger, Metric, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { answer, makeCounting, makeCountingEmbedder, upstreamFacts } from "./fakes.js"

const deterministic = (content: string, extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
  CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "user", content }], temperature: 0, ...extra })

const tempDir = () => mkdtempSync(join(tmpdir(), "hasten-cache-test-"))

/** Fresh metric registry per test, so counters start at 0. */
const withMetrics = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provideService(effect, Metric.MetricRegistry, new Map())

const count = (metric: Metric.Metric<number, Metric.CounterState<number>>, store = "memory") =>
  Effect.map(Metric.value(Metric.withAttributes(metric, { store })), (state) => state.count)

const strip = (
  chunk: {
    readonly text: string
    readonly finishReason?: unknown
    readonly usage?: unknown
    readonly tokens?: unknown
    readonly model?: unknown
  }
) => ({
  text: chunk.text,
  finishReason: chunk.finishReason,
  usage: chunk.usage,
  tokens: chunk.tokens,
  model: chunk.model
})

describe("key", () => {
  it("changes with every output-affecting field, and omitted temperature differs from 0", () => {
    const base: CompletionRequest.CompletionRequestInput = { model: "m", messages: [{ role: "user", content: "hi" }] }
    const variants: Array<CompletionRequest.CompletionRequestInput> = [
      base,
      { ...base, temperature: 0 },
      { ...base, temperature: 0.5 },
      { ...base, model: "m2" },
      { ...base, messages: [{ role: "user", content: "hi!" }] },
      { ...base, messages: [{ role: "system", content: "hi" }] },
      { ...base, messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }] },
      { ...base, messages: [], prompt: "raw" },
      { ...base, maxTokens: 10 },
      { ...base, maxTokens: 0 },
      { ...base, topP: 0.9 },
      { ...base, topK: 40 },
      { ...base, seed: 1 },
      { ...base, seed: 0 },
      { ...base, stop: ["\n"] },
      { ...base, stop: [] },
      { ...base, adapter: "lora-a" },
      { ...base, responseFormat: { type: "text" } },
      { ...base, responseFormat: { type: "json" } },
      { ...base, responseFormat: { type: "json", schema: { type: "object" } } },
      { ...base, repeatPenalty: 1.1 },
      { ...base, frequencyPenalty: 0.1 },
      { ...base, presencePenalty: 0.1 },
      { ...base, penaltyWindow: 64 },
      { ...base, providerOptions: { user: "a" } },
      { ...base, providerOptions: { user: "b" } },
      { ...base, trial: 0 },
      { ...base, trial: 1 }
    ]
    const keys = variants.map((input) => RequestKey.make(CompletionRequest.makeUnsafe(input), { provider: "p" }))
    assert.strictEqual(new Set(keys).size, variants.length)
    const request = CompletionRequest.makeUnsafe(base)
    const others = [
      RequestKey.make(request, { provider: "q" }),
      RequestKey.make(request, { provider: "p", namespace: "other" }),
      RequestKey.make(request, { provider: "p", version: 2 })
    ]
    assert.strictEqual(new Set([...others, keys[0]]).size, 4)
    // Key order inside providerOptions does not matter.
    assert.strictEqual(
      RequestKey.make(CompletionRequest.makeUnsafe({ ...base, providerOptions: { a: 1, b: 2 } }), { provider: "p" }),
      RequestKey.make(CompletionRequest.makeUnsafe({ ...base, providerOptions: { b: 2, a: 1 } }), { provider: "p" })
    )
  })

  it.effect("a request differing only in trial index is a separate entry", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        yield* llm.complete(deterministic("q", { trial: 0 }))
        yield* llm.complete(deterministic("q", { trial: 1 }))
        const again = yield* llm.complete(deterministic("q", { trial: 1 }))
        assert.isTrue(again.cached)
        assert.include(again.text, "trial 1")
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 2)
    }))
})

describe("rate-limit policy", () => {
  it.effect("passes the provider's RateLimitPolicy up, so a rate limiter above the cache still follows it", () =>
    Effect.gen(function*() {
      const llm = yield* Effect.service(Llm.Llm)
      assert.strictEqual(llm.rateLimitPolicy, RateLimitPolicy.openAi)
    }).pipe(Effect.provide(
      Cache.layer({ store: "memory" }).pipe(Layer.provide(Layer.succeed(Llm.Llm, {
        ...Llm.fromComplete("p", () => Effect.die("unused")),
        rateLimitPolicy: RateLimitPolicy.openAi
      })))
    )))
})

describe("policy", () => {
  it.effect("caches temperature 0 and seeded requests, not default temperature; marks hits cached", () =>
    withMetrics(Effect.gen(function*() {
      const fake = makeCounting()
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const first = yield* llm.complete(deterministic("a"))
        const second = yield* llm.complete(deterministic("a"))
        assert.notStrictEqual(first.cached, true)
        assert.isTrue(second.cached)
        assert.strictEqual(second.text, first.text)
        assert.deepStrictEqual(second.usage, first.usage)
        assert.deepStrictEqual(second.metadata, { upstream: true })
        assert.deepStrictEqual(second.facts, upstreamFacts)
        yield* llm.complete(
          CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "user", content: "s" }], seed: 7, temperature: 1 })
        )
        const seeded = yield* llm.complete(
          CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "user", content: "s" }], seed: 7, temperature: 1 })
        )
        assert.isTrue(seeded.cached)
        const sampled = CompletionRequest.user("m", "b")
        yield* llm.complete(sampled)
        const again = yield* llm.complete(sampled)
        assert.notStrictEqual(again.cached, true)
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 4)
      assert.strictEqual(yield* count(Cache.hits), 2)
      assert.strictEqual(yield* count(Cache.misses), 2)
      assert.strictEqual(yield* count(Cache.skipped), 2)
      assert.isAbove(yield* count(Cache.bytesWritten), 0)
      assert.isAbove(yield* count(Cache.bytesRead), 0)
    })))

  it.effect("policy all caches sampled requests too", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        yield* llm.complete(CompletionRequest.user("m", "b", { temperature: 0.7 }))
        const again = yield* llm.complete(CompletionRequest.user("m", "b", { temperature: 0.7 }))
        assert.isTrue(again.cached)
      }).pipe(Effect.provide(Cache.layer({ store: "memory", policy: "all" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 1)
    }))

  it.effect("enabled: false (the --no-cache switch) passes everything through", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      assert.deepStrictEqual(Cache.fromArgs(["node", "run.ts", "--no-cache"]), { enabled: false })
      assert.deepStrictEqual(Cache.fromArgs(["node", "run.ts"]), {})
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        yield* llm.complete(deterministic("a"))
        const again = yield* llm.complete(deterministic("a"))
        assert.notStrictEqual(again.cached, true)
      }).pipe(Effect.provide(Cache.layer({ store: "memory", ...Cache.fromArgs(["--no-cache"]) }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 2)
    }))

  it.effect("errors are not cached", () =>
    Effect.gen(function*() {
      const fake = makeCounting({ failFirst: 1 })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const failed = yield* Effect.exit(llm.complete(deterministic("a")))
        assert.isTrue(Exit.isFailure(failed))
        const ok = yield* llm.complete(deterministic("a"))
        assert.notStrictEqual(ok.cached, true)
        const hit = yield* llm.complete(deterministic("a"))
        assert.isTrue(hit.cached)
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 2)
    }))
})

describe("memory store", () => {
  it.effect("TTL: served until the expiry instant, a miss from then on (TestClock)", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        yield* llm.complete(deterministic("a"))
        yield* TestClock.adjust("59 seconds")
        assert.isTrue((yield* llm.complete(deterministic("a"))).cached)
        yield* TestClock.adjust("1 second")
        assert.notStrictEqual((yield* llm.complete(deterministic("a"))).cached, true)
        assert.isTrue((yield* llm.complete(deterministic("a"))).cached)
      }).pipe(Effect.provide(Cache.layer({ store: "memory", ttl: "1 minute" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 2)
    }))

  it.effect("LRU: the least recently used entry is evicted by the entry bound, and counted", () =>
    withMetrics(Effect.gen(function*() {
      const fake = makeCounting()
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        yield* llm.complete(deterministic("a"))
        yield* llm.complete(deterministic("b"))
        assert.isTrue((yield* llm.complete(deterministic("a"))).cached) // a is now most recent
        yield* llm.complete(deterministic("c")) // evicts b
        assert.isTrue((yield* llm.complete(deterministic("a"))).cached)
        assert.notStrictEqual((yield* llm.complete(deterministic("b"))).cached, true)
      }).pipe(Effect.provide(Cache.layer({ store: "memory", memory: { maxEntries: 2 } }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 4)
      assert.strictEqual(yield* count(Cache.evictions), 2)
    })))

  it.effect("the byte bound evicts too", () =>
    Effect.gen(function*() {
      const store = MemoryStore.makeUnsafe({ maxBytes: 1_000 })
      const value = "x".repeat(280) // 314 bytes with key and overhead: three fit in 1,000
      let evicted = 0
      for (const key of ["a", "b", "c", "d"]) {
        evicted += yield* store.set({ key, namespace: "n", value, createdAt: 0 })
      }
      assert.strictEqual(evicted, 1)
      assert.isUndefined(yield* store.get("a"))
      assert.isDefined(yield* store.get("d"))
      assert.isAtMost((yield* store.stats).bytes, 1_000)
    }))
})

describe("single-flight", () => {
  it.effect("100 concurrent identical misses make one upstream call", () =>
    withMetrics(Effect.gen(function*() {
      const fake = makeCounting({ latency: "1 second" })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const fibers = yield* Effect.forEach(
          Array.from({ length: 100 }, () => deterministic("same")),
          (request) => Effect.forkChild(llm.complete(request))
        )
        yield* TestClock.adjust("1 second")
        const results = yield* Fiber.joinAll(fibers)
        assert.strictEqual(results.length, 100)
        for (const result of results) assert.strictEqual(result.text, answer(deterministic("same")))
        assert.isTrue((yield* llm.complete(deterministic("same"))).cached)
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 1)
      assert.strictEqual((yield* Metric.value(Cache.coalesced)).count, 99)
    })))

  it.effect("a failure reaches every waiter and is not cached", () =>
    Effect.gen(function*() {
      const fake = makeCounting({ latency: "1 second", failFirst: 1 })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(Effect.exit(llm.complete(deterministic("x")))))
        yield* TestClock.adjust("1 second")
        const exits = yield* Fiber.joinAll(fibers)
        for (const exit of exits) assert.isTrue(Exit.isFailure(exit))
        const fiber = yield* Effect.forkChild(llm.complete(deterministic("x")))
        yield* TestClock.adjust("1 second")
        assert.notStrictEqual((yield* Fiber.join(fiber)).cached, true)
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 2)
    }))

  it.effect("one interrupted caller does not cancel the call others wait on; all interrupted cancels it", () =>
    Effect.gen(function*() {
      const fake = makeCounting({ latency: "1 second" })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const first = yield* Effect.forkChild(llm.complete(deterministic("y")))
        const second = yield* Effect.forkChild(llm.complete(deterministic("y")))
        yield* TestClock.adjust("500 millis")
        yield* Fiber.interrupt(first)
        yield* TestClock.adjust("500 millis")
        assert.strictEqual((yield* Fiber.join(second)).text, answer(deterministic("y")))
        // Now every waiter goes away: the upstream call is interrupted and nothing is stored.
        const lonely = yield* Effect.forkChild(llm.complete(deterministic("z")))
        yield* TestClock.adjust("500 millis")
        yield* Fiber.interrupt(lonely)
        yield* TestClock.adjust("1 second")
        const again = yield* Effect.forkChild(llm.complete(deterministic("z")))
        yield* TestClock.adjust("1 second")
        assert.notStrictEqual((yield* Fiber.join(again)).cached, true)
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 3)
    }))
})

describe("streams", () => {
  it.effect("replays a stored stream chunk by chunk with usage, equal to the original", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const fake = makeCounting({ chunks: 4 })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const original = yield* Stream.runCollect(llm.stream(deterministic("s")))
        const replay = yield* Stream.runCollect(llm.stream(deterministic("s")))
        assert.strictEqual(original.length, 4)
        assert.deepStrictEqual(replay.map(strip), original.map(strip))
        for (const chunk of replay) assert.isTrue(chunk.cached)
        for (const chunk of original) assert.notStrictEqual(chunk.cached, true)
        assert.deepStrictEqual(replay.at(-1)?.usage, { inputTokens: 7, outputTokens: 4 })
        assert.deepStrictEqual(replay.at(-1)?.facts, upstreamFacts)
        // complete() of the same request is answered from the stored stream.
        const completion = yield* llm.complete(deterministic("s"))
        assert.isTrue(completion.cached)
        assert.deepStrictEqual(completion.facts, upstreamFacts)
        assert.strictEqual(completion.text, answer(deterministic("s")))
        assert.strictEqual(completion.finishReason, "stop")
      }).pipe(Effect.provide(Cache.layer({ store: "sqlite", path: join(dir, "c.db") }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.streamCalls, 1)
      assert.strictEqual(fake.completeCalls, 0)
      rmSync(dir, { recursive: true, force: true })
    }))

  it.live("a second identical call right after the first is a hit, even before the SQLite write is committed", () =>
    Effect.gen(function*() {
      // The README's example: two identical requests, one after the other, make one upstream
      // call. The first's write is queued behind the answer (write-behind), so the second
      // call can arrive before it is in the store: it must still be answered as a hit.
      const dir = mkdtempSync(join(tmpdir(), "hasten-cache-seq-"))
      const fake = makeCounting({ latency: 1 })
      const [first, second] = yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        return yield* Effect.all([llm.complete(deterministic("seq")), llm.complete(deterministic("seq"))])
      }).pipe(Effect.provide(Cache.layer({ store: "sqlite", path: join(dir, "c.db") }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.completeCalls, 1)
      assert.notStrictEqual(first.cached, true)
      assert.isTrue(second.cached)
      assert.strictEqual(second.text, first.text)
      rmSync(dir, { recursive: true, force: true })
    }))

  it.effect("a stored completion is replayed to stream callers", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const completion = yield* llm.complete(deterministic("c"))
        const chunks = yield* Stream.runCollect(llm.stream(deterministic("c")))
        assert.strictEqual(chunks.map((chunk) => chunk.text).join(""), completion.text)
        assert.deepStrictEqual(chunks.at(-1)?.usage, completion.usage)
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.streamCalls, 0)
    }))

  it.effect("a caller joining a stream late still receives the whole stream; one upstream stream", () =>
    Effect.gen(function*() {
      const fake = makeCounting({ chunks: 5, latency: "100 millis" })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const early = yield* Effect.forkChild(Stream.runCollect(llm.stream(deterministic("late"))))
        yield* TestClock.adjust("250 millis") // early has seen 3 chunks
        const late = yield* Effect.forkChild(Stream.runCollect(llm.stream(deterministic("late"))))
        yield* TestClock.adjust("1 second")
        const earlyChunks = yield* Fiber.join(early)
        const lateChunks = yield* Fiber.join(late)
        assert.strictEqual(earlyChunks.length, 5)
        assert.deepStrictEqual(lateChunks.map(strip), earlyChunks.map(strip))
        assert.strictEqual(lateChunks.map((chunk) => chunk.text).join(""), answer(deterministic("late")))
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.streamCalls, 1)
    }))

  it.effect("an interrupted stream is never stored", () =>
    Effect.gen(function*() {
      const fake = makeCounting({ chunks: 4 })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const partial = yield* Stream.runCollect(llm.stream(deterministic("i")).pipe(Stream.take(2)))
        assert.strictEqual(partial.length, 2)
        const full = yield* Stream.runCollect(llm.stream(deterministic("i")))
        assert.strictEqual(full.length, 4)
        for (const chunk of full) assert.notStrictEqual(chunk.cached, true)
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.streamCalls, 2)
      assert.strictEqual(fake.streamsInterrupted, 1)
    }))

  it.effect("a failed stream is never stored and its error reaches the caller", () =>
    Effect.gen(function*() {
      const fake = makeCounting({ chunks: 4, failStreamAfter: 2 })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        const exit = yield* Effect.exit(Stream.runCollect(llm.stream(deterministic("f"))))
        assert.isTrue(Exit.isFailure(exit))
        const again = yield* Effect.exit(Stream.runCollect(llm.stream(deterministic("f"))))
        assert.isTrue(Exit.isFailure(again))
      }).pipe(Effect.provide(Cache.layer({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.strictEqual(fake.streamCalls, 2)
    }))
})

describe("sqlite store", () => {
  it.effect("survives a restart (a new layer on the same file hits)", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const path = join(dir, "nested", "cache.db")
      const fake = makeCounting()
      const run = Effect.flatMap(Effect.service(Llm.Llm), (llm) => llm.complete(deterministic("persist"))).pipe(
        Effect.provide(Cache.layer({ store: "sqlite", path }).pipe(Layer.provide(fake.layer)))
      )
      assert.notStrictEqual((yield* run).cached, true)
      assert.isTrue((yield* run).cached)
      assert.strictEqual(fake.completeCalls, 1)
      rmSync(dir, { recursive: true, force: true })
    }))

  it.effect("a corrupt row is a logged miss that is overwritten, never a crash", () =>
    withMetrics(Effect.gen(function*() {
      const dir = tempDir()
      const path = join(dir, "c.db")
      const fake = makeCounting()
      const layer = Cache.layer({ store: "sqlite", path }).pipe(Layer.provide(fake.layer))
      const call = Effect.flatMap(Effect.service(Llm.Llm), (llm) => llm.complete(deterministic("corrupt"))).pipe(Effect.provide(layer))
      yield* call
      const { SqliteDatabase } = yield* Effect.promise(() => import("../src/internal/sqlite.js"))
      for (const garbage of ["{not json", JSON.stringify({ _tag: "completion", completion: { text: 1 } })]) {
        const db = new SqliteDatabase({ path })
        db.exec(`UPDATE hasten_cache SET value = '${garbage.replaceAll("'", "''")}'`)
        db.close()
        const fresh = yield* call
        assert.notStrictEqual(fresh.cached, true)
        assert.strictEqual(fresh.text, answer(deterministic("corrupt")))
        assert.isTrue((yield* call).cached) // overwritten with a good entry
      }
      assert.strictEqual(fake.completeCalls, 3)
      assert.strictEqual(yield* count(Cache.corrupt, "sqlite"), 2)
      rmSync(dir, { recursive: true, force: true })
    })))

  it.effect("an unopenable file degrades to pass-through (bypass) or dies (fail)", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const blocker = join(dir, "file")
      writeFileSync(blocker, "not a directory")
      const fake = makeCounting()
      const call = (onStoreError: Cache.OnStoreError) =>
        Effect.flatMap(Effect.service(Llm.Llm), (llm) => llm.complete(deterministic("p"))).pipe(
          Effect.provide(Cache.layer({ store: "sqlite", path: join(blocker, "cache.db"), onStoreError }).pipe(Layer.provide(fake.layer)))
        )
      yield* call("bypass")
      yield* call("bypass")
      assert.strictEqual(fake.completeCalls, 2)
      const exit = yield* Effect.exit(call("fail"))
      assert.isTrue(Exit.isFailure(exit))
      rmSync(dir, { recursive: true, force: true })
    }))

  it.effect("memory in front of SQLite: a fresh process reads through to the file", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const path = join(dir, "c.db")
      const fake = makeCounting()
      const run = Effect.flatMap(Effect.service(Llm.Llm), (llm) =>
        Effect.zip(llm.complete(deterministic("tier")), llm.complete(deterministic("tier")))).pipe(
          Effect.provide(Cache.layer({ store: "sqlite", path, tier: true }).pipe(Layer.provide(fake.layer)))
        )
      const [first, second] = yield* run
      assert.notStrictEqual(first.cached, true)
      assert.isTrue(second.cached)
      const [third] = yield* run
      assert.isTrue(third.cached)
      assert.strictEqual(fake.completeCalls, 1)
      rmSync(dir, { recursive: true, force: true })
    }))
})

describe("store errors", () => {
  it.effect("bypass: one warning per outage, pass-through meanwhile, caching again after recovery", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      const inner = MemoryStore.makeUnsafe()
      let down = false
      const failing = <A>(effect: Effect.Effect<A, CacheStore.CacheStoreError>): Effect.Effect<A, CacheStore.CacheStoreError> =>
        Effect.suspend(() =>
          down
            ? Effect.fail(new CacheStore.CacheStoreError({ store: "flaky", operation: "get", description: "connection refused" }))
            : effect
        )
      const flaky: CacheStore.CacheStoreService = {
        ...inner,
        name: "flaky",
        get: (key) => failing(inner.get(key)),
        set: (entry) => failing(inner.set(entry))
      }
      const warnings: Array<string> = []
      const logger = Logger.make((options) => {
        if (options.logLevel === "Warn") warnings.push(String(options.message))
      })
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        yield* llm.complete(deterministic("a"))
        assert.isTrue((yield* llm.complete(deterministic("a"))).cached)
        down = true
        for (let index = 0; index < 3; index++) {
          const result = yield* llm.complete(deterministic("a"))
          assert.notStrictEqual(result.cached, true)
        }
        assert.strictEqual(warnings.length, 1)
        assert.include(warnings[0]!, "connection refused")
        down = false
        assert.isTrue((yield* llm.complete(deterministic("a"))).cached)
      }).pipe(
        Effect.provide(Cache.layerFromStore().pipe(Layer.provide(Layer.succeed(CacheStore.CacheStore, flaky)), Layer.provide(fake.layer))),
        Effect.provide(Logger.layer([logger]))
      )
      assert.strictEqual(fake.completeCalls, 4)
    }))
})

describe("synchronous store access", () => {
  it.effect("reads and writes a store through `get.now` and `set.now`, without their effects; a wrapper that replaces them drops the forms", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      const inner = MemoryStore.makeUnsafe()
      const effectsUsed: Array<string> = []
      const syncOnly: CacheStore.CacheStoreService = {
        ...inner,
        get: CacheStore.withNow((key: string) => {
          effectsUsed.push(`get ${key}`)
          return inner.get(key)
        }, inner.get.now!),
        set: CacheStore.withNow((entry: CacheStore.Entry) => {
          effectsUsed.push(`set ${entry.key}`)
          return inner.set(entry)
        }, inner.set.now!)
      }
      yield* Effect.gen(function*() {
        const llm = yield* Llm.Llm
        assert.notStrictEqual((yield* llm.complete(deterministic("a"))).cached, true)
        assert.isTrue((yield* llm.complete(deterministic("a"))).cached)
      }).pipe(
        Effect.provide(
          Cache.layerFromStore().pipe(Layer.provide(Layer.succeed(CacheStore.CacheStore, syncOnly)), Layer.provide(fake.layer))
        )
      )
      assert.deepStrictEqual(effectsUsed, [])
      assert.strictEqual(fake.completeCalls, 1)
      // a spread that replaces `get` and `set` leaves no synchronous form behind
      const wrapped: CacheStore.CacheStoreService = { ...inner, get: (key) => inner.get(key), set: (entry) => inner.set(entry) }
      assert.isUndefined(wrapped.get.now)
      assert.isUndefined(wrapped.set.now)
    }))
})

describe("embedder", () => {
  it.effect("caches per text and sends only the misses upstream", () =>
    Effect.gen(function*() {
      const fake = makeCountingEmbedder()
      yield* Effect.gen(function*() {
        const embedder = yield* Embedder.Embedder
        const first = yield* embedder.embed(["a", "b"])
        assert.notStrictEqual(first.cached, true)
        const second = yield* embedder.embed(["a", "c"])
        assert.notStrictEqual(second.cached, true)
        const third = yield* embedder.embed(["b", "c", "a"])
        assert.isTrue(third.cached)
        assert.deepStrictEqual(third.vectors, [Embedder.hashVector("b", 4), Embedder.hashVector("c", 4), Embedder.hashVector("a", 4)])
        assert.deepStrictEqual(second.vectors[0], first.vectors[0])
        // Another dimension count is another entry.
        yield* embedder.embed(["a"], { dimensions: 8 })
      }).pipe(Effect.provide(Cache.layerEmbedder({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.deepStrictEqual(fake.batches, [["a", "b"], ["c"], ["a"]])
    }))
})

describe("embedder single-flight", () => {
  it.effect("concurrent identical batches make one upstream call", () =>
    Effect.gen(function*() {
      const fake = makeCountingEmbedder("1 second")
      yield* Effect.gen(function*() {
        const embedder = yield* Embedder.Embedder
        const fibers = yield* Effect.forEach([1, 2, 3, 4, 5], () => Effect.forkChild(embedder.embed(["x", "y"])))
        yield* TestClock.adjust("1 second")
        const results = yield* Fiber.joinAll(fibers)
        for (const result of results) assert.deepStrictEqual(result.vectors, [Embedder.hashVector("x", 4), Embedder.hashVector("y", 4)])
      }).pipe(Effect.provide(Cache.layerEmbedder({ store: "memory" }).pipe(Layer.provide(fake.layer))))
      assert.deepStrictEqual(fake.batches, [["x", "y"]])
    }))
})

describe("configuration", () => {
  const withEnv = (env: Record<string, string>) => Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))

  it.effect("reads HASTEN_CACHE, HASTEN_CACHE_STORE, HASTEN_CACHE_DIR and friends", () =>
    Effect.gen(function*() {
      const options = yield* withEnv({
        HASTEN_CACHE_STORE: "redis",
        REDIS_URL: "redis://:secret@127.0.0.1:1",
        HASTEN_CACHE_DIR: "/tmp/x",
        HASTEN_CACHE_TTL: "1 hour",
        HASTEN_CACHE_POLICY: "all"
      })(Cache.config)
      assert.strictEqual(options.store, "redis")
      assert.strictEqual(options.path, join("/tmp/x", "cache.db"))
      assert.strictEqual(options.policy, "all")
      assert.strictEqual(options.enabled, true)
      assert.notInclude(String(options.redisUrl), "secret")
      const bad = yield* Effect.exit(withEnv({ HASTEN_CACHE_STORE: "disk" })(Cache.config))
      assert.isTrue(Exit.isFailure(bad))
    }))

  it.effect("HASTEN_CACHE=0 passes through; HASTEN_CACHE_STORE=memory caches", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      const twice = Effect.flatMap(Effect.service(Llm.Llm), (llm) =>
        Effect.zip(llm.complete(deterministic("e")), llm.complete(deterministic("e"))))
      yield* twice.pipe(Effect.provide(Cache.layerConfig().pipe(Layer.provide(fake.layer))), withEnv({ HASTEN_CACHE: "0" }))
      assert.strictEqual(fake.completeCalls, 2)
      const [, second] = yield* twice.pipe(
        Effect.provide(Cache.layerConfig().pipe(Layer.provide(fake.layer))),
        withEnv({ HASTEN_CACHE_STORE: "memory" })
      )
      assert.isTrue(second.cached)
      assert.strictEqual(fake.completeCalls, 3)
    }))

  it.effect("layerConfig(options): explicit options win over the environment", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      const twice = Effect.flatMap(Effect.service(Llm.Llm), (llm) =>
        Effect.zip(llm.complete(deterministic("o")), llm.complete(deterministic("o"))))
      // the environment turns the cache off and points at a SQLite file; the options win
      const [, second] = yield* twice.pipe(
        Effect.provide(Cache.layerConfig({ enabled: true, store: "memory" }).pipe(Layer.provide(fake.layer))),
        withEnv({ HASTEN_CACHE: "0", HASTEN_CACHE_STORE: "sqlite", HASTEN_CACHE_PATH: "/nonexistent/dir/cache.db" })
      )
      assert.isTrue(second.cached)
      assert.strictEqual(fake.completeCalls, 1)
      // and with no options it is the environment's
      yield* twice.pipe(Effect.provide(Cache.layerConfig().pipe(Layer.provide(fake.layer))), withEnv({ HASTEN_CACHE: "0" }))
      assert.strictEqual(fake.completeCalls, 3)
    }))
})

describe("CachePayload", () => {
  it("a completion is stored as its schema encodes it, every optional field included (the direct JSON path)", () => {
    const completion = new Completion.Completion({
      text: "t",
      finishReason: "length",
      usage: { inputTokens: 1, outputTokens: 2, cachedInputTokens: 1 },
      model: "m",
      provider: "p",
      timing: { start: 0, firstToken: 1, end: 2 },
      rateLimit: { limitRequests: 10, remainingRequests: 9, resetRequestsMillis: 5, retryAfterMillis: 3 },
      cached: false,
      facts: { ...upstreamFacts, batchSize: 8 },
      logprobs: [{ token: "t", logprob: -0.5, bytes: [116], topLogprobs: [{ token: "t", logprob: -0.5, bytes: [116] }] }],
      metadata: { nested: { list: [1, "two", null] } }
    })
    const viaSchema = JSON.stringify(Schema.encodeSync(CachePayload.Payload)({ _tag: "completion", completion }))
    assert.strictEqual(CachePayload.encodePayload({ _tag: "completion", completion }), viaSchema)
    const back = CachePayload.decodePayload(viaSchema)
    assert.deepStrictEqual(back?._tag === "completion" ? { ...back.completion } : undefined, { ...completion })
  })

  it("facts round-trip through the stored JSON text of a completion and of a stream", () => {
    const completion = new Completion.Completion({
      text: "t",
      finishReason: "stop",
      usage: { inputTokens: 1, outputTokens: 1 },
      model: "m",
      provider: "p",
      timing: { start: 0, end: 1 },
      facts: { ...upstreamFacts, batchSize: 8 }
    })
    const stored = CachePayload.encodePayload({ _tag: "completion", completion })!
    const back = CachePayload.decodePayload(stored, true)
    assert.strictEqual(back?._tag, "completion")
    assert.deepStrictEqual(back?._tag === "completion" ? back.completion.facts : undefined, completion.facts)
    const chunks = Completion.toChunks(completion)
    const replay = CachePayload.decodePayload(CachePayload.encodePayload({ _tag: "stream", chunks })!, true)
    assert.deepStrictEqual(replay?._tag === "stream" ? replay.chunks[0]?.facts : undefined, completion.facts)
  })
})

describe("options", () => {
  it.effect("bad options: the layer dies with CacheError naming the field, every problem listed", () =>
    Effect.gen(function*() {
      const build = (options: Cache.Options) =>
        Effect.exit(Effect.scoped(Layer.build(Cache.layer(options).pipe(Layer.provide(Llm.Llm.layerEcho)))))
      const exit = yield* build({ store: "memory", version: -1, ttl: "later" as never, memory: { maxEntries: 0 } })
      assert.isTrue(Exit.isFailure(exit))
      const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
      assert.instanceOf(error, Cache.CacheError)
      assert.strictEqual(error.reason.field, "version")
      assert.strictEqual(
        error.message,
        "invalid cache options: version must be a non-negative integer, got -1; ttl must be a duration (\"50 millis\", milliseconds), got later; memory.maxEntries must be a positive integer, got 0"
      )
      const policy = yield* build({ store: "memory", policy: "sometimes" as never })
      assert.strictEqual((Cause.squash((policy as Exit.Failure<unknown, unknown>).cause) as Cache.CacheError).reason.field, "policy")
      assert.isTrue(Exit.isSuccess(yield* build({ store: "memory", ttl: "1 hour", version: 2, memory: { maxEntries: 10 } })))
      const embedder = yield* Effect.exit(
        Effect.scoped(
          Layer.build(Cache.layerEmbedder({ store: "memory", namespace: 1 as never }).pipe(Layer.provide(Embedder.Embedder.layerHash)))
        )
      )
      assert.strictEqual((Cause.squash((embedder as Exit.Failure<unknown, unknown>).cause) as Cache.CacheError).reason.field, "namespace")
    }))
})
