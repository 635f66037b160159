import { assert, describe, it, layer } from "@effect/vitest"
import { Completion, Llm } from "@hasten/core"
import { Deferred, Effect, Exit, Fiber, Layer, Redacted, Scope, Stream } from "effect"
import * as Http from "node:http"
import { OpenAiRequest, Server } from "../src/index.js"
import { gatedLlm, http, until } from "./support.js"

const Echo = Server.layerReady({
  port: 0,
  models: [
    { id: "echo", layer: Llm.Llm.layerEcho },
    { id: "echo-local", layer: Llm.Llm.layerEcho, capabilities: OpenAiRequest.localCapabilities }
  ]
})

const chat = (extra: Record<string, unknown>) => ({ model: "echo", messages: [{ role: "user", content: "hi" }], ...extra })

layer(Echo)("Server: strict OpenAI validation over raw HTTP", (it) => {
  it.effect("a valid chat request is answered in OpenAI's shape with a request id", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const reply = yield* http(server, "/v1/chat/completions", { body: chat({ temperature: 0, stop: ["x"], seed: 3, n: 1 }) })
      assert.strictEqual(reply.status, 200)
      assert.strictEqual(reply.json.object, "chat.completion")
      assert.strictEqual(reply.json.choices[0].message.content, "echo: hi")
      assert.strictEqual(reply.json.choices[0].finish_reason, "stop")
      assert.deepStrictEqual(reply.json.usage, { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 })
      assert.match(reply.headers.get("x-request-id")!, /^req_/)
      const given = yield* http(server, "/v1/chat/completions", { body: chat({}), headers: { "x-request-id": "trace-42" } })
      assert.strictEqual(given.headers.get("x-request-id"), "trace-42")
      assert.strictEqual(given.json.id, "chatcmpl-trace-42")
    }))

  it.effect("every bad field is a 400 whose param names it", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const cases: ReadonlyArray<readonly [Record<string, unknown>, string, string]> = [
        [chat({ temperature: 2.5 }), "temperature", "decimal_above_max_value"],
        [chat({ temperature: -0.1 }), "temperature", "decimal_below_min_value"],
        [chat({ temperature: "hot" }), "temperature", "invalid_type"],
        [chat({ top_p: 1.5 }), "top_p", "decimal_above_max_value"],
        [chat({ frequency_penalty: 3 }), "frequency_penalty", "decimal_above_max_value"],
        [chat({ presence_penalty: -3 }), "presence_penalty", "decimal_below_min_value"],
        [chat({ n: 0 }), "n", "integer_below_min_value"],
        [chat({ n: 2 }), "n", "unsupported_value"],
        [chat({ n: 1.5 }), "n", "invalid_type"],
        [chat({ seed: 1.5 }), "seed", "invalid_type"],
        [chat({ max_tokens: 0 }), "max_tokens", "integer_below_min_value"],
        [chat({ max_completion_tokens: "8" }), "max_completion_tokens", "invalid_type"],
        [chat({ stop: ["a", "b", "c", "d", "e"] }), "stop", "array_above_max_length"],
        [chat({ stop: [1] }), "stop[0]", "invalid_type"],
        [chat({ logit_bias: { "50256": 101 } }), "logit_bias", "invalid_value"],
        [chat({ logit_bias: { word: 1 } }), "logit_bias", "invalid_value"],
        [chat({ response_format: { type: "xml" } }), "response_format.type", "invalid_value"],
        [
          chat({ response_format: { type: "json_schema", json_schema: { schema: {} } } }),
          "response_format.json_schema.name",
          "missing_required_parameter"
        ],
        [chat({ stream_options: { include_usage: true } }), "stream_options", "invalid_value"],
        [chat({ stream: true, stream_options: { include_usage: "yes" } }), "stream_options.include_usage", "invalid_type"],
        [chat({ top_logprobs: 2 }), "top_logprobs", "invalid_value"],
        [chat({ temprature: 0 }), "temprature", "unknown_parameter"],
        [chat({ store: true }), "store", "unsupported_value"],
        [{ model: "echo" }, "messages", "missing_required_parameter"],
        [{ model: "echo", messages: [] }, "messages", "empty_array"],
        [{ model: "echo", messages: [{ role: "wizard", content: "x" }] }, "messages[0].role", "invalid_value"],
        [{ model: "echo", messages: [{ role: "user" }] }, "messages[0].content", "missing_required_parameter"],
        [
          { model: "echo", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
          "messages[0].content[0].type",
          "unsupported_value"
        ],
        [{ messages: [{ role: "user", content: "x" }] }, "model", "missing_required_parameter"]
      ]
      for (const [body, param, code] of cases) {
        const reply = yield* http(server, "/v1/chat/completions", { body })
        assert.strictEqual(reply.status, 400, JSON.stringify(body))
        assert.strictEqual(reply.json.error.param, param, JSON.stringify(body))
        assert.strictEqual(reply.json.error.code, code, JSON.stringify(body))
        assert.strictEqual(reply.json.error.type, "invalid_request_error")
        assert.isString(reply.json.error.message)
      }
    }))

  it.effect("fields the model cannot honour are refused by name, never dropped", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const tool = { type: "function", function: { name: "f", parameters: {} } }
      const cases: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
        [chat({ tools: [tool] }), "tools"],
        [chat({ tool_choice: "auto" }), "tool_choice"],
        [chat({ logprobs: true }), "logprobs"],
        [chat({ logprobs: true, top_logprobs: 3 }), "logprobs"],
        [chat({ top_k: 3 }), "top_k"],
        [chat({ repeat_penalty: 1.1 }), "repeat_penalty"],
        [chat({ audio: { voice: "alloy" } }), "audio"],
        [{ model: "echo", messages: [{ role: "tool", content: "x", tool_call_id: "1" }] }, "messages[0].role"],
        [{ model: "echo", messages: [{ role: "user", content: "x", name: "bob" }] }, "messages[0].name"],
        [{ model: "echo-local", messages: [{ role: "user", content: "x" }], logit_bias: { "1": 5 } }, "logit_bias"]
      ]
      for (const [body, param] of cases) {
        const reply = yield* http(server, "/v1/chat/completions", { body })
        assert.strictEqual(reply.status, 400, JSON.stringify(body))
        assert.strictEqual(reply.json.error.param, param, JSON.stringify(body))
        assert.strictEqual(reply.json.error.code, "unsupported_parameter", JSON.stringify(body))
      }
      // the same extension is honoured where the model has it
      const local = yield* http(server, "/v1/chat/completions", {
        body: { model: "echo-local", messages: [{ role: "user", content: "x" }], top_k: 3 }
      })
      assert.strictEqual(local.status, 200)
    }))

  it.effect("text completions and embeddings are checked the same way", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const ok = yield* http(server, "/v1/completions", { body: { model: "echo", prompt: "once" } })
      assert.strictEqual(ok.status, 200)
      assert.strictEqual(ok.json.object, "text_completion")
      assert.strictEqual(ok.json.choices[0].text, "echo: once")
      for (
        const [body, param] of [
          [{ model: "echo", prompt: "x", echo: true }, "echo"],
          [{ model: "echo", prompt: "x", suffix: "y" }, "suffix"],
          [{ model: "echo", prompt: "x", logprobs: 2 }, "logprobs"],
          [{ model: "echo", prompt: "x", best_of: 3 }, "best_of"],
          [{ model: "echo", prompt: ["a", "b"] }, "prompt"],
          [{ model: "echo", prompt: "" }, "prompt"]
        ] as const
      ) {
        const reply = yield* http(server, "/v1/completions", { body })
        assert.strictEqual(reply.status, 400, JSON.stringify(body))
        assert.strictEqual(reply.json.error.param, param)
      }
      const embed = yield* http(server, "/v1/embeddings", { body: { model: "echo", input: "x" } })
      assert.strictEqual(embed.status, 400)
      assert.strictEqual(embed.json.error.param, "model")
      const tokens = yield* http(server, "/v1/embeddings", { body: { model: "echo", input: [[1, 2]] } })
      assert.strictEqual(tokens.json.error.param, "input[0]")
    }))

  it.effect("malformed requests: bad JSON, not an object, unknown model, route, method, oversized body", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const notJson = yield* http(server, "/v1/chat/completions", { body: "{nope" })
      assert.strictEqual(notJson.status, 400)
      assert.match(notJson.json.error.message, /could not parse the JSON body/)
      const array = yield* http(server, "/v1/chat/completions", { body: "[1]" })
      assert.strictEqual(array.status, 400)
      const unknown = yield* http(server, "/v1/chat/completions", { body: { ...chat({}), model: "gpt-9" } })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.json.error.code, "model_not_found")
      const route = yield* http(server, "/v1/nope", { body: {} })
      assert.strictEqual(route.status, 404)
      const method = yield* http(server, "/v1/chat/completions")
      assert.strictEqual(method.status, 405)
      const big = yield* http(server, "/v1/chat/completions", { body: chat({ user: "x".repeat(5 * 1024 * 1024) }) })
      assert.strictEqual(big.status, 413)
      assert.isString(big.headers.get("x-request-id"))
    }))

  it.effect("/v1/models lists what is served; /health, /ready and /metrics answer", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const models = yield* http(server, "/v1/models")
      assert.deepStrictEqual(models.json.data.map((model: { id: string }) => model.id), ["echo", "echo-local"])
      const one = yield* http(server, "/v1/models/echo")
      assert.strictEqual(one.json.id, "echo")
      assert.strictEqual((yield* http(server, "/health")).json.status, "ok")
      const ready = yield* http(server, "/ready")
      assert.strictEqual(ready.status, 200)
      assert.deepStrictEqual(ready.json.models.map((model: { state: string }) => model.state), ["ready", "ready"])
      const metrics = yield* http(server, "/metrics")
      assert.strictEqual(metrics.status, 200)
      assert.match(metrics.headers.get("content-type")!, /^text\/plain/)
      assert.match(metrics.text, /hasten_server_requests_total\{route="\/v1\/chat\/completions",model="echo",status="200"\} \d+/)
      assert.match(
        metrics.text,
        /hasten_server_request_duration_seconds_bucket\{route="\/v1\/chat\/completions",model="echo",le="\+Inf"\} \d+/
      )
      assert.match(metrics.text, /hasten_server_tokens_total\{model="echo",type="output"\} \d+/)
      assert.match(metrics.text, /hasten_server_queue_depth 0/)
    }))
})

describe("Server: API keys", () => {
  const Keyed = Server.layerReady({
    port: 0,
    models: [{ id: "echo", layer: Llm.Llm.layerEcho }],
    apiKeys: [Redacted.make("sk-first"), Redacted.make("sk-second")]
  })
  it.effect("a missing or wrong key is a 401 in OpenAI's shape; either key works; /health needs none", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const missing = yield* http(server, "/v1/chat/completions", { body: chat({}) })
      assert.strictEqual(missing.status, 401)
      assert.strictEqual(missing.json.error.code, "invalid_api_key")
      assert.match(missing.json.error.message, /didn't provide an API key/)
      const wrong = yield* http(server, "/v1/models", { headers: { authorization: "Bearer sk-firsT" } })
      assert.strictEqual(wrong.status, 401)
      assert.notInclude(wrong.text, "sk-firsT")
      for (const key of ["sk-first", "sk-second"]) {
        const ok = yield* http(server, "/v1/chat/completions", { body: chat({}), headers: { authorization: `Bearer ${key}` } })
        assert.strictEqual(ok.status, 200)
      }
      assert.strictEqual((yield* http(server, "/health")).status, 200)
      const metrics = yield* http(server, "/metrics")
      assert.match(metrics.text, /hasten_server_rejected_total\{reason="unauthorized"\} 2/)
    }).pipe(Effect.provide(Keyed)))
})

describe("Server: backpressure and shutdown", () => {
  it.effect("beyond maxInFlight requests queue; beyond maxQueue they get 429 with retry-after", () =>
    Effect.gen(function*() {
      const gated = yield* gatedLlm
      const scope = yield* Scope.make()
      const server = yield* Server.make({ port: 0, models: [{ id: "m", layer: gated.layer }], maxInFlight: 2, maxQueue: 1 }).pipe(
        Scope.provide(scope)
      )
      yield* server.ready
      const body = { model: "m", messages: [{ role: "user", content: "x" }] }
      const first = yield* Effect.forkChild(http(server, "/v1/chat/completions", { body }))
      const second = yield* Effect.forkChild(http(server, "/v1/chat/completions", { body }))
      yield* until(() => gated.started() === 2, "two requests running")
      const third = yield* Effect.forkChild(http(server, "/v1/chat/completions", { body }))
      yield* until(() => server.metrics.queued === 1, "one request queued")
      const refused = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(refused.status, 429)
      assert.strictEqual(refused.headers.get("retry-after"), "1")
      assert.strictEqual(refused.json.error.code, "server_overloaded")
      assert.strictEqual(gated.started(), 2)
      yield* gated.release
      for (const fiber of [first, second, third]) assert.strictEqual((yield* Fiber.join(fiber)).status, 200)
      assert.strictEqual(gated.started(), 3)
      assert.strictEqual(server.metrics.inFlight, 0)
      assert.strictEqual(server.metrics.queued, 0)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("shutdown stops accepting, lets in-flight requests finish, then closes", () =>
    Effect.gen(function*() {
      const gated = yield* gatedLlm
      const scope = yield* Scope.make()
      const server = yield* Server.make({ port: 0, models: [{ id: "m", layer: gated.layer }] }).pipe(Scope.provide(scope))
      yield* server.ready
      const body = { model: "m", messages: [{ role: "user", content: "x" }] }
      const inFlight = yield* Effect.forkChild(http(server, "/v1/chat/completions", { body }))
      yield* until(() => gated.started() === 1, "the request reached the model")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* until(() => server.draining(), "shutdown began")
      // a new connection is refused while the old request is still running
      const refused = yield* Effect.promise(() =>
        fetch(`${server.url}/health`, { headers: { connection: "close" } }).then(() => "answered", () => "refused")
      )
      assert.strictEqual(refused, "refused")
      assert.isUndefined(closing.pollUnsafe())
      yield* gated.release
      const reply = yield* Fiber.join(inFlight)
      assert.strictEqual(reply.status, 200)
      assert.strictEqual(reply.json.choices[0].message.content, "answer to x")
      assert.strictEqual(reply.headers.get("connection"), "close")
      yield* Fiber.join(closing)
    }))

  it.effect("/ready is 503 until every model is loaded; calls to a loading model are 503 with retry-after", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const scope = yield* Scope.make()
      const server = yield* Server.make({
        port: 0,
        // a stack whose construction waits for the gate
        models: [{ id: "m", layer: Layer.unwrap(Effect.as(Deferred.await(gate), Llm.Llm.layerEcho)) }]
      }).pipe(Scope.provide(scope))
      const notReady = yield* http(server, "/ready")
      assert.strictEqual(notReady.status, 503)
      assert.strictEqual(notReady.json.models[0].state, "loading")
      assert.strictEqual((yield* http(server, "/health")).status, 200)
      const early = yield* http(server, "/v1/chat/completions", { body: { model: "m", messages: [{ role: "user", content: "x" }] } })
      assert.strictEqual(early.status, 503)
      assert.strictEqual(early.json.error.code, "model_loading")
      assert.strictEqual(early.headers.get("retry-after"), "1")
      yield* Deferred.succeed(gate, undefined)
      yield* server.ready
      assert.strictEqual((yield* http(server, "/ready")).status, 200)
      const later = yield* http(server, "/v1/chat/completions", { body: { model: "m", messages: [{ role: "user", content: "x" }] } })
      assert.strictEqual(later.status, 200)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a model that cannot be loaded: /ready says why, ready fails naming it", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* Server.make({
        port: 0,
        models: [{ id: "broken", layer: Layer.effect(Llm.Llm, Effect.fail(new Error("no such file: x.gguf"))) }]
      }).pipe(Scope.provide(scope))
      const error = yield* Effect.flip(server.ready)
      assert.match(error.message, /model broken could not be loaded: no such file: x.gguf/)
      const ready = yield* http(server, "/ready")
      assert.strictEqual(ready.status, 503)
      assert.strictEqual(ready.json.models[0].state, "failed")
      yield* Scope.close(scope, Exit.void)
    }))
})

describe("Server: oversized bodies", () => {
  it.effect("a chunked body (no content-length) over maxBodyBytes is answered 413", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* Server.make({ port: 0, models: [{ id: "echo", layer: Llm.Llm.layerEcho }], maxBodyBytes: 1024 }).pipe(
        Scope.provide(scope)
      )
      yield* server.ready
      const reply = yield* Effect.promise(async () => {
        const big = JSON.stringify(chat({ user: "x".repeat(64 * 1024) }))
        // a stream body: no content-length, so the size is only known while reading
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            const bytes = new TextEncoder().encode(big)
            for (let offset = 0; offset < bytes.length; offset += 4096) controller.enqueue(bytes.slice(offset, offset + 4096))
            controller.close()
          }
        })
        const response = await fetch(`${server.baseUrl}/chat/completions`, {
          method: "POST",
          body,
          headers: { "content-type": "application/json" },
          duplex: "half"
        } as RequestInit)
        return { status: response.status, json: (await response.json()) as { error: { message: string } } }
      })
      assert.strictEqual(reply.status, 413)
      assert.match(reply.json.error.message, /larger than 1024 bytes/)
      yield* Scope.close(scope, Exit.void)
    }))
})

describe("Server: metric labels", () => {
  it.effect("unknown models and paths never mint new series (bounded cardinality)", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* Server.make({ port: 0, models: [{ id: "echo", layer: Llm.Llm.layerEcho }] }).pipe(Scope.provide(scope))
      yield* server.ready
      for (let index = 0; index < 5; index++) {
        yield* http(server, "/v1/chat/completions", { body: chat({ model: `made-up-${index}` }) })
        yield* http(server, `/v1/nothing-${index}`, { body: {} })
      }
      const metrics = yield* http(server, "/metrics")
      assert.notInclude(metrics.text, "made-up")
      assert.notInclude(metrics.text, "nothing-")
      assert.match(metrics.text, /hasten_server_requests_total\{route="\/v1\/chat\/completions",model="",status="404"\} 5/)
      assert.match(metrics.text, /hasten_server_requests_total\{route="other",model="",status="404"\} 5/)
      yield* Scope.close(scope, Exit.void)
    }))
})

describe("Server: streaming backpressure", () => {
  it.effect("a client that stops reading stops the stream being pulled; reading again finishes it", () =>
    Effect.gen(function*() {
      let pulled = 0
      const big = "x".repeat(64 * 1024)
      const llm = Llm.fromStream("big", () =>
        Stream.fromEffectRepeat(Effect.sync(() => {
          pulled++
          return new Completion.CompletionChunk({ text: big })
        })).pipe(Stream.take(200)))
      const scope = yield* Scope.make()
      const server = yield* Server.make({ port: 0, models: [{ id: "big", layer: Layer.succeed(Llm.Llm, llm) }] }).pipe(
        Scope.provide(scope)
      )
      yield* server.ready
      const response = yield* Effect.promise(() =>
        new Promise<Http.IncomingMessage>((resolve) => {
          const request = Http.request(`${server.baseUrl}/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" }
          }, resolve)
          request.end(JSON.stringify({ model: "big", messages: [{ role: "user", content: "x" }], stream: true }))
        })
      )
      response.pause()
      yield* until(() => pulled > 5, "the stream started")
      // many event-loop turns later the server still holds back: 200 chunks of 64 KiB (12.5 MiB) are not buffered
      for (let turn = 0; turn < 500; turn++) yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      assert.isBelow(pulled, 200)
      const received = yield* Effect.promise(() =>
        new Promise<number>((resolve) => {
          let bytes = 0
          response.on("data", (chunk: Buffer) => void (bytes += chunk.length))
          response.on("end", () => resolve(bytes))
          response.resume()
        })
      )
      assert.strictEqual(pulled, 200)
      assert.isAbove(received, 200 * 64 * 1024)
      yield* Scope.close(scope, Exit.void)
    }))
})
