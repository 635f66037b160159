import { assert, describe, it } from "@effect/vitest"
import { Batcher, OpenAiBatch } from "@hasten/batcher"
import { CompletionRequest, Llm } from "@hasten/core"
import { Simulator } from "@hasten/testkit"
import { Cause, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import OpenAI from "openai"

const withSimulator = <A, E>(
  options: Parameters<typeof Simulator.start>[0],
  body: (client: OpenAI, sim: Awaited<ReturnType<typeof Simulator.start>>) => Effect.Effect<A, E>
) =>
  Effect.acquireUseRelease(
    Effect.promise(() => Simulator.start(options)),
    (sim) => body(new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "sk-test", maxRetries: 0 }), sim),
    (sim) => Effect.promise(() => sim.close())
  )

const chat = (content: string) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content }], max_tokens: 8 })
const fast = { pollInterval: "5 millis", maxPollInterval: "20 millis" } as const

describe("OpenAiBatch.runJob (official SDK against the simulator)", () => {
  it.live("uploads JSONL, polls to completed and returns results in input order", () =>
    withSimulator({ seed: 1, batch: { validatingMs: 10, perRequestMs: 1, finalizingMs: 5 } }, (client) =>
      Effect.gen(function*() {
        const items = ["a", "b", "c", "d", "e"].map((x) => ({ customId: `q-${x}`, body: chat(`say ${x}`) }))
        const results = yield* OpenAiBatch.runJob(client, items, fast)
        assert.deepStrictEqual(results.map((r) => r.customId), items.map((i) => i.customId))
        assert.isTrue(results.every((r) => r.ok))
        const first = results[0]!
        if (!first.ok) return
        const body = first.body as { choices: Array<{ message: { content: string } }>; usage: { completion_tokens: number } }
        assert.isString(body.choices[0]!.message.content)
        assert.isAbove(body.usage.completion_tokens, 0)
      })))

  it.live("a bad line fails only its item and is not resubmitted", () =>
    withSimulator({ seed: 1, batch: { validatingMs: 5, perRequestMs: 1, finalizingMs: 5 } }, (client) =>
      Effect.gen(function*() {
        const results = yield* OpenAiBatch.runJob(client, [
          { customId: "good", body: chat("hello") },
          { customId: "bad", body: { model: "gpt-4o-mini" } }
        ], fast)
        assert.isTrue(results[0]!.ok)
        const bad = results[1]!
        assert.isFalse(bad.ok)
        if (bad.ok) return
        assert.strictEqual(bad.status, 400)
        assert.match(bad.message, /messages/)
        assert.isFalse(OpenAiBatch.isTransient(bad))
      })))

  it.live("resubmits only the items an expired batch never reached, until all are done", () =>
    withSimulator(
      { seed: 1, batch: { validatingMs: 5, perRequestMs: 20, finalizingMs: 1, expiresAfterMs: 50 } },
      (client, sim) =>
        Effect.gen(function*() {
          const items = Array.from({ length: 6 }, (_, i) => ({ customId: `item-${i}`, body: chat(`n ${i}`) }))
          const results = yield* OpenAiBatch.runJob(client, items, { ...fast, maxResubmits: 10 })
          assert.isTrue(results.every((r) => r.ok), JSON.stringify(results.filter((r) => !r.ok)))
          const creates = sim.counters().requestsByRoute["POST /v1/batches"] ?? 0
          assert.isAbove(creates, 1) // it had to resubmit
          // every item ran exactly once successfully: output tokens were charged for 6 items only
          assert.strictEqual(results.length, 6)
        })
    ))

  it.live("gives up after maxResubmits and reports expired items as transient failures", () =>
    withSimulator(
      { seed: 1, batch: { validatingMs: 5, perRequestMs: 30, finalizingMs: 1, expiresAfterMs: 40 } },
      (client) =>
        Effect.gen(function*() {
          const items = Array.from({ length: 4 }, (_, i) => ({ customId: `item-${i}`, body: chat(`n ${i}`) }))
          const results = yield* OpenAiBatch.runJob(client, items, { ...fast, maxResubmits: 0 })
          const failed = results.filter((r) => !r.ok)
          assert.isAbove(failed.length, 0)
          for (const result of failed) {
            if (result.ok) continue
            assert.strictEqual(result.code, "batch_expired")
            assert.isTrue(OpenAiBatch.isTransient(result))
          }
        })
    ))

  it.effect("rejects duplicate custom ids before uploading anything", () =>
    Effect.gen(function*() {
      const client = { files: {}, batches: {} } as unknown as OpenAiBatch.BatchClient
      const error = yield* Effect.flip(OpenAiBatch.runJob(client, [{ customId: "x", body: {} }, { customId: "x", body: {} }]))
      assert.match(error.message, /duplicate custom_id x/)
    }))
})

describe("OpenAiBatch journal: a restarted job re-attaches to its batch", () => {
  it.live("a killed run's batch is picked up by the next run: one upload, one batch, results as usual", () =>
    withSimulator({ seed: 1, batch: { validatingMs: 20, perRequestMs: 20, finalizingMs: 5 } }, (client, sim) =>
      Effect.gen(function*() {
        const path = Path.join(mkdtempSync(Path.join(tmpdir(), "hasten-batch-")), "journal.json")
        const items = ["a", "b", "c"].map((x) => ({ customId: `q-${x}`, body: chat(`say ${x}`) }))
        // the first run is killed right after the batch is created (its journal entry is written)
        const created = yield* Deferred.make<void>()
        const file = OpenAiBatch.journalFile(path)
        const watched: OpenAiBatch.Journal = {
          ...file,
          set: (key, entry) => Effect.andThen(file.set(key, entry), Deferred.succeed(created, undefined))
        }
        const first = yield* Effect.forkChild(OpenAiBatch.runJob(client, items, { ...fast, journal: watched }))
        yield* Deferred.await(created)
        yield* Fiber.interrupt(first)
        const entries = JSON.parse(readFileSync(path, "utf8")) as Record<string, OpenAiBatch.JournalEntry>
        const [entry] = Object.values(entries)
        assert.deepStrictEqual(entry!.customIds, ["q-a", "q-b", "q-c"])
        const routes = () => sim.counters().requestsByRoute
        assert.deepStrictEqual([routes()["POST /v1/files"], routes()["POST /v1/batches"], routes()["POST /v1/batches/:id/cancel"]], [
          1,
          1,
          undefined
        ])

        // a new process: a fresh journal over the same file
        const results = yield* OpenAiBatch.runJob(client, items, { ...fast, journal: OpenAiBatch.journalFile(path) })
        assert.isTrue(results.every((result) => result.ok))
        assert.deepStrictEqual(results.map((result) => result.customId), ["q-a", "q-b", "q-c"])
        assert.deepStrictEqual([routes()["POST /v1/files"], routes()["POST /v1/batches"]], [1, 1])
        assert.isAtLeast(routes()["GET /v1/batches/:id"] ?? 0, 1)
        // done: the entry is gone, so the same items later make a new batch
        assert.deepStrictEqual(JSON.parse(readFileSync(path, "utf8")), {})
        yield* OpenAiBatch.runJob(client, items, { ...fast, journal: OpenAiBatch.journalFile(path) })
        assert.strictEqual(routes()["POST /v1/batches"], 2)
      })))

  it.live("an entry the API does not know (404) is dropped and the items are submitted again", () =>
    withSimulator({ seed: 1, batch: { validatingMs: 5, perRequestMs: 1, finalizingMs: 5 } }, (client, sim) =>
      Effect.gen(function*() {
        const journal = OpenAiBatch.journalMemory()
        const items = [{ customId: "x", body: chat("x") }]
        const jsonl = items.map((item) =>
          JSON.stringify({ custom_id: item.customId, method: "POST", url: "/v1/chat/completions", body: item.body })
        )
          .join("\n") + "\n"
        yield* journal.set(OpenAiBatch.jobKey("/v1/chat/completions", jsonl), {
          batchId: "batch_gone",
          inputFileId: "file_gone",
          customIds: ["x"]
        })
        const results = yield* OpenAiBatch.runJob(client, items, { ...fast, journal })
        assert.isTrue(results[0]!.ok)
        assert.strictEqual(sim.counters().requestsByRoute["POST /v1/batches"], 1)
        assert.isUndefined(yield* journal.get(OpenAiBatch.jobKey("/v1/chat/completions", jsonl)))
      })))

  it.live("without a journal, interrupting a job still cancels its batch", () =>
    withSimulator({ seed: 1, batch: { validatingMs: 50, perRequestMs: 50, finalizingMs: 5 } }, (client, sim) =>
      Effect.gen(function*() {
        const polling = yield* Deferred.make<void>()
        const watching: OpenAiBatch.BatchClient = {
          files: client.files,
          batches: {
            create: (body, options) => client.batches.create(body, options),
            // the job is polling: interrupting it now must cancel the batch
            retrieve: (id, options) =>
              client.batches.retrieve(id, options).then((batch) => (Effect.runSync(Deferred.succeed(polling, undefined)), batch)),
            cancel: (id, options) => client.batches.cancel(id, options)
          }
        }
        const fiber = yield* Effect.forkChild(OpenAiBatch.runJob(watching, [{ customId: "x", body: chat("x") }], fast))
        yield* Deferred.await(polling)
        yield* Fiber.interrupt(fiber)
        assert.strictEqual(sim.counters().requestsByRoute["POST /v1/batches/:id/cancel"], 1)
      })))
})

describe("OpenAiBatch.backend behind Batcher.layer", () => {
  it.live("callers calling complete one at a time are served by one Batch API job", () =>
    withSimulator({ seed: 1, batch: { validatingMs: 5, perRequestMs: 1, finalizingMs: 5 } }, (client, sim) =>
      Effect.gen(function*() {
        const requests = ["one", "two", "three"].map((text) =>
          CompletionRequest.user("gpt-4o-mini", text, { maxTokens: 8, temperature: 0 })
        )
        const good = yield* Effect.forEach(requests, (request) => Llm.complete(request), { concurrency: "unbounded" })
        assert.strictEqual(good.length, 3)
        assert.isTrue(good.every((c) => c.text.length > 0 && c.usage.outputTokens > 0 && c.facts?.batchSize === 3))
        assert.strictEqual(sim.counters().requestsByRoute["POST /v1/batches"], 1)
        // a bad item in the next batch fails only its own caller
        const [ok, bad] = yield* Effect.forEach(
          [
            CompletionRequest.user("gpt-4o-mini", "fine", { maxTokens: 8 }),
            CompletionRequest.user("gpt-4o-mini", "broken", { maxTokens: 8, providerOptions: { messages: "not-a-list" } })
          ],
          (request) => Effect.exit(Llm.complete(request)),
          { concurrency: "unbounded" }
        )
        assert.isTrue(Exit.isSuccess(ok!))
        assert.isTrue(Exit.isFailure(bad!))
        if (Exit.isFailure(bad!)) assert.match(String(bad.cause), /InvalidRequest/)
      }).pipe(Effect.provide(
        Batcher.layer({ window: "20 millis", backend: OpenAiBatch.backend(client, fast) }).pipe(Layer.provide(Llm.Llm.layerEcho))
      ))))
})

describe("OpenAiBatch fields", () => {
  it.live("a field the Batch API cannot take fails its own item naming it, before anything is uploaded; the others run", () =>
    withSimulator({ seed: 1, batch: { validatingMs: 5, perRequestMs: 1, finalizingMs: 5 } }, (client, sim) =>
      Effect.gen(function*() {
        const [ok, topK, logprobs] = yield* Effect.forEach(
          [
            CompletionRequest.user("gpt-4o-mini", "fine", { maxTokens: 8 }),
            CompletionRequest.user("gpt-4o-mini", "top-k", { maxTokens: 8, topK: 5 }),
            CompletionRequest.user("gpt-4o-mini", "logprobs", { maxTokens: 8, logprobs: true })
          ],
          (request) => Effect.exit(Llm.complete(request)),
          { concurrency: "unbounded" }
        )
        assert.isTrue(Exit.isSuccess(ok!))
        for (const [exit, field] of [[topK!, "topK"], [logprobs!, "logprobs"]] as const) {
          assert.isTrue(Exit.isFailure(exit))
          const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
          assert.strictEqual(error?._tag === "Some" ? (error.value.reason as { field?: string }).field : undefined, field)
        }
        // one upload, with only the item the API can take
        assert.strictEqual(sim.counters().requestsByRoute["POST /v1/batches"], 1)
        // nothing to upload when every item is refused
        const alone = yield* Effect.exit(Llm.complete(CompletionRequest.user("gpt-4o-mini", "alone", { maxTokens: 8, penaltyWindow: 32 })))
        assert.isTrue(Exit.isFailure(alone))
        assert.strictEqual(sim.counters().requestsByRoute["POST /v1/batches"], 1)
      }).pipe(Effect.provide(
        Batcher.layer({ window: "20 millis", backend: OpenAiBatch.backend(client, fast) }).pipe(Layer.provide(Llm.Llm.layerEcho))
      ))))

  it("chatBody sends OpenAI's members under their wire names", () => {
    const body = OpenAiBatch.chatBody(
      CompletionRequest.user("gpt-4o-mini", "x", { maxTokens: 8, temperature: 0.5, topP: 0.9, seed: 3, stop: ["."], frequencyPenalty: 0.1 })
    )
    assert.deepStrictEqual(
      {
        max_tokens: body.max_tokens,
        temperature: body.temperature,
        top_p: body.top_p,
        seed: body.seed,
        stop: body.stop,
        frequency_penalty: body.frequency_penalty
      },
      { max_tokens: 8, temperature: 0.5, top_p: 0.9, seed: 3, stop: ["."], frequency_penalty: 0.1 }
    )
  })
})

describe("OpenAiBatch.parseResults", () => {
  it.effect("decodes each line by schema; a bad line fails naming its number and field", () =>
    Effect.gen(function*() {
      const ok = JSON.stringify({ custom_id: "a", response: { status_code: 200, body: { id: "x" } }, error: null })
      const failed = JSON.stringify({ custom_id: "b", response: null, error: { code: "batch_expired", message: "expired" } })
      const results = yield* OpenAiBatch.parseResults(`${ok}\r\n\n${failed}\n`)
      assert.deepStrictEqual(results, [
        { customId: "a", ok: true, status: 200, body: { id: "x" } },
        { customId: "b", ok: false, code: "batch_expired", message: "expired" }
      ])
      const noId = yield* Effect.flip(OpenAiBatch.parseResults(`${ok}\n${JSON.stringify({ response: { status_code: "200" } })}\n`))
      assert.strictEqual(noId.reason._tag, "BadResponse")
      assert.match(noId.message, /result file line 2: custom_id: Missing key; response\.status_code: Expected number, got "200"/)
      const notJson = yield* Effect.flip(OpenAiBatch.parseResults(`${ok}\n{oops\n`))
      assert.match(notJson.message, /result file line 2: invalid JSON/)
    }))
})
