import Anthropic from "@anthropic-ai/sdk"
import { afterEach, assert, describe, it } from "@effect/vitest"
import { RateLimitHeaders } from "@hasten/core"
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

const client = (sim: Simulator.Instance, apiKey = "sk-ant-test") => new Anthropic({ baseURL: sim.anthropicBaseUrl, apiKey, maxRetries: 0 })

const message = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "claude-3-5-haiku-latest",
  max_tokens: 64,
  messages: [{ role: "user" as const, content }],
  ...extra
})

describe("Anthropic simulator through the official SDK", () => {
  it("answers a message with text content, a stop reason and usage", async () => {
    const sim = await start()
    const anthropic = client(sim)
    const answer = await anthropic.messages.create(message("Hello there"))
    assert.strictEqual(answer.type, "message")
    assert.strictEqual(answer.role, "assistant")
    const block = answer.content[0]!
    assert.strictEqual(block.type, "text")
    const text = block.type === "text" ? block.text : ""
    assert.strictEqual(answer.stop_reason, "end_turn")
    assert.strictEqual(answer.usage.input_tokens, Simulator.countTokens("Hello there"))
    assert.strictEqual(answer.usage.output_tokens, Simulator.countTokens(text))
    assert.strictEqual(answer.usage.cache_read_input_tokens, 0)
    const short = await anthropic.messages.create(message("Hello there", { max_tokens: 2 }))
    assert.strictEqual(short.stop_reason, "max_tokens")
    assert.strictEqual(short.usage.output_tokens, 2)
  })

  it("streams the Messages event sequence and the SDK assembles the same message", async () => {
    const sim = await start()
    const anthropic = client(sim)
    const whole = await anthropic.messages.create(message("Stream please"))
    const types: Array<string> = []
    const stream = anthropic.messages.stream(message("Stream please"))
    stream.on("streamEvent", (event) => types.push(event.type))
    const final = await stream.finalMessage()
    assert.deepStrictEqual(final.content, whole.content)
    assert.strictEqual(final.usage.output_tokens, whole.usage.output_tokens)
    assert.strictEqual(final.stop_reason, "end_turn")
    assert.strictEqual(types[0], "message_start")
    assert.strictEqual(types[1], "content_block_start")
    assert.strictEqual(types.filter((type) => type === "content_block_delta").length, whole.usage.output_tokens)
    assert.deepStrictEqual(types.slice(-3), ["content_block_stop", "message_delta", "message_stop"])
  })

  it("reports cache creation then cache reads for a cache_control prefix", async () => {
    const sim = await start()
    const anthropic = client(sim)
    const system = [{
      type: "text" as const,
      text: "You are a careful assistant with a long shared preamble.",
      cache_control: { type: "ephemeral" as const }
    }]
    const first = await anthropic.messages.create(message("Question one", { system }))
    const second = await anthropic.messages.create(message("Question two", { system }))
    const prefix = Simulator.countTokens(system[0].text)
    assert.strictEqual(first.usage.cache_creation_input_tokens, prefix)
    assert.strictEqual(first.usage.cache_read_input_tokens, 0)
    assert.strictEqual(second.usage.cache_creation_input_tokens, 0)
    assert.strictEqual(second.usage.cache_read_input_tokens, prefix)
    assert.strictEqual(second.usage.input_tokens, Simulator.countTokens("Question two"))
  })

  it("sends anthropic-ratelimit headers and a rate_limit_error 429 with retry-after", async () => {
    const sim = await start({ limits: { rpm: 1, tpm: 1000 } })
    const anthropic = client(sim)
    const ok = await anthropic.messages.create(message("hi")).withResponse()
    const info = RateLimitHeaders.parse(ok.response.headers, Date.now())
    assert.strictEqual(info?.limitRequests, 1)
    assert.strictEqual(info?.remainingRequests, 0)
    assert.strictEqual(info?.limitTokens, 1000)
    assert.strictEqual(info?.remainingTokens, 1000 - Simulator.countTokens("hi") - 64)
    assert.isAbove(info!.resetRequestsMillis!, 50_000)
    const error = await anthropic.messages.create(message("hi")).catch((error: unknown) => error)
    assert.instanceOf(error, Anthropic.RateLimitError)
    const rateLimit = error as InstanceType<typeof Anthropic.RateLimitError>
    assert.deepStrictEqual((rateLimit.error as { type: string; error: { type: string } }).error.type, "rate_limit_error")
    assert.isAbove(Number(rateLimit.headers?.get("retry-after")), 50)
  })

  it("answers 529 overloaded_error for injected 503 faults", async () => {
    const sim = await start({ faults: { rate: 1, kinds: ["503"] } })
    const error = await client(sim).messages.create(message("hi")).catch((error: unknown) => error)
    assert.instanceOf(error, Anthropic.APIError)
    const apiError = error as InstanceType<typeof Anthropic.APIError>
    assert.strictEqual(apiError.status, 529)
    assert.strictEqual((apiError.error as { error: { type: string } }).error.type, "overloaded_error")
  })

  it("rejects malformed requests with invalid_request_error naming the field", async () => {
    const sim = await start()
    const anthropic = client(sim)
    const noMaxTokens = await anthropic.messages.create({ model: "m", messages: [{ role: "user", content: "x" }] } as never).catch((
      error: unknown
    ) => error)
    assert.instanceOf(noMaxTokens, Anthropic.BadRequestError)
    const body = (noMaxTokens as InstanceType<typeof Anthropic.BadRequestError>).error as {
      type: string
      error: { type: string; message: string }
    }
    assert.strictEqual(body.type, "error")
    assert.strictEqual(body.error.type, "invalid_request_error")
    assert.match(body.error.message, /max_tokens/)
    const badRole = await anthropic.messages.create(message("x", { messages: [{ role: "robot", content: "x" }] }) as never).catch((
      error: unknown
    ) => error)
    assert.match(String((badRole as Error).message), /messages\.0\.role/)
    const raw = await fetch(`${sim.url}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": "k", "content-type": "application/json" },
      body: "{not json"
    })
    assert.strictEqual(raw.status, 400)
    assert.strictEqual((await raw.json() as { error: { type: string } }).error.type, "invalid_request_error")
    const unauthorized = await fetch(`${sim.url}/v1/messages`, {
      method: "POST",
      headers: { "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body: "{}"
    })
    assert.strictEqual(unauthorized.status, 401)
    assert.strictEqual((await unauthorized.json() as { error: { type: string } }).error.type, "authentication_error")
  })

  it("reports an exhausted quota the way Anthropic does (400, credit balance too low), every time", async () => {
    const sim = await start({ limits: { quotaExhausted: true, windowMs: 10 } })
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await client(sim).messages.create(message("hi")).catch((error: unknown) => error)
      assert.instanceOf(error, Anthropic.BadRequestError)
      assert.match((error as Error).message, /credit balance is too low/)
    }
    assert.strictEqual(sim.counters().http429.quota, 2)
  })

  it("rejects calls beyond maxConcurrency with rate_limit_error", async () => {
    let open: () => void = () => {}
    const gate = new Promise<void>((resolve) => (open = resolve))
    const sim = await start({ limits: { maxConcurrency: 1 }, responder: () => gate.then(() => "done") })
    const anthropic = client(sim)
    const first = anthropic.messages.create(message("one"))
    while (sim.counters().inFlight < 1) await new Promise((resolve) => setTimeout(resolve, 5))
    const error = await anthropic.messages.create(message("two")).catch((error: unknown) => error)
    assert.instanceOf(error, Anthropic.RateLimitError)
    assert.match((error as Error).message, /Concurrency limit/)
    open()
    const answer = await first
    assert.strictEqual(answer.content[0]?.type === "text" ? answer.content[0].text : "", "done")
  })
})
