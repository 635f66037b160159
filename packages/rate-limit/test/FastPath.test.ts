/**
 * The fast path (internal/fast.ts): a key far from its budgets spends small prepaid leases
 * of its windows locally instead of asking the store on every call, and never admits more
 * than the store's buckets alone would.
 */
import { assert, describe, it } from "@effect/vitest"
import { Llm, LlmError } from "@hasten/core"
import { Clock, Effect, Fiber, Layer } from "effect"
import { CircuitBreaker, RateLimiter } from "effect/persistence"
import { TestClock } from "effect/testing"
import { Estimator, RateLimit } from "../src/index.js"
import { type Fake, makeFake, rateLimited, request } from "./support.js"

/** 4000 requests/s with the default 1% catch-up: a bucket of 41, leases of 1 + 10 calls. */
const options: RateLimit.Options = {
  maxConcurrency: 100,
  requestsPerSecond: 4000,
  tokensPerMinute: Infinity,
  retriesEnabled: false,
  circuitBreaker: false,
  adaptiveConcurrency: false,
  safetyMargin: 0,
  estimator: Estimator.safe
}

/** The limiter over a memory store that counts its token-bucket calls; `local` as `layerLimiter` sets it. */
const counted = (fake: Fake, local = true, overrides: RateLimit.Options = {}) => {
  const calls = { tokenBucket: 0 }
  const store = Layer.effect(
    RateLimiter.RateLimiterStore,
    Effect.map(Effect.service(RateLimiter.RateLimiterStore), (inner) => ({
      ...inner,
      tokenBucket: (input: Parameters<typeof inner.tokenBucket>[0]) => {
        calls.tokenBucket++
        return inner.tokenBucket(input)
      }
    }))
  ).pipe(Layer.provide(RateLimiter.layerStoreMemory))
  const limiter = Layer.effect(RateLimit.Limiter, RateLimit.makeLimiter({ ...options, ...overrides }, local)).pipe(
    Layer.provide(Layer.merge(RateLimiter.layer, CircuitBreaker.layerStoreMemory())),
    Layer.provide(store)
  )
  return {
    calls,
    layer: RateLimit.layerFromLimiter({ estimator: overrides.estimator ?? Estimator.safe }).pipe(
      Layer.provideMerge(limiter),
      Layer.provide(fake.layer)
    )
  }
}

/** Starts `n` calls at once; returns how many started at the current (test) instant. */
const burst = (fake: Fake, n: number) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const fibers = yield* Effect.forEach(Array.from({ length: n }), () => Effect.forkChild(Llm.complete(request("hi", 10))))
    yield* TestClock.adjust("1 second")
    yield* Effect.forEach(fibers, Fiber.join)
    return fake.starts.filter((start) => start === now).length
  })

describe("fast path", () => {
  it.effect("a key far from its budgets asks the store once per lease, not once per call", () => {
    const fake = makeFake()
    const { calls, layer } = counted(fake)
    return Effect.gen(function*() {
      for (let index = 0; index < 20; index++) yield* Llm.complete(request(`q${index}`, 10))
      assert.strictEqual(fake.starts.length, 20)
      // two leases of 11 calls each (a call plus a quarter of the bucket's catch-up room of 40)
      assert.strictEqual(calls.tokenBucket, 2)
    }).pipe(Effect.provide(layer))
  })

  it.effect("a store another process may share (`layerLimiterWithStore`) keeps the full admission", () => {
    const fake = makeFake()
    const { calls, layer } = counted(fake, false)
    return Effect.gen(function*() {
      for (let index = 0; index < 20; index++) yield* Llm.complete(request(`q${index}`, 10))
      assert.strictEqual(calls.tokenBucket, 20)
    }).pipe(Effect.provide(layer))
  })

  it.effect("usage below the reserve goes back to the lease (reconciled accounting)", () => {
    // 600k tokens/min, 1% catch-up: a bucket of 500 + 6000, leases of 500 + 1500 tokens.
    // Each call reserves 100 + 400 and uses 100 + 50: 350 come back to the lease.
    const tokens = { requestsPerSecond: Infinity, tokensPerMinute: 600_000, estimator: () => Effect.succeed(100) }
    const run = (tokenAccounting: "usage" | "reserved") => {
      const fake = makeFake([{ usage: { inputTokens: 100, outputTokens: 50 } }])
      const { calls, layer } = counted(fake, true, { ...tokens, tokenAccounting })
      return Effect.gen(function*() {
        for (let index = 0; index < 10; index++) yield* Llm.complete(request(`q${index}`, 400))
        assert.strictEqual(fake.starts.length, 10)
        return calls.tokenBucket
      }).pipe(Effect.provide(layer))
    }
    return Effect.gen(function*() {
      // 2000 reserved per lease: 4 calls each when nothing comes back, 11 when 350 a call does
      assert.strictEqual(yield* run("reserved"), 3)
      assert.strictEqual(yield* run("usage"), 1)
    })
  })

  it.effect("admits no more at once than the bucket alone", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      assert.strictEqual(yield* burst(fake, 60), 41)
      assert.strictEqual(fake.starts.length, 60)
    }).pipe(Effect.provide(counted(fake).layer))
  })

  it.effect("a lease lapses before the bucket can refill behind it: after a pause a burst gets the bucket, not bucket + lease", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      // the first call renews a lease and leaves 10 calls in it
      yield* Llm.complete(request("a", 10))
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(yield* burst(fake, 60), 41)
    }).pipe(Effect.provide(counted(fake).layer))
  })
})

describe("fast path after a 429", () => {
  it.effect("a key the store paces after a 429 takes the full admission until the store has forgotten it", () => {
    const fake = makeFake([{ error: rateLimited("requests", 1_000) }, {}])
    const { calls, layer } = counted(fake)
    return Effect.gen(function*() {
      const first = yield* Effect.exit(Llm.complete(request("a", 10)))
      assert.isTrue(first._tag === "Failure")
      // past the cooldown: every call consumes its windows from the store (the full admission)
      yield* TestClock.adjust("2 seconds")
      const before = calls.tokenBucket
      for (let index = 0; index < 5; index++) yield* Llm.complete(request(`b${index}`, 10))
      assert.strictEqual(calls.tokenBucket - before, 5)
      // the store's adaptive state expires without calls: the key is fast again
      yield* TestClock.adjust("10 minutes")
      const after = calls.tokenBucket
      for (let index = 0; index < 10; index++) yield* Llm.complete(request(`c${index}`, 10))
      // one full admission that finds the state gone, then one lease for the other nine
      assert.strictEqual(calls.tokenBucket - after, 2)
    }).pipe(Effect.provide(layer))
  })
})

describe("lean path (`Limiter.run`: a fast-path key's whole call in a few effects)", () => {
  it.effect("a call interrupted in flight gives its lobby place and concurrency slot back", () => {
    const fake = makeFake([{}, { latencyMillis: 1_000 }, {}])
    return Effect.gen(function*() {
      // the first call renews the lease; the second is admitted from it and runs 1 s
      yield* Llm.complete(request("a", 10))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 10)))
      yield* TestClock.adjust(0)
      assert.strictEqual(fake.inFlight, 1)
      yield* Fiber.interrupt(second)
      assert.strictEqual(fake.inFlight, 0)
      // its slot (the only one) is free again: the next call starts at once
      const third = yield* Effect.forkChild(Llm.complete(request("c", 10)))
      yield* TestClock.adjust(0)
      assert.strictEqual(fake.starts.length, 3)
      assert.strictEqual((yield* Fiber.join(third)).text, "ok")
      const limiter = yield* RateLimit.Limiter
      assert.strictEqual(limiter.totals().attempts, 3)
    }).pipe(Effect.provide(counted(fake, true, { maxConcurrency: 1 }).layer))
  })

  it.effect("a failed attempt goes on to the retry schedule, and a hung one is cut at its deadline and retried", () => {
    const fake = makeFake([{}, { error: new LlmError.ServerError({ status: 500, description: "boom" }) }, {}, {
      latencyMillis: 1_000_000
    }, {}])
    return Effect.gen(function*() {
      yield* Llm.complete(request("a", 10))
      const failedOnce = yield* Effect.forkChild(Llm.complete(request("b", 10)))
      yield* TestClock.adjust("1 second")
      const retried = yield* Fiber.join(failedOnce)
      assert.strictEqual(retried.facts?.retries, 1)
      assert.strictEqual(fake.starts.length, 3)
      const hung = yield* Effect.forkChild(Llm.complete(request("c", 10)))
      yield* TestClock.adjust("10 seconds")
      const cut = yield* Fiber.join(hung)
      assert.strictEqual(cut.text, "ok")
      assert.strictEqual(cut.facts?.timeouts, 1)
      assert.strictEqual(cut.facts?.retries, 1)
      // the hung attempt was interrupted, not left running
      assert.strictEqual(fake.inFlight, 0)
      const limiter = yield* RateLimit.Limiter
      assert.deepStrictEqual(
        { attempts: limiter.totals().attempts, retries: limiter.totals().retries, timeouts: limiter.totals().timeouts },
        { attempts: 5, retries: 2, timeouts: 1 }
      )
    }).pipe(
      Effect.provide(
        counted(fake, true, { retriesEnabled: true, retryBaseMillis: 100, retryCapMillis: 100, requestTimeoutMillis: 5_000 }).layer
      )
    )
  })
})
