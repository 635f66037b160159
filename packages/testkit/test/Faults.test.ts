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

const client = (sim: Simulator.Instance, timeout?: number) =>
  new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "sk-test", maxRetries: 0, ...(timeout !== undefined ? { timeout } : {}) })
const chat = (content: string) => ({ model: "gpt-4o-mini", messages: [{ role: "user" as const, content }], max_tokens: 8 })

const outcome = (error: unknown): string => {
  if (error instanceof OpenAI.APIConnectionTimeoutError) return "timeout"
  if (error instanceof OpenAI.APIConnectionError) return "reset"
  if (error instanceof OpenAI.APIError) return String(error.status)
  return `unexpected ${String(error)}`
}

/** The outcomes of `n` sequential calls against a fresh simulator with the given seed. */
const sequence = async (seed: number, n: number): Promise<Array<string>> => {
  const sim = await start({ seed, faults: { rate: 0.4, kinds: ["500", "503", "reset"] } })
  const openai = client(sim)
  const outcomes: Array<string> = []
  for (let i = 0; i < n; i++) {
    outcomes.push(await openai.chat.completions.create(chat(`call ${i}`)).then(() => "ok", outcome))
  }
  const counters = sim.counters()
  assert.strictEqual(counters.faults, outcomes.filter((value) => value !== "ok").length)
  assert.strictEqual(counters.faultsByKind.reset, outcomes.filter((value) => value === "reset").length)
  return outcomes
}

describe("seeded faults", () => {
  it("the same seed injects the same faults in the same places; another seed differs", async () => {
    const first = await sequence(3, 24)
    const second = await sequence(3, 24)
    const other = await sequence(5, 24)
    assert.deepStrictEqual(second, first)
    assert.notDeepEqual(other, first)
    for (const kind of ["ok", "500", "503", "reset"]) assert.include(first, kind)
  })

  it("500 and 503 carry OpenAI's server_error body and rate-limit headers; 503 says overloaded", async () => {
    const sim = await start({ faults: { rate: 1, kinds: ["503"] }, limits: { rpm: 10 } })
    const error = await client(sim).chat.completions.create(chat("x")).catch((error: unknown) => error) as InstanceType<
      typeof OpenAI.InternalServerError
    >
    assert.instanceOf(error, OpenAI.InternalServerError)
    assert.strictEqual(error.status, 503)
    assert.strictEqual(error.type, "server_error")
    assert.match(error.message, /overloaded/)
    assert.strictEqual(error.headers?.get("x-ratelimit-limit-requests"), "10")
    // a faulted call charges nothing
    assert.strictEqual(error.headers?.get("x-ratelimit-remaining-requests"), "10")
  })

  it("a hang never answers: the client's timeout fires, and close() still returns", async () => {
    const sim = await start({ faults: { rate: 1, kinds: ["hang"] } })
    const error = await client(sim, 150).chat.completions.create(chat("x")).catch((error: unknown) => error)
    assert.instanceOf(error, OpenAI.APIConnectionTimeoutError)
    assert.strictEqual(sim.counters().faultsByKind.hang, 1)
  })

  it("midstream cuts an admitted call after half of its tokens: streams break, JSON calls see a reset", async () => {
    const sim = await start({ faults: { rate: 1, kinds: ["midstream"] }, responder: () => "a b c d e f g h" })
    const openai = client(sim)
    const stream = await openai.chat.completions.create({ ...chat("x"), stream: true })
    const received: Array<string> = []
    const failure = await (async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) received.push(chunk.choices[0].delta.content)
    })().then(() => undefined, (error: unknown) => error)
    assert.isDefined(failure)
    assert.deepStrictEqual(received, ["a", " b", " c", " d"])
    const json = await openai.chat.completions.create(chat("x")).catch((error: unknown) => error)
    assert.instanceOf(json, OpenAI.APIConnectionError)
    const counters = sim.counters()
    assert.strictEqual(counters.faultsByKind.midstream, 2)
    assert.strictEqual(counters.admitted, 2)
    assert.strictEqual(counters.aborted, 0)
    assert.strictEqual(counters.inFlight, 0)
  })

  it("faults apply to model calls only, not to listing models", async () => {
    const sim = await start({ faults: { rate: 1, kinds: ["500"] } })
    const models = await client(sim).models.list()
    assert.isAbove(models.data.length, 0)
  })
})

describe("latency model", () => {
  it("streams the first token after ttftMs and the rest perTokenMs apart", async () => {
    const ttftMs = 60
    const perTokenMs = 15
    const sim = await start({ latency: { ttftMs, perTokenMs } })
    const started = performance.now()
    const stream = await client(sim).chat.completions.create({ ...chat("pace me"), stream: true })
    const arrivals: Array<number> = []
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) arrivals.push(performance.now() - started)
    }
    assert.strictEqual(arrivals.length, 8)
    // Lower bounds only: timers never fire early; the machine may be slow.
    assert.isAtLeast(arrivals[0]!, ttftMs - 1)
    assert.isAtLeast(arrivals.at(-1)! - arrivals[0]!, perTokenMs * 7 - 7)
  })

  it("jitter is seeded: the same seed gives the same per-call delays, within the jitter band", async () => {
    const delays = async (seed: number) => {
      const sim = await start({ seed, latency: { ttftMs: 10, perTokenMs: 2, jitter: 0.5 } })
      const openai = client(sim)
      for (let i = 0; i < 5; i++) await openai.chat.completions.create(chat(`j${i}`))
      return sim.events().map((event) => [event.ttftMs!, event.perTokenMs!] as const)
    }
    const first = await delays(11)
    assert.deepStrictEqual(await delays(11), first)
    assert.notDeepEqual(await delays(12), first)
    assert.strictEqual(new Set(first.map(([ttft]) => ttft)).size, 5)
    for (const [ttft, perToken] of first) {
      assert.isAtLeast(ttft, 5)
      assert.isAtMost(ttft, 15)
      assert.approximately(perToken / ttft, 0.2, 1e-9)
    }
  })
})
