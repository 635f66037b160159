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

const client = (sim: Simulator.Instance, apiKey = "sk-test") => new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey, maxRetries: 0 })
const chat = (content: string, maxTokens: number) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user" as const, content }],
  max_tokens: maxTokens
})
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends a request, waiting `retry-after-ms` after every 429 until it is admitted. */
const untilAdmitted = async (openai: OpenAI, body: ReturnType<typeof chat>): Promise<number> => {
  let rejections = 0
  for (;;) {
    try {
      await openai.chat.completions.create(body)
      return rejections
    } catch (error) {
      if (!(error instanceof OpenAI.RateLimitError)) throw error
      rejections++
      await wait(Number(error.headers?.get("retry-after-ms") ?? 10))
    }
  }
}

describe("rate limits", () => {
  it("never admits more than the configured requests or tokens in any window, under a burst", async () => {
    const windowMs = 250
    const limits = { rpm: 4, tpm: 120, windowMs }
    const sim = await start({ limits })
    const openai = client(sim)
    // 16 requests, each reserving its prompt plus 12-30 output tokens, fired at once.
    const rejections = await Promise.all(
      Array.from({ length: 16 }, (_, i) => untilAdmitted(openai, chat(`request number ${i}`, 12 + (i % 4) * 6)))
    )
    const events = sim.events()
    const max = Simulator.maxInWindow(events, windowMs)
    assert.isAtMost(max.requests, limits.rpm)
    assert.isAtMost(max.tokens, limits.tpm)
    assert.strictEqual(events.filter((event) => event.status === 200).length, 16)
    const counters = sim.counters()
    assert.isAbove(counters.http429.requests + counters.http429.tokens, 0)
    assert.strictEqual(counters.http429.requests + counters.http429.tokens, rejections.reduce((a, b) => a + b, 0))
  })

  it("maxInWindow finds a window that holds too many (the check itself can fail)", () => {
    const event = (t: number) => ({ t, key: "k", route: "r", status: 200, inputTokens: 1, reservedTokens: 10 })
    assert.deepStrictEqual(Simulator.maxInWindow([event(0), event(50), event(99), event(100)], 100), { requests: 3, tokens: 30 })
  })

  it("recovers after the window: the 429's retry-after-ms is enough to wait", async () => {
    const sim = await start({ limits: { rpm: 1, windowMs: 100 } })
    const openai = client(sim)
    await openai.chat.completions.create(chat("a", 5))
    const error = await openai.chat.completions.create(chat("b", 5)).catch((error: unknown) => error) as InstanceType<
      typeof OpenAI.RateLimitError
    >
    assert.instanceOf(error, OpenAI.RateLimitError)
    const retryAfterMs = Number(error.headers?.get("retry-after-ms"))
    assert.isAbove(retryAfterMs, 0)
    assert.isAtMost(retryAfterMs, 100)
    assert.strictEqual(error.headers?.get("retry-after"), "1")
    await wait(retryAfterMs)
    const ok = await openai.chat.completions.create(chat("b", 5))
    assert.strictEqual(ok.object, "chat.completion")
  })

  it("countUnsuccessful: a 429 takes a place in the window too (OpenAI counts unsuccessful requests)", async () => {
    const windowMs = 400
    for (const countUnsuccessful of [false, true]) {
      const sim = await start({ limits: { rpm: 2, windowMs, countUnsuccessful } })
      const openai = client(sim)
      const attempt = (content: string) =>
        openai.chat.completions.create(chat(content, 5)).then(
          () => "ok" as const,
          (error: unknown) => {
            if (error instanceof OpenAI.RateLimitError) return error
            throw error
          }
        )
      assert.strictEqual(await attempt("a"), "ok")
      await wait(windowMs / 2)
      assert.strictEqual(await attempt("b"), "ok")
      assert.instanceOf(await attempt("c"), OpenAI.RateLimitError)
      // "a" has left the window, "b" and the refused "c" have not
      await wait(windowMs / 2 + 60)
      const d = await attempt("d")
      if (!countUnsuccessful) {
        assert.strictEqual(d, "ok")
        continue
      }
      assert.instanceOf(d, OpenAI.RateLimitError)
      // its retry-after is enough: by then "b" and "c" have left (and "d" holds the one place it takes)
      await wait(Number((d as InstanceType<typeof OpenAI.RateLimitError>).headers?.get("retry-after-ms")))
      assert.strictEqual(await attempt("e"), "ok")
    }
  })

  it("limits each API key separately", async () => {
    const sim = await start({ limits: { rpm: 1 } })
    await client(sim, "sk-a").chat.completions.create(chat("a", 5))
    const error = await client(sim, "sk-a").chat.completions.create(chat("a", 5)).catch((error: unknown) => error)
    assert.instanceOf(error, OpenAI.RateLimitError)
    const other = await client(sim, "sk-b").chat.completions.create(chat("b", 5))
    assert.strictEqual(other.object, "chat.completion")
  })

  it("charges prompt tokens plus max_tokens and rejects with type tokens, or 'too large' beyond the limit", async () => {
    const sim = await start({ limits: { tpm: 50 } })
    const openai = client(sim)
    const ok = await openai.chat.completions.create(chat("twelve chars", 40)).withResponse()
    assert.strictEqual(ok.response.headers.get("x-ratelimit-remaining-tokens"), String(50 - Simulator.countTokens("twelve chars") - 40))
    const tokens = await openai.chat.completions.create(chat("x", 20)).catch((error: unknown) => error) as InstanceType<
      typeof OpenAI.RateLimitError
    >
    assert.instanceOf(tokens, OpenAI.RateLimitError)
    assert.strictEqual(tokens.type, "tokens")
    const used = Simulator.countTokens("twelve chars") + 40
    assert.include(tokens.message, `tokens per min (TPM): Limit 50, Used ${used}, Requested 21.`)
    const large = await client(sim, "sk-other").chat.completions.create(chat("x", 100)).catch((error: unknown) => error) as InstanceType<
      typeof OpenAI.RateLimitError
    >
    assert.match(large.message, /Request too large/)
    assert.deepStrictEqual(sim.counters().http429, { requests: 0, tokens: 2, quota: 0, concurrency: 0 })
  })

  it("an exhausted quota answers insufficient_quota forever, for that key only", async () => {
    const sim = await start({ limits: { quotaExhausted: ["sk-broke"], windowMs: 20 } })
    for (let attempt = 0; attempt < 3; attempt++) {
      const error = await client(sim, "sk-broke").chat.completions.create(chat("x", 5)).catch((error: unknown) => error) as InstanceType<
        typeof OpenAI.RateLimitError
      >
      assert.instanceOf(error, OpenAI.RateLimitError)
      assert.strictEqual(error.code, "insufficient_quota")
      assert.strictEqual(error.type, "insufficient_quota")
      assert.isNull(error.headers?.get("retry-after"))
      await wait(25)
    }
    const ok = await client(sim, "sk-fine").chat.completions.create(chat("x", 5))
    assert.strictEqual(ok.object, "chat.completion")
    assert.strictEqual(sim.counters().http429.quota, 3)
  })

  it("quotaTokens exhausts a key's quota once its lifetime reservations are spent", async () => {
    const sim = await start({ limits: { quotaTokens: 30, windowMs: 10 } })
    const openai = client(sim)
    await openai.chat.completions.create(chat("x", 20))
    const error = await openai.chat.completions.create(chat("x", 20)).catch((error: unknown) => error) as InstanceType<
      typeof OpenAI.RateLimitError
    >
    assert.strictEqual(error.code, "insufficient_quota")
    await wait(20)
    const again = await openai.chat.completions.create(chat("x", 20)).catch((error: unknown) => error) as InstanceType<
      typeof OpenAI.RateLimitError
    >
    assert.strictEqual(again.code, "insufficient_quota")
  })

  it("rejects calls beyond maxConcurrency with a concurrency 429 and tracks peak concurrency", async () => {
    // Admitted calls hold their slot until the gate opens, so the test does not depend on timing.
    let open: () => void = () => {}
    const gate = new Promise<void>((resolve) => (open = resolve))
    const sim = await start({ limits: { maxConcurrency: 2 }, responder: () => gate.then(() => "done") })
    const openai = client(sim)
    const pending = Promise.all(
      Array.from({ length: 5 }, (_, i) => openai.chat.completions.create(chat(`c${i}`, 5)).then(() => "ok", (error: unknown) => error))
    )
    while (sim.counters().http429.concurrency < 3) await wait(5)
    assert.strictEqual(sim.counters().inFlight, 2)
    open()
    const results = await pending
    const ok = results.filter((result) => result === "ok")
    const rejected = results.filter((result) => result !== "ok") as Array<InstanceType<typeof OpenAI.RateLimitError>>
    assert.strictEqual(ok.length, 2)
    assert.strictEqual(rejected.length, 3)
    for (const error of rejected) {
      assert.instanceOf(error, OpenAI.RateLimitError)
      assert.strictEqual(error.type, "concurrency")
      assert.match(error.message, /Concurrency limit/)
    }
    const counters = sim.counters()
    assert.strictEqual(counters.peakConcurrency, 2)
    assert.strictEqual(counters.http429.concurrency, 3)
    assert.strictEqual(counters.inFlight, 0)
    // slots free up once calls finish
    const after = await openai.chat.completions.create(chat("after", 5))
    assert.strictEqual(after.object, "chat.completion")
  })
})
