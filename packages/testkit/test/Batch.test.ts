import { afterEach, assert, describe, it } from "@effect/vitest"
import { Simulator } from "@hasten/testkit"
import OpenAI, { toFile } from "openai"

const running: Array<Simulator.Instance> = []
const start = async (options: Simulator.Options = {}) => {
  const sim = await Simulator.start(options)
  running.push(sim)
  return sim
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((sim) => sim.close()))
})

const client = (sim: Simulator.Instance) => new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "sk-test", maxRetries: 0 })

const line = (customId: string, body: Record<string, unknown>) =>
  JSON.stringify({ custom_id: customId, method: "POST", url: "/v1/chat/completions", body })
const good = (customId: string, content: string) =>
  line(customId, { model: "gpt-4o-mini", messages: [{ role: "user", content }], max_tokens: 20 })

const upload = async (openai: OpenAI, lines: Array<string>) =>
  openai.files.create({ file: await toFile(Buffer.from(lines.join("\n") + "\n"), "batch.jsonl"), purpose: "batch" })

const terminal = new Set(["completed", "failed", "expired", "cancelled"])

/** Polls until the batch is terminal. */
const poll = async (openai: OpenAI, id: string): Promise<{ batch: OpenAI.Batch }> => {
  for (;;) {
    const batch = await openai.batches.retrieve(id)
    if (terminal.has(batch.status)) return { batch }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const jsonl = async (openai: OpenAI, fileId: string): Promise<Array<any>> =>
  (await (await openai.files.content(fileId)).text()).trim().split("\n").map((text) => JSON.parse(text))

describe("Batch API", () => {
  it("runs validating -> in_progress -> completed, with output and error files", async () => {
    const sim = await start({ batch: { validatingMs: 20, perRequestMs: 10, finalizingMs: 20 } })
    const openai = client(sim)
    const file = await upload(openai, [
      good("a", "first question"),
      good("b", "second question"),
      line("bad", { model: "gpt-4o-mini" }),
      good("c", "third question")
    ])
    assert.strictEqual(file.purpose, "batch")
    const created = await openai.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
      metadata: { run: "t1" }
    })
    assert.strictEqual(created.status, "validating")
    assert.deepStrictEqual(created.metadata, { run: "t1" })
    const { batch } = await poll(openai, created.id)
    assert.strictEqual(batch.status, "completed")
    assert.isNumber(batch.in_progress_at)
    assert.isNumber(batch.finalizing_at)
    assert.deepStrictEqual(batch.request_counts, { total: 4, completed: 3, failed: 1 })
    assert.isNumber(batch.completed_at)
    const outputs = await jsonl(openai, batch.output_file_id!)
    assert.deepStrictEqual(outputs.map((entry) => entry.custom_id), ["a", "b", "c"])
    const direct = await openai.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "first question" }],
      max_tokens: 20
    })
    assert.strictEqual(outputs[0].response.status_code, 200)
    assert.strictEqual(outputs[0].response.body.choices[0].message.content, direct.choices[0]!.message.content)
    const errors = await jsonl(openai, batch.error_file_id!)
    assert.strictEqual(errors.length, 1)
    assert.strictEqual(errors[0].custom_id, "bad")
    assert.strictEqual(errors[0].response.status_code, 400)
    assert.strictEqual(errors[0].response.body.error.param, "messages")
    const listed = await openai.batches.list()
    assert.deepStrictEqual(listed.data.map((item) => item.id), [created.id])
  })

  it("expires when processing would outlast the completion window: finished requests in the output file, the rest batch_expired", async () => {
    const sim = await start({ batch: { validatingMs: 5, perRequestMs: 40, finalizingMs: 5, expiresAfterMs: 70 } })
    const openai = client(sim)
    const file = await upload(openai, [good("a", "1"), good("b", "2"), good("c", "3"), good("d", "4")])
    const created = await openai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
    const { batch } = await poll(openai, created.id)
    assert.strictEqual(batch.status, "expired")
    assert.isNumber(batch.expired_at)
    // 70 ms window - 5 ms validating = 65 ms: one request at 40 ms each.
    assert.deepStrictEqual(batch.request_counts, { total: 4, completed: 1, failed: 3 })
    assert.deepStrictEqual((await jsonl(openai, batch.output_file_id!)).map((entry) => entry.custom_id), ["a"])
    const errors = await jsonl(openai, batch.error_file_id!)
    assert.deepStrictEqual(errors.map((entry) => entry.error.code), ["batch_expired", "batch_expired", "batch_expired"])
  })

  it("is in_progress after validating; cancelling then cancelled, counted in counters", async () => {
    const sim = await start({ batch: { validatingMs: 5, perRequestMs: 5000, finalizingMs: 10 } })
    const openai = client(sim)
    const file = await upload(openai, [good("a", "1"), good("b", "2")])
    const created = await openai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
    assert.strictEqual(created.status, "validating")
    let current = created
    while (current.status === "validating") current = await openai.batches.retrieve(created.id)
    assert.strictEqual(current.status, "in_progress")
    assert.deepStrictEqual(current.request_counts, { total: 2, completed: 0, failed: 0 })
    const cancelling = await openai.batches.cancel(created.id)
    assert.strictEqual(cancelling.status, "cancelling")
    const { batch } = await poll(openai, created.id)
    assert.strictEqual(batch.status, "cancelled")
    assert.strictEqual(sim.counters().cancellations, 1)
    const again = await openai.batches.cancel(created.id).catch((error: unknown) => error)
    assert.instanceOf(again, OpenAI.BadRequestError)
  })

  it("fails validation for an input file with a bad line, and rejects unknown files", async () => {
    const sim = await start({ batch: { validatingMs: 5 } })
    const openai = client(sim)
    const file = await upload(openai, [good("a", "1"), "{ not json"])
    const created = await openai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
    const { batch } = await poll(openai, created.id)
    assert.strictEqual(batch.status, "failed")
    assert.strictEqual(batch.errors?.data?.[0]?.line, 2)
    const missing = await openai.batches.create({ input_file_id: "file-nope", endpoint: "/v1/chat/completions", completion_window: "24h" })
      .catch((error: unknown) => error)
    assert.instanceOf(missing, OpenAI.BadRequestError)
    assert.strictEqual((missing as InstanceType<typeof OpenAI.BadRequestError>).param, "input_file_id")
    const notFound = await openai.batches.retrieve("batch_nope").catch((error: unknown) => error)
    assert.instanceOf(notFound, OpenAI.NotFoundError)
  })

  it("runs an embeddings batch", async () => {
    const sim = await start({ batch: { validatingMs: 1, perRequestMs: 1, finalizingMs: 1 } })
    const openai = client(sim)
    const file = await upload(openai, [
      JSON.stringify({ custom_id: "e", method: "POST", url: "/v1/embeddings", body: { model: "text-embedding-3-small", input: "hi" } })
    ])
    const created = await openai.batches.create({ input_file_id: file.id, endpoint: "/v1/embeddings", completion_window: "24h" })
    const { batch } = await poll(openai, created.id)
    const [entry] = await jsonl(openai, batch.output_file_id!)
    const direct = await openai.embeddings.create({ model: "text-embedding-3-small", input: "hi", encoding_format: "float" })
    assert.deepStrictEqual(entry.response.body.data[0].embedding, direct.data[0]!.embedding)
  })
})
