import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm } from "@hasten/core"
import type { Completion } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Fiber, Layer, Stream } from "effect"
import * as LifecycleUtils from "lifecycle-utils"
import { getLlama, LlamaCompletion, type LLamaContextualRepeatPenalty, LlamaLogLevel, type LlamaModel, type Token } from "node-llama-cpp"
import * as BatchStepper from "../src/internal/batchStepper.js"
import { storyOpenings } from "./local-prompts.js"

const CONTEXT = 256

const prompts = storyOpenings

/** 16 greedy requests: stop sequences, `maxTokens`, and some that run to an end token. */
const requests = (model: string) =>
  prompts.map((prompt, i) =>
    CompletionRequest.makeUnsafe({
      model,
      messages: [],
      prompt,
      temperature: 0,
      ...(i % 4 === 3 ? {} : { maxTokens: 6 + 7 * i }),
      ...(i % 3 === 1 ? { stop: i % 2 === 0 ? ["."] : [" the", "!"] } : {})
    })
  )

/**
 * 16 penalised greedy requests: repeat, frequency and presence penalties alone and together,
 * windows from 3 to the default 64 and beyond the output, new lines in the prompt, stop sequences.
 */
const penalizedRequests = (model: string) =>
  prompts.map((prompt, i) =>
    CompletionRequest.makeUnsafe({
      model,
      messages: [],
      prompt: i % 5 === 4 ? `${prompt}.\n\n` : prompt,
      temperature: 0,
      maxTokens: 40 + 5 * i,
      ...[
        { repeatPenalty: 1.3 },
        { frequencyPenalty: 0.6 },
        { presencePenalty: 0.8 },
        { repeatPenalty: 1.1, frequencyPenalty: 0.1, presencePenalty: 0.1 },
        { repeatPenalty: 1.5, penaltyWindow: 3 },
        { repeatPenalty: 1.2, frequencyPenalty: 0.3, penaltyWindow: 16 },
        { repeatPenalty: 2, presencePenalty: 1, penaltyWindow: 256 },
        { repeatPenalty: 1.05, frequencyPenalty: 1.5 }
      ][i % 8]!,
      ...(i % 6 === 5 ? { stop: [" the", "."] } : {})
    })
  )

const textOf = (chunks: ReadonlyArray<{ readonly text: string }>) => chunks.map((chunk) => chunk.text).join("")

const localLayer = (model: string, leanGreedy: boolean, sequences = 16, batchSize?: number) =>
  Local.layerWithPool({ model, sequences, contextSize: CONTEXT, threads: 1, leanGreedy, batchSize }).pipe(
    Layer.provideMerge(ModelPool.layer())
  )

const outcome = (completion: Completion.Completion) => ({
  text: completion.text,
  finishReason: completion.finishReason,
  usage: completion.usage
})

/** Each request alone on node-llama-cpp's own generation. */
const reference = (model: string, batch: ReadonlyArray<CompletionRequest.CompletionRequest>) =>
  Effect.forEach(batch, (request) => Effect.map(Llm.complete(request), outcome)).pipe(
    Effect.provide(localLayer(model, false, 1))
  )

/** The stream's chunks, text and tokens, and its last chunk's finish reason and usage. */
const chunksOf = (request: CompletionRequest.CompletionRequest) =>
  Stream.runCollect(Llm.stream(request)).pipe(
    Effect.map((chunks) =>
      Array.from(chunks, (chunk) => ({
        text: chunk.text,
        tokens: chunk.tokens,
        finishReason: chunk.finishReason,
        usage: chunk.usage
      }))
    )
  )

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

const openContext = (model: LlamaModel, sequences: number) =>
  Effect.acquireRelease(
    Effect.promise(() => model.createContext({ contextSize: CONTEXT, sequences, threads: 1, flashAttention: false })),
    (context) => Effect.promise(() => context.dispose())
  )

describe.each(["stories260K.gguf", "TinyStories-656K-Q8_0.gguf"])("the batch stepper on %s", (file) => {
  const name = file.replace(/\.gguf$/, "")

  it.effect("16 concurrent greedy requests give what each gives alone on node-llama-cpp's generation", () =>
    Effect.gen(function*() {
      const batch = requests(name)
      const expected = yield* reference(name, batch)
      // the test exercises every ending
      const reasons = new Set(expected.map((each) => each.finishReason))
      assert.isTrue(reasons.has("length") && reasons.has("stop"))
      // an end token (no stop sequence, no maxTokens; stories260K writes on to the context's end)
      if (file.startsWith("TinyStories")) {
        assert.isTrue(
          expected.some((each, i) => batch[i]!.stop === undefined && batch[i]!.maxTokens === undefined && each.finishReason === "stop")
        )
      }
      const before = { ...BatchStepper.counters }
      const got = yield* Effect.forEach(batch, (request) => Effect.map(Llm.complete(request), outcome), {
        concurrency: "unbounded"
      }).pipe(Effect.provide(localLayer(name, true)))
      assert.deepStrictEqual(got, expected)
      // they ran in the stepper, batched: far fewer steps than tokens
      const sampled = BatchStepper.counters.sampled - before.sampled
      const steps = BatchStepper.counters.steps - before.steps
      assert.strictEqual(BatchStepper.counters.joined - before.joined, batch.length)
      assert.isAtLeast(sampled, expected.reduce((sum, each) => sum + each.usage.outputTokens, 0))
      assert.isBelow(steps, sampled / 2)
      // a batch of 8 tokens: prompts prefilled in chunks over several steps, and not every
      // generation's next token fits each step
      const small = yield* Effect.forEach(batch, (request) => Effect.map(Llm.complete(request), outcome), {
        concurrency: "unbounded"
      }).pipe(Effect.provide(localLayer(name, true, 16, 8)))
      assert.deepStrictEqual(small, expected)
      // one at a time through the stepper too
      const alone = yield* Effect.forEach(batch.slice(0, 4), (request) => Effect.map(Llm.complete(request), outcome)).pipe(
        Effect.provide(localLayer(name, true, 1))
      )
      assert.deepStrictEqual(alone, expected.slice(0, 4))
    }), 120_000)

  it.effect("streams the same chunks as node-llama-cpp's generation, concurrently", () =>
    Effect.gen(function*() {
      const batch = requests(name).slice(0, 8)
      const expected = yield* Effect.forEach(batch, chunksOf).pipe(Effect.provide(localLayer(name, false, 1)))
      const before = BatchStepper.counters.joined
      const got = yield* Effect.forEach(batch, chunksOf, { concurrency: "unbounded" }).pipe(
        Effect.provide(localLayer(name, true, 8))
      )
      assert.strictEqual(BatchStepper.counters.joined - before, batch.length)
      assert.deepStrictEqual(got, expected)
      // text deltas per step, not one chunk at the end
      assert.isAtLeast(got.filter((chunks) => chunks.length > 5).length, 4)
    }), 120_000)

  it.effect("mixed greedy and sampled traffic on one context: each output as when run alone", () =>
    Effect.gen(function*() {
      const greedy = requests(name).slice(0, 6)
      const sampled = prompts.slice(6, 10).map((prompt, i) =>
        CompletionRequest.makeUnsafe({ model: name, messages: [], prompt, temperature: 0.9, seed: 11 + i, maxTokens: 30 })
      )
      const penalized = CompletionRequest.makeUnsafe({
        model: name,
        messages: [],
        prompt: "Once upon a time",
        temperature: 0,
        repeatPenalty: 1.3,
        maxTokens: 40
      })
      const all = [...greedy, ...sampled, penalized]
      const expected = yield* reference(name, all)
      const before = BatchStepper.counters.joined
      const got = yield* Effect.forEach(all, (request) => Effect.map(Llm.complete(request), outcome), {
        concurrency: "unbounded"
      }).pipe(Effect.provide(localLayer(name, true, 6)))
      // the greedy and the penalised greedy requests ran in the stepper
      assert.strictEqual(BatchStepper.counters.joined - before, greedy.length + 1)
      assert.deepStrictEqual(got, expected)
    }), 120_000)

  it.effect(
    "16 concurrent penalised greedy requests give node-llama-cpp's penalised output (text and tokens)",
    () =>
      Effect.gen(function*() {
        const batch = penalizedRequests(name)
        const expected = yield* Effect.forEach(batch, chunksOf).pipe(Effect.provide(localLayer(name, false, 1)))
        const unpenalized = batch.map((request) =>
          CompletionRequest.makeUnsafe({
            model: request.model,
            messages: [],
            prompt: request.prompt!,
            temperature: 0,
            maxTokens: request.maxTokens!,
            ...(request.stop !== undefined ? { stop: request.stop } : {})
          })
        )
        const plainExpected = yield* Effect.forEach(unpenalized, chunksOf).pipe(Effect.provide(localLayer(name, false, 1)))
        const before = { ...BatchStepper.counters }
        const [got, plain] = yield* Effect.all([
          Effect.forEach(batch, chunksOf, { concurrency: "unbounded" }),
          // then unpenalised requests on the same samplers: no bias is left behind
          Effect.forEach(unpenalized, chunksOf, { concurrency: "unbounded" })
        ]).pipe(Effect.provide(localLayer(name, true)))
        assert.strictEqual(BatchStepper.counters.joined - before.joined, 2 * batch.length)
        assert.deepStrictEqual(got, expected)
        assert.deepStrictEqual(plain, plainExpected)
        // the penalties changed the output (the test is not of plain greedy text) …
        assert.isAtLeast(plain.filter((chunks, i) => textOf(chunks) !== textOf(expected[i]!)).length, 8)
        // … and both ways of picking a token ran: the biased greedy winner and the full penalty pass
        const penalized = BatchStepper.counters.penalized - before.penalized
        const fallbacks = BatchStepper.counters.penaltyFallbacks - before.penaltyFallbacks
        assert.isAbove(fallbacks, 0)
        assert.isBelow(fallbacks, penalized)
        // a batch of 8 tokens: prefill over several steps, not every generation each step
        const small = yield* Effect.forEach(batch, chunksOf, { concurrency: "unbounded" }).pipe(
          Effect.provide(localLayer(name, true, 16, 8))
        )
        assert.deepStrictEqual(small, expected)
      }),
    180_000
  )

  it.effect(
    "penalties that can raise a value (repeat < 1, negative frequency or presence) keep node-llama-cpp's path",
    () =>
      Effect.gen(function*() {
        const batch = [
          { repeatPenalty: 0.8 },
          { frequencyPenalty: -0.5 },
          { presencePenalty: -0.5, repeatPenalty: 1.2 }
        ].map((penalty, i) =>
          CompletionRequest.makeUnsafe({ model: name, messages: [], prompt: prompts[i]!, temperature: 0, maxTokens: 30, ...penalty })
        )
        const expected = yield* reference(name, batch)
        const before = BatchStepper.counters.joined
        const got = yield* Effect.forEach(batch, (request) => Effect.map(Llm.complete(request), outcome), {
          concurrency: "unbounded"
        }).pipe(Effect.provide(localLayer(name, true, 4)))
        assert.strictEqual(BatchStepper.counters.joined, before)
        assert.deepStrictEqual(got, expected)
      }),
    60_000
  )
})

describe("the batch stepper at a real shape", () => {
  it.effect(
    "16 concurrent greedy requests on the 15M synthetic shape (32k vocabulary) give what each gives alone",
    () =>
      Effect.gen(function*() {
        const { SyntheticModel } = yield* Effect.promise(() => import("@hasten/testkit"))
        const file = yield* Effect.promise(() => SyntheticModel.ensure({ shape: "15M" }))
        const batch = prompts.map((prompt, i) =>
          CompletionRequest.makeUnsafe({ model: "synthetic-15M", messages: [], prompt, temperature: 0, maxTokens: 8 + (i % 5) })
        )
        const layerOf = (leanGreedy: boolean, sequences: number) =>
          Local.layerWithPool({ model: file.path, sequences, contextSize: 128, threads: 1, leanGreedy }).pipe(
            Layer.provideMerge(ModelPool.layer())
          )
        const expected = yield* Effect.forEach(batch, (request) => Effect.map(Llm.complete(request), outcome)).pipe(
          Effect.provide(layerOf(false, 1))
        )
        const before = BatchStepper.counters.joined
        const got = yield* Effect.forEach(batch, (request) => Effect.map(Llm.complete(request), outcome), {
          concurrency: "unbounded"
        }).pipe(Effect.provide(layerOf(true, 16)))
        assert.strictEqual(BatchStepper.counters.joined - before, batch.length)
        // exact here; on other shapes a batched forward pass may flip a near-tie (logits within ~1e-5)
        assert.deepStrictEqual(got, expected)
        // penalised, 16 at once: node-llama-cpp's penalised output, token for token
        const penalized = batch.map((request, i) =>
          CompletionRequest.makeUnsafe({
            ...request,
            maxTokens: 24 + (i % 5),
            ...[
              { repeatPenalty: 1.1, frequencyPenalty: 0.1, presencePenalty: 0.1 },
              { repeatPenalty: 1.3 },
              { frequencyPenalty: 0.5, penaltyWindow: 8 },
              { presencePenalty: 0.5, repeatPenalty: 1.2 }
            ][i % 4]!
          })
        )
        const penalizedExpected = yield* Effect.forEach(penalized, chunksOf).pipe(Effect.provide(layerOf(false, 1)))
        const beforePenalized = { ...BatchStepper.counters }
        const penalizedGot = yield* Effect.forEach(penalized, chunksOf, { concurrency: "unbounded" }).pipe(
          Effect.provide(layerOf(true, 16))
        )
        assert.strictEqual(BatchStepper.counters.joined - beforePenalized.joined, penalized.length)
        assert.deepStrictEqual(penalizedGot, penalizedExpected)
      }),
    300_000
  )
})

describe("the batch stepper's safety", () => {
  it.effect("node-llama-cpp's generation waits for the context lock the stepper takes", () =>
    Effect.gen(function*() {
      const model = yield* loadModel("stories260K.gguf")
      const context = yield* openContext(model, 2)
      const sequence = context.getSequence()
      const lock = yield* Effect.promise(() => LifecycleUtils.acquireLock([context, "context"]))
      let done = false
      const completion = new LlamaCompletion({ contextSequence: sequence })
      const run = completion.generateCompletion("Once upon a time", { maxTokens: 4, temperature: 0 }).finally(() => {
        done = true
      })
      const isDone = () => done
      const queued = (context as unknown as { _queuedDecodes: ReadonlyArray<unknown> })._queuedDecodes
      yield* Effect.promise(async () => {
        // until node-llama-cpp has queued its prompt's decode, then long enough for its dispatcher to run
        while (queued.length === 0 && !isDone()) await new Promise((resolve) => setImmediate(resolve))
        await new Promise((resolve) => setTimeout(resolve, 200))
      })
      // its decode still waits for the lock: nothing evaluated
      assert.isFalse(done)
      assert.strictEqual(queued.length, 1)
      assert.strictEqual(sequence.nextTokenIndex, 0)
      lock.dispose()
      const text = yield* Effect.promise(() => run)
      assert.isTrue(done)
      assert.isAbove(text.length, 0)
    }), 60_000)

  it.effect("an interrupted request leaves its sequence clean and the context usable", () =>
    Effect.gen(function*() {
      const long = CompletionRequest.makeUnsafe({
        model: "stories260K",
        messages: [],
        prompt: "Once upon a time",
        temperature: 0,
        maxTokens: 200
      })
      const short = requests("stories260K").slice(0, 3)
      const expected = yield* reference("stories260K", short)
      const got = yield* Effect.gen(function*() {
        // a stream consumer that stops after three chunks interrupts the generation
        const firstChunks = yield* Stream.runCollect(Stream.take(Llm.stream(long), 3))
        assert.strictEqual(firstChunks.length, 3)
        const fiber = yield* Effect.forkChild(Llm.complete(long))
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 30)))
        yield* Fiber.interrupt(fiber)
        const local = yield* Local.LocalModel
        // both sequences came back; what runs on them next (node-llama-cpp's own path too) is right
        const status = yield* local.status
        assert.strictEqual(status.freeSequences, status.sequences)
        return yield* Effect.forEach(short, (request) => Effect.map(Llm.complete(request), outcome), {
          concurrency: "unbounded"
        })
      }).pipe(Effect.provide(localLayer("stories260K", true, 2)))
      assert.deepStrictEqual(got, expected)
    }), 60_000)

  it.effect("a sequence leaves no KV cells behind, and its history is cleared first", () =>
    Effect.gen(function*() {
      const model = yield* loadModel("stories260K.gguf")
      const context = yield* openContext(model, 2)
      const stepper = BatchStepper.make(context, LifecycleUtils)
      assert.isDefined(stepper)
      const sequence = context.getSequence()
      // leftover history the stepper must clear before it writes
      yield* Effect.promise(() => sequence.evaluateWithoutGeneratingNewTokens(model.tokenize("The dog ran")))
      const lean = yield* Effect.promise(() => stepper!.lean(sequence))
      assert.isDefined(lean)
      const leanText = yield* Effect.promise(() =>
        new LlamaCompletion({ contextSequence: lean! }).generateCompletion("Once upon a time", {
          maxTokens: 20,
          temperature: 0,
          repeatPenalty: false,
          disableContextShift: true
        })
      )
      const native = (context as unknown as { _ctx: { getSequenceKvCacheMaxPosition(id: number): number } })._ctx
      const id = (sequence as unknown as { _sequenceId: number })._sequenceId
      assert.strictEqual(native.getSequenceKvCacheMaxPosition(id), -1)
      assert.strictEqual(sequence.nextTokenIndex, 0)
      const plainText = yield* Effect.promise(() =>
        new LlamaCompletion({ contextSequence: sequence }).generateCompletion("Once upon a time", {
          maxTokens: 20,
          temperature: 0,
          repeatPenalty: false
        })
      )
      assert.strictEqual(leanText, plainText)
      stepper!.dispose()
    }), 60_000)

  it.effect(
    "LlamaCompletion's own penalty options on the stepper: new lines penalised, a token filter, a short window",
    () =>
      Effect.gen(function*() {
        const model = yield* loadModel("TinyStories-656K-Q8_0.gguf")
        const context = yield* openContext(model, 3)
        const stepper = BatchStepper.make(context, LifecycleUtils)!
        const space = model.tokenize(" ")[0]
        const variants: Array<LLamaContextualRepeatPenalty> = [
          { lastTokens: 8, penalty: 1.3, frequencyPenalty: 0.4, presencePenalty: 0.2, penalizeNewLine: true },
          {
            lastTokens: 32,
            penalty: 1.2,
            presencePenalty: 0.5,
            punishTokensFilter: (tokens: Array<Token>) => tokens.filter((token) => token !== space)
          }
        ]
        const generate = (sequence: Parameters<typeof stepper.lean>[0], repeatPenalty: LLamaContextualRepeatPenalty) => {
          const tokens: Array<Token> = []
          return new LlamaCompletion({ contextSequence: sequence }).generateCompletion("One day.\nTim saw a dog.\n", {
            maxTokens: 60,
            temperature: 0,
            repeatPenalty,
            disableContextShift: true,
            onToken: (chunk) => void tokens.push(...chunk)
          }).then((text) => ({ text, tokens }))
        }
        const plain = context.getSequence()
        const expected = []
        for (const variant of variants) {
          expected.push(yield* Effect.promise(() => generate(plain, variant)))
          yield* Effect.promise(() => plain.clearHistory())
        }
        const before = { ...BatchStepper.counters }
        const got = yield* Effect.promise(() =>
          Promise.all(variants.map(async (variant) => {
            const lean = await stepper.lean(context.getSequence())
            return generate(lean!, variant)
          }))
        )
        assert.strictEqual(BatchStepper.counters.joined - before.joined, variants.length)
        assert.isAbove(BatchStepper.counters.penaltyFallbacks - before.penaltyFallbacks, 0)
        assert.deepStrictEqual(got, expected)
        stepper.dispose()
      }),
    60_000
  )

  it.effect("falls back when an internal is missing", () =>
    Effect.gen(function*() {
      const model = yield* loadModel("stories260K.gguf")
      const context = yield* openContext(model, 1)
      const hiding = <T extends object>(target: T, member: string) =>
        new Proxy(target, { get: (object, key) => key === member ? undefined : Reflect.get(object, key, object) })
      const contextInternals = context as unknown as { _ctx: object }
      for (const member of ["initBatch", "addToBatch", "decodeBatch", "sampleToken", "removeTokenCellsFromSequence"]) {
        const patched = new Proxy(context, {
          get: (object, key) => key === "_ctx" ? hiding(contextInternals._ctx, member) : Reflect.get(object, key, object)
        })
        assert.isUndefined(BatchStepper.make(patched, LifecycleUtils), member)
      }
      const stepper = BatchStepper.make(context, LifecycleUtils)!
      const sequence = context.getSequence()
      for (const member of ["_sequenceId", "_resolveSamplerConfig"]) {
        assert.isUndefined(yield* Effect.promise(() => stepper.lean(hiding(sequence, member))), member)
      }
      assert.isDefined(yield* Effect.promise(() => stepper.lean(sequence)))
      // and Local with leanGreedy: false never joins it
      const before = BatchStepper.counters.joined
      yield* Llm.complete(requests("stories260K")[0]!).pipe(Effect.provide(localLayer("stories260K", false, 1)))
      assert.strictEqual(BatchStepper.counters.joined, before)
      stepper.dispose()
    }), 60_000)
})
