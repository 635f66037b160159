import { assert, describe, it } from "@effect/vitest"
import { Simulator } from "@hasten/testkit"
import { ConfigProvider, Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import OpenAI from "openai"
import { Gateway, Server, ServerConfig } from "../src/index.js"
import { http } from "./support.js"

const perfDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-serve-perf-"))

const sdk = (server: Server.ServerService) => new OpenAI({ baseURL: server.baseUrl, apiKey: "client", maxRetries: 0 })

const apiError = (promise: () => Promise<unknown>) =>
  Effect.promise(() => promise().then(() => undefined, (error: unknown) => error)).pipe(
    Effect.map((error) => {
      assert.instanceOf(error, OpenAI.APIError)
      return error as InstanceType<typeof OpenAI.APIError>
    })
  )

/** The gateway of `argv` over a simulator (its URL substituted for `SIM`), ready. */
const gateway = (argv: (simulator: Simulator.Instance) => ReadonlyArray<string>) =>
  Layer.unwrap(Effect.gen(function*() {
    const simulator = yield* Simulator.Simulator
    const cli = ServerConfig.parseCli(argv(simulator), {})
    return Layer.effect(
      Server.Server,
      Effect.tap(Effect.service(Server.Server), (server) => server.ready)
    ).pipe(Layer.provide(Gateway.layer(cli.plan, { apiKeys: cli.apiKeys })))
  })).pipe(Layer.provideMerge(Simulator.layer({ seed: 7 })))

describe("Gateway: the openai SDK through hasten-serve to a simulated upstream", () => {
  // live clock: the batcher's window is a real sleep
  it.live(
    "chat, streaming with usage, text completions and errors, through cache, batcher, perf logs and rate limit",
    () =>
      Effect.gen(function*() {
        const server = yield* Server.Server
        const simulator = yield* Simulator.Simulator
        const openai = sdk(server)
        const messages = [{ role: "user" as const, content: "Name a colour." }]
        const first = yield* Effect.promise(() =>
          openai.chat.completions.create({ model: "gpt-4o-mini", messages, temperature: 0, max_tokens: 8 })
        )
        assert.strictEqual(first.object, "chat.completion")
        assert.strictEqual(first.model, "gpt-4o-mini")
        assert.isAbove(first.choices[0]!.message.content!.length, 0)
        assert.isAbove(first.usage!.completion_tokens, 0)
        assert.strictEqual(first.usage!.total_tokens, first.usage!.prompt_tokens + first.usage!.completion_tokens)
        // the same request again is a cache hit: same text, no upstream call
        const before = simulator.counters().requests
        const again = yield* Effect.promise(() =>
          openai.chat.completions.create({ model: "gpt-4o-mini", messages, temperature: 0, max_tokens: 8 })
        )
        assert.strictEqual(again.choices[0]!.message.content, first.choices[0]!.message.content)
        assert.strictEqual(simulator.counters().requests, before)

        const chunks = yield* Effect.promise(async () => {
          const stream = await openai.chat.completions.create({
            model: "gpt-4o-mini",
            messages: [{ role: "user", content: "Tell a story." }],
            temperature: 0,
            max_tokens: 12,
            stream: true,
            stream_options: { include_usage: true }
          })
          const all = []
          for await (const chunk of stream) all.push(chunk)
          return all
        })
        assert.strictEqual(chunks[0]!.choices[0]!.delta.role, "assistant")
        const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")
        assert.isAbove(text.length, 0)
        const last = chunks.at(-1)!
        assert.deepStrictEqual(last.choices, [])
        assert.strictEqual(last.usage!.completion_tokens, 12)
        assert.isTrue(chunks.some((chunk) => chunk.choices[0]?.finish_reason === "length"))

        const completion = yield* Effect.promise(() => openai.completions.create({ model: "gpt-4o-mini", prompt: "Once", max_tokens: 5 }))
        assert.strictEqual(completion.object, "text_completion")
        assert.strictEqual(completion.usage!.completion_tokens, 5)

        const tools = yield* apiError(() =>
          openai.chat.completions.create({
            model: "gpt-4o-mini",
            messages,
            tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }]
          })
        )
        assert.instanceOf(tools, OpenAI.BadRequestError)
        assert.strictEqual(tools.param, "tools")
        // logprobs go through the OpenAI provider, which asks the upstream for them and parses them
        const withLogprobs = yield* Effect.promise(() =>
          openai.chat.completions.create({ model: "gpt-4o-mini", messages, logprobs: true, top_logprobs: 2, max_tokens: 4 })
        )
        const content = withLogprobs.choices[0]!.logprobs!.content!
        assert.strictEqual(content.length, withLogprobs.usage!.completion_tokens)
        assert.strictEqual(content.map((entry) => entry.token).join(""), withLogprobs.choices[0]!.message.content)
        assert.isTrue(content.every((entry) => entry.logprob <= 0 && entry.top_logprobs.length === 2))
        const temperature = yield* apiError(() => openai.chat.completions.create({ model: "gpt-4o-mini", messages, temperature: 2.1 }))
        assert.strictEqual(temperature.param, "temperature")
        const missing = yield* apiError(() => openai.chat.completions.create({ model: "gpt-5", messages }))
        assert.instanceOf(missing, OpenAI.NotFoundError)
        const models = yield* Effect.promise(() => openai.models.list())
        assert.deepStrictEqual(models.data.map((model) => model.id), ["gpt-4o-mini"])

        // the stacks' own metrics reach /metrics too: the cache's hits and the server's tokens
        const metrics = yield* http(server, "/metrics")
        assert.match(metrics.text, /hasten_cache_hits_total[^\n]* [1-9]/)
        assert.match(metrics.text, /hasten_server_tokens_total\{model="gpt-4o-mini",type="output"\} [1-9]/)
        // perf logs: one run folder with the calls that reached the upstream
        const runs = Fs.readdirSync(perfDir)
        assert.strictEqual(runs.length, 1)
        const events = Fs.readFileSync(Path.join(perfDir, runs[0]!, "events.jsonl"), "utf8").trim().split("\n")
        assert.isAtLeast(events.length, 3)
      }).pipe(
        Effect.provide(gateway((simulator) => [
          "--port",
          "0",
          "--upstream",
          `sim@${simulator.openaiBaseUrl}:gpt-4o-mini`,
          "--cache",
          "memory",
          "--rps",
          "1000",
          "--batch-size",
          "4",
          "--batch-timeout",
          "1",
          "--perf-logs",
          perfDir
        ]))
      ),
    { timeout: 30_000 }
  )

  it.effect("two upstreams for one model are routed: a dead one fails over to the live one", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const simulator = yield* Simulator.Simulator
      const openai = sdk(server)
      const answers = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 8 }, (_, index) =>
          openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `q${index}` }], max_tokens: 3 })))
      )
      assert.strictEqual(answers.length, 8)
      for (const answer of answers) {
        assert.isAbove(answer.choices[0]!.message.content!.length, 0)
      }
      // every request was answered by the live upstream (the dead one refused connections)
      assert.strictEqual(simulator.counters().requestsByRoute["POST /v1/chat/completions"] ?? simulator.counters().requests, 8)
    }).pipe(
      Effect.provide(gateway((simulator) => [
        "--port",
        "0",
        "--upstream",
        `dead@http://127.0.0.1:9/v1:gpt-4o-mini`,
        "--upstream",
        `live@${simulator.openaiBaseUrl}:gpt-4o-mini`
      ]))
    ), { timeout: 30_000 })

  it.effect("a served id maps onto the upstream's model id (config file)", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const simulator = yield* Simulator.Simulator
      const reply = yield* Effect.promise(() =>
        sdk(server).chat.completions.create({ model: "fast", messages: [{ role: "user", content: "hi" }], max_tokens: 20 })
      )
      assert.strictEqual(reply.model, "fast")
      assert.strictEqual(reply.choices[0]!.message.content, "upstream model gpt-4o-mini")
      assert.strictEqual(simulator.counters().requests, 1)
    }).pipe(
      Effect.provide(
        Layer.unwrap(Effect.gen(function*() {
          const simulator = yield* Simulator.Simulator
          const plan = ServerConfig.decode({
            port: 0,
            models: [{ id: "fast", upstreams: [{ url: simulator.openaiBaseUrl, model: "gpt-4o-mini" }] }]
          })
          return Layer.effect(Server.Server, Effect.tap(Effect.service(Server.Server), (server) => server.ready)).pipe(
            Layer.provide(Gateway.layer(plan))
          )
        })).pipe(Layer.provideMerge(Simulator.layer({ seed: 7, responder: (request) => `upstream model ${request.model}` })))
      )
    ))
})

describe("Gateway: a repeated request body", () => {
  it.effect("is checked like any other: each answer fresh, hits counted, keys required, a body never answered by another route", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const simulator = yield* Simulator.Simulator
      const auth = { authorization: "Bearer k1" }
      const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Name a tree." }], temperature: 0 })
      const hitsSoFar = Effect.map(
        http(server, "/metrics"),
        (metrics) => Number(/hasten_cache_hits_total\{store="memory"\} (\d+)/.exec(metrics.text)?.[1] ?? 0)
      )
      const first = yield* http(server, "/v1/chat/completions", { body, headers: auth })
      assert.strictEqual(first.status, 200)
      const upstream = simulator.counters().requests
      const hitsBefore = yield* hitsSoFar
      const hits = yield* Effect.forEach([1, 2, 3], () => http(server, "/v1/chat/completions", { body, headers: auth }))
      for (const hit of hits) {
        assert.strictEqual(hit.status, 200)
        assert.deepStrictEqual(hit.json.choices, first.json.choices)
        assert.deepStrictEqual(hit.json.usage, first.json.usage)
        // a fresh id per answer, the request id it was answered under
        assert.strictEqual(hit.json.id, `chatcmpl-${hit.headers.get("x-request-id")}`)
        assert.strictEqual(hit.json.object, "chat.completion")
        assert.strictEqual(hit.json.model, "gpt-4o-mini")
      }
      assert.strictEqual(new Set([first, ...hits].map((reply) => reply.json.id)).size, 4)
      assert.strictEqual(simulator.counters().requests, upstream, "answered from the cache")
      assert.strictEqual((yield* hitsSoFar) - hitsBefore, 3, "each counted as a hit")
      // the same body still needs a key
      const noKey = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(noKey.status, 401)
      // the same text on the text-completions route is that route's request: no prompt, a 400
      const wrongRoute = yield* http(server, "/v1/completions", { body, headers: auth })
      assert.strictEqual(wrongRoute.status, 400)
      // a malformed body is refused every time it comes
      const bad = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Name a tree." }], temperature: 9 })
      for (let i = 0; i < 2; i++) {
        const refused = yield* http(server, "/v1/chat/completions", { body: bad, headers: auth })
        assert.strictEqual(refused.status, 400)
        assert.strictEqual(refused.json.error.param, "temperature")
      }
    }).pipe(
      Effect.provide(gateway((simulator) => [
        "--port",
        "0",
        "--upstream",
        `sim@${simulator.openaiBaseUrl}:gpt-4o-mini`,
        "--cache",
        "memory",
        "--rps",
        "1000",
        "--api-key",
        "k1"
      ]))
    ))
})

describe("Gateway: upstream failures, as a client sees them", () => {
  it.effect("429 keeps its retry-after, 5xx is 502, a refused key is 502 with the secret scrubbed, a bad or mistyped body is 502", () =>
    Effect.gen(function*() {
      const replies: Array<{ status: number; body: unknown; headers?: Record<string, string> }> = [
        {
          status: 429,
          body: { error: { message: "Rate limit reached for requests", type: "requests", code: "rate_limit_exceeded" } },
          headers: { "retry-after": "7" }
        },
        { status: 500, body: { error: { message: "boom", type: "server_error", code: null } } },
        {
          status: 401,
          body: {
            error: { message: "Incorrect API key provided: sk-upstream-secret", type: "invalid_request_error", code: "invalid_api_key" }
          }
        },
        { status: 200, body: { nothing: true } },
        // a completion whose fields have the wrong types: a 502, not a crash of the answer's handler
        {
          status: 200,
          body: { choices: [{ message: { content: 42 }, finish_reason: "stop" }], usage: { prompt_tokens: "3", completion_tokens: 1 } }
        },
        {
          status: 400,
          body: {
            error: {
              message: "This model's maximum context length is 16 tokens",
              type: "invalid_request_error",
              code: "context_length_exceeded"
            }
          }
        }
      ]
      const seen: Array<{ authorization: string | undefined; body: string }> = []
      const upstream = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<Http.Server>((resolve) => {
            const server = Http.createServer((request, response) => {
              let body = ""
              request.on("data", (chunk: Buffer) => void (body += chunk.toString("utf8")))
              request.on("end", () => {
                seen.push({ authorization: request.headers.authorization, body })
                const reply = replies.shift()!
                response.writeHead(reply.status, { "content-type": "application/json", ...reply.headers })
                response.end(JSON.stringify(reply.body))
              })
            })
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) => Effect.sync(() => server.close())
      )
      const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`
      const plan = ServerConfig.decode({
        port: 0,
        models: [{ id: "m", upstreams: [{ url, model: "up-model", apiKeyEnv: "TEST_UPSTREAM_KEY" }] }]
      })
      const environment = ConfigProvider.layer(ConfigProvider.fromEnvRecord({ TEST_UPSTREAM_KEY: "sk-upstream-secret" }))
      const server = Context.get(yield* Layer.build(Gateway.layer(plan).pipe(Layer.provide(environment))), Server.Server)
      yield* server.ready
      const body = { model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 3, temperature: 0.5 }
      const limited = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(limited.status, 429)
      assert.strictEqual(limited.headers.get("retry-after"), "7")
      assert.strictEqual(limited.json.error.code, "rate_limit_exceeded")
      const boom = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(boom.status, 502)
      const refused = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(refused.status, 502)
      assert.strictEqual(refused.json.error.code, "upstream_unauthorized")
      assert.notInclude(refused.text, "sk-upstream-secret")
      const bad = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(bad.status, 502)
      const mistyped = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(mistyped.status, 502)
      assert.include(mistyped.text, "unexpected field types")
      const long = yield* http(server, "/v1/chat/completions", { body })
      assert.strictEqual(long.status, 400)
      assert.strictEqual(long.json.error.code, "context_length_exceeded")
      // what reached the upstream: its own model id, the request's fields, the upstream key
      assert.strictEqual(seen[0]!.authorization, "Bearer sk-upstream-secret")
      assert.deepStrictEqual(JSON.parse(seen[0]!.body), {
        model: "up-model",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 3,
        temperature: 0.5
      })
    }).pipe(Effect.scoped))
})

describe("Gateway: more upstream shapes", () => {
  it.effect("two live upstreams for one model share the requests (least outstanding, rotating on ties)", () =>
    Effect.gen(function*() {
      const first = yield* Effect.acquireRelease(Effect.promise(() => Simulator.start({ seed: 1 })), (sim) =>
        Effect.promise(() => sim.close()))
      const second = yield* Effect.acquireRelease(
        Effect.promise(() =>
          Simulator.start({ seed: 2 })
        ),
        (sim) => Effect.promise(() => sim.close())
      )
      const cli = ServerConfig.parseCli([
        "--port",
        "0",
        "--upstream",
        `a@${first.openaiBaseUrl}:gpt-4o-mini`,
        "--upstream",
        `b@${second.openaiBaseUrl}:gpt-4o-mini`
      ])
      const server = Context.get(yield* Layer.build(Gateway.layer(cli.plan)), Server.Server)
      yield* server.ready
      const openai = sdk(server)
      for (let index = 0; index < 10; index++) {
        yield* Effect.promise(() =>
          openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: `q${index}` }], max_tokens: 2 })
        )
      }
      const served = [first.counters().requests, second.counters().requests]
      assert.strictEqual(served[0]! + served[1]!, 10)
      assert.isAtLeast(Math.min(...served), 3)
    }).pipe(Effect.scoped))

  it.effect("an anthropic upstream: answers through its SDK; seed and penalties are refused by name", () =>
    Effect.gen(function*() {
      const simulator = yield* Effect.acquireRelease(Effect.promise(() => Simulator.start({ seed: 3 })), (sim) =>
        Effect.promise(() => sim.close()))
      const cli = ServerConfig.parseCli(["--port", "0", "--upstream", `anthropic@${simulator.anthropicBaseUrl}:claude-3-5-haiku-latest`])
      // the key from the environment the server is built in
      const environment = ConfigProvider.layer(ConfigProvider.fromEnvRecord({ ANTHROPIC_API_KEY: "sk-ant-test" }))
      const server = Context.get(yield* Layer.build(Gateway.layer(cli.plan).pipe(Layer.provide(environment))), Server.Server)
      yield* server.ready
      const openai = sdk(server)
      const reply = yield* Effect.promise(() =>
        openai.chat.completions.create({ model: "claude-3-5-haiku-latest", messages: [{ role: "user", content: "hi" }], max_tokens: 4 })
      )
      assert.isAbove(reply.choices[0]!.message.content!.length, 0)
      assert.strictEqual(reply.usage!.completion_tokens, 4)
      for (const param of ["seed", "frequency_penalty", "presence_penalty"] as const) {
        const error = yield* apiError(() =>
          openai.chat.completions.create({ model: "claude-3-5-haiku-latest", messages: [{ role: "user", content: "hi" }], [param]: 1 })
        )
        assert.strictEqual(error.param, param)
      }
    }).pipe(Effect.scoped))
})
