/**
 * The queue on a real redis-server: content-addressed ids (enqueuing twice is a no-op),
 * results collected once each, a handler that keeps throwing becomes that item's error
 * result, and an unreachable Redis is a typed error naming the redacted URL.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { RedisServer } from "@hasten/testkit"
import { RedisConnection, WorkQueue } from "@hasten/workers"
import { Effect, Fiber, Redacted } from "effect"
import { Redis } from "ioredis"

let redis: RedisServer.RedisServer
beforeAll(async () => {
  redis = await RedisServer.start()
})
afterAll(async () => {
  await redis?.stop()
})

const fingerprint = (label: string) => WorkQueue.jobId(label, String(Math.random())).slice(0, 32)

describe("WorkQueue", () => {
  it.live(
    "runs each item once; a second coordinator of the same run enqueues nothing and reads the same results",
    () =>
      Effect.gen(function*() {
        const run = fingerprint("basic")
        let calls = 0
        const worker = yield* Effect.forkChild(WorkQueue.serve<{ n: number }, number, never>({
          redis: redis.url,
          name: "w1",
          pollMillis: 50,
          prepare: () => Effect.succeed((data) => Effect.sync(() => (calls++, data.n * 2)))
        }))
        const items = Array.from({ length: 20 }, (_, n) => ({ key: `item-${n}`, data: { n } }))
        const results = new Map<string, number>()
        const first = yield* WorkQueue.coordinate({
          redis: redis.url,
          run,
          spec: {},
          items: [...items, ...items], // the same items twice: no duplicate jobs or rows
          onResult: (key, result, by) =>
            Effect.sync(() => {
              assert.isFalse(results.has(key), `duplicate ${key}`)
              assert.strictEqual(by, "w1")
              results.set(key, result)
            }),
          onFailed: () => -1
        })
        assert.deepStrictEqual(first, { items: 20, added: 20 })
        assert.strictEqual(results.size, 20)
        // A finished run leaves nothing that grows forever: its results expire, its queue is gone.
        const admin = new Redis(redis.url)
        const layout = WorkQueue.keys()
        const ttl = yield* Effect.promise(() => admin.pttl(layout.results(run)))
        assert.isTrue(ttl > 0 && ttl <= 7 * 24 * 3_600_000, `results ttl ${ttl}`)
        assert.deepStrictEqual(yield* Effect.promise(() => admin.keys(`${layout.prefix}:${layout.queue(run)}:*`)), [])
        admin.disconnect()
        assert.strictEqual(results.get("item-7"), 14)
        assert.strictEqual(calls, 20)
        const again = new Map<string, number>()
        const second = yield* WorkQueue.coordinate({
          redis: redis.url,
          run,
          spec: {},
          items,
          onResult: (key, result) => Effect.sync(() => void again.set(key, result)),
          onFailed: () => -1
        })
        assert.deepStrictEqual(second, { items: 20, added: 0 })
        assert.deepStrictEqual([...again].sort(), [...results].sort())
        assert.strictEqual(calls, 20)
        yield* Fiber.interrupt(worker)
      }),
    { timeout: 30_000 }
  )

  it.live("an item whose handler keeps failing is recorded as that item's error result; the others complete", () =>
    Effect.gen(function*() {
      const run = fingerprint("bad")
      const worker = yield* Effect.forkChild(WorkQueue.serve<{ n: number }, string, never>({
        redis: redis.url,
        pollMillis: 50,
        prepare: () => Effect.succeed((data) => data.n === 3 ? Effect.die(new Error("poisoned item")) : Effect.succeed(`ok ${data.n}`))
      }))
      const results = new Map<string, string>()
      yield* WorkQueue.coordinate<{ n: number }, string>({
        redis: redis.url,
        run,
        spec: {},
        pollMillis: 20,
        items: Array.from({ length: 6 }, (_, n) => ({ key: `k${n}`, data: { n } })),
        onResult: (key, result) => Effect.sync(() => void results.set(key, result)),
        onFailed: (item, reason) => `error ${item.key}: ${reason}`
      })
      assert.strictEqual(results.size, 6)
      assert.strictEqual(results.get("k2"), "ok 2")
      assert.match(results.get("k3")!, /^error k3: .*poisoned item/)
      yield* Fiber.interrupt(worker)
    }), { timeout: 30_000 })

  it.live("an unreachable Redis is RedisUnreachable naming the URL with its password redacted", () =>
    Effect.gen(function*() {
      const url = Redacted.make("redis://:hunter2@127.0.0.1:1")
      const error = yield* Effect.flip(WorkQueue.coordinate({
        redis: url,
        run: fingerprint("down"),
        spec: {},
        items: [],
        onResult: () => Effect.void,
        onFailed: () => 0
      }))
      assert.strictEqual(error.reason._tag, "RedisUnreachable")
      assert.match(error.message, /^cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1: /)
      assert.notInclude(error.message, "hunter2")
      assert.strictEqual(RedisConnection.redact("redis://user:pw@h:1/0"), "redis://user:***@h:1/0")
      assert.strictEqual(RedisConnection.redact("redis://h:1"), "redis://h:1")
    }))

  it("jobs are content-addressed: the same run and key give the same id", async () => {
    assert.strictEqual(WorkQueue.jobId("abc", "k"), WorkQueue.jobId("abc", "k"))
    assert.notStrictEqual(WorkQueue.jobId("abc", "k"), WorkQueue.jobId("abd", "k"))
    const client = new Redis(redis.url)
    assert.strictEqual(await client.ping(), "PONG")
    client.disconnect()
  })
})
