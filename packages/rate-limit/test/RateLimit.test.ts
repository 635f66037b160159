import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm, LlmError } from "@hasten/core"
import { ConfigProvider, Duration, Effect, Exit, Fiber, Layer, Logger, Metric, Random, References, Schedule, Stream } from "effect"
import { TestClock } from "effect/testing"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Estimator, RateLimit } from "../src/index.js"
import { type Fake, makeFake, rateLimited, request, serverError } from "./support.js"

const KEY = "fake:gpt-4o-mini:default"
const fixed = (tokens: number): Estimator.Estimator => () => Effect.succeed(tokens)

/** Unlimited except what a test sets; no retries, breaker or AIMD unless asked. */
const base: RateLimit.Options = {
  maxConcurrency: 100,
  requestsPerSecond: Infinity,
  tokensPerMinute: Infinity,
  retriesEnabled: false,
  circuitBreaker: false,
  adaptiveConcurrency: false,
  safetyMargin: 0,
  catchUp: 0,
  estimator: fixed(0)
}

const stack = (options: RateLimit.Options, fake: Fake) =>
  RateLimit.layerFromLimiter(options).pipe(
    Layer.provideMerge(RateLimit.layerLimiter(options)),
    Layer.provide(fake.layer)
  )

const complete = (content = "hi", maxTokens = 10) => Llm.complete(request(content, maxTokens))

/** Starts `n` calls at once and lets them run to completion under the test clock. */
const many = (n: number, advance: Duration.Input) =>
  Effect.gen(function*() {
    const fibers = yield* Effect.forEach(Array.from({ length: n }), () => Effect.forkChild(Effect.exit(complete())))
    yield* TestClock.adjust(advance)
    return yield* Effect.forEach(fibers, Fiber.join)
  })

describe("windows", () => {
  it.effect("enforces requests per second and per minute at once", () => {
    const fake = makeFake()
    const other = makeFake([{}], "other")
    return Effect.gen(function*() {
      // 2/s paces at 500 ms, 100/min at 600 ms: the per-minute budget binds.
      const exits = yield* many(4, "1 minute")
      assert.isTrue(exits.every(Exit.isSuccess))
      assert.deepStrictEqual(fake.starts, [0, 600, 1200, 1800])
      // 2/s with 200/min (300 ms): the per-second budget binds.
      yield* many(4, "1 minute").pipe(Effect.provide(stack({ ...base, requestsPerSecond: 2, requestsPerMinute: 200 }, other)))
      assert.deepStrictEqual(other.starts.map((t) => t - other.starts[0]!), [0, 500, 1000, 1500])
    }).pipe(Effect.provide(stack({ ...base, requestsPerSecond: 2, requestsPerMinute: 100 }, fake)))
  })

  it.effect("never lets more than the limit into any sliding window", () => {
    const fake = makeFake([{ latencyMillis: 50 }])
    return Effect.gen(function*() {
      yield* many(40, "5 minutes")
      // Any 60 s window (t - 60 s, t] holds at most 10 starts.
      for (const t of fake.starts) {
        assert.isAtMost(fake.starts.filter((start) => start > t - 60_000 && start <= t).length, 10)
      }
      assert.strictEqual(fake.starts.at(-1), 39 * 6000)
    }).pipe(Effect.provide(stack({ ...base, requestsPerMinute: 10 }, fake)))
  })

  it.effect("keeps every sliding window within the limit when catch-up slack allows short bursts", () => {
    const fake = makeFake([{ latencyMillis: 50 }])
    return Effect.gen(function*() {
      yield* many(40, "10 minutes")
      // catchUp 0.2 of 10: bursts of up to 3, paced at 8 per minute after that.
      assert.deepStrictEqual(fake.starts.slice(0, 4), [0, 0, 0, 7500])
      for (const t of fake.starts) {
        assert.isAtMost(fake.starts.filter((start) => start > t - 60_000 && start <= t).length, 10)
      }
    }).pipe(Effect.provide(stack({ ...base, requestsPerMinute: 10, catchUp: 0.2 }, fake)))
  })

  it.effect("does not send a delayed call before its window opens", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      yield* complete()
      const second = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("499 millis")
      assert.strictEqual(fake.starts.length, 1)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 500])
    }).pipe(Effect.provide(stack({ ...base, requestsPerSecond: 2 }, fake)))
  })

  it.effect("turns a fractional rate into one call per interval", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      yield* many(3, "10 seconds")
      assert.deepStrictEqual(fake.starts, [0, 2000, 4000])
    }).pipe(Effect.provide(stack({ ...base, requestsPerSecond: 0.5 }, fake)))
  })

  it.effect("caps calls in flight at maxConcurrency", () => {
    const fake = makeFake([{ latencyMillis: 1000 }])
    return Effect.gen(function*() {
      yield* many(5, "10 seconds")
      assert.strictEqual(fake.peakInFlight, 2)
      assert.deepStrictEqual(fake.starts, [0, 0, 1000, 1000, 2000])
    }).pipe(Effect.provide(stack({ ...base, maxConcurrency: 2 }, fake)))
  })
})

describe("tokens", () => {
  // Token windows pace at (limit - largest cost) per minute and hold one call's cost, so
  // with 1000/min and calls of 500 a token refills every 120 ms.
  it.effect("reserves prompt + maxTokens and refunds the unused part after the call", () => {
    // cost 100 + 400 = 500; the first call used only 150, so 350 come back.
    const fake = makeFake([{ usage: { inputTokens: 100, outputTokens: 50 } }, { usage: { inputTokens: 100, outputTokens: 400 } }])
    return Effect.gen(function*() {
      yield* Llm.complete(request("a", 400))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 400)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      // 350 of the 500 the second needs are there: it waits 150 tokens x 120 ms (60 s without the refund).
      assert.deepStrictEqual(fake.starts, [0, 18_000])
    }).pipe(Effect.provide(stack({ ...base, tokensPerMinute: 1000, estimator: fixed(100), tokenAccounting: "usage" }, fake)))
  })

  it.effect("keeps the whole reservation when the provider charges prompt + maxTokens", () => {
    const fake = makeFake([{ usage: { inputTokens: 100, outputTokens: 50 } }])
    return Effect.gen(function*() {
      yield* Llm.complete(request("a", 400))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 400)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 60_000])
    }).pipe(Effect.provide(stack({ ...base, tokensPerMinute: 1000, estimator: fixed(100), tokenAccounting: "reserved" }, fake)))
  })

  it.effect("charges usage above the estimate to the next calls", () => {
    // estimated 100 + 100 = 200 (a token every 75 ms), actually used 700: 500 more are charged.
    const fake = makeFake([{ usage: { inputTokens: 100, outputTokens: 600 } }])
    return Effect.gen(function*() {
      yield* Llm.complete(request("a", 100))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 100)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      // -500 after the charge, -700 after the second reserves: 700 x 75 ms (15 s without the charge).
      assert.deepStrictEqual(fake.starts, [0, 52_500])
    }).pipe(Effect.provide(stack({ ...base, tokensPerMinute: 1000, estimator: fixed(100), tokenAccounting: "usage" }, fake)))
  })

  it.effect("refunds the reservation of a failed call", () => {
    const fake = makeFake([{ error: serverError() }, {}])
    return Effect.gen(function*() {
      const failed = yield* Effect.exit(Llm.complete(request("a", 400)))
      assert.isTrue(Exit.isFailure(failed))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 400)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 0])
    }).pipe(Effect.provide(stack({ ...base, tokensPerMinute: 1000, estimator: fixed(100) }, fake)))
  })

  it.effect("a failed call keeps its place in the request window (providers count unsuccessful requests)", () => {
    const fake = makeFake([{ error: serverError() }, {}])
    return Effect.gen(function*() {
      const failed = yield* Effect.exit(Llm.complete(request("a", 10)))
      assert.isTrue(Exit.isFailure(failed))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 10)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      // one request per minute: the failed one still holds the first minute
      assert.deepStrictEqual(fake.starts, [0, 60_000])
    }).pipe(Effect.provide(stack({ ...base, requestsPerMinute: 1 }, fake)))
  })

  it.effect("enforces split input and output budgets", () => {
    const fake = makeFake([{ usage: { inputTokens: 300, outputTokens: 10 } }])
    return Effect.gen(function*() {
      yield* many(3, "3 minutes")
      // input: calls of 300 against 600/min pace at 300 per minute; output (10 of 1000) never binds.
      assert.deepStrictEqual(fake.starts, [0, 60_000, 120_000])
    }).pipe(Effect.provide(stack({ ...base, inputTokensPerMinute: 600, outputTokensPerMinute: 1000, estimator: fixed(300) }, fake)))
  })

  it.effect("fails at once when one request is larger than the whole budget", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      const exit = yield* Effect.exit(Llm.complete(request("a", 1100)))
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(Llm.complete(request("a", 1100)))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.include(error.message, "can never be admitted")
      assert.include(error.message, "1200")
      assert.strictEqual(fake.starts.length, 0)
    }).pipe(Effect.provide(stack({ ...base, tokensPerMinute: 1000, estimator: fixed(100) }, fake)))
  })
})

describe("retries", () => {
  const retrying = { ...base, retriesEnabled: true, retryBaseMillis: 1000, retryCapMillis: 8000, seed: "test" }

  it.effect("waits the provider's retry-after", () => {
    const fake = makeFake([{ error: rateLimited("requests", 3000) }, {}])
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("10 seconds")
      const completion = yield* Fiber.join(fiber)
      assert.deepStrictEqual(fake.starts, [0, 3000])
      assert.strictEqual(completion.facts?.retries, 1)
    }).pipe(Effect.provide(stack(retrying, fake)))
  })

  it.effect("caps retry-after at retryAfterCapMillis", () => {
    const fake = makeFake([{ error: rateLimited("tokens", 120_000) }, {}])
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(fake.starts, [0, 5000])
    }).pipe(Effect.provide(stack({ ...retrying, retryAfterCapMillis: 5000 }, fake)))
  })

  it.effect("retries at most maxRetries times, then fails with the last error", () => {
    const fake = makeFake([{ error: serverError() }])
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Effect.flip(complete()))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "ServerError")
      assert.strictEqual(fake.starts.length, 3)
    }).pipe(Effect.provide(stack({ ...retrying, maxRetries: 2 }, fake)))
  })

  it.effect("does not retry when retries are disabled", () => {
    const fake = makeFake([{ error: serverError() }])
    return Effect.gen(function*() {
      yield* Effect.flip(complete())
      assert.strictEqual(fake.starts.length, 1)
    }).pipe(Effect.provide(stack({ ...retrying, retriesEnabled: false }, fake)))
  })

  it.effect("never retries a non-retryable error", () => {
    const fake = makeFake([{ error: new LlmError.InvalidRequest({ description: "bad field" }) }, {}])
    return Effect.gen(function*() {
      const error = yield* Effect.flip(complete())
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.strictEqual(fake.starts.length, 1)
    }).pipe(Effect.provide(stack(retrying, fake)))
  })

  it.effect("fails fast with a clear message when the quota is exhausted", () => {
    const fake = makeFake([{ error: rateLimited("quota") }, {}])
    return Effect.gen(function*() {
      const error = yield* Effect.flip(complete())
      assert.strictEqual(fake.starts.length, 1)
      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.include(error.message, "quota exhausted")
      assert.include(error.message, "not retried")
    }).pipe(Effect.provide(stack(retrying, fake)))
  })

  it.effect("logs every backoff and pre-call wait with the seeds' fields", () => {
    const fake = makeFake([{}, { error: rateLimited("requests", 2300) }, {}])
    const messages: Array<string> = []
    const collector = Logger.make((options) => {
      messages.push(Array.isArray(options.message) ? options.message.join(" ") : String(options.message))
    })
    return Effect.gen(function*() {
      yield* complete()
      const fiber = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(fiber)
      // one line each, the seeds' fields first, at debug level
      assert.isTrue(messages.some((message) => message.startsWith("pre_wait=1.00 key=fake:gpt-4o-mini:default")), messages.join("\n"))
      assert.isTrue(messages.some((message) => message.startsWith("backoff=2.30 attempt=2 key=")), messages.join("\n"))
      assert.isTrue(messages.every((message) => !message.includes("\n")))
    }).pipe(
      Effect.provide(stack({ ...retrying, requestsPerSecond: 1 }, fake)),
      Effect.provide(Logger.layer([collector])),
      Effect.provideService(References.MinimumLogLevel, "Debug")
    )
  })
})

describe("decorrelated jitter", () => {
  const delays = (schedule: Schedule.Schedule<Duration.Duration>, n: number) =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(schedule)
      const out: Array<number> = []
      for (let i = 0; i < n; i++) out.push(Duration.toMillis((yield* step(0, undefined))[0]))
      return out
    })

  it.effect("stays within [base, min(cap, previous * 3)]", () =>
    Effect.gen(function*() {
      const values = yield* delays(RateLimit.decorrelatedJitter({ base: 100, cap: 5000 }), 200).pipe(Random.withSeed(7))
      let previous = 100
      for (const value of values) {
        assert.isAtLeast(value, 100)
        assert.isAtMost(value, Math.min(5000, previous * 3))
        previous = value
      }
      assert.isTrue(values.some((value) => value === 5000 || value > 4000), "reaches the cap region")
    }))

  it.effect("follows the formula at the ends of the random range", () =>
    Effect.gen(function*() {
      const constant = (value: number): Random.Random => ({ nextDoubleUnsafe: () => value, nextIntUnsafe: () => 0 })
      assert.deepStrictEqual(yield* delays(RateLimit.decorrelatedJitter({ base: 100, cap: 5000, random: constant(0) }), 3), [100, 100, 100])
      const top = yield* delays(RateLimit.decorrelatedJitter({ base: 100, cap: 5000, random: constant(1) }), 5)
      assert.deepStrictEqual(top, [300, 900, 2700, 5000, 5000])
    }))

  it.effect("is deterministic for a seed and differs between seeds", () =>
    Effect.gen(function*() {
      const schedule = RateLimit.decorrelatedJitter({ base: 100, cap: 60_000 })
      const a = yield* delays(schedule, 10).pipe(Random.withSeed("a"))
      const again = yield* delays(schedule, 10).pipe(Random.withSeed("a"))
      const b = yield* delays(schedule, 10).pipe(Random.withSeed("b"))
      assert.deepStrictEqual(a, again)
      assert.notDeepEqual(a, b)
    }))

  it.effect("drives the backoff of retried calls", () => {
    const fake = makeFake([{ error: serverError() }, { error: serverError() }, {}])
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("1 minute")
      const completion = yield* Fiber.join(fiber)
      const first = fake.starts[1]! - fake.starts[0]!
      const second = fake.starts[2]! - fake.starts[1]!
      assert.isAtLeast(first, 1000)
      assert.isAtMost(first, 3000)
      assert.isAtLeast(second, 1000)
      assert.isAtMost(second, first * 3)
      assert.strictEqual(completion.facts?.retries, 2)
      assert.strictEqual(completion.facts?.backoffMillis, first + second)
    }).pipe(Effect.provide(stack({ ...base, retriesEnabled: true, retryBaseMillis: 1000, retryCapMillis: 8000, seed: 1 }, fake)))
  })
})

describe("learning", () => {
  it.effect("holds a key until reset when the headers say the tokens are spent", () => {
    const fake = makeFake([{ rateLimit: { remainingTokens: 0, resetTokensMillis: 7000 } }, {}])
    return Effect.gen(function*() {
      yield* complete()
      assert.strictEqual(yield* Effect.flatMap(Effect.service(RateLimit.Limiter), (limiter) => limiter.heldUntil(KEY)), 7000)
      const second = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("6999 millis")
      assert.strictEqual(fake.starts.length, 1)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 7000])
    }).pipe(Effect.provide(stack(base, fake)))
  })

  it.effect("holds for one call's worth of the reset when the provider sends its limit", () => {
    // 0 of 10 requests left, full reset in 6 s: one request frees after 600 ms.
    const fake = makeFake([{ rateLimit: { remainingRequests: 0, resetRequestsMillis: 6000, limitRequests: 10 } }, {}])
    return Effect.gen(function*() {
      yield* complete()
      const second = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 600])
    }).pipe(Effect.provide(stack(base, fake)))
  })

  it.effect("does not hold while budget remains", () => {
    const fake = makeFake([{ rateLimit: { remainingTokens: 10, resetTokensMillis: 7000, remainingRequests: 3, resetRequestsMillis: 100 } }])
    return Effect.gen(function*() {
      yield* complete()
      yield* complete()
      assert.deepStrictEqual(fake.starts, [0, 0])
    }).pipe(Effect.provide(stack(base, fake)))
  })

  it.effect("halves concurrency on a 429 and grows it back by one per window of successes", () => {
    const fake = makeFake([{ error: rateLimited("requests") }, {}])
    const concurrency = Effect.flatMap(Effect.service(RateLimit.Limiter), (limiter) => limiter.concurrency(KEY))
    return Effect.gen(function*() {
      yield* Effect.flip(complete())
      assert.strictEqual(yield* concurrency, 4)
      for (let i = 0; i < 3; i++) yield* complete()
      assert.strictEqual(yield* concurrency, 4)
      yield* complete()
      assert.strictEqual(yield* concurrency, 5)
      for (let i = 0; i < 5; i++) yield* complete()
      assert.strictEqual(yield* concurrency, 6)
      for (let i = 0; i < 6 + 7; i++) yield* complete()
      assert.strictEqual(yield* concurrency, 8)
      yield* complete()
      assert.strictEqual(yield* concurrency, 8, "never above maxConcurrency")
    }).pipe(Effect.provide(stack({ ...base, maxConcurrency: 8, adaptiveConcurrency: true }, fake)))
  })

  it.effect("takes a quarter off on an overload", () => {
    const fake = makeFake([{ error: new LlmError.Overloaded({ description: "busy" }) }, {}])
    const concurrency = Effect.flatMap(Effect.service(RateLimit.Limiter), (limiter) => limiter.concurrency(KEY))
    return Effect.gen(function*() {
      yield* Effect.flip(complete())
      assert.strictEqual(yield* concurrency, 6)
    }).pipe(Effect.provide(stack({ ...base, maxConcurrency: 8, adaptiveConcurrency: true }, fake)))
  })

  it.effect("decreases once per burst of 429s and really limits calls in flight", () => {
    const fake = makeFake([
      { error: rateLimited("requests"), latencyMillis: 10 },
      { error: rateLimited("requests"), latencyMillis: 10 },
      { error: rateLimited("requests"), latencyMillis: 10 },
      { latencyMillis: 1000 }
    ])
    const concurrency = Effect.flatMap(Effect.service(RateLimit.Limiter), (limiter) => limiter.concurrency(KEY))
    return Effect.gen(function*() {
      yield* many(3, "1 second")
      assert.strictEqual(yield* concurrency, 4, "three 429s within a second halve once")
      fake.peakInFlight = 0
      yield* many(8, "1 minute")
      assert.strictEqual(fake.peakInFlight, 4)
      yield* TestClock.adjust("2 seconds")
    }).pipe(Effect.provide(stack({ ...base, maxConcurrency: 8, adaptiveConcurrency: true }, fake)))
  })

  it.effect("counts 429s by scope", () => {
    const fake = makeFake([{ error: rateLimited("tokens") }, { error: rateLimited("quota") }])
    return Effect.gen(function*() {
      yield* Effect.flip(complete())
      yield* Effect.flip(complete())
      const tokens = yield* Metric.value(Metric.withAttributes(RateLimit.http429Total, { key: KEY, scope: "tokens" }))
      const quota = yield* Metric.value(Metric.withAttributes(RateLimit.http429Total, { key: KEY, scope: "quota" }))
      assert.strictEqual(tokens.count, 1)
      assert.strictEqual(quota.count, 1)
    }).pipe(Effect.provide(stack(base, fake)), Effect.provideService(Metric.MetricRegistry, new Map()))
  })
})

describe("circuit breaker", () => {
  it.effect("opens after consecutive server errors and fails fast without calling the provider", () => {
    const fake = makeFake([{ error: serverError() }])
    return Effect.gen(function*() {
      for (let i = 0; i < 3; i++) yield* Effect.flip(complete())
      const error = yield* Effect.flip(complete())
      assert.strictEqual(fake.starts.length, 3)
      assert.strictEqual(error.reason._tag, "Overloaded")
      assert.include(error.message, "circuit open")
    }).pipe(Effect.provide(stack({ ...base, circuitBreaker: { failures: 3, openMillis: 10_000 } }, fake)))
  })

  it.effect("after successes (no breaker round on the way), consecutive server errors still open it", () => {
    const fake = makeFake([{}, {}, { error: serverError() }])
    return Effect.gen(function*() {
      yield* complete()
      yield* complete()
      for (let i = 0; i < 3; i++) yield* Effect.flip(complete())
      const error = yield* Effect.flip(complete())
      assert.strictEqual(fake.starts.length, 5)
      assert.include(error.message, "circuit open")
    }).pipe(Effect.provide(stack({ ...base, circuitBreaker: { failures: 3, openMillis: 10_000 } }, fake)))
  })

  it.effect("a success between server errors resets the count: the circuit stays closed", () => {
    const fake = makeFake([{}, { error: serverError() }, { error: serverError() }, {}, { error: serverError() }, {
      error: serverError()
    }, {}])
    return Effect.gen(function*() {
      yield* complete()
      yield* Effect.flip(complete())
      yield* Effect.flip(complete())
      yield* complete()
      yield* Effect.flip(complete())
      yield* Effect.flip(complete())
      const last = yield* complete()
      assert.strictEqual(last.text, "ok")
      assert.strictEqual(fake.starts.length, 7)
    }).pipe(Effect.provide(stack({ ...base, circuitBreaker: { failures: 3, openMillis: 10_000 } }, fake)))
  })

  it.effect("a success that lands after other calls' server errors still resets the count", () => {
    const fake = makeFake([{}, { latencyMillis: 100 }, { error: serverError() }])
    return Effect.gen(function*() {
      yield* complete()
      const slow = yield* Effect.forkChild(complete(), { startImmediately: true })
      yield* Effect.flip(complete())
      yield* Effect.flip(complete())
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(slow)
      yield* Effect.flip(complete())
      yield* Effect.flip(complete())
      const error = yield* Effect.flip(complete())
      assert.notInclude(error.message, "circuit open")
      assert.strictEqual(fake.starts.length, 7)
    }).pipe(Effect.provide(stack({ ...base, circuitBreaker: { failures: 3, openMillis: 10_000 } }, fake)))
  })

  it.effect("ignores client errors", () => {
    const fake = makeFake([{ error: new LlmError.InvalidRequest({ description: "bad" }) }])
    return Effect.gen(function*() {
      for (let i = 0; i < 5; i++) yield* Effect.flip(complete())
      assert.strictEqual(fake.starts.length, 5)
    }).pipe(Effect.provide(stack({ ...base, circuitBreaker: { failures: 3, openMillis: 10_000 } }, fake)))
  })
})

describe("observability", () => {
  it.effect("attaches retries and rateLimitWaitMillis to the completion as typed facts", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      yield* complete()
      const fiber = yield* Effect.forkChild(complete())
      yield* TestClock.adjust("2 seconds")
      const completion = yield* Fiber.join(fiber)
      assert.deepStrictEqual(completion.facts, { retries: 0, rateLimitWaitMillis: 1000, backoffMillis: 0 })
    }).pipe(Effect.provide(stack({ ...base, requestsPerSecond: 1 }, fake)))
  })

  it.effect("appends wait events to the log file", () => {
    const dir = mkdtempSync(join(tmpdir(), "hasten-rate-limit-"))
    const file = join(dir, "logs", "rate_limit.log")
    const fake = makeFake()
    return Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const built = yield* Layer.build(stack({ ...base, requestsPerSecond: 1, logFile: file }, fake))
        yield* Effect.provide(
          Effect.gen(function*() {
            yield* complete()
            const fiber = yield* Effect.forkChild(complete())
            yield* TestClock.adjust("1 second")
            yield* Fiber.join(fiber)
          }),
          built
        )
      }))
      const text = readFileSync(file, "utf8")
      assert.match(text, /pre_wait=1\.00 .*key=fake:gpt-4o-mini:default.*reason=requests_per_second/)
      rmSync(dir, { recursive: true, force: true })
    })
  })

  it.effect("counts waits by reason", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      yield* many(3, "5 seconds")
      const waits = yield* Metric.value(Metric.withAttributes(RateLimit.waitsTotal, { key: KEY, reason: "requests_per_second" }))
      assert.strictEqual(waits.count, 2)
    }).pipe(Effect.provide(stack({ ...base, requestsPerSecond: 1 }, fake)), Effect.provideService(Metric.MetricRegistry, new Map()))
  })
})

describe("lobby", () => {
  it.effect("lets at most 4x the concurrency of a key's calls be set up at once, in arrival order; interruptions give their place back", () => {
    const fake = makeFake([{ latencyMillis: 1000 }])
    let estimated = 0
    const counting: Estimator.Estimator = (req) =>
      Effect.sync(() => {
        estimated++
        return Number(req.messages[0]!.content)
      })
    return Effect.gen(function*() {
      const call = (index: number) => Llm.complete(CompletionRequest.user("gpt-4o-mini", String(index)))
      const fibers = yield* Effect.forEach(Array.from({ length: 40 }, (_, index) => index), (index) => Effect.forkChild(call(index)))
      yield* TestClock.adjust(0)
      // concurrency 2: a lobby of 16 (the minimum); the other 24 wait before any per-call work (the estimate: a token budget applies)
      assert.strictEqual(estimated, 16)
      yield* TestClock.adjust("1 minute")
      yield* Effect.forEach(fibers, Fiber.join, { discard: true })
      assert.strictEqual(estimated, 40)
      assert.deepStrictEqual(fake.requests.map((req) => Number(req.messages[0]!.content)), Array.from({ length: 40 }, (_, index) => index))
      // interrupted waiters (in the lobby and past it) leave every place free again
      const waiting = yield* Effect.forEach(Array.from({ length: 40 }, (_, index) => index), (index) => Effect.forkChild(call(index)))
      yield* TestClock.adjust(0)
      yield* Effect.forEach(waiting, Fiber.interrupt, { discard: true })
      const before = estimated
      const more = yield* Effect.forEach(Array.from({ length: 20 }, (_, index) => index), (index) => Effect.forkChild(call(index)))
      yield* TestClock.adjust(0)
      assert.strictEqual(estimated - before, 16)
      yield* TestClock.adjust("1 minute")
      yield* Effect.forEach(more, Fiber.join, { discard: true })
    }).pipe(Effect.provide(stack({ ...base, maxConcurrency: 2, tokensPerMinute: 1e12, estimator: counting }, fake)))
  })
})

describe("lobby (streams)", () => {
  it.effect("a stream holds its lobby place while it runs and gives it back when it ends or is interrupted", () => {
    const fake = makeFake([{ latencyMillis: 1000 }])
    let estimated = 0
    const counting: Estimator.Estimator = () =>
      Effect.sync(() => {
        estimated++
        return 1
      })
    return Effect.gen(function*() {
      const run = (index: number) => Stream.runCollect(Llm.stream(CompletionRequest.user("gpt-4o-mini", String(index))))
      const fibers = yield* Effect.forEach(Array.from({ length: 40 }, (_, index) => index), (index) => Effect.forkChild(run(index)))
      yield* TestClock.adjust(0)
      assert.strictEqual(estimated, 16)
      yield* Effect.forEach(fibers.slice(0, 20), Fiber.interrupt, { discard: true })
      yield* TestClock.adjust("1 minute")
      yield* Effect.forEach(fibers.slice(20), Fiber.join, { discard: true })
      const before = estimated
      const more = yield* Effect.forEach(Array.from({ length: 20 }, (_, index) => index), (index) => Effect.forkChild(run(index)))
      yield* TestClock.adjust(0)
      assert.strictEqual(estimated - before, 16)
      yield* TestClock.adjust("1 minute")
      yield* Effect.forEach(more, Fiber.join, { discard: true })
    }).pipe(Effect.provide(stack({ ...base, maxConcurrency: 2, tokensPerMinute: 1e12, estimator: counting }, fake)))
  })
})

describe("keys, streams and wrap", () => {
  it.effect("keeps separate budgets per model and per API key", () => {
    const fake = makeFake()
    return Effect.gen(function*() {
      yield* Llm.complete(request())
      yield* Llm.complete(CompletionRequest.user("gpt-4o", "hi"))
      assert.deepStrictEqual(fake.starts, [0, 0])
      assert.notStrictEqual(
        RateLimit.keyOf({ apiKey: "sk-a" }, "openai", request()),
        RateLimit.keyOf({ apiKey: "sk-b" }, "openai", request())
      )
      assert.notInclude(RateLimit.keyOf({ apiKey: "sk-secret" }, "openai", request()), "sk-secret")
    }).pipe(Effect.provide(stack({ ...base, requestsPerSecond: 1 }, fake)))
  })

  it.effect("budgets a stream and reconciles with the usage on its last chunk", () => {
    const fake = makeFake([{ usage: { inputTokens: 100, outputTokens: 50 } }, { usage: { inputTokens: 100, outputTokens: 400 } }])
    return Effect.gen(function*() {
      const chunks = yield* Stream.runCollect(Llm.stream(request("a", 400)))
      const last = Array.from(chunks).at(-1)!
      assert.strictEqual(last.facts?.rateLimitWaitMillis, 0)
      const second = yield* Effect.forkChild(Llm.complete(request("b", 400)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 18_000])
    }).pipe(Effect.provide(stack({ ...base, tokensPerMinute: 1000, estimator: fixed(100), tokenAccounting: "usage" }, fake)))
  })

  it.effect("wraps any effect with a key's budgets and the retry schedule", () =>
    Effect.gen(function*() {
      const starts: Array<number> = []
      const job = Effect.clockWith((clock) =>
        Effect.suspend(() => {
          starts.push(clock.currentTimeMillisUnsafe())
          return starts.length === 1
            ? Effect.fail(LlmError.make("db", new LlmError.Transport({ description: "reset" })))
            : Effect.succeed(starts.length)
        })
      )
      const fiber = yield* Effect.forkChild(RateLimit.wrap(job, { key: "db", inputTokens: 10 }))
      yield* TestClock.adjust("2 minutes")
      assert.strictEqual(yield* Fiber.join(fiber), 2)
      // Retried after the jitter (100..300 ms), not after the 60 s a token refill takes:
      // the failed attempt's reservation was refunded.
      assert.strictEqual(starts.length, 2)
      assert.isAtLeast(starts[1]!, 100)
      assert.isAtMost(starts[1]!, 300)
    }).pipe(Effect.provide(RateLimit.layerLimiter({
      ...base,
      tokensPerMinute: 20,
      retriesEnabled: true,
      retryBaseMillis: 100,
      retryCapMillis: 1000
    }))))
})

describe("configuration", () => {
  const withEnv = (env: Record<string, string>) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.provideService(effect, ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))

  it.effect("reads the seeds' names with their defaults", () =>
    Effect.gen(function*() {
      // unset budgets stay unset (to be learnt); the seeds' values are what resolve assumes meanwhile
      const options = yield* RateLimit.config
      assert.isUndefined(options.maxConcurrency)
      assert.isUndefined(options.requestsPerSecond)
      assert.isUndefined(options.tokensPerMinute)
      const resolved = yield* RateLimit.resolve(options)
      assert.strictEqual(resolved.maxConcurrency, 2)
      assert.strictEqual(resolved.requestsPerSecond, 2)
      assert.strictEqual(resolved.tokensPerMinute, 120_000)
      assert.deepStrictEqual(resolved.configured, { maxConcurrency: false, requests: false, tokens: false })
      assert.strictEqual(options.maxRetries, 6)
      assert.strictEqual(options.retriesEnabled, true)
      assert.isUndefined(options.requestsPerMinute)
      assert.isUndefined(options.fleetState)
      const set = yield* RateLimit.config.pipe(
        withEnv({ RPS_LIMIT: "0.5", RETRIES_ENABLED: "0", RPM_LIMIT: "30", MAX_RETRIES: "0", RATE_LIMIT_FLEET_STATE: "0" })
      )
      assert.strictEqual(set.fleetState, false)
      assert.strictEqual(set.requestsPerSecond, 0.5)
      assert.strictEqual(set.retriesEnabled, false)
      assert.strictEqual(set.requestsPerMinute, 30)
      assert.strictEqual(set.maxRetries, 0)
      // a request budget set by the user: no assumed 2 per second beside it
      const onlyRpm = yield* RateLimit.resolve(yield* RateLimit.config.pipe(withEnv({ RPM_LIMIT: "30", REQUEST_TIMEOUT_MS: "5000" })))
      assert.strictEqual(onlyRpm.requestsPerSecond, Infinity)
      assert.strictEqual(onlyRpm.requestsPerMinute, 30)
      assert.strictEqual(onlyRpm.tokensPerMinute, 120_000)
      assert.strictEqual(onlyRpm.requestTimeoutMillis, 5000)
    }).pipe(withEnv({})))

  for (
    const [name, value] of [
      ["RPS_LIMIT", "abc"],
      ["RPS_LIMIT", "-1"],
      ["RPS_LIMIT", "0"],
      ["MAX_CONCURRENCY", "0"],
      ["MAX_CONCURRENCY", "1.5"],
      ["TPM_LIMIT", "-5"],
      ["MAX_RETRIES", "-1"],
      ["RETRIES_ENABLED", "maybe"],
      ["RPM_LIMIT", "x"],
      ["RETRY_AFTER_CAP_MS", "-3"],
      ["RATE_LIMIT_FLEET_STATE", "maybe"]
    ] as const
  ) {
    it.effect(`fails at startup naming ${name} for ${JSON.stringify(value)}`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Effect.scoped(Layer.build(RateLimit.layerConfig().pipe(Layer.provide(Llm.Llm.layerEcho)))))
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) assert.include(String(exit.cause), name)
      }).pipe(withEnv({ [name]: value })))
  }

  it.effect("rejects a retry cap below the base", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(RateLimit.layerConfig().pipe(Layer.provide(Llm.Llm.layerEcho)))))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(String(exit.cause), "retryCapMillis")
    }).pipe(withEnv({ RETRY_BASE_MS: "5000", RETRY_CAP_MS: "100" })))

  it.effect("explicit layerConfig options win over the environment", () => {
    const fake = makeFake([{ error: serverError() }, {}])
    return Effect.gen(function*() {
      const exit = yield* Effect.exit(complete())
      // MAX_RETRIES=3 in the environment, maxRetries: 0 given: no retry
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(fake.starts.length, 1)
    }).pipe(
      Effect.provide(RateLimit.layerConfig({ maxRetries: 0, circuitBreaker: false }).pipe(Layer.provide(fake.layer))),
      withEnv({ MAX_RETRIES: "3", RPS_LIMIT: "100" })
    )
  })

  it.effect("a bad option fails with RateLimitError naming the field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(RateLimit.resolve({ requestsPerMinute: -1, retryBaseMillis: -2 }))
      assert.strictEqual(error._tag, "RateLimitError")
      assert.strictEqual(error.reason._tag, "InvalidOptions")
      assert.strictEqual(error.reason.field, "requestsPerMinute")
      assert.match(error.message, /requestsPerMinute must be > 0, got -1; retryBaseMillis must be >= 0, got -2/)
      const caught = yield* RateLimit.resolve({ maxConcurrency: 0 }).pipe(
        Effect.catchReason("RateLimitError", "InvalidOptions", (reason) => Effect.succeed(reason.field))
      )
      assert.strictEqual(caught, "maxConcurrency")
    }))

  it.effect("builds a working stack from the environment", () =>
    Effect.gen(function*() {
      const completion = yield* complete("hello")
      assert.strictEqual(completion.text, "echo: hello")
      assert.strictEqual(completion.facts?.retries, 0)
    }).pipe(Effect.provide(RateLimit.layerConfig().pipe(Layer.provide(Llm.Llm.layerEcho))), withEnv({ RPS_LIMIT: "5" })))
})

describe("estimators", () => {
  it.effect("counts OpenAI chat tokens with gpt-tokenizer", () =>
    Effect.gen(function*() {
      const short = yield* Estimator.openAi(request("hi"))
      const long = yield* Estimator.openAi(request("The quick brown fox jumps over the lazy dog. ".repeat(20)))
      assert.isAbove(short, 1)
      assert.isBelow(short, 12)
      assert.isAbove(long, 180)
      assert.isBelow(long, 260)
    }))

  it.effect("uses a local model's tokenizer", () =>
    Effect.gen(function*() {
      const model = {
        tokenize: (text: string) => Effect.succeed(Array.from(text).map((_, i) => i))
      } as unknown as Parameters<typeof Estimator.fromTokenModel>[0]
      assert.strictEqual(yield* Estimator.fromTokenModel(model)(request("abc")), "user: abc".length)
    }))
})

describe("estimator input", () => {
  it.effect("counts special-token text in a prompt instead of throwing", () =>
    Effect.gen(function*() {
      const count = yield* Estimator.openAi(request("a <|endoftext|> b"))
      assert.isAbove(count, 3)
    }))
})

describe("plain async TypeScript", () => {
  it("createLlm wraps any Llm layer behind Promises", async () => {
    const llm = RateLimit.createLlm(Llm.Llm.layerEcho, { requestsPerSecond: 100 })
    try {
      const completion = await llm.complete({ model: "m", messages: [{ role: "user", content: "hello" }] })
      assert.strictEqual(completion.text, "echo: hello")
      assert.strictEqual(completion.facts?.retries, 0)
      await llm.complete({ model: "m", messages: [] }).then(
        () => assert.fail("an empty request must be rejected"),
        (error: unknown) => assert.include(String(error), "messages or a prompt")
      )
    } finally {
      await llm.dispose()
    }
  })

  it("createLimiter retries a retryable rejection of any async function", async () => {
    const limiter = RateLimit.createLimiter({ retryBaseMillis: 1, retryCapMillis: 5, requestsPerSecond: Infinity })
    try {
      let calls = 0
      const result = await limiter.run(async () => {
        calls++
        if (calls === 1) throw LlmError.make("db", new LlmError.Timeout({ description: "slow" }))
        return "done"
      }, { key: "db" })
      assert.strictEqual(result, "done")
      assert.strictEqual(calls, 2)
    } finally {
      await limiter.dispose()
    }
  })
})
