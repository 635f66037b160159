/**
 * A local model's memory from the model itself (weights, KV cache, compute) and the number
 * of sequences free memory allows (`sequences: "auto"`), on two real fixtures of different
 * shapes. The KV cache's bytes per token are checked against llama.cpp's own state: each
 * evaluated token grows the context's serialized state by its KV bytes plus 12 bytes of
 * cell metadata (position, sequence count, sequence id).
 */
import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Layer } from "effect"
import { getLlama } from "node-llama-cpp"
import * as ModelMemory from "../src/internal/modelMemory.js"
import { resolveModelPath } from "../src/LocalModelFile.js"

const shapes = ["stories260K.gguf", "TinyStories-656K-Q8_0.gguf"] as const
const CELL_METADATA_BYTES = 12

describe("model memory", () => {
  for (const file of shapes) {
    it.live(`${file}: KV bytes per token match the growth of llama.cpp's own state`, () =>
      Effect.gen(function*() {
        const path = yield* resolveModelPath(file)
        const { perToken, grown, tokens } = yield* Effect.promise(async () => {
          const llama = await getLlama({ gpu: false })
          const model = await llama.loadModel({ modelPath: path })
          const context = await model.createContext({ contextSize: 128, sequences: 1, threads: 1, flashAttention: false })
          try {
            const sequence = context.getSequence()
            const prompt = model.tokenize("Once upon a time there was a little girl who liked to play in the park with her dog")
            await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 4))
            const before = context.stateSize
            await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(4))
            return {
              perToken: ModelMemory.kvBytesPerToken(
                model.fileInfo.architectureMetadata as never,
                model.defaultContextKvCacheKeyType,
                model.defaultContextKvCacheValueType
              ),
              grown: context.stateSize - before,
              tokens: prompt.length - 4
            }
          } finally {
            await context.dispose()
            await model.dispose()
          }
        })
        assert.isAbove(tokens, 4)
        assert.isAbove(perToken, 0)
        assert.strictEqual(grown, tokens * (perToken + CELL_METADATA_BYTES))
      }))

    it.live(`${file}: sequences "auto" takes what memory allows, and completions carry the model's memory`, () =>
      Effect.gen(function*() {
        const status = yield* Effect.flatMap(Effect.service(Local.LocalModel), (model) => model.status)
        // free memory is ample for these models: the cap decides
        assert.strictEqual(status.sequences, 3)
        assert.isAbove(status.memory.weightsBytes, 0)
        assert.isAbove(status.memory.computeBytes, 0)
        const completion = yield* Llm.complete(CompletionRequest.user("m", "Once upon a time", { temperature: 0, maxTokens: 4 }))
        const memory = completion.facts?.modelMemory
        assert.isDefined(memory)
        assert.strictEqual(memory!.sequences, 3)
        assert.strictEqual(memory!.contextSize, 64)
        assert.deepStrictEqual(
          { weightsBytes: memory!.weightsBytes, kvCacheBytes: memory!.kvCacheBytes, computeBytes: memory!.computeBytes },
          status.memory
        )
        // the KV cache is bytes per token × every sequence's cells
        assert.strictEqual(memory!.kvCacheBytes % (64 * 3), 0)
      }).pipe(
        Effect.provide(
          Local.layerWithPool({ model: file, sequences: "auto", maxSequences: 3, contextSize: 64 }).pipe(Layer.provide(ModelPool.layer()))
        )
      ))
  }

  it.live("sequences \"auto\" with almost no memory to spare runs one sequence", () =>
    Effect.gen(function*() {
      const status = yield* Effect.flatMap(Effect.service(Local.LocalModel), (model) => model.status)
      assert.strictEqual(status.sequences, 1)
    }).pipe(
      Effect.provide(
        Local.layerWithPool({ model: "stories260K.gguf", sequences: "auto", memoryFraction: 1e-9, contextSize: 64 }).pipe(
          Layer.provide(ModelPool.layer())
        )
      )
    ))

  it("sequencesFor: the fraction of free memory over one sequence's cost, within [1, max]", () => {
    assert.strictEqual(ModelMemory.sequencesFor(100, 1_000, 0.5, 16), 5)
    assert.strictEqual(ModelMemory.sequencesFor(100, 100_000, 0.5, 16), 16)
    assert.strictEqual(ModelMemory.sequencesFor(1_000_000, 100, 0.5, 16), 1)
  })

  it("kvBytesPerToken follows llama.cpp's defaults and cache types", () => {
    // 6 layers, dim 288, 6 heads (the 15M shape), F16 cache: 2 × 6 × 288 × 2 bytes
    const shape = { block_count: 6, embedding_length: 288, attention: { head_count: 6 } }
    assert.strictEqual(ModelMemory.kvBytesPerToken(shape), 2 * 6 * 288 * 2)
    // grouped-query attention: 2 KV heads of 8 keep a quarter
    const gqa = { block_count: 6, embedding_length: 512, attention: { head_count: 8, head_count_kv: 2 } }
    assert.strictEqual(ModelMemory.kvBytesPerToken(gqa), 2 * 6 * 2 * 64 * 2)
    // a Q8_0 cache (34 bytes per 32 values)
    assert.strictEqual(ModelMemory.kvBytesPerToken(shape, 8, 8), (2 * 6 * 288 * 34) / 32)
  })

  it.effect("a bad sequences value is refused, naming it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.scoped(Layer.build(Local.layerWithPool({ model: "stories260K.gguf", sequences: 0 }).pipe(Layer.provide(ModelPool.layer()))))
      )
      assert.match(error.message, /sequences must be a positive integer or "auto", got 0/)
    }))
})
