import Anthropic from "@anthropic-ai/sdk"
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

const messages = [{ role: "user" as const, content: "Say something." }]

describe("OpenAI simulator: log probabilities", () => {
  it("returns one deterministic entry per token, the generated token first among the alternatives", async () => {
    const sim = await start()
    const openai = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "sk-test", maxRetries: 0 })
    const first = await openai.chat.completions.create({ model: "gpt-4o-mini", messages, logprobs: true, top_logprobs: 3 })
    const again = await openai.chat.completions.create({ model: "gpt-4o-mini", messages, logprobs: true, top_logprobs: 3 })
    const content = first.choices[0]!.logprobs!.content!
    assert.strictEqual(content.map((entry) => entry.token).join(""), first.choices[0]!.message.content)
    assert.deepStrictEqual(again.choices[0]!.logprobs, first.choices[0]!.logprobs)
    for (const entry of content) {
      assert.isAtMost(entry.logprob, 0)
      assert.deepStrictEqual(entry.bytes, [...Buffer.from(entry.token, "utf8")])
      assert.strictEqual(entry.top_logprobs.length, 3)
      assert.strictEqual(entry.top_logprobs[0]!.token, entry.token)
      assert.isTrue(entry.top_logprobs[1]!.logprob < entry.top_logprobs[0]!.logprob)
    }
    const plain = await openai.chat.completions.create({ model: "gpt-4o-mini", messages })
    assert.isNull(plain.choices[0]!.logprobs)
    const streamed: Array<unknown> = []
    for await (
      const chunk of await openai.chat.completions.create({ model: "gpt-4o-mini", messages, logprobs: true, top_logprobs: 3, stream: true })
    ) {
      for (const entry of chunk.choices[0]?.logprobs?.content ?? []) streamed.push(entry)
    }
    assert.deepStrictEqual(streamed, content)
  })

  it("refuses top_logprobs without logprobs, and more than 20, naming the field", async () => {
    const sim = await start()
    const openai = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "sk-test", maxRetries: 0 })
    for (const extra of [{ top_logprobs: 2 }, { logprobs: true, top_logprobs: 21 }]) {
      const error = await openai.chat.completions.create({ model: "gpt-4o-mini", messages, ...extra }).catch((error: unknown) => error)
      assert.instanceOf(error, OpenAI.BadRequestError)
      assert.strictEqual((error as InstanceType<typeof OpenAI.BadRequestError>).param, "top_logprobs")
    }
  })

  it("returns the legacy completions' logprobs (tokens, token_logprobs, top_logprobs maps)", async () => {
    const sim = await start()
    const openai = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "sk-test", maxRetries: 0 })
    const completion = await openai.completions.create({ model: "gpt-3.5-turbo-instruct", prompt: "Once", logprobs: 2 })
    const logprobs = completion.choices[0]!.logprobs!
    assert.strictEqual(logprobs.tokens!.join(""), completion.choices[0]!.text)
    assert.strictEqual(logprobs.token_logprobs!.length, logprobs.tokens!.length)
    assert.strictEqual(Object.keys(logprobs.top_logprobs![0]!).length, 2)
  })
})

describe("Anthropic simulator: a forced tool", () => {
  it("answers with a tool_use block whose input is the responder's JSON, streamed as input_json_delta", async () => {
    const sim = await start({ responder: () => "{\"answer\": 4}" })
    const anthropic = new Anthropic({ baseURL: sim.anthropicBaseUrl, apiKey: "sk-ant", maxRetries: 0 })
    const body = {
      model: "claude-3-5-haiku-latest",
      max_tokens: 100,
      messages,
      tools: [{ name: "answer", input_schema: { type: "object" as const, properties: { answer: { type: "number" } } } }],
      tool_choice: { type: "tool" as const, name: "answer" }
    }
    const message = await anthropic.messages.create(body)
    assert.strictEqual(message.stop_reason, "tool_use")
    const block = message.content[0]!
    assert.strictEqual(block.type, "tool_use")
    assert.deepStrictEqual(block.type === "tool_use" ? block.input : undefined, { answer: 4 })
    const parts: Array<string> = []
    for await (const event of await anthropic.messages.create({ ...body, stream: true })) {
      if (event.type === "content_block_delta" && event.delta.type === "input_json_delta") parts.push(event.delta.partial_json)
    }
    assert.deepStrictEqual(JSON.parse(parts.join("")), { answer: 4 })
    const missing = await anthropic.messages.create({ ...body, tool_choice: { type: "tool", name: "other" } }).catch((error: unknown) =>
      error
    )
    assert.instanceOf(missing, Anthropic.BadRequestError)
  })
})

describe("Replicate simulator: model schemas", () => {
  it("serves each model's input properties, the default ones for models not configured", async () => {
    const sim = await start({ replicateInputs: { "acme/tiny": ["prompt", "repetition_penalty"] } })
    const get = async (path: string) =>
      (await fetch(`${sim.replicateBaseUrl}${path}`, { headers: { Authorization: "Bearer r8_test" } })).json() as Promise<any>
    const tiny = await get("/models/acme/tiny")
    assert.deepStrictEqual(Object.keys(tiny.latest_version.openapi_schema.components.schemas.Input.properties), [
      "prompt",
      "repetition_penalty"
    ])
    const version = await get("/models/meta/meta-llama-3-8b-instruct/versions/abc")
    assert.deepStrictEqual(Object.keys(version.openapi_schema.components.schemas.Input.properties), [...Simulator.defaultReplicateInputs])
  })
})
