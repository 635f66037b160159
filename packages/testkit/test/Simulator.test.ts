import { assert, describe, it } from "@effect/vitest"
import { Simulator } from "@hasten/testkit"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import OpenAI from "openai"

const chat = (content: string) => ({ model: "gpt-4o-mini", messages: [{ role: "user" as const, content }] })

describe("Simulator.layer", () => {
  it.effect("provides a running simulator for the scope and closes it after", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Simulator.layer({ limits: { rpm: 100 } }), scope)
      const sim = Context.get(context, Simulator.Simulator)
      assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+$/)
      assert.strictEqual(sim.openaiBaseUrl, `${sim.url}/v1`)
      assert.strictEqual(sim.anthropicBaseUrl, sim.url)
      assert.strictEqual(sim.replicateBaseUrl, `${sim.url}/v1`)
      const openai = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "k", maxRetries: 0 })
      yield* Effect.promise(() => openai.chat.completions.create(chat("hi")))
      assert.strictEqual(sim.counters().admitted, 1)
      yield* Scope.close(scope, Exit.void)
      const after = yield* Effect.promise(() => fetch(`${sim.url}/v1/models`).then(() => "answered", () => "refused"))
      assert.strictEqual(after, "refused")
    }))

  it.effect("is read with yield* Simulator.Simulator", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const response = yield* Effect.promise(() => fetch(`${sim.openaiBaseUrl}/models`, { headers: { authorization: "Bearer k" } }))
      assert.strictEqual(response.status, 200)
    }).pipe(Effect.provide(Simulator.layer())))

  it.effect("a simulator that cannot start fails the layer with TestkitError (SimulatorError) naming the cause", () =>
    Effect.gen(function*() {
      const taken = yield* Simulator.Simulator
      const error = yield* Effect.flip(Layer.build(Simulator.layer({ port: taken.port })).pipe(Effect.scoped))
      assert.instanceOf(error, Simulator.TestkitError)
      assert.strictEqual(error.reason._tag, "SimulatorError")
      assert.match(error.message, /EADDRINUSE/)
    }).pipe(Effect.provide(Simulator.layer())))
})

describe("Simulator robustness and bookkeeping", () => {
  it("counts a client that leaves mid-stream as aborted, stops generating and frees its slot", async () => {
    const sim = await Simulator.start({ latency: { perTokenMs: 10 }, responder: () => "tok ".repeat(100), limits: { maxConcurrency: 1 } })
    try {
      const openai = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "k", maxRetries: 0 })
      const controller = new AbortController()
      const stream = await openai.chat.completions.create({ ...chat("long"), stream: true }, { signal: controller.signal })
      let seen = 0
      try {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) seen++
          if (seen === 3) controller.abort()
        }
      } catch {
        // aborted
      }
      for (let i = 0; i < 100 && sim.counters().inFlight > 0; i++) await new Promise((resolve) => setTimeout(resolve, 5))
      const counters = sim.counters()
      assert.strictEqual(counters.aborted, 1)
      assert.strictEqual(counters.inFlight, 0)
      assert.isBelow(counters.outputTokens, 100)
      const next = await openai.chat.completions.create({ ...chat("next"), max_tokens: 2 })
      assert.strictEqual(next.usage?.completion_tokens, 2)
    } finally {
      await sim.close()
    }
  })

  it("a failing responder yields the vendor's 500 and the server keeps serving", async () => {
    let calls = 0
    const sim = await Simulator.start({
      responder: () => {
        calls++
        if (calls === 1) throw new Error("model crashed")
        return "fine"
      }
    })
    try {
      const openai = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "k", maxRetries: 0 })
      const error = await openai.chat.completions.create(chat("x")).catch((error: unknown) => error) as InstanceType<
        typeof OpenAI.InternalServerError
      >
      assert.instanceOf(error, OpenAI.InternalServerError)
      assert.match(error.message, /model crashed/)
      assert.strictEqual(sim.counters().inFlight, 0)
      const ok = await openai.chat.completions.create(chat("x"))
      assert.strictEqual(ok.choices[0]!.message.content, "fine")
    } finally {
      await sim.close()
    }
  })

  it("unknown routes get a 404 in the shape of the vendor the caller looks like", async () => {
    const sim = await Simulator.start()
    try {
      const openai = await fetch(`${sim.url}/v1/nothing`, { headers: { authorization: "Bearer k" } })
      assert.strictEqual(openai.status, 404)
      assert.strictEqual((await openai.json() as { error: { type: string } }).error.type, "invalid_request_error")
      const anthropic = await fetch(`${sim.url}/v1/nothing`, { headers: { "x-api-key": "k", "anthropic-version": "2023-06-01" } })
      assert.deepStrictEqual((await anthropic.json() as { type: string; error: { type: string } }).error.type, "not_found_error")
      const replicate = await fetch(`${sim.url}/v1/predictions/abc/unknown`, { headers: { authorization: "Token r8" } })
      assert.strictEqual(replicate.status, 404)
      assert.strictEqual((await replicate.json() as { status: number }).status, 404)
      assert.strictEqual(sim.counters().requestsByRoute["GET (unknown route)"], 3)
    } finally {
      await sim.close()
    }
  })

  it("odd paths (bad percent-encoding) get vendor-shaped errors, not a dropped connection", async () => {
    const sim = await Simulator.start()
    try {
      for (const path of ["/v1/files/%E0%A4%A", "/v1/models/%ZZ", "/v1/batches/%"]) {
        const response = await fetch(`${sim.url}${path}`, { headers: { authorization: "Bearer k" } })
        assert.include([200, 404], response.status, path)
        assert.isObject(await response.json())
      }
    } finally {
      await sim.close()
    }
  })

  it("answers every malformed body on every POST route with a 4xx JSON error, and keeps serving", async () => {
    const sim = await Simulator.start()
    try {
      const routes: Array<[string, Record<string, string>]> = [
        ["/v1/chat/completions", { authorization: "Bearer k" }],
        ["/v1/completions", { authorization: "Bearer k" }],
        ["/v1/embeddings", { authorization: "Bearer k" }],
        ["/v1/batches", { authorization: "Bearer k" }],
        ["/v1/files", { authorization: "Bearer k" }],
        ["/v1/messages", { "x-api-key": "k" }],
        ["/v1/messages/count_tokens", { "x-api-key": "k" }],
        ["/v1/predictions", { authorization: "Bearer k" }],
        ["/v1/models/meta/llama/predictions", { authorization: "Bearer k" }]
      ]
      const bodies = [
        "",
        "null",
        "[]",
        "42",
        "\"text\"",
        "{}",
        "{\"model\":null}",
        "{\"model\":\"m\",\"messages\":[null]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
        "{\"model\":\"m\",\"max_tokens\":-1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"input\":{\"prompt\":5},\"prompt\":{}}",
        "{\"version\":7,\"input\":[]}",
        "{\"input\":\"x\",\"model\":\"m\",\"dimensions\":0}",
        "{\"input_file_id\":1}",
        "\u0000\u0001garbage"
      ]
      for (const [path, headers] of routes) {
        for (const body of bodies) {
          const response = await fetch(`${sim.url}${path}`, {
            method: "POST",
            headers: { ...headers, "content-type": "application/json" },
            body
          })
          const label = `${path} ${JSON.stringify(body)} -> ${response.status}`
          assert.isAtLeast(response.status, 400, label)
          assert.isBelow(response.status, 500, label)
          assert.isObject(await response.json(), label)
        }
      }
      assert.strictEqual(sim.counters().admitted, 0)
      const ok = await new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "k", maxRetries: 0 }).chat.completions.create(chat("alive"))
      assert.strictEqual(ok.object, "chat.completion")
    } finally {
      await sim.close()
    }
  })

  it("reset clears counters, events and buckets", async () => {
    const sim = await Simulator.start({ limits: { rpm: 1 } })
    try {
      const openai = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "k", maxRetries: 0 })
      await openai.chat.completions.create(chat("x"))
      await openai.chat.completions.create(chat("x")).catch(() => undefined)
      assert.strictEqual(sim.counters().http429.requests, 1)
      sim.reset()
      assert.strictEqual(sim.counters().requests, 0)
      assert.strictEqual(sim.events().length, 0)
      const ok = await openai.chat.completions.create(chat("x"))
      assert.strictEqual(ok.object, "chat.completion")
    } finally {
      await sim.close()
    }
  })

  it("formats reset durations like OpenAI", () => {
    assert.strictEqual(Simulator.formatDuration(20), "20ms")
    assert.strictEqual(Simulator.formatDuration(1500), "1.5s")
    assert.strictEqual(Simulator.formatDuration(360_000), "6m0s")
    assert.strictEqual(Simulator.formatDuration(3_723_000), "1h2m3s")
  })
})
