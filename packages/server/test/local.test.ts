import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import OpenAI from "openai"
import { Gateway, Server, ServerConfig } from "../src/index.js"

const story = ", there was a little girl named Lily."

// one sequence: a request that is not freed after its client aborts would block every later one
const Live = Layer.effect(Server.Server, Effect.tap(Effect.service(Server.Server), (server) => server.ready)).pipe(
  Layer.provide(Gateway.layer(ServerConfig.parseCli(["--port", "0", "--model", "stories260K.gguf,sequences=1,context-size=256"]).plan))
)

const client = Effect.map(
  Effect.service(Server.Server),
  (server) => new OpenAI({ baseURL: server.baseUrl, apiKey: "local", maxRetries: 0 })
)

const apiError = (promise: () => Promise<unknown>) =>
  Effect.promise(() => promise().then(() => undefined, (error: unknown) => error)).pipe(
    Effect.map((error) => {
      assert.instanceOf(error, OpenAI.APIError)
      return error as InstanceType<typeof OpenAI.APIError>
    })
  )

layer(Live, { timeout: "60 seconds" })("hasten-serve --model: the openai SDK against a local GGUF model", (it) => {
  it.effect("lists the local model", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const models = yield* Effect.promise(() => openai.models.list())
      assert.deepStrictEqual(models.data.map((model) => model.id), ["stories260K"])
      const one = yield* Effect.promise(() => openai.models.retrieve("stories260K"))
      assert.strictEqual(one.id, "stories260K")
    }))

  it.effect("chat completion: greedy story, exact usage, finish reason", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const response = yield* Effect.promise(() =>
        openai.chat.completions.create({
          model: "stories260K",
          messages: [{ role: "user", content: "Once upon a time" }],
          temperature: 0,
          max_tokens: 12
        })
      )
      const choice = response.choices[0]!
      assert.isTrue(choice.message.content!.startsWith(story), choice.message.content!)
      assert.strictEqual(choice.finish_reason, "length")
      assert.deepStrictEqual(response.usage, { prompt_tokens: 5, completion_tokens: 12, total_tokens: 17 })
      assert.strictEqual(response.object, "chat.completion")
    }))

  it.effect("logprobs and top_logprobs in OpenAI's shape, chat and text, plain and streamed", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const messages = [{ role: "user" as const, content: "Once upon a time" }]
      const chat = yield* Effect.promise(() =>
        openai.chat.completions.create({ model: "stories260K", messages, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3 })
      )
      const content = chat.choices[0]!.logprobs!.content!
      assert.strictEqual(content.length, 8)
      assert.strictEqual(content.map((entry) => entry.token).join(""), chat.choices[0]!.message.content)
      for (const entry of content) {
        assert.isAtMost(entry.logprob, 0)
        assert.strictEqual(entry.top_logprobs.length, 3)
        // greedy: the chosen token is the most likely one
        assert.strictEqual(entry.top_logprobs[0]!.token, entry.token)
        assert.closeTo(entry.top_logprobs[0]!.logprob, entry.logprob, 1e-6)
        assert.deepStrictEqual(entry.bytes, [...Buffer.from(entry.token, "utf8")])
      }
      const text = yield* Effect.promise(() =>
        openai.completions.create({ model: "stories260K", prompt: "Once upon a time", temperature: 0, max_tokens: 6, logprobs: 2 })
      )
      const logprobs = text.choices[0]!.logprobs!
      assert.strictEqual(logprobs.tokens!.join(""), text.choices[0]!.text)
      assert.strictEqual(logprobs.token_logprobs!.length, 6)
      assert.strictEqual(Object.keys(logprobs.top_logprobs![0]!).length, 2)
      assert.deepStrictEqual(logprobs.text_offset![1], logprobs.tokens![0]!.length)
      const streamed = yield* Effect.promise(async () => {
        const stream = await openai.chat.completions.create({
          model: "stories260K",
          messages,
          temperature: 0,
          max_tokens: 8,
          logprobs: true,
          stream: true
        })
        const tokens: Array<string> = []
        for await (const chunk of stream) for (const entry of chunk.choices[0]?.logprobs?.content ?? []) tokens.push(entry.token)
        return tokens
      })
      assert.deepStrictEqual(streamed, content.map((entry) => entry.token))
    }))

  it.effect("chat completion streams over SSE with usage on the last chunk", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const chunks = yield* Effect.promise(async () => {
        const stream = await openai.chat.completions.create({
          model: "stories260K",
          messages: [{ role: "user", content: "Once upon a time" }],
          temperature: 0,
          max_tokens: 20,
          stream: true,
          stream_options: { include_usage: true }
        })
        const all = []
        for await (const chunk of stream) all.push(chunk)
        return all
      })
      const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")
      assert.isTrue(text.startsWith(story), text)
      assert.strictEqual(chunks[0]!.choices[0]!.delta.role, "assistant")
      const finish = chunks.find((chunk) => chunk.choices[0]?.finish_reason !== null && chunk.choices[0]?.finish_reason !== undefined)
      assert.strictEqual(finish?.choices[0]?.finish_reason, "length")
      const last = chunks.at(-1)!
      assert.deepStrictEqual(last.choices, [])
      assert.deepStrictEqual(last.usage, { prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 })
    }))

  it.effect("text completions, streamed and not", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const response = yield* Effect.promise(() =>
        openai.completions.create({ model: "stories260K", prompt: "Once upon a time", temperature: 0, max_tokens: 12 })
      )
      assert.isTrue(response.choices[0]!.text.startsWith(story))
      assert.strictEqual(response.usage?.completion_tokens, 12)
      const streamed = yield* Effect.promise(async () => {
        const stream = await openai.completions.create({
          model: "stories260K",
          prompt: "Once upon a time",
          temperature: 0,
          max_tokens: 12,
          stream: true
        })
        let text = ""
        for await (const chunk of stream) text += chunk.choices[0]?.text ?? ""
        return text
      })
      assert.strictEqual(streamed, response.choices[0]!.text)
    }))

  it.effect("embeddings (the SDK's default base64 encoding and float)", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const response = yield* Effect.promise(() =>
        openai.embeddings.create({ model: "stories260K", input: ["a little girl", "a big red ball"] })
      )
      assert.strictEqual(response.data.length, 2)
      assert.strictEqual(response.data[0]!.embedding.length, 64)
      const floats = yield* Effect.promise(() =>
        openai.embeddings.create({ model: "stories260K", input: "a little girl", encoding_format: "float" })
      )
      for (let i = 0; i < 64; i++) assert.closeTo(floats.data[0]!.embedding[i]!, response.data[0]!.embedding[i]!, 1e-6)
      assert.isAbove(response.usage.prompt_tokens, 4)
    }))

  it.effect("JSON-schema response_format returns parseable JSON", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const response = yield* Effect.promise(() =>
        openai.chat.completions.create({
          model: "stories260K",
          messages: [{ role: "user", content: "Once upon a time" }],
          temperature: 0,
          max_tokens: 80,
          response_format: {
            type: "json_schema",
            json_schema: { name: "pet", schema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] } }
          }
        })
      )
      const parsed = JSON.parse(response.choices[0]!.message.content!) as { name: unknown }
      assert.strictEqual(typeof parsed.name, "string")
    }))

  it.effect("OpenAI-shaped errors: unknown model 404, bad body 400, oversized prompt 400 context_length_exceeded", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const unknown = yield* apiError(() =>
        openai.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] })
      )
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.code, "model_not_found")
      assert.instanceOf(unknown, OpenAI.NotFoundError)

      const noMessages = yield* apiError(() => openai.chat.completions.create({ model: "stories260K", messages: [] }))
      assert.strictEqual(noMessages.status, 400)
      assert.instanceOf(noMessages, OpenAI.BadRequestError)
      assert.match(noMessages.message, /messages/)

      const badTemperature = yield* apiError(() =>
        openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "hi" }], temperature: -1 })
      )
      assert.strictEqual(badTemperature.status, 400)
      assert.match(badTemperature.message, /temperature/)

      const tooLong = yield* apiError(() =>
        openai.chat.completions.create({
          model: "stories260K",
          messages: [{ role: "user", content: "Once upon a time ".repeat(200) }],
          max_tokens: 10
        })
      )
      assert.strictEqual(tooLong.status, 400)
      assert.strictEqual(tooLong.code, "context_length_exceeded")

      const tooLongStream = yield* apiError(() =>
        openai.chat.completions.create({
          model: "stories260K",
          messages: [{ role: "user", content: "Once upon a time ".repeat(200) }],
          stream: true
        })
      )
      assert.strictEqual(tooLongStream.status, 400)
      assert.strictEqual(tooLongStream.code, "context_length_exceeded")

      const server = yield* Server.Server
      const notJson = yield* Effect.promise(() =>
        fetch(`${server.baseUrl}/chat/completions`, { method: "POST", body: "{nope", headers: { "content-type": "application/json" } })
      )
      assert.strictEqual(notJson.status, 400)
      const body = (yield* Effect.promise(() => notJson.json())) as { error: { type: string; message: string } }
      assert.strictEqual(body.error.type, "invalid_request_error")
      assert.match(body.error.message, /could not parse the JSON body/)

      const post = (payload: unknown) =>
        Effect.promise(async () => {
          const reply = await fetch(`${server.baseUrl}/chat/completions`, {
            method: "POST",
            body: JSON.stringify(payload),
            headers: { "content-type": "application/json" }
          })
          return { status: reply.status, error: ((await reply.json()) as { error: { message: string; param: string | null } }).error }
        })
      const image = yield* post({ model: "stories260K", messages: [{ role: "user", content: [{ type: "image_url" }] }] })
      assert.strictEqual(image.status, 400)
      assert.strictEqual(image.error.param, "messages[0].content[0].type")
      const role = yield* post({ model: "stories260K", messages: [{ role: "tool", content: "x" }] })
      assert.strictEqual(role.error.param, "messages[0].role")
      // a local model honours llama.cpp's extensions, but not logit_bias
      const bias = yield* post({ model: "stories260K", messages: [{ role: "user", content: "x" }], logit_bias: { "1": 2 } })
      assert.strictEqual(bias.error.param, "logit_bias")
    }))

  it.effect("a client that aborts mid-stream frees the only sequence for the next request", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const received = yield* Effect.promise(async () => {
        const controller = new AbortController()
        const stream = await openai.chat.completions.create({
          model: "stories260K",
          messages: [{ role: "user", content: "Once upon a time" }],
          temperature: 0,
          max_tokens: 240,
          stream: true
        }, { signal: controller.signal })
        let count = 0
        try {
          for await (const _ of stream) {
            if (++count === 3) controller.abort()
          }
        } catch {
          // aborted
        }
        return count
      })
      assert.strictEqual(received, 3)
      // the model has one sequence: this answers only if the aborted request released it
      const next = yield* Effect.promise(() =>
        openai.chat.completions.create({
          model: "stories260K",
          messages: [{ role: "user", content: "Once upon a time" }],
          temperature: 0,
          max_tokens: 12
        })
      )
      assert.isTrue(next.choices[0]!.message.content!.startsWith(story))
    }))

  it.effect("serves concurrent clients from one loaded model (queued onto its sequence)", () =>
    Effect.gen(function*() {
      const openai = yield* client
      const responses = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 4 }, () =>
          openai.completions.create({ model: "stories260K", prompt: "Once upon a time", temperature: 0, max_tokens: 12 })))
      )
      for (const response of responses) {
        assert.isTrue(response.choices[0]!.text.startsWith(story))
      }
    }))
})

describe("hasten-serve --config: several local models, each with its sequences", () => {
  it.effect("both are listed and answer under their ids; embeddings come from each model", () =>
    Effect.gen(function*() {
      const server = yield* Server.Server
      const openai = new OpenAI({ baseURL: server.baseUrl, apiKey: "local", maxRetries: 0 })
      const models = yield* Effect.promise(() => openai.models.list())
      assert.deepStrictEqual(models.data.map((model) => model.id), ["stories", "tiny"])
      for (const model of ["stories", "tiny"]) {
        const reply = yield* Effect.promise(() =>
          openai.completions.create({ model, prompt: "Once upon a time", temperature: 0, max_tokens: 6 })
        )
        assert.strictEqual(reply.model, model)
        assert.strictEqual(reply.usage?.completion_tokens, 6)
      }
      const tiny = yield* Effect.promise(() => openai.embeddings.create({ model: "tiny", input: "a dog", encoding_format: "float" }))
      const stories = yield* Effect.promise(() => openai.embeddings.create({ model: "stories", input: "a dog", encoding_format: "float" }))
      assert.notStrictEqual(tiny.data[0]!.embedding.length, 0)
      assert.strictEqual(stories.data[0]!.embedding.length, 64)
    }).pipe(
      Effect.provide(
        Layer.effect(Server.Server, Effect.tap(Effect.service(Server.Server), (server) => server.ready)).pipe(
          Layer.provide(Gateway.layer(ServerConfig.decode({
            port: 0,
            models: [
              { id: "stories", local: { path: "stories260K.gguf", sequences: 2, contextSize: 128 } },
              { id: "tiny", local: { path: "TinyStories-656K-Q8_0.gguf", sequences: 1, contextSize: 128 } }
            ]
          })))
        )
      )
    ), { timeout: 60_000 })
})
