import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Context, Effect, Layer } from "effect"
import * as LifecycleUtils from "lifecycle-utils"
import { getLlama, LlamaLogLevel } from "node-llama-cpp"
import * as BatchStepper from "../src/internal/batchStepper.js"
import { recordBatches } from "./local-batch-recorder.js"
import { storyOpenings } from "./local-prompts.js"

const CONTEXT = 256

const prompts = storyOpenings.slice(0, 8)

/** A TokenModel sequence with the greedy fast paths `Local` gives it. */
type GreedySequence = TokenModel.TokenSequence & {
  readonly appendGreedy: (tokens: ReadonlyArray<number>, from?: number) => Effect.Effect<ReadonlyArray<number>, unknown>
  readonly generateGreedy: (
    tokens: ReadonlyArray<number>,
    count: number,
    stopAt?: ReadonlySet<number>
  ) => Effect.Effect<ReadonlyArray<number>, unknown>
}

const localLayer = (model: string, sequences: number, leanGreedy = true) =>
  Local.layerWithPool({ model, sequences, contextSize: CONTEXT, threads: 1, leanGreedy }).pipe(
    Layer.provideMerge(ModelPool.layer())
  )

/** Each prompt's greedy continuation, one greedy step at a time on node-llama-cpp's dispatcher (`appendGreedy`). */
const stepped = (model: string, tokens: number) =>
  Effect.scoped(Effect.gen(function*() {
    const tokenModel = yield* TokenModel.TokenModel
    const sequence = (yield* tokenModel.sequence()) as GreedySequence
    const out: Array<Array<number>> = []
    for (const prompt of prompts) {
      yield* sequence.truncate(0)
      const start = yield* tokenModel.tokenize(prompt, { addBos: true })
      const generated = [...(yield* sequence.appendGreedy(start, start.length - 1))]
      while (generated.length < tokens) generated.push((yield* sequence.appendGreedy([generated.at(-1)!]))[0]!)
      out.push(generated)
    }
    return out
  })).pipe(Effect.provide(localLayer(model, 1, false)))

describe.each(["stories260K.gguf", "TinyStories-656K-Q8_0.gguf"])("TokenModel's greedy runs on the batching engine (%s)", (file) => {
  it.effect(
    "8 sequences' concurrent generateGreedy runs step together in Local's engine and equal greedy steps one at a time",
    () =>
      Effect.gen(function*() {
        const expected = yield* stepped(file, 40)
        const got = yield* Effect.scoped(Effect.gen(function*() {
          const tokenModel = yield* TokenModel.TokenModel
          const before = { ...BatchStepper.counters }
          const results = yield* Effect.forEach(prompts, (prompt, i) =>
            Effect.gen(function*() {
              const sequence = (yield* tokenModel.sequence()) as GreedySequence
              const start = yield* tokenModel.tokenize(prompt, { addBos: true })
              // runs of different lengths, each continuing from the last (not yet evaluated) token
              const first = yield* sequence.generateGreedy(start, 5 + i)
              assert.deepStrictEqual(sequence.tokens(), [...start, ...first.slice(0, -1)])
              const second = yield* sequence.generateGreedy([first.at(-1)!], 20 - i)
              // node-llama-cpp's view of the sequence followed the engine: its own decode continues from there
              const third = yield* sequence.appendGreedy([second.at(-1)!])
              const fourth = yield* sequence.generateGreedy(third, 40 - 5 - 20 - 1)
              const all = [...first, ...second, ...third, ...fourth]
              assert.deepStrictEqual(sequence.tokens(), [...start, ...all.slice(0, -1)])
              // a rollback (node-llama-cpp's erase over cells the engine wrote), then the same run again
              yield* sequence.truncate(start.length + 3)
              const again = yield* sequence.generateGreedy([all[3]!], 40 - 4)
              assert.deepStrictEqual([...all.slice(0, 4), ...again], all)
              return all
            }), { concurrency: "unbounded" })
          // every run went through the engine: 4 runs per sequence, their tokens counted there
          assert.strictEqual(BatchStepper.counters.stretches - before.stretches, 4 * prompts.length)
          assert.strictEqual(BatchStepper.counters.stretchTokens - before.stretchTokens, (40 - 1 + 40 - 4) * prompts.length)
          // and together: far fewer steps than tokens (one decode per step for every sequence in it)
          assert.isBelow(BatchStepper.counters.steps - before.steps, (BatchStepper.counters.stretchTokens - before.stretchTokens) / 2)
          return results
        }))
        // what each gives alone, one step at a time on node-llama-cpp's dispatcher
        assert.deepStrictEqual(got, expected)
      }).pipe(Effect.provide(localLayer(file, prompts.length))),
    120_000
  )

  it.effect(
    "greedy runs and greedy Llm requests on one context share the engine's steps and give their own outputs",
    () =>
      Effect.gen(function*() {
        const requestOf = (prompt: string) =>
          CompletionRequest.makeUnsafe({ model: "m", messages: [], prompt, temperature: 0, maxTokens: 24 })
        const alone = yield* Effect.forEach(prompts.slice(4), (prompt) => Llm.complete(requestOf(prompt))).pipe(
          Effect.provide(localLayer(file, 1, false))
        )
        const expected = yield* stepped(file, 24)
        const before = { ...BatchStepper.counters }
        const [runs, completions] = yield* Effect.all([
          Effect.forEach(prompts.slice(0, 4), (prompt) =>
            Effect.scoped(Effect.gen(function*() {
              const tokenModel = yield* TokenModel.TokenModel
              const sequence = (yield* tokenModel.sequence()) as GreedySequence
              return yield* sequence.generateGreedy(yield* tokenModel.tokenize(prompt, { addBos: true }), 24)
            })), { concurrency: "unbounded" }),
          Effect.forEach(prompts.slice(4), (prompt) => Llm.complete(requestOf(prompt)), { concurrency: "unbounded" })
        ], { concurrency: "unbounded" }).pipe(Effect.provide(localLayer(file, 8)))
        // 4 runs and 4 requests joined the one engine; each needs 24 steps of its own, so two
        // separate batches would take at least 48 steps, one shared batch fewer
        assert.strictEqual(BatchStepper.counters.stretches - before.stretches, 4)
        assert.strictEqual(BatchStepper.counters.joined - before.joined, 8)
        assert.isBelow(BatchStepper.counters.steps - before.steps, 48)
        assert.deepStrictEqual(runs, expected.slice(0, 4))
        assert.deepStrictEqual(completions.map((each) => each.text), alone.map((each) => each.text))
      }),
    120_000
  )
})

describe("one batching engine per context", () => {
  it.effect(
    "two Local layers on one pooled context share its engine: one's greedy requests and the other's greedy runs step together",
    () =>
      Effect.gen(function*() {
        const pool = yield* ModelPool.make({ idleTimeToLive: "1 minute" })
        const options = { model: "stories260K.gguf", sequences: 8, contextSize: CONTEXT, threads: 1 }
        const first = yield* Layer.build(Local.layerWithPool(options).pipe(Layer.provide(Layer.succeed(ModelPool.ModelPool, pool))))
        const second = yield* Layer.build(Local.layerWithPool(options).pipe(Layer.provide(Layer.succeed(ModelPool.ModelPool, pool))))
        assert.strictEqual((yield* pool.stats).contextLoads, 1)
        const llm = Context.get(first, Llm.Llm)
        const tokenModel = Context.get(second, TokenModel.TokenModel)
        const before = { ...BatchStepper.counters }
        yield* Effect.all([
          Effect.forEach(prompts.slice(0, 4), (prompt) =>
            Effect.scoped(Effect.gen(function*() {
              const sequence = (yield* tokenModel.sequence()) as GreedySequence
              return yield* sequence.generateGreedy(yield* tokenModel.tokenize(prompt, { addBos: true }), 24)
            })), { concurrency: "unbounded" }),
          Effect.forEach(
            prompts.slice(4),
            (prompt) => llm.complete(CompletionRequest.makeUnsafe({ model: "m", messages: [], prompt, temperature: 0, maxTokens: 24 })),
            { concurrency: "unbounded" }
          )
        ], { concurrency: "unbounded" })
        assert.strictEqual(BatchStepper.counters.stretches - before.stretches, 4)
        assert.strictEqual(BatchStepper.counters.joined - before.joined, 8)
        // two engines would take at least 24 steps each
        assert.isBelow(BatchStepper.counters.steps - before.steps, 48)
      }).pipe(Effect.scoped),
    120_000
  )
})

describe("the batching engine's batch order", () => {
  it.effect("each step adds its sequences in id order (llama.cpp micro-batches consecutive ids), whatever order they joined in", () =>
    Effect.gen(function*() {
      const path = yield* Local.resolveModelPath("stories260K.gguf")
      const model = yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
          return llama.loadModel({ modelPath: path })
        }),
        (loaded) => Effect.promise(() => loaded.dispose())
      )
      const context = yield* Effect.acquireRelease(
        Effect.promise(() => model.createContext({ contextSize: CONTEXT, sequences: 4, threads: 1, flashAttention: false })),
        (created) => Effect.promise(() => created.dispose())
      )
      const sequences = Array.from({ length: 4 }, () => context.getSequence())
      // record the sequence ids of every batch the stepper builds (a stand-in over the native context)
      const { batches, restore } = recordBatches(context)
      const stepper = BatchStepper.make(context, LifecycleUtils)!
      const prompt = model.tokenize("Once upon a time")
      // the sequences join in descending id order
      const runs = yield* Effect.promise(() =>
        Promise.all(
          sequences.toReversed().map((sequence) => stepper.stretch(sequence, [model.tokens.bos!, ...prompt], 8, undefined, undefined))
        )
      )
      stepper.dispose()
      restore()
      for (const run of runs) assert.deepStrictEqual(run, runs[0])
      assert.isAtLeast(batches.length, 8)
      for (const batch of batches) assert.deepStrictEqual(batch, batch.toSorted((a, b) => a - b))
      assert.isTrue(batches.some((batch) => batch.length === 4), "the four sequences stepped together")
    }))
})
