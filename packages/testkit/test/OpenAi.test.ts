import { afterEach, assert, describe, it } from "@effect/vitest"
import OpenAI from "openai"
import { Simulator } from "@hasten/testkit"

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
})
