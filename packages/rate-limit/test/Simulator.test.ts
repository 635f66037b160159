/**
 * Integration: the middleware over the real OpenAI provider (official SDK) against the
 * testkit simulator over loopback HTTP, with the simulator's own sliding-window limits,
 * faults and quota. Windows are one second long so the tests stay short.
 */
import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm } from "@hasten/core"
import { OpenAi } from "@hasten/providers/openai"
import { Replicate } from "@hasten/providers/replicate"
import { Simulator } from "@hasten/testkit"
import { Effect, Exit, Layer, Redacted } from "effect"
import { Estimator, RateLimit } from "../src/index.js"

/** The simulator's tokenizer (at most four non-space characters per token), summed over messages. */
const simulatorTokens: Estimator.Estimator = (request) =>
  Effect.succeed(request.messages.reduce((sum, message) => sum + (message.content.match(/\s*\S{1,4}|\s+$/g) ?? []).length, 0))

const provider = (sim: Simulator.Instance) =>
  OpenAi.layer({ model: "gpt-4o-mini", apiKey: Redacted.make("sk-rate-limit-test"), baseURL: sim.openaiBaseUrl })

/**
 * Starts a simulator and a provider for it, warms the provider's HTTP client up first (the
 * first calls of a client open connections and compile code, which spreads their arrival
 * times by hundreds of ms), then clears the simulator's counters and windows.
 */
const withSimulator = <A, E>(
  options: Simulator.Options,
  f: (sim: Simulator.Instance, provider: Layer.Layer<Llm.Llm>) => Effect.Effect<A, E>
) =>
  Effect.scoped(Effect.gen(function*() {
    const sim = yield* Effect.acquireRelease(Effect.promise(() => Simulator.start(options)), (sim) => Effect.promise(() => sim.close()))
    const context = yield* Layer.build(provider(sim))
    const warm = Layer.succeedContext(context) as Layer.Layer<Llm.Llm>
    yield* Estimator.openAi(CompletionRequest.user("gpt-4o-mini", "warm up"))
    yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => i), (i) => Effect.exit(ask(i)), { concurrency: "unbounded" }).pipe(
      Effect.provide(warm)
    )
    sim.reset()
    return yield* f(sim, warm)
  }))

const ask = (i: number, maxTokens = 16) =>
  Llm.complete(CompletionRequest.user("gpt-4o-mini", `Question ${i}: what is ${i} plus ${i}?`, { maxTokens, temperature: 0 }))

const all = (n: number, maxTokens = 16) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => Effect.exit(ask(i, maxTokens)), { concurrency: "unbounded" })

// Short windows leave only safetyMargin x window of slack for the spread of HTTP
// arrival times on a busy machine (a minute-long window leaves 60 times more).
const quiet: RateLimit.Options = {
  safetyMargin: 0.1,
  requestsPerSecond: Infinity,
  tokensPerMinute: Infinity,
  apiKey: "sk-rate-limit-test",
  circuitBreaker: false
}

describe("against the simulator through the OpenAI provider", () => {
  // The simulator runs in this process, so its arrival times carry this process's event-loop
  // stalls (hundreds of ms on a loaded machine): one 429 from that jitter is tolerated; the
  // same burst without the middleware gets a dozen.
  it.live("keeps concurrent calls inside the request window", () =>
    withSimulator({ limits: { rpm: 10, windowMs: 2000 }, latency: { ttftMs: 5 } }, (sim, provider) =>
      Effect.gen(function*() {
        const exits = yield* all(20).pipe(Effect.provide(
          RateLimit.layer({
            ...quiet,
            safetyMargin: 0.3,
            maxConcurrency: 8,
            requestsPerMinute: 10,
            requestWindowMillis: 2000
          }).pipe(Layer.provide(provider))
        ))
        assert.isTrue(exits.every(Exit.isSuccess))
        assert.isAtMost(sim.counters().http429.requests, 1)
        assert.strictEqual(sim.counters().admitted, 20)
      })))

  it.live("the same burst without the middleware is answered 429 (the limit is real)", () =>
    withSimulator({ limits: { rpm: 10, windowMs: 2000 }, latency: { ttftMs: 5 } }, (sim, provider) =>
      Effect.gen(function*() {
        const exits = yield* all(20).pipe(Effect.provide(provider))
        assert.isAtLeast(sim.counters().http429.requests, 5)
        assert.isTrue(exits.some(Exit.isFailure))
      })))

  it.live("keeps prompt + maxTokens inside the token window", () =>
    withSimulator({ limits: { tpm: 800, windowMs: 2000 }, latency: { ttftMs: 5 } }, (sim, provider) =>
      Effect.gen(function*() {
        const exits = yield* all(16, 40).pipe(Effect.provide(
          RateLimit.layer({
            ...quiet,
            safetyMargin: 0.3,
            maxConcurrency: 8,
            tokensPerMinute: 800,
            tokenWindowMillis: 2000,
            tokenAccounting: "reserved",
            estimator: simulatorTokens
          }).pipe(Layer.provide(provider))
        ))
        assert.isTrue(exits.every(Exit.isSuccess))
        assert.isAtMost(sim.counters().http429.tokens, 1)
      })))

  it.live("retries injected 5xx and resets, and reports the retries on the completion", () =>
    withSimulator({ seed: 3, faults: { rate: 0.3, kinds: ["500", "503", "reset"] } }, (sim, provider) =>
      Effect.gen(function*() {
        const exits = yield* all(20).pipe(Effect.provide(
          RateLimit.layer({
            ...quiet,
            maxConcurrency: 4,
            retryBaseMillis: 5,
            retryCapMillis: 40,
            maxRetries: 8
          }).pipe(Layer.provide(provider))
        ))
        assert.isTrue(exits.every(Exit.isSuccess))
        const retries = exits.reduce((sum, exit) => sum + (Exit.isSuccess(exit) ? Number(exit.value.facts?.retries ?? 0) : 0), 0)
        assert.isAbove(sim.counters().faults, 0)
        assert.strictEqual(retries, sim.counters().faults)
      })))

  it.live("honours the simulator's retry-after on concurrency 429s and lowers its concurrency", () =>
    withSimulator({ limits: { maxConcurrency: 2 }, latency: { ttftMs: 40 } }, (sim, provider) =>
      Effect.gen(function*() {
        const { exits, concurrency } = yield* Effect.gen(function*() {
          const exits = yield* all(12)
          const limiter = yield* Effect.service(RateLimit.Limiter)
          const concurrency = yield* limiter.concurrency(
            RateLimit.keyOf({ apiKey: "sk-rate-limit-test" }, "openai", CompletionRequest.user("gpt-4o-mini", "x"))
          )
          return { exits, concurrency }
        }).pipe(Effect.provide(
          RateLimit.layerFromLimiter(quiet).pipe(
            Layer.provideMerge(
              RateLimit.layerLimiter({ ...quiet, maxConcurrency: 8, retryBaseMillis: 5, retryCapMillis: 40, maxRetries: 20 })
            ),
            Layer.provide(provider)
          )
        ))
        assert.isTrue(exits.every(Exit.isSuccess))
        assert.isAbove(sim.counters().http429.concurrency, 0)
        assert.isBelow(concurrency, 8)
      })))

  it.live("fails fast with a clear message when the quota is exhausted", () =>
    withSimulator({ limits: { quotaExhausted: true } }, (sim, provider) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(ask(1)).pipe(
          Effect.provide(RateLimit.layer({ ...quiet, maxRetries: 6 }).pipe(Layer.provide(provider)))
        )
        assert.include(error.message, "quota exhausted")
        assert.strictEqual(sim.counters().requests, 1)
      })))
})

describe("the Replicate provider against the simulator", () => {
  it.live("a stuck prediction is cut at the deadline, cancelled and retried: answered, nothing left running", () =>
    Effect.scoped(Effect.gen(function*() {
      // the first prediction is stuck in `starting` forever; the retry is not (seeded draw, `rate` 0.5)
      const sim = yield* Effect.acquireRelease(
        Effect.promise(() => Simulator.start({ seed: 3, faults: { rate: 0.5, kinds: ["hang"] }, replicate: { maxWaitMs: 50 } })),
        (sim) => Effect.promise(() => sim.close())
      )
      const provider = Replicate.layer({ apiToken: Redacted.make("r8_rate_limit"), baseUrl: sim.replicateBaseUrl, model: "meta/llama" })
      const completions = yield* Effect.forEach(
        ["a", "b", "c", "d"],
        (prompt) => Llm.complete(CompletionRequest.user("meta/llama", prompt)),
        { concurrency: 1 }
      ).pipe(
        Effect.provide(
          RateLimit.layer({ requestTimeoutMillis: 300, retryBaseMillis: 5, circuitBreaker: false }).pipe(Layer.provide(provider))
        )
      )
      assert.strictEqual(completions.length, 4)
      const stuck = sim.counters().faultsByKind.hang
      assert.isAbove(stuck, 0)
      // every stuck prediction was cancelled when its attempt was cut: none is left running
      assert.strictEqual(sim.counters().cancellations, stuck)
      assert.strictEqual(sim.counters().inFlight, 0)
    })))
})
