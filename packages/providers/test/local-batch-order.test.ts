import { assert, describe, it } from "@effect/vitest"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect } from "effect"
import { LlamaCompletion } from "node-llama-cpp"
import * as NodePath from "node:path"
import * as NodeUrl from "node:url"
import * as BatchOrder from "../src/internal/batchOrder.js"
import { recordBatches } from "./local-batch-recorder.js"

describe("node-llama-cpp's batches in sequence order", () => {
  it.effect("a pooled context's dispatcher adds concurrent sequences in id order, whatever order they queued in", () =>
    Effect.gen(function*() {
      const pool = yield* ModelPool.make({ idleTimeToLive: "1 minute" })
      const modelPath = yield* Local.resolveModelPath("stories260K.gguf")
      const pooled = yield* pool.context({ modelPath, contextSize: 128, sequences: 4, threads: 1, gpu: false })
      const slots = yield* Effect.forEach(Array.from({ length: 4 }), () => ModelPool.acquireSlot(pooled))
      const ids = slots.map((slot) => (slot.sequence as unknown as { _sequenceId: number })._sequenceId)
      // record the sequence ids of every batch node-llama-cpp's dispatcher builds
      const { batches, restore } = recordBatches(pooled.context)
      // sampled generations (node-llama-cpp's own path), started in descending id order
      const order = slots.map((slot, i) => ({ slot, id: ids[i]! })).sort((a, b) => b.id - a.id)
      const texts = yield* Effect.promise(() =>
        Promise.all(order.map(({ slot }) =>
          new LlamaCompletion({ contextSequence: slot.sequence }).generateCompletion("Once upon a time", {
            maxTokens: 8,
            temperature: 0.8,
            seed: 7
          })
        ))
      ).pipe(Effect.ensuring(Effect.sync(restore)))
      assert.strictEqual(texts.length, 4)
      assert.isAtLeast(batches.length, 8)
      for (const batch of batches) assert.deepStrictEqual(batch, batch.toSorted((a, b) => a - b))
      assert.isTrue(batches.some((batch) => batch.length === 4), "the four sequences decoded together")
    }).pipe(Effect.scoped))

  it("gives each item node-llama-cpp's own maximumParallelism share", async () => {
    const entry = NodeUrl.fileURLToPath(import.meta.resolve("node-llama-cpp"))
    const { maximumParallelismStrategy } = await import(
      NodeUrl.pathToFileURL(
        NodePath.join(
          NodePath.dirname(entry),
          "evaluator/LlamaContext/utils/batchItemsPrioritizationStrategies/maximumParallelismStrategy.js"
        )
      ).href
    ) as {
      maximumParallelismStrategy: (options: { items: Array<unknown>; size: number }) => Array<{ item: unknown; processAmount: number }>
    }
    const { strategy } = BatchOrder.make()
    const cases: Array<[Array<[number, number]>, number]> = [
      [[[1, 5], [1, 5], [1, 5]], 512],
      [[[300, 5], [1, 5], [40, 5], [200, 1]], 256],
      [[[7, 5], [9, 2], [100, 9], [3, 5], [64, 1]], 32],
      [[[1000, 5]], 512],
      [[[10, 5], [10, 5], [10, 7]], 7]
    ]
    for (const [shape, size] of cases) {
      const items = shape.map(([length, priority]) => ({
        tokens: Array.from({ length }, (_, i) => i),
        logits: [],
        evaluationPriority: priority
      }))
      const ours = strategy({ items: items as never, size }).map((each) => [items.indexOf(each.item as never), each.processAmount])
      const theirs = maximumParallelismStrategy({ items, size }).map((each) => [items.indexOf(each.item as never), each.processAmount])
      // without an attached context the queue order stays: the same list
      assert.deepStrictEqual(ours, theirs, JSON.stringify([shape, size]))
    }
  })
})
