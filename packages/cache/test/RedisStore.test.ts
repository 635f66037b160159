import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Cache, RedisStore } from "@hasten/cache"
import { CompletionRequest, Llm } from "@hasten/core"
import { RedisServer } from "@hasten/testkit"
import { Effect, Exit, Layer, Stream } from "effect"
import { Redis } from "ioredis"
import { conformance } from "./CacheStoreConformance.js"
import { answer, makeCounting } from "./fakes.js"

const deterministic = (content: string) =>
  CompletionRequest.makeUnsafe({ model: "m", messages: [{ role: "user", content }], temperature: 0 })

let server: RedisServer.RedisServer
beforeAll(async () => {
  server = await RedisServer.start()
})
afterAll(async () => {
  await server?.stop()
})

let prefixes = 0
conformance("redis", Effect.suspend(() => RedisStore.make({ url: server.url, prefix: `conformance-${++prefixes}:` })))

const complete = (content: string) => Effect.flatMap(Effect.service(Llm.Llm), (llm) => llm.complete(deterministic(content)))

describe("Redis store (real redis-server)", () => {
  it.live("a second client (another machine) hits what the first one stored; streams replay", () =>
    Effect.gen(function*() {
      const fake = makeCounting({ chunks: 3 })
      const layer = Cache.layer({ store: "redis", redisUrl: server.url, redisPrefix: "t1:" }).pipe(Layer.provide(fake.layer))
      assert.notStrictEqual((yield* complete("shared").pipe(Effect.provide(layer))).cached, true)
      const hit = yield* complete("shared").pipe(Effect.provide(layer))
      assert.isTrue(hit.cached)
      assert.strictEqual(hit.text, answer(deterministic("shared")))
      const stream = Effect.flatMap(Effect.service(Llm.Llm), (llm) => Stream.runCollect(llm.stream(deterministic("streamed"))))
      const original = yield* stream.pipe(Effect.provide(layer))
      const replay = yield* stream.pipe(Effect.provide(layer))
      assert.deepStrictEqual(replay.map((chunk) => chunk.text), original.map((chunk) => chunk.text))
      assert.deepStrictEqual(replay.at(-1)?.usage, original.at(-1)?.usage)
      assert.isTrue(replay.every((chunk) => chunk.cached === true))
      assert.strictEqual(fake.completeCalls, 1)
      assert.strictEqual(fake.streamCalls, 1)
    }))

  it.live("memory in front of Redis: the front serves repeats, a fresh front reads through to Redis", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      const layer = Cache.layer({ store: "redis", redisUrl: server.url, redisPrefix: "t4:", tier: true }).pipe(Layer.provide(fake.layer))
      const [first, second] = yield* Effect.zip(complete("tier"), complete("tier")).pipe(Effect.provide(layer))
      assert.notStrictEqual(first.cached, true)
      assert.isTrue(second.cached)
      assert.isTrue((yield* complete("tier").pipe(Effect.provide(layer))).cached)
      assert.strictEqual(fake.completeCalls, 1)
      const store = yield* RedisStore.make({ url: server.url, prefix: "t4:" })
      assert.strictEqual((yield* store.stats).entries, 1)
    }).pipe(Effect.scoped))

  it.live("entries written before namespaces were escaped in the header still read", () =>
    Effect.gen(function*() {
      const client = new Redis(server.url)
      yield* Effect.promise(() => client.set("t2:e:legacy", "plain ns\n1000\n\n{\"a\":\"x\\ny\"}\nmore"))
      yield* Effect.promise(() => client.quit())
      const store = yield* RedisStore.make({ url: server.url, prefix: "t2:" })
      assert.deepStrictEqual(yield* store.get("legacy"), {
        key: "legacy",
        namespace: "plain ns",
        createdAt: 1000,
        value: "{\"a\":\"x\\ny\"}\nmore"
      })
    }).pipe(Effect.scoped))

  it.live("prune deletes a value without a header from the namespace it is listed in", () =>
    Effect.gen(function*() {
      const store = yield* RedisStore.make({ url: server.url, prefix: "t5:" })
      yield* store.set({ key: "k", namespace: "c", value: "v", createdAt: 0 })
      const client = new Redis(server.url)
      yield* Effect.promise(() => client.set("t5:e:k", "garbage without header"))
      assert.strictEqual(yield* store.prune({ namespace: "other" }), 0)
      assert.strictEqual(yield* store.prune({ namespace: "c", olderThan: "1 day" }), 1)
      assert.strictEqual(yield* Effect.promise(() => client.exists("t5:e:k")), 0)
      yield* Effect.promise(() => client.quit())
    }).pipe(Effect.scoped))

  it.live("a corrupt value is a miss that gets overwritten", () =>
    Effect.gen(function*() {
      const fake = makeCounting()
      const layer = Cache.layer({ store: "redis", redisUrl: server.url, redisPrefix: "t3:" }).pipe(Layer.provide(fake.layer))
      yield* complete("c").pipe(Effect.provide(layer))
      const client = new Redis(server.url)
      const keys = yield* Effect.promise(() => client.keys("t3:e:*"))
      assert.strictEqual(keys.length, 1)
      yield* Effect.promise(() => client.set(keys[0]!, "garbage without header"))
      yield* Effect.promise(() => client.quit())
      assert.notStrictEqual((yield* complete("c").pipe(Effect.provide(layer))).cached, true)
      assert.isTrue((yield* complete("c").pipe(Effect.provide(layer))).cached)
      assert.strictEqual(fake.completeCalls, 2)
    }))

  it.live("Redis down: bypass passes through with a warning; fail fails the call", () =>
    Effect.gen(function*() {
      const dead = yield* Effect.promise(() => RedisServer.start())
      yield* Effect.promise(() => dead.stop())
      const fake = makeCounting()
      const bypass = Cache.layer({ store: "redis", redisUrl: dead.url }).pipe(Layer.provide(fake.layer))
      const twice = Effect.zip(complete("d"), complete("d"))
      const [first, second] = yield* twice.pipe(Effect.provide(bypass))
      assert.strictEqual(first.text, answer(deterministic("d")))
      assert.notStrictEqual(second.cached, true)
      assert.strictEqual(fake.completeCalls, 2)
      const failing = Cache.layer({ store: "redis", redisUrl: dead.url, onStoreError: "fail" }).pipe(Layer.provide(fake.layer))
      const exit = yield* Effect.exit(complete("d").pipe(Effect.provide(failing)))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(exit), "cache store redis")
    }))

  it.live("Redis going away mid-run degrades to pass-through; the run goes on", () =>
    Effect.gen(function*() {
      const flaky = yield* Effect.promise(() => RedisServer.start())
      const fake = makeCounting()
      const layer = Cache.layer({ store: "redis", redisUrl: flaky.url }).pipe(Layer.provide(fake.layer))
      yield* Effect.gen(function*() {
        yield* complete("m")
        assert.isTrue((yield* complete("m")).cached)
        yield* Effect.promise(() => flaky.stop())
        const after = yield* complete("m")
        assert.strictEqual(after.text, answer(deterministic("m")))
        assert.notStrictEqual(after.cached, true)
      }).pipe(Effect.provide(layer))
      assert.strictEqual(fake.completeCalls, 2)
    }))
})
