import { afterEach, assert, describe, it } from "@effect/vitest"
import { Simulator } from "@hasten/testkit"
import Replicate from "replicate"

const running: Array<Simulator.Instance> = []
const start = async (options: Simulator.Options = {}) => {
  const sim = await Simulator.start(options)
  running.push(sim)
  return sim
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((sim) => sim.close()))
})

const client = (sim: Simulator.Instance, auth = "r8_test") => new Replicate({ baseUrl: sim.replicateBaseUrl, auth })

interface Prediction {
  readonly id: string
  readonly status: string
  readonly output: Array<string> | null
  readonly metrics?: { input_token_count?: number; output_token_count?: number; predict_time?: number }
  readonly urls: { stream?: string }
}

describe("Replicate simulator through the official SDK", () => {
  it("replicate.run returns the output tokens for the model and version forms", async () => {
    const sim = await start({ responder: (request) => `You said: ${request.prompt}` })
    const replicate = client(sim)
    const byModel = await replicate.run("meta/meta-llama-3-8b-instruct", { input: { prompt: "hello world", max_tokens: 50 } }) as Array<
      string
    >
    assert.isArray(byModel)
    assert.strictEqual(byModel.join(""), "You said: hello world")
    assert.deepStrictEqual(byModel, Simulator.tokenize("You said: hello world"))
    const byVersion = await replicate.run("meta/llama:0123456789abcdef", { input: { prompt: "again" } }) as Array<string>
    assert.strictEqual(byVersion.join(""), "You said: again")
    const routes = sim.counters().requestsByRoute
    assert.strictEqual(routes["POST /v1/models/:owner/:name/predictions"], 1)
    assert.strictEqual(routes["POST /v1/predictions"], 1)
  })

  it("Prefer: wait holds the response until the prediction is done; metrics count tokens", async () => {
    const sim = await start({ latency: { ttftMs: 5, perTokenMs: 1 } })
    const replicate = client(sim)
    const done = await replicate.predictions.create({ model: "meta/llama", input: { prompt: "tell me" }, wait: true }) as Prediction
    assert.strictEqual(done.status, "succeeded")
    assert.isAbove(done.output!.length, 3)
    assert.strictEqual(done.metrics?.output_token_count, done.output!.length)
    assert.strictEqual(done.metrics?.input_token_count, Simulator.countTokens("tell me"))
    assert.isNumber(done.metrics?.predict_time)
    const pending = await replicate.predictions.create({ model: "meta/llama", input: { prompt: "tell me" } }) as Prediction
    assert.strictEqual(pending.status, "starting")
    const finished = await replicate.wait(pending as never, { interval: 5 }) as Prediction
    assert.deepStrictEqual(finished.output, done.output)
  })

  it("replicate.stream yields output events then done", async () => {
    const sim = await start({ latency: { perTokenMs: 1 } })
    const replicate = client(sim)
    const reference = await replicate.run("meta/llama", { input: { prompt: "stream this" } }) as Array<string>
    const events: Array<{ event: string; data: string }> = []
    for await (const event of replicate.stream("meta/llama", { input: { prompt: "stream this" } })) {
      events.push({ event: event.event, data: event.data })
    }
    const outputs = events.filter((event) => event.event === "output").map((event) => event.data)
    assert.deepStrictEqual(outputs, reference)
    assert.strictEqual(events.at(-1)?.event, "done")
  })

  it("a cancelled prediction stops generating and is counted", async () => {
    const sim = await start({ latency: { perTokenMs: 20 }, responder: () => "word ".repeat(200) })
    const replicate = client(sim)
    const created = await replicate.predictions.create({ model: "meta/llama", input: { prompt: "long" } }) as Prediction
    await new Promise((resolve) => setTimeout(resolve, 60))
    const cancelled = await replicate.predictions.cancel(created.id) as Prediction
    assert.strictEqual(cancelled.status, "canceled")
    const produced = cancelled.output?.length ?? 0
    assert.isBelow(produced, 200)
    await new Promise((resolve) => setTimeout(resolve, 60))
    const later = await replicate.predictions.get(created.id) as Prediction
    assert.strictEqual(later.status, "canceled")
    assert.strictEqual(later.output?.length ?? 0, produced)
    assert.strictEqual(sim.counters().cancellations, 1)
    assert.strictEqual(sim.counters().inFlight, 0)
  })

  it("a cold model boots once: predictions created during the boot wait for it, Prefer: wait gives up at maxWaitMs", async () => {
    // The boot (1 s) outlasts the longest hold (20 ms): the create answers with the unfinished prediction.
    const sim = await start({ replicate: { coldStartMs: 1_000, maxWaitMs: 20 }, latency: { ttftMs: 0, perTokenMs: 0 } })
    const replicate = client(sim)
    const first = await replicate.predictions.create({ model: "meta/llama", input: { prompt: "a" }, wait: true }) as Prediction
    const second = await replicate.predictions.create({ model: "meta/llama", input: { prompt: "b" }, wait: true }) as Prediction
    assert.strictEqual(first.status, "starting")
    assert.strictEqual(second.status, "starting")
    assert.strictEqual(sim.counters().coldStarts, 1)
    const done = await Promise.all([first, second].map((prediction) => replicate.wait(prediction as never, { interval: 20 }))) as Array<
      Prediction
    >
    assert.deepStrictEqual(done.map((prediction) => prediction.status), ["succeeded", "succeeded"])
    // warm now: the next one finishes within its hold, and no second boot
    const warm = await replicate.predictions.create({ model: "meta/llama", input: { prompt: "c" }, wait: true }) as Prediction
    assert.strictEqual(warm.status, "succeeded")
    assert.strictEqual(sim.counters().coldStarts, 1)
  })

  it("a hang fault is a stuck prediction: created, never started, holding its place until cancelled", async () => {
    const sim = await start({ faults: { rate: 1, kinds: ["hang"] }, replicate: { maxWaitMs: 20 } })
    const replicate = client(sim)
    const stuck = await replicate.predictions.create({ model: "meta/llama", input: { prompt: "x" }, wait: true }) as Prediction
    assert.strictEqual(stuck.status, "starting")
    assert.strictEqual(sim.counters().inFlight, 1)
    const later = await replicate.predictions.get(stuck.id) as Prediction
    assert.strictEqual(later.status, "starting")
    const cancelled = await replicate.predictions.cancel(stuck.id) as Prediction
    assert.strictEqual(cancelled.status, "canceled")
    assert.strictEqual(sim.counters().inFlight, 0)
    assert.strictEqual(sim.counters().faultsByKind.hang, 1)
  })

  it("rejects bad input with a 422 problem body and a missing token with 401", async () => {
    const sim = await start()
    const error = await client(sim).predictions.create({ model: "meta/llama", input: { prompt: "x", max_tokens: "lots" } }).catch((
      error: unknown
    ) => error) as Error & { response: Response }
    assert.strictEqual(error.name, "ApiError")
    assert.strictEqual(error.response.status, 422)
    assert.match(error.message, /max_tokens/)
    const missing = await fetch(`${sim.replicateBaseUrl}/predictions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ version: "abc", input: {} })
    })
    assert.strictEqual(missing.status, 401)
    const body = await missing.json() as { title: string; status: number }
    assert.strictEqual(body.status, 401)
    const notFound = await fetch(`${sim.replicateBaseUrl}/predictions/nope`, { headers: { authorization: "Bearer r8" } })
    assert.strictEqual(notFound.status, 404)
    assert.strictEqual((await notFound.json() as { status: number }).status, 404)
  })

  it("throttles with 429 problem bodies; the SDK retries 429s by itself, and every try is counted", async () => {
    const sim = await start({ limits: { rpm: 1 } })
    const replicate = client(sim)
    await replicate.run("meta/llama", { input: { prompt: "one" } })
    const error = await replicate.run("meta/llama", { input: { prompt: "two" } }).catch((error: unknown) => error) as Error & {
      response: Response
    }
    assert.strictEqual(error.response.status, 429)
    assert.match(error.message, /Request was throttled/)
    // replicate 1.4 retries a 429 five times before giving up: six refusals in all.
    assert.strictEqual(sim.counters().http429.requests, 6)
  })

  it("answers 402 when the quota is exhausted", async () => {
    const sim = await start({ limits: { quotaExhausted: ["r8_broke"] } })
    const error = await client(sim, "r8_broke").run("meta/llama", { input: { prompt: "x" } }).catch((error: unknown) => error) as Error & {
      response: Response
    }
    assert.strictEqual(error.response.status, 402)
    assert.match(error.message, /insufficient credit/)
  })

  it("a midstream fault fails the prediction halfway: run throws, stream errors, get shows the error", async () => {
    const sim = await start({ faults: { rate: 1, kinds: ["midstream"] }, responder: () => "a b c d e f" })
    const replicate = client(sim)
    const run = await replicate.run("meta/llama", { input: { prompt: "x" } }).catch((error: unknown) => error)
    assert.match(String((run as Error).message), /Prediction failed: .*midstream/)
    const outputs: Array<string> = []
    const streamed = await (async () => {
      for await (const event of replicate.stream("meta/llama", { input: { prompt: "x" } })) {
        if (event.event === "output") outputs.push(event.data)
      }
    })().then(() => undefined, (error: unknown) => error)
    assert.instanceOf(streamed, Error)
    assert.deepStrictEqual(outputs, ["a", " b", " c"])
    const [latest] = (await replicate.predictions.list()).results as unknown as Array<Prediction & { error: string }>
    assert.strictEqual(latest!.status, "failed")
    assert.match(latest!.error, /midstream/)
    assert.strictEqual(sim.counters().inFlight, 0)
  })
})
