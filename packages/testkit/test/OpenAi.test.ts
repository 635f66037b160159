import { afterEach, assert, describe, it } from "@effect/vitest"
import { Simulator } from "@hasten/testkit"
import OpenAI from "openai"

const running: Array<Simulator.Instance> = []
const start = async (options: Simulator.Options = {}) => {
  const sim = await Simulator.start(options)
  running.push(sim)
  return sim
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((sim) => sim.close()))
})

const client = (sim: Simulator.Instance, apiKey = "sk-test", options: { timeout?: number } = {}) =>
  new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey, maxRetries: 0, ...options })

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user" as const, content }],
  ...extra
})

describe("OpenAI simulator through the official SDK", () => {
  it("answers a chat completion with deterministic text and consistent usage", async () => {
    const sim = await start()
    const openai = client(sim)
    const first = await openai.chat.completions.create(chat("What is 2 + 2?"))
    const second = await openai.chat.completions.create(chat("What is 2 + 2?"))
    const other = await openai.chat.completions.create(chat("Name a colour."))
    const text = first.choices[0]!.message.content!
    assert.strictEqual(second.choices[0]!.message.content, text)
    assert.notStrictEqual(other.choices[0]!.message.content, text)
    assert.strictEqual(first.choices[0]!.finish_reason, "stop")
    assert.strictEqual(first.usage!.prompt_tokens, Simulator.countTokens("What is 2 + 2?"))
    assert.strictEqual(first.usage!.completion_tokens, Simulator.countTokens(text))
    assert.strictEqual(first.usage!.total_tokens, first.usage!.prompt_tokens + first.usage!.completion_tokens)
    assert.strictEqual(sim.counters().requestsByRoute["POST /v1/chat/completions"], 3)
  })

  it("respects max_tokens and stop sequences", async () => {
    const sim = await start({ responder: () => "one two three four five six seven eight" })
    const openai = client(sim)
    // "three" is two simulator tokens ("thre", "e").
    const cut = await openai.chat.completions.create(chat("count", { max_tokens: 3 }))
    assert.strictEqual(cut.choices[0]!.message.content, "one two thre")
    assert.strictEqual(cut.choices[0]!.finish_reason, "length")
    assert.strictEqual(cut.usage!.completion_tokens, 3)
    const stopped = await openai.chat.completions.create(chat("count", { stop: [" four"] }))
    assert.strictEqual(stopped.choices[0]!.message.content, "one two three")
    assert.strictEqual(stopped.choices[0]!.finish_reason, "stop")
  })

  it("streams chunks, ends with [DONE] and a usage chunk when include_usage is set", async () => {
    const sim = await start()
    const openai = client(sim)
    const whole = await openai.chat.completions.create(chat("Stream me"))
    const stream = await openai.chat.completions.create({ ...chat("Stream me"), stream: true, stream_options: { include_usage: true } })
    const deltas: Array<string> = []
    let finish: string | null = null
    let usage: OpenAI.CompletionUsage | null | undefined
    let chunks = 0
    for await (const chunk of stream) {
      chunks++
      if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content)
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason
      if (chunk.usage) usage = chunk.usage
    }
    assert.strictEqual(deltas.join(""), whole.choices[0]!.message.content)
    assert.isAbove(deltas.length, 3)
    assert.strictEqual(finish, "stop")
    assert.deepStrictEqual(usage?.completion_tokens, whole.usage!.completion_tokens)
    assert.strictEqual(chunks, deltas.length + 3)
  })

  it("charges ceil(characters / 4) of the prompt at admission with promptCharge characters, while usage reports the real count", async () => {
    const sim = await start({ limits: { tpm: 10_000, promptCharge: "characters" } })
    const content = "a b c d e f g h i j k l" // 23 characters: 6 charged, 12 real tokens
    const first = await client(sim).chat.completions.create(chat(content, { max_tokens: 10 })).withResponse()
    assert.strictEqual(first.data.usage?.prompt_tokens, Simulator.countTokens(content))
    assert.notStrictEqual(Simulator.countTokens(content), Math.ceil(content.length / 4))
    assert.strictEqual(first.response.headers.get("x-ratelimit-remaining-tokens"), String(10_000 - Math.ceil(content.length / 4) - 10))
  })

  it("sends no limit headers with headers: false, but still retry-after on a 429", async () => {
    const sim = await start({ limits: { rpm: 1, headers: false } })
    const openai = client(sim)
    const first = await openai.chat.completions.create(chat("hi")).withResponse()
    assert.isNull(first.response.headers.get("x-ratelimit-limit-requests"))
    assert.isNull(first.response.headers.get("x-ratelimit-remaining-requests"))
    const error = await openai.chat.completions.create(chat("hi")).catch((error: unknown) => error)
    assert.instanceOf(error, OpenAI.RateLimitError)
    assert.isNull((error as InstanceType<typeof OpenAI.RateLimitError>).headers?.get("x-ratelimit-limit-requests") ?? null)
    assert.isAbove(Number((error as InstanceType<typeof OpenAI.RateLimitError>).headers?.get("retry-after-ms")), 0)
  })

  it("sends x-ratelimit headers on every response and a 429 with retry-after once the RPM window is spent", async () => {
    const sim = await start({ limits: { rpm: 2, tpm: 10_000, windowMs: 60_000 } })
    const openai = client(sim)
    const first = await openai.chat.completions.create(chat("hi", { max_tokens: 10 })).withResponse()
    assert.strictEqual(first.response.headers.get("x-ratelimit-limit-requests"), "2")
    assert.strictEqual(first.response.headers.get("x-ratelimit-remaining-requests"), "1")
    assert.strictEqual(first.response.headers.get("x-ratelimit-limit-tokens"), "10000")
    assert.strictEqual(first.response.headers.get("x-ratelimit-remaining-tokens"), String(10_000 - Simulator.countTokens("hi") - 10))
    assert.match(first.response.headers.get("x-ratelimit-reset-requests")!, /^(\d+(\.\d+)?s|\d+m\d+(\.\d+)?s|\d+ms)$/)
    await openai.chat.completions.create(chat("hi", { max_tokens: 10 }))
    const error = await openai.chat.completions.create(chat("hi", { max_tokens: 10 })).catch((error: unknown) => error)
    assert.instanceOf(error, OpenAI.RateLimitError)
    const rateLimit = error as InstanceType<typeof OpenAI.RateLimitError>
    assert.strictEqual(rateLimit.status, 429)
    assert.strictEqual(rateLimit.code, "rate_limit_exceeded")
    assert.strictEqual(rateLimit.type, "requests")
    assert.match(rateLimit.message, /requests per min/)
    const retryAfterMs = Number(rateLimit.headers?.get("retry-after-ms"))
    assert.isAbove(retryAfterMs, 59_000)
    assert.isAtMost(retryAfterMs, 60_000)
    assert.strictEqual(rateLimit.headers?.get("retry-after"), "60")
    assert.strictEqual(rateLimit.headers?.get("x-ratelimit-remaining-requests"), "0")
    const models = await openai.models.list().withResponse()
    assert.strictEqual(models.response.headers.get("x-ratelimit-remaining-requests"), "0")
    assert.strictEqual(sim.counters().http429.requests, 1)
  })

  it("embeds strings and arrays deterministically, as floats or base64 (the SDK's default)", async () => {
    const sim = await start({ embeddingDimensions: 12 })
    const openai = client(sim)
    const single = await openai.embeddings.create({ model: "text-embedding-3-small", input: "a cat" })
    assert.strictEqual(single.data.length, 1)
    assert.strictEqual(single.data[0]!.embedding.length, 12)
    const batch = await openai.embeddings.create({ model: "text-embedding-3-small", input: ["a cat", "a dog"], encoding_format: "float" })
    assert.deepStrictEqual(batch.data.map((item) => item.index), [0, 1])
    // base64 float32 decoding loses precision; compare approximately.
    single.data[0]!.embedding.forEach((value, i) => assert.approximately(value, batch.data[0]!.embedding[i]!, 1e-6))
    assert.notDeepEqual(batch.data[0]!.embedding, batch.data[1]!.embedding)
    const norm = Math.hypot(...batch.data[1]!.embedding)
    assert.approximately(norm, 1, 1e-9)
    assert.strictEqual(batch.usage.prompt_tokens, Simulator.countTokens("a cat") + Simulator.countTokens("a dog"))
    const sized = await openai.embeddings.create({
      model: "text-embedding-3-small",
      input: "a cat",
      dimensions: 4,
      encoding_format: "float"
    })
    assert.strictEqual(sized.data[0]!.embedding.length, 4)
  })

  it("serves text completions (JSON and stream) and lists models", async () => {
    const sim = await start()
    const openai = client(sim)
    const completion = await openai.completions.create({ model: "gpt-3.5-turbo-instruct", prompt: "Once upon a time", max_tokens: 5 })
    assert.strictEqual(completion.object, "text_completion")
    assert.strictEqual(completion.usage?.completion_tokens, 5)
    assert.strictEqual(completion.choices[0]!.finish_reason, "length")
    const stream = await openai.completions.create({
      model: "gpt-3.5-turbo-instruct",
      prompt: "Once upon a time",
      max_tokens: 5,
      stream: true
    })
    const parts: Array<string> = []
    for await (const chunk of stream) parts.push(chunk.choices[0]?.text ?? "")
    assert.strictEqual(parts.join(""), completion.choices[0]!.text)
    const models = await openai.models.list()
    assert.include(models.data.map((model) => model.id), "gpt-4o-mini")
  })

  it("answers malformed requests with OpenAI's 400 error body naming the parameter, never crashing", async () => {
    const sim = await start()
    const openai = client(sim)
    const cases: Array<[Record<string, unknown>, string | null]> = [
      [{ messages: [{ role: "user", content: "x" }] }, "model"],
      [{ model: "gpt-4o-mini" }, "messages"],
      [{ model: "gpt-4o-mini", messages: [] }, "messages"],
      [{ model: "gpt-4o-mini", messages: "hello" }, "messages"],
      [{ model: "gpt-4o-mini", messages: [{ role: "wizard", content: "x" }] }, "messages[0].role"],
      [{ model: "gpt-4o-mini", messages: [{ role: "user", content: 42 }] }, "messages[0].content"],
      [{ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }], max_tokens: "ten" }, "max_tokens"],
      [{ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }], temperature: 9 }, "temperature"],
      [{ model: 7, messages: [{ role: "user", content: "x" }] }, "model"]
    ]
    for (const [body, param] of cases) {
      const error = await openai.chat.completions.create(body as never).catch((error: unknown) => error)
      assert.instanceOf(error, OpenAI.BadRequestError, JSON.stringify(body))
      const badRequest = error as InstanceType<typeof OpenAI.BadRequestError>
      assert.strictEqual(badRequest.type, "invalid_request_error")
      assert.strictEqual(badRequest.param, param, JSON.stringify(body))
    }
    const embedding = await openai.embeddings.create({ model: "text-embedding-3-small", input: [] as Array<string> }).catch((
      error: unknown
    ) => error)
    assert.strictEqual((embedding as InstanceType<typeof OpenAI.BadRequestError>).param, "input")
    const raw = await fetch(`${sim.openaiBaseUrl}/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer k", "content-type": "application/json" },
      body: "{\"model\": "
    })
    assert.strictEqual(raw.status, 400)
    const rawBody = await raw.json() as { error: { type: string; message: string; param: unknown; code: unknown } }
    assert.strictEqual(rawBody.error.type, "invalid_request_error")
    assert.match(rawBody.error.message, /JSON/)
    const notFound = await openai.post("/nope", { body: {} }).catch((error: unknown) => error)
    assert.instanceOf(notFound, OpenAI.NotFoundError)
    assert.match((notFound as Error).message, /Invalid URL \(POST \/v1\/nope\)/)
    const unauthorized = await fetch(`${sim.openaiBaseUrl}/chat/completions`, { method: "POST", body: "{}" })
    assert.strictEqual(unauthorized.status, 401)
    assert.match((await unauthorized.json() as { error: { message: string } }).error.message, /didn't provide an API key/)
    // the server is still healthy
    const ok = await openai.chat.completions.create(chat("still alive?"))
    assert.isString(ok.choices[0]!.message.content)
  })

  it("accepts only the configured API keys when apiKeys is set", async () => {
    const sim = await start({ apiKeys: ["sk-good"] })
    const error = await client(sim, "sk-bad").chat.completions.create(chat("x")).catch((error: unknown) => error)
    assert.instanceOf(error, OpenAI.AuthenticationError)
    assert.strictEqual((error as InstanceType<typeof OpenAI.AuthenticationError>).code, "invalid_api_key")
    const ok = await client(sim, "sk-good").chat.completions.create(chat("x"))
    assert.strictEqual(ok.object, "chat.completion")
  })
})
