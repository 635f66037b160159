import { assert, describe, it } from "@effect/vitest"
import { Completion, CompletionRequest, Llm, LlmError } from "@hasten/core"
import { OpenAi } from "@hasten/providers/openai"
import { Router } from "@hasten/providers/router"
import { Simulator } from "@hasten/testkit"
import { Duration, Effect, Exit, Fiber, Layer, Redacted, Stream } from "effect"
import { TestClock } from "effect/testing"
import { readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const request = CompletionRequest.user("logical-model", "hello")

/** An in-memory endpoint whose behaviour per call is scripted; counts its calls and the models it saw. */
const scripted = (
  name: string,
  behave: (call: number) => "ok" | LlmError.LlmErrorReason,
  options: { readonly chunks?: ReadonlyArray<string>; readonly delay?: Duration.Input } = {}
) => {
  const models: Array<string> = []
  let calls = 0
  const answer = (request: CompletionRequest.CompletionRequest) =>
    Effect.suspend(() => {
      models.push(request.model)
      const outcome = behave(calls++)
      const result = outcome === "ok"
        ? Effect.succeed(
          new Completion.Completion({
            text: `from ${name}`,
            finishReason: "stop",
            usage: { inputTokens: 1, outputTokens: 2 },
            model: request.model,
            provider: name,
            timing: { start: 0, end: 0 }
          })
        )
        : Effect.fail(LlmError.make(name, outcome))
      return options.delay === undefined ? result : Effect.andThen(Effect.sleep(options.delay), result)
    })
  const service: Llm.LlmService = {
    name,
    complete: answer,
    stream: (request) =>
      options.chunks === undefined
        ? Stream.unwrap(Effect.map(answer(request), (completion) => Stream.fromIterable(Completion.toChunks(completion))))
        : Stream.concat(
          Stream.fromIterable(options.chunks.map((text) => new Completion.CompletionChunk({ text }))),
          Stream.unwrap(Effect.map(answer(request), (completion) => Stream.fromIterable(Completion.toChunks(completion))))
        )
  }
  return { name, layer: Layer.succeed(Llm.Llm, service), calls: () => calls, models }
}

const overloaded = new LlmError.Overloaded({ description: "busy" })
const serverError = new LlmError.ServerError({ status: 502, description: "bad gateway" })
const invalid = new LlmError.InvalidRequest({ status: 400, description: "bad field" })

const failureOf = <A>(exit: Exit.Exit<A, LlmError.LlmError>): LlmError.LlmError => {
  assert.isTrue(Exit.isFailure(exit))
  const failure = Exit.isFailure(exit) ? exit.cause.reasons.find((reason) => reason._tag === "Fail") : undefined
  return (failure as { error: LlmError.LlmError }).error
}

describe("Router", () => {
  it.effect("spreads sequential requests round-robin when nothing is outstanding", () => {
    const a = scripted("a", () => "ok")
    const b = scripted("b", () => "ok")
    const c = scripted("c", () => "ok")
    return Effect.gen(function*() {
      const served: Array<unknown> = []
      for (let i = 0; i < 9; i++) served.push((yield* Llm.complete(request)).facts?.endpoint)
      assert.deepStrictEqual([a.calls(), b.calls(), c.calls()], [3, 3, 3])
      assert.deepStrictEqual(served.slice(0, 3).sort(), ["a", "b", "c"])
    }).pipe(Effect.provide(Router.layer({
      endpoints: [{ name: "a", layer: a.layer }, { name: "b", layer: b.layer }, { name: "c", layer: c.layer }]
    })))
  })

  it.effect("prefers the endpoint with fewer outstanding requests over strict rotation", () => {
    const slow = scripted("slow", () => "ok", { delay: "10 seconds" })
    const fast = scripted("fast", () => "ok")
    return Effect.gen(function*() {
      const pending = yield* Effect.forkChild(Llm.complete(request))
      yield* Effect.yieldNow
      assert.strictEqual(slow.calls(), 1)
      for (let i = 0; i < 4; i++) assert.strictEqual((yield* Llm.complete(request)).facts?.endpoint, "fast")
      assert.strictEqual(slow.calls(), 1)
      const stats = yield* Router.RouterStats
      assert.deepStrictEqual((yield* stats.snapshot).map((endpoint) => endpoint.outstanding), [1, 0])
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual((yield* Fiber.join(pending)).facts?.endpoint, "slow")
    }).pipe(Effect.provide(Router.layer({ endpoints: [{ name: "slow", layer: slow.layer }, { name: "fast", layer: fast.layer }] })))
  })

  it.effect("fails over on Overloaded, then skips the endpoint until its cooldown ends", () => {
    const a = scripted("a", (call) => call === 0 ? overloaded : "ok")
    const b = scripted("b", () => "ok")
    return Effect.gen(function*() {
      const first = yield* Llm.complete(request)
      assert.strictEqual(first.facts?.endpoint, "b")
      assert.strictEqual(first.facts?.routerAttempts, 2)
      assert.strictEqual(a.calls(), 1)
      for (let i = 0; i < 4; i++) assert.strictEqual((yield* Llm.complete(request)).facts?.endpoint, "b")
      assert.strictEqual(a.calls(), 1, "a is cooling down")
      const stats = yield* Router.RouterStats
      const cooling = (yield* stats.snapshot).find((endpoint) => endpoint.name === "a")!
      assert.strictEqual(cooling.failures, 1)
      assert.strictEqual(cooling.cooldownUntil, 10_000)
      yield* TestClock.adjust("9 seconds")
      yield* Llm.complete(request)
      assert.strictEqual(a.calls(), 1)
      yield* TestClock.adjust("1 second")
      yield* Llm.complete(request)
      yield* Llm.complete(request)
      assert.strictEqual(a.calls(), 2, "a is back in rotation after 10 s")
    }).pipe(Effect.provide(Router.layer({
      endpoints: [{ name: "a", layer: a.layer }, { name: "b", layer: b.layer }],
      cooldown: "10 seconds"
    })))
  })

  it.effect("does not fail over on a request error: the next endpoint is never called", () => {
    const a = scripted("a", () => invalid)
    const b = scripted("b", () => "ok")
    return Effect.gen(function*() {
      const error = failureOf(yield* Effect.exit(Llm.complete(request)))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.strictEqual(b.calls(), 0)
      const stats = yield* Router.RouterStats
      assert.strictEqual((yield* stats.snapshot)[0]!.cooldownUntil, 0, "no cooldown for a request error")
    }).pipe(Effect.provide(Router.layer({ endpoints: [{ name: "a", layer: a.layer }, { name: "b", layer: b.layer }] })))
  })

  it.effect("falls back to another provider, with its own model name, when every endpoint fails", () => {
    const a = scripted("a", () => serverError)
    const b = scripted("b", () => new LlmError.Timeout({ description: "slow" }))
    const other = scripted("other", () => "ok")
    return Effect.gen(function*() {
      const completion = yield* Llm.complete(request)
      assert.strictEqual(completion.text, "from other")
      assert.strictEqual(completion.facts?.endpoint, "fallback")
      assert.strictEqual(completion.facts?.routerAttempts, 3)
      assert.deepStrictEqual(other.models, ["claude-3-5-haiku-latest"])
      // both primaries are cooling down: the next call goes straight to the fallback
      yield* Llm.complete(request)
      assert.deepStrictEqual([a.calls(), b.calls(), other.calls()], [1, 1, 2])
    }).pipe(Effect.provide(Router.layer({
      endpoints: [{ name: "a", layer: a.layer }, { name: "b", layer: b.layer }],
      fallback: [{ name: "fallback", layer: other.layer, model: "claude-3-5-haiku-latest" }]
    })))
  })

  it.effect("fails with the last error when every endpoint and fallback failed", () => {
    const a = scripted("a", () => overloaded)
    const other = scripted("other", () => serverError)
    return Effect.gen(function*() {
      const error = failureOf(yield* Effect.exit(Llm.complete(request)))
      assert.strictEqual(error.reason._tag, "ServerError")
      assert.strictEqual(error.provider, "other")
    }).pipe(Effect.provide(Router.layer({ endpoints: [{ name: "a", layer: a.layer }], fallback: [{ name: "other", layer: other.layer }] })))
  })

  it.effect("streams fail over before the first chunk, and never mix a partial stream with another endpoint", () => {
    const a = scripted("a", (call) => call === 0 ? overloaded : "ok")
    const b = scripted("b", () => "ok")
    const partial = scripted("partial", () => overloaded, { chunks: ["half an ans"] })
    return Effect.gen(function*() {
      const folded = yield* Completion.fromStream(Llm.stream(request), { model: "m", provider: "router" })
      assert.strictEqual(folded.text, "from b")
      assert.strictEqual(folded.facts?.endpoint, "b")
      const mixed = yield* Effect.exit(
        Stream.runCollect(Llm.stream(request)).pipe(
          Effect.provide(Router.layer({ endpoints: [{ name: "partial", layer: partial.layer }, { name: "b2", layer: b.layer }] }))
        )
      )
      assert.strictEqual(failureOf(mixed).reason._tag, "Overloaded")
    }).pipe(Effect.provide(Router.layer({ endpoints: [{ name: "a", layer: a.layer }, { name: "b", layer: b.layer }] })))
  })

  describe("over real HTTP: three simulated OpenAI-compatible endpoints", () => {
    const key = Redacted.make("sk-router-test")
    const simulators = (options: ReadonlyArray<Simulator.Options>) =>
      Effect.acquireRelease(
        Effect.promise(() => Promise.all(options.map((option) => Simulator.start(option)))),
        (sims) => Effect.promise(() => Promise.all(sims.map((sim) => sim.close()))).pipe(Effect.asVoid)
      )
    const routed = (sims: ReadonlyArray<Simulator.Instance>) =>
      Router.layer({
        endpoints: [
          { name: "sim-0", layer: OpenAi.layer({ apiKey: key, baseURL: sims[0]!.openaiBaseUrl }) },
          { name: "sim-1", layer: OpenAi.layer({ apiKey: key, baseURL: sims[1]!.openaiBaseUrl }) },
          { name: "sim-2", layer: OpenAi.layer({ apiKey: key, baseURL: sims[2]!.openaiBaseUrl }) }
        ]
      })

    it.live("balances 30 concurrent requests by outstanding count: 10 per endpoint", () =>
      Effect.gen(function*() {
        const latency = { ttftMs: 30 }
        const sims = yield* simulators([{ latency }, { latency }, { latency }])
        const completions = yield* Effect.forEach(
          Array.from({ length: 30 }, () => CompletionRequest.user("gpt-4o-mini", "hi")),
          (request) => Llm.complete(request),
          { concurrency: "unbounded" }
        ).pipe(Effect.provide(routed(sims)))
        assert.deepStrictEqual(sims.map((sim) => sim.counters().admitted), [10, 10, 10])
        const byEndpoint = new Map<unknown, number>()
        for (const completion of completions) {
          byEndpoint.set(completion.facts?.endpoint, (byEndpoint.get(completion.facts?.endpoint) ?? 0) + 1)
        }
        assert.deepStrictEqual([...byEndpoint.entries()].sort(), [["sim-0", 10], ["sim-1", 10], ["sim-2", 10]])
      }).pipe(Effect.scoped))

    it.live("with one endpoint failing every call, all requests succeed and it is tried once, then cooled down", () =>
      Effect.gen(function*() {
        const sims = yield* simulators([{ faults: { rate: 1, kinds: ["500"] } }, {}, {}])
        const completions = yield* Effect.forEach(
          Array.from({ length: 12 }, () => CompletionRequest.user("gpt-4o-mini", "hi")),
          (request) => Llm.complete(request)
        ).pipe(Effect.provide(routed(sims)))
        assert.strictEqual(completions.length, 12)
        assert.strictEqual(sims[0]!.counters().requests, 1)
        assert.strictEqual(sims[1]!.counters().admitted + sims[2]!.counters().admitted, 12)
        assert.isFalse(completions.some((completion) => completion.facts?.endpoint === "sim-0"))
      }).pipe(Effect.scoped))
  })

  describe("entry points", () => {
    const src = resolve(dirname(fileURLToPath(import.meta.url)), "../src")
    /** Every bare package a module imports at runtime, following relative imports (type-only imports excluded). */
    const runtimeImports = (entry: string): Set<string> => {
      const seen = new Set<string>()
      const packages = new Set<string>()
      const visit = (file: string) => {
        if (seen.has(file)) return
        seen.add(file)
        const text = readFileSync(file, "utf8")
        for (const match of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+"([^"]+)"/gm)) {
          const specifier = match[1]!
          if (specifier.startsWith(".")) visit(join(dirname(file), specifier.replace(/\.js$/, ".ts")))
          else packages.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!)
        }
      }
      visit(join(src, entry))
      return packages
    }

    it("the root entry and the router import no provider SDK", () => {
      assert.deepStrictEqual([...runtimeImports("index.ts")].sort(), ["@hasten/core", "effect"])
      assert.deepStrictEqual([...runtimeImports("router.ts")].sort(), ["@hasten/core", "effect"])
    })

    it("each remote entry imports only its own SDK", () => {
      assert.deepStrictEqual([...runtimeImports("openai.ts")].sort(), ["@hasten/core", "effect", "openai"])
      assert.deepStrictEqual([...runtimeImports("anthropic.ts")].sort(), ["@anthropic-ai/sdk", "@hasten/core", "effect"])
      // gpt-tokenizer is imported lazily, only when a prediction reports no token counts
      assert.deepStrictEqual([...runtimeImports("replicate.ts")].sort(), ["@hasten/core", "effect", "replicate"])
    })
  })
})
