/**
 * Zero configuration: the provider's declared accounting, budgets learnt from its headers,
 * the cautious start, per-attempt deadlines and the run's one-line summary.
 */
import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Llm, LlmError, RateLimitPolicy } from "@hasten/core"
import { type Duration, Effect, Exit, Fiber, Layer, Logger, References, Stream } from "effect"
import { TestClock } from "effect/testing"
import { Estimator, RateLimit } from "../src/index.js"
import { makeFake, request, type Step } from "./support.js"

const fixed = (tokens: number): Estimator.Estimator => () => Effect.succeed(tokens)

/** Nothing about budgets or concurrency: what a user who sets nothing gets. */
const zero: RateLimit.Options = { retriesEnabled: false, circuitBreaker: false, estimator: fixed(10) }

const stack = (options: RateLimit.Options, layer: Layer.Layer<Llm.Llm>) =>
  RateLimit.layerFromLimiter(options).pipe(Layer.provideMerge(RateLimit.layerLimiter(options)), Layer.provide(layer))

const states = {
  limitRequests: 600,
  remainingRequests: 599,
  resetRequestsMillis: 100,
  limitTokens: 1_000_000,
  remainingTokens: 999_000,
  resetTokensMillis: 60
}

/** Starts `n` calls, lets the test clock run, returns their exits. */
const burst = (n: number, advance: Duration.Input, maxTokens = 10) =>
  Effect.gen(function*() {
    const fibers = yield* Effect.forEach(Array.from({ length: n }), () =>
      Effect.forkChild(Effect.exit(Llm.complete(request("hi", maxTokens)))))
    yield* TestClock.adjust(advance)
    return yield* Effect.forEach(fibers, Fiber.join)
  })

describe("the provider's accounting", () => {
  it.effect("keeps the whole reservation by default when the provider charges prompt + max_tokens at admission (OpenAI)", () => {
    const fake = makeFake([{ usage: { inputTokens: 100, outputTokens: 50 } }], "fake", RateLimitPolicy.openAi)
    return Effect.gen(function*() {
      yield* Llm.complete(request("a", 400))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 400)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 60_000])
    }).pipe(
      Effect.provide(
        stack(
          { ...zero, tokensPerMinute: 1000, requestsPerSecond: Infinity, safetyMargin: 0, catchUp: 0, estimator: fixed(100) },
          fake.layer
        )
      )
    )
  })

  it.effect("reconciles with usage by default when the provider adjusts at the end (Anthropic)", () => {
    const fake = makeFake([{ usage: { inputTokens: 100, outputTokens: 50 } }], "fake", RateLimitPolicy.anthropic)
    return Effect.gen(function*() {
      yield* Llm.complete(request("a", 400))
      const second = yield* Effect.forkChild(Llm.complete(request("b", 400)))
      yield* TestClock.adjust("2 minutes")
      yield* Fiber.join(second)
      assert.deepStrictEqual(fake.starts, [0, 18_000])
    }).pipe(
      Effect.provide(
        stack(
          { ...zero, tokensPerMinute: 1000, requestsPerSecond: Infinity, safetyMargin: 0, catchUp: 0, estimator: fixed(100) },
          fake.layer
        )
      )
    )
  })

  it.effect("reserves the policy's default output when a request sets no maxTokens", () => {
    const fake = makeFake([{}], "fake", { ...RateLimitPolicy.openAi, defaultMaxTokens: 900 })
    return Effect.gen(function*() {
      const error = yield* Effect.flip(Llm.complete(CompletionRequest.user("gpt-4o-mini", "a")))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.match(error.message, /estimated prompt 100 \+ maxTokens 900/)
      assert.strictEqual(fake.starts.length, 0)
    }).pipe(Effect.provide(stack({ ...zero, tokensPerMinute: 999, requestsPerSecond: Infinity, estimator: fixed(100) }, fake.layer)))
  })
})

describe("budgets learnt from headers", () => {
  it.effect("the limits the first response states replace the assumed defaults (2 per second)", () => {
    const fake = makeFake([{ rateLimit: states }], "fake", RateLimitPolicy.openAi)
    return Effect.gen(function*() {
      const exits = yield* burst(21, "20 seconds")
      assert.isTrue(exits.every(Exit.isSuccess))
      // 600 per minute is one per 100 ms: 20 calls after the first in about 2 s, not 10 s
      assert.isBelow(fake.starts[20]! - fake.starts[0]!, 2_500)
      // and never faster than the stated budget allows once its few catch-up calls are spent
      assert.isAtLeast(fake.starts[20]! - fake.starts[10]!, 900)
    }).pipe(Effect.provide(stack(zero, fake.layer)))
  })

  it.effect("without learnt limits the seeds' defaults hold (2 per second)", () => {
    const fake = makeFake([{}], "fake", RateLimitPolicy.openAi)
    return Effect.gen(function*() {
      yield* burst(11, "20 seconds")
      assert.isAtLeast(fake.starts[10]! - fake.starts[0]!, 4_500)
    }).pipe(Effect.provide(stack(zero, fake.layer)))
  })

  it.effect("a budget the user set is a hard cap that learning never raises", () => {
    const fake = makeFake([{ rateLimit: states }], "fake", RateLimitPolicy.openAi)
    return Effect.gen(function*() {
      yield* burst(6, "20 seconds")
      assert.isAtLeast(fake.starts[5]! - fake.starts[0]!, 4_900)
    }).pipe(Effect.provide(stack({ ...zero, requestsPerSecond: 1 }, fake.layer)))
  })

  it.effect("a configured budget above the provider's is lowered to it, and said once", () => {
    const fake = makeFake([{ rateLimit: { ...states, limitRequests: 60 } }], "fake", RateLimitPolicy.openAi)
    const warnings: Array<string> = []
    const collector = Logger.make((options) => {
      if (options.logLevel === "Warn") warnings.push(String(options.message))
    })
    return Effect.gen(function*() {
      yield* burst(6, "20 seconds")
      // 60 per minute: one per second, although 6000 per minute were configured
      assert.isAtLeast(fake.starts[5]! - fake.starts[1]!, 3_500)
      assert.strictEqual(warnings.length, 1)
      assert.match(warnings[0]!, /requests_per_minute 6000 per 60 s is above the provider's 60 per 60 s/)
    }).pipe(
      Effect.provide(stack({ ...zero, requestsPerMinute: 6000, safetyMargin: 0, catchUp: 0 }, fake.layer)),
      Effect.provide(Logger.layer([collector]))
    )
  })

  it.effect("learns nothing from a backend whose policy states no header window (an unknown compatible server)", () => {
    const fake = makeFake([{ rateLimit: states }], "fake", RateLimitPolicy.none)
    return Effect.gen(function*() {
      yield* burst(11, "20 seconds")
      assert.isAtLeast(fake.starts[10]! - fake.starts[0]!, 4_500)
    }).pipe(Effect.provide(stack(zero, fake.layer)))
  })

  it.effect("lets concurrency grow past the assumed 2 once the provider has stated its limits", () => {
    const fake = makeFake([{ rateLimit: states, latencyMillis: 1_000 }], "fake", RateLimitPolicy.openAi)
    return Effect.gen(function*() {
      yield* burst(120, "60 seconds")
      assert.isAbove(fake.peakInFlight, 2)
    }).pipe(Effect.provide(stack(zero, fake.layer)))
  })
})

describe("limits the provider documents (Replicate: no limit headers)", () => {
  it.effect("the documented 600 per minute replace the assumed 2 per second and 120k tokens from the first call", () => {
    // Replicate states no limits in its responses; its policy documents 600 creations per minute.
    const fake = makeFake([{}], "fake", RateLimitPolicy.replicate)
    return Effect.gen(function*() {
      const exits = yield* burst(21, "20 seconds", 100_000)
      assert.isTrue(exits.every(Exit.isSuccess))
      // one per 100 ms: 20 calls after the first in about 2 s, not 10 s; no token budget
      // (each call reserves 100k tokens, beyond the assumed 120k per minute)
      assert.isBelow(fake.starts[20]! - fake.starts[0]!, 2_500)
      assert.isAtLeast(fake.starts[20]! - fake.starts[10]!, 900)
    }).pipe(Effect.provide(stack(zero, fake.layer)))
  })

  it.effect("lets concurrency grow past the assumed 2 by the documented rate", () => {
    const fake = makeFake([{ latencyMillis: 1_000 }], "fake", RateLimitPolicy.replicate)
    return Effect.gen(function*() {
      yield* burst(120, "60 seconds")
      assert.isAbove(fake.peakInFlight, 2)
    }).pipe(Effect.provide(stack(zero, fake.layer)))
  })

  it.effect("a budget the user set stays a hard cap", () => {
    const fake = makeFake([{}], "fake", RateLimitPolicy.replicate)
    return Effect.gen(function*() {
      yield* burst(6, "20 seconds")
      assert.isAtLeast(fake.starts[5]! - fake.starts[0]!, 4_900)
    }).pipe(Effect.provide(stack({ ...zero, requestsPerSecond: 1 }, fake.layer)))
  })
})

describe("concurrency once the limits are stated", () => {
  it.effect("grows by slow start to what the stated rate needs at the key's latency (Little's law), not to a fixed cap", () => {
    // 6000 requests per minute at 2 s a call: about 200 calls must be in flight to use it
    const fake = makeFake(
      [{ rateLimit: { ...states, limitRequests: 6000, remainingRequests: 5999 }, latencyMillis: 2_000 }],
      "fake",
      RateLimitPolicy.openAi
    )
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(Array.from({ length: 1200 }), () => Effect.forkChild(Effect.exit(Llm.complete(request()))))
      yield* TestClock.adjust("30 seconds")
      assert.isAtLeast(fake.peakInFlight, 150)
      // and never more than the ceiling: twice the rate × the latency, plus one
      assert.isAtMost(fake.peakInFlight, 401)
      yield* TestClock.adjust("60 seconds")
      yield* Effect.forEach(fibers, Fiber.join)
    }).pipe(Effect.provide(stack(zero, fake.layer)))
  })

  it.effect("stays at what the user set", () => {
    const fake = makeFake(
      [{ rateLimit: { ...states, limitRequests: 6000, remainingRequests: 5999 }, latencyMillis: 2_000 }],
      "fake",
      RateLimitPolicy.openAi
    )
    return Effect.gen(function*() {
      yield* burst(20, "30 seconds")
      assert.strictEqual(fake.peakInFlight, 4)
    }).pipe(Effect.provide(stack({ ...zero, maxConcurrency: 4 }, fake.layer)))
  })
})

describe("cautious start", () => {
  it.effect("sends one call first and the rest once its response states the budgets", () => {
    const fake = makeFake([{ rateLimit: states, latencyMillis: 300 }, { rateLimit: states }], "fake", RateLimitPolicy.openAi)
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(Array.from({ length: 4 }), () => Effect.forkChild(Llm.complete(request())))
      yield* TestClock.adjust("299 millis")
      assert.strictEqual(fake.starts.length, 1)
      yield* TestClock.adjust("10 seconds")
      yield* Effect.forEach(fibers, Fiber.join)
      assert.strictEqual(fake.starts.length, 4)
      assert.isAtLeast(fake.starts[1]!, 300)
      // (the budgets leave room for all four at once: only the cautious start holds them)
    }).pipe(Effect.provide(stack({ ...zero, requestsPerSecond: Infinity, maxConcurrency: 10 }, fake.layer)))
  })

  it.effect("does not let a hung first call hold the others for more than a short while", () => {
    const fake = makeFake([{ latencyMillis: 1_000_000 }, {}], "fake", RateLimitPolicy.openAi)
    return Effect.gen(function*() {
      yield* Effect.forkChild(Effect.exit(Llm.complete(request())))
      const second = yield* Effect.forkChild(Llm.complete(request()))
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(second)
      assert.strictEqual(fake.starts.length, 2)
      assert.isAtLeast(fake.starts[1]!, 2_000)
      assert.isAtMost(fake.starts[1]!, 2_500)
    }).pipe(Effect.provide(stack({ ...zero, requestsPerSecond: Infinity, maxConcurrency: 10, timeout: false }, fake.layer)))
  })
})

describe("deadlines", () => {
  const retrying: RateLimit.Options = {
    ...zero,
    retriesEnabled: true,
    retryBaseMillis: 100,
    retryCapMillis: 100,
    requestsPerSecond: Infinity
  }

  it.effect("cuts a hung attempt at REQUEST_TIMEOUT_MS and retries it as a Timeout", () => {
    const fake = makeFake([{ latencyMillis: 1_000_000 }, {}])
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Llm.complete(request()))
      yield* TestClock.adjust("6 seconds")
      const completion = yield* Fiber.join(fiber)
      assert.strictEqual(completion.text, "ok")
      assert.strictEqual(completion.facts?.timeouts, 1)
      assert.strictEqual(completion.facts?.retries, 1)
      assert.deepStrictEqual(fake.starts, [0, 5_100])
      // the hung attempt was interrupted, not left running
      assert.strictEqual(fake.inFlight, 0)
      const limiter = yield* RateLimit.Limiter
      assert.strictEqual(limiter.totals().timeouts, 1)
      assert.strictEqual(limiter.totals().retries, 1)
    }).pipe(Effect.provide(stack({ ...retrying, requestTimeoutMillis: 5_000 }, fake.layer)))
  })

  it.effect("hung calls started at different times are each cut at their own deadline, on one timer", () => {
    const fake = makeFake([{ latencyMillis: 1_000_000 }])
    return Effect.gen(function*() {
      const first = yield* Effect.forkChild(Effect.flip(Llm.complete(request())))
      yield* TestClock.adjust("1500 millis")
      const second = yield* Effect.forkChild(Effect.flip(Llm.complete(request())))
      yield* TestClock.adjust("2 seconds")
      const cutFirst = yield* Fiber.join(first)
      assert.strictEqual(cutFirst.reason._tag, "Timeout")
      // the first was cut at 3 s; the second (started at 1.5 s) is still running
      assert.deepStrictEqual(fake.ends, [3_000])
      yield* TestClock.adjust("1 second")
      const cutSecond = yield* Fiber.join(second)
      assert.strictEqual(cutSecond.reason._tag, "Timeout")
      assert.deepStrictEqual(fake.ends, [3_000, 4_500])
      assert.strictEqual(fake.inFlight, 0)
    }).pipe(Effect.provide(stack({ ...zero, requestsPerSecond: Infinity, maxConcurrency: 10, requestTimeoutMillis: 3_000 }, fake.layer)))
  })

  it.effect("learns the deadline from the key's latency: a multiple of its p99, not the initial 30 s", () => {
    const script: Array<Step> = [
      ...Array.from({ length: 10 }, () => ({ latencyMillis: 200, usage: { inputTokens: 10, outputTokens: 4 } })),
      { latencyMillis: 1_000_000 },
      {}
    ]
    const fake = makeFake(script)
    return Effect.gen(function*() {
      for (let i = 0; i < 10; i++) {
        const fiber = yield* Effect.forkChild(Llm.complete(request("hi", 4)))
        yield* TestClock.adjust("200 millis")
        yield* Fiber.join(fiber)
      }
      const hung = yield* Effect.forkChild(Llm.complete(request("hi", 4)))
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(hung)
      // 200 ms for 4 + 16 sized tokens, x4 = 800 ms, raised to the 1 s floor
      assert.strictEqual(fake.starts[11]! - fake.starts[10]!, 1_100)
    }).pipe(Effect.provide(stack(retrying, fake.layer)))
  })

  it.effect("a call that hangs before the key's latency is known is cut once it is, not at the initial 30 s", () => {
    const script: Array<Step> = [
      { latencyMillis: 1_000_000 },
      ...Array.from({ length: 5 }, () => ({ latencyMillis: 200, usage: { inputTokens: 10, outputTokens: 4 } })),
      {}
    ]
    const fake = makeFake(script)
    return Effect.gen(function*() {
      const hung = yield* Effect.forkChild(Llm.complete(request("hi", 4)))
      yield* TestClock.adjust("1 millis")
      const others = yield* Effect.forEach(Array.from({ length: 5 }), () => Effect.forkChild(Llm.complete(request("hi", 4))))
      yield* TestClock.adjust("5 seconds")
      yield* Effect.forEach(others, Fiber.join)
      yield* Fiber.join(hung)
      // cut at the first re-check after five successes (the 1 s floor), retried 100 ms later
      assert.strictEqual(fake.starts[6], 1_100)
    }).pipe(Effect.provide(stack({ ...retrying, maxConcurrency: 10 }, fake.layer)))
  })

  it.effect("fails a silent stream after its first chunk once the idle limit passes", () => {
    const silent = Layer.succeed(Llm.Llm, {
      ...Llm.fromComplete("silent", () => Effect.die("unused")),
      stream: () => Stream.concat(Stream.make(new Completion.CompletionChunk({ text: "a" })), Stream.never)
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Stream.runCollect(Llm.stream(request())).pipe(Effect.flip))
      yield* TestClock.adjust("1001 millis")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.match(error.message, /nothing more within 1\.0 s/)
    }).pipe(Effect.provide(stack({ ...zero, requestsPerSecond: Infinity, timeout: { idleMillis: 1_000 } }, silent)))
  })

  it.effect("a stream that sends nothing at all fails at the attempt's deadline", () => {
    const silent = Layer.succeed(Llm.Llm, { ...Llm.fromComplete("silent", () => Effect.die("unused")), stream: () => Stream.never })
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(Stream.runCollect(Llm.stream(request())).pipe(Effect.flip))
      yield* TestClock.adjust("5 seconds")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.match(error.message, /no first chunk/)
    }).pipe(Effect.provide(stack({ ...zero, requestsPerSecond: Infinity, requestTimeoutMillis: 4_000 }, silent)))
  })
})

describe("the run's summary", () => {
  it.effect("logs one line at info when the limiter closes: attempts, waits, retries, 429s, timeouts", () => {
    const fake = makeFake([{ error: new LlmError.RateLimited({ scope: "requests", description: "429", retryAfterMillis: 10 }) }, {}])
    const lines: Array<string> = []
    const collector = Logger.make((options) => {
      if (options.logLevel === "Info") lines.push(String(options.message))
    })
    return Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(stack({ ...zero, retriesEnabled: true, requestsPerSecond: Infinity }, fake.layer))
        const fiber = yield* Effect.forkChild(Effect.provide(Llm.complete(request()), context))
        yield* TestClock.adjust("1 second")
        const completion = yield* Fiber.join(fiber)
        assert.strictEqual(completion.facts?.http429, 1)
        assert.strictEqual(completion.facts?.retries, 1)
      }))
      assert.deepStrictEqual(lines, ["rate-limit: 2 attempts, 0 waited (0.0 s), 1 retry, 1 × 429, 0 timeouts"])
    }).pipe(Effect.provide(Logger.layer([collector])), Effect.provideService(References.MinimumLogLevel, "Info"))
  })
})

describe("the prompt estimate", () => {
  const counting = () => {
    let calls = 0
    const estimator: Estimator.Estimator = () =>
      Effect.sync(() => {
        calls++
        return 10
      })
    return { estimator, calls: () => calls }
  }

  it.effect("is skipped when no token budget can apply (none configured, none assumed, none to learn)", () => {
    const fake = makeFake([{}], "fake", RateLimitPolicy.none)
    const count = counting()
    return Effect.gen(function*() {
      yield* burst(3, "5 seconds")
      assert.strictEqual(fake.starts.length, 3)
      assert.strictEqual(count.calls(), 0)
    }).pipe(Effect.provide(stack({ ...zero, tokensPerMinute: Infinity, estimator: count.estimator }, fake.layer)))
  })

  it.effect("is made while a token budget applies: the assumed 120k, or one the provider may state", () => {
    const assumed = counting()
    const stated = counting()
    return Effect.gen(function*() {
      yield* burst(2, "5 seconds").pipe(
        Effect.provide(stack({ ...zero, estimator: assumed.estimator }, makeFake([{}], "fake", RateLimitPolicy.none).layer))
      )
      yield* burst(2, "5 seconds").pipe(
        Effect.provide(
          stack({ ...zero, tokensPerMinute: Infinity, estimator: stated.estimator }, makeFake([{}], "fake", RateLimitPolicy.openAi).layer)
        )
      )
      assert.strictEqual(assumed.calls(), 2)
      assert.strictEqual(stated.calls(), 2)
    })
  })
})
