import { assert, describe, it } from "@effect/vitest"
import { Local } from "@hasten/providers/local"
import { Effect } from "effect"
import { getLlama, type LlamaContextSequence, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp"
import * as GreedyDecoder from "../src/internal/greedyDecoder.js"

const loadModel = (name: string) =>
  Effect.gen(function*() {
    const path = yield* Local.resolveModelPath(name)
    return yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
        return llama.loadModel({ modelPath: path })
      }),
      (model) => Effect.promise(() => model.dispose())
    )
  })

const openContext = (model: LlamaModel, options: { readonly sequences: number; readonly batchSize?: number }) =>
  Effect.acquireRelease(
    Effect.promise(() => model.createContext({ contextSize: 512, threads: 1, flashAttention: false, ...options })),
    (context) => Effect.promise(() => context.dispose())
  )

const decoderFor = (sequence: LlamaContextSequence) =>
  Effect.acquireRelease(
    Effect.sync(() => GreedyDecoder.make(sequence)),
    (decoder) => Effect.sync(() => decoder?.dispose())
  ).pipe(Effect.flatMap((decoder) => decoder === undefined ? Effect.die("no greedy decoder") : Effect.succeed(decoder)))

/** node-llama-cpp's public answer: `controlledEvaluate` with a greedy token at each position from `from`. */
const controlledGreedy = (sequence: LlamaContextSequence, tokens: ReadonlyArray<number>, from: number) =>
  Effect.promise(async () => {
    const results = await sequence.controlledEvaluate(
      tokens.map((
        token,
        i
      ) => (i < from ? (token as Token) : [token as Token, { generateNext: { token: true, options: { temperature: 0 } } }]))
    )
    return tokens.slice(from).map((_, i) => results[from + i]?.next.token ?? -1)
  })

const texts = [
  "Once upon a time, there was a little girl named Lily. She loved to play",
  "Tom had a big red ball. One day, he went to the park and",
  "The little bird was sad because it could not fly. Its mom said"
]

describe("GreedyDecoder (node-llama-cpp internals)", () => {
  it.effect("is available on the installed node-llama-cpp (else Local falls back to controlledEvaluate)", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* loadModel("stories260K")
      const context = yield* openContext(model, { sequences: 1 })
      assert.isDefined(GreedyDecoder.make(context.getSequence()))
    })))

  it.effect("is undefined, not a crash, where an internal it needs is missing", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* loadModel("stories260K")
      const context = yield* openContext(model, { sequences: 1 })
      const sequence = context.getSequence()
      const without = (member: string) => {
        const copy = Object.create(sequence) as object
        Object.defineProperty(copy, member, { value: undefined })
        return copy as LlamaContextSequence
      }
      for (const member of ["_decodeTokens", "_resolveSamplerConfig", "_contextShift", "model", "context"]) {
        assert.isUndefined(GreedyDecoder.make(without(member)), member)
      }
    })))

  it.effect("gives controlledEvaluate's greedy token at every position of a batch and leaves the same state", () =>
    Effect.scoped(Effect.gen(function*() {
      for (const name of ["stories260K", "TinyStories-656K-Q8_0"]) {
        const model = yield* loadModel(name)
        const context = yield* openContext(model, { sequences: 2 })
        const fast = context.getSequence()
        const reference = context.getSequence()
        const decoder = yield* decoderFor(fast)
        for (const text of texts) {
          const tokens = [model.tokens.bos!, ...model.tokenize(text)] as Array<number>
          for (const from of [0, 3, tokens.length - 1]) {
            const got = yield* Effect.promise(() => decoder.decode(tokens, from))
            const expected = yield* controlledGreedy(reference, tokens, from)
            assert.deepStrictEqual(got, expected, `${name} "${text}" from ${from}`)
            assert.deepStrictEqual(fast.contextTokens, reference.contextTokens)
            yield* Effect.promise(() => fast.eraseContextTokenRanges([{ start: 0, end: fast.nextTokenIndex }]))
            yield* Effect.promise(() => reference.eraseContextTokenRanges([{ start: 0, end: reference.nextTokenIndex }]))
          }
        }
      }
    })))

  it.effect("a chain of single steps reproduces sequence.evaluate's greedy generation", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* loadModel("TinyStories-656K-Q8_0")
      const context = yield* openContext(model, { sequences: 2 })
      const prompt = [model.tokens.bos!, ...model.tokenize(texts[0]!)] as Array<Token>
      const expected = yield* Effect.promise(async () => {
        const out: Array<number> = []
        for await (const token of context.getSequence().evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
          out.push(token)
          if (out.length === 40) break
        }
        return out
      })
      const decoder = yield* decoderFor(context.getSequence())
      const got: Array<number> = []
      let input: ReadonlyArray<number> = prompt
      while (got.length < 40) {
        const [next] = yield* Effect.promise(() => decoder.decode(input, input.length - 1))
        got.push(next!)
        input = [next!]
      }
      assert.deepStrictEqual(got, expected)
    })))

  it.effect("samples every position before the context decodes anything else (a long prompt split into small batches alongside)", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* loadModel("stories260K")
      // batches of 8 tokens: the other sequence's prompt takes many, and shares each with ours
      const context = yield* openContext(model, { sequences: 2, batchSize: 8 })
      const ours = context.getSequence()
      const other = context.getSequence()
      const decoder = yield* decoderFor(ours)
      const tokens = [model.tokens.bos!, ...model.tokenize(texts[1]!)] as Array<number>
      const expected = yield* Effect.promise(() => decoder.decode(tokens, 0))
      const long = Array.from({ length: 12 }, () => model.tokenize(texts[2]!)).flat()
      for (let round = 0; round < 60; round++) {
        yield* Effect.promise(() => ours.eraseContextTokenRanges([{ start: 0, end: ours.nextTokenIndex }]))
        yield* Effect.promise(() => other.eraseContextTokenRanges([{ start: 0, end: other.nextTokenIndex }]))
        const [got] = yield* Effect.promise(() =>
          Promise.all([decoder.decode(tokens, 0), other.evaluateWithoutGeneratingNewTokens(long.slice(0, 200 + round) as Array<Token>)])
        )
        assert.deepStrictEqual(got, expected, `round ${round}`)
      }
    })))

  it.effect("an input longer than a batch: positions sampled across several batches come back in order", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* loadModel("stories260K")
      const context = yield* openContext(model, { sequences: 2, batchSize: 8 })
      const fast = context.getSequence()
      const reference = context.getSequence()
      const decoder = yield* decoderFor(fast)
      const tokens = [model.tokens.bos!, ...model.tokenize(texts.join(" "))] as Array<number>
      assert.isAbove(tokens.length, 40)
      const from = tokens.length - 13 // 13 positions: at least two batches of 8
      const got = yield* Effect.promise(() => decoder.decode(tokens, from))
      const expected = yield* controlledGreedy(reference, tokens, from)
      assert.deepStrictEqual(got, expected)
      assert.deepStrictEqual(fast.contextTokens, reference.contextTokens)
    })))

  it.effect("a disposed decoder rejects instead of touching freed samplers", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* loadModel("stories260K")
      const context = yield* openContext(model, { sequences: 1 })
      const decoder = GreedyDecoder.make(context.getSequence())!
      decoder.dispose()
      const error = yield* Effect.flip(Effect.tryPromise(() => decoder.decode([model.tokens.bos!], 0)))
      assert.include(String(error.cause), "disposed")
    })))
})
