import { assert, layer } from "@effect/vitest"
import { Completion, CompletionRequest, Embedder, Llm, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { GeneralChatWrapper } from "node-llama-cpp"

const story = ", there was a little girl named Lily."

const greedy = (maxTokens: number, extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
  CompletionRequest.makeUnsafe({ model: "stories260K", messages: [], prompt: "Once upon a time", temperature: 0, maxTokens, ...extra })

const CONTEXT = 256
const Stories = Local.layerWithPool({ model: "stories260K.gguf", sequences: 2, contextSize: CONTEXT }).pipe(
  Layer.provideMerge(ModelPool.layer())
)

/** appendGreedy against append's argmax and against greedy text (run with and without `fastGreedy`). */
const appendGreedyMatchesAppend = () =>
  Effect.scoped(Effect.gen(function*() {
    const model = yield* TokenModel.TokenModel
    const prompt = yield* model.tokenize("Once upon a time, there was a little girl", { addBos: true })
    // its own scope: the layer has 2 sequences, and Llm.complete below needs one
    const distributions = yield* Effect.scoped(Effect.flatMap(model.sequence(), (sequence) => sequence.append(prompt)))
    const sequence = (yield* model.sequence()) as TokenModel.TokenSequence & {
      readonly appendGreedy: (tokens: ReadonlyArray<number>, from?: number) => Effect.Effect<ReadonlyArray<number>, unknown>
    }
    const from = 3
    const nexts = yield* sequence.appendGreedy(prompt, from)
    assert.deepStrictEqual(nexts, distributions.slice(from).map((distribution) => TokenModel.argmax(distribution)))
    assert.deepStrictEqual(sequence.tokens(), prompt)
    // a chain of single greedy steps reproduces greedy text
    yield* sequence.truncate(0)
    const start = yield* model.tokenize("Once upon a time", { addBos: true })
    const generated: Array<number> = [...(yield* sequence.appendGreedy(start, start.length - 1))]
    for (let i = 0; i < 11; i++) generated.push((yield* sequence.appendGreedy([generated.at(-1)!]))[0]!)
    const reference = yield* Llm.complete(greedy(12))
    assert.strictEqual(yield* model.detokenize(generated), reference.text)
    const bad = yield* Effect.flip(sequence.appendGreedy([5, 6], 2))
    assert.strictEqual((bad as { reason: { _tag: string } }).reason._tag, "InvalidRequest")
    // node-llama-cpp keeps one position free (a pass that would fill the context shifts it,
    // erasing its beginning): a full context is refused and the sequence is left as it was
    yield* sequence.truncate(0)
    const filler = Array.from({ length: CONTEXT }, (_, i) => 1 + (i % 100))
    const full = yield* Effect.flip(sequence.appendGreedy(filler, CONTEXT - 1))
    assert.strictEqual((full as { reason: { _tag: string } }).reason._tag, "ContextLengthExceeded")
    assert.strictEqual(sequence.tokens().length, 0)
    const nearlyFull = yield* sequence.appendGreedy(filler.slice(0, CONTEXT - 1), CONTEXT - 2)
    assert.strictEqual(nearlyFull.length, 1)
    assert.strictEqual(sequence.tokens().length, CONTEXT - 1)
  }))

/** generateGreedy against single greedy steps, stops and the context bound (run with and without `fastGreedy`). */
const generateGreedyMatchesSteps = () =>
  Effect.scoped(Effect.gen(function*() {
    const model = yield* TokenModel.TokenModel
    const sequence = (yield* model.sequence()) as TokenModel.TokenSequence & {
      readonly appendGreedy: (tokens: ReadonlyArray<number>, from?: number) => Effect.Effect<ReadonlyArray<number>, unknown>
      readonly generateGreedy: (
        tokens: ReadonlyArray<number>,
        count: number,
        stopAt?: ReadonlySet<number>
      ) => Effect.Effect<ReadonlyArray<number>, { readonly reason: { readonly _tag: string } }>
    }
    const start = yield* model.tokenize("Once upon a time", { addBos: true })
    // the reference: one greedy step at a time
    const stepped: Array<number> = [...(yield* sequence.appendGreedy(start, start.length - 1))]
    for (let i = 0; i < 19; i++) stepped.push((yield* sequence.appendGreedy([stepped.at(-1)!]))[0]!)
    yield* sequence.truncate(0)
    // a run of 12, then a run of 8 continuing from its last (not yet evaluated) token
    const first = yield* sequence.generateGreedy(start, 12)
    assert.deepStrictEqual(first, stepped.slice(0, 12))
    assert.deepStrictEqual(sequence.tokens(), [...start, ...first.slice(0, -1)])
    const second = yield* sequence.generateGreedy([first.at(-1)!], 8)
    assert.deepStrictEqual([...first, ...second], stepped)
    assert.deepStrictEqual(sequence.tokens(), [...start, ...stepped.slice(0, -1)])
    // stopAt ends the run after that token
    yield* sequence.truncate(start.length)
    const stopped = yield* sequence.generateGreedy([first[0]!], 30, new Set([stepped[5]!]))
    assert.deepStrictEqual(stopped, stepped.slice(1, 1 + stepped.slice(1).indexOf(stepped[5]!) + 1))
    // a run never fills the context (node-llama-cpp keeps one position free, else it shifts
    // the context): it ends at contextSize - 1 evaluated tokens, all of them recorded
    yield* sequence.truncate(0)
    const long = yield* sequence.generateGreedy(start, 1000)
    assert.strictEqual(start.length + long.length - 1, CONTEXT - 1)
    assert.strictEqual(sequence.tokens().length, CONTEXT - 1)
    assert.deepStrictEqual(long.slice(0, 20), stepped)
    yield* sequence.truncate(0)
    const bad = yield* Effect.flip(sequence.generateGreedy(start, 0))
    assert.strictEqual(bad.reason._tag, "InvalidRequest")
    const empty = yield* Effect.flip(sequence.generateGreedy([], 3))
    assert.strictEqual(empty.reason._tag, "InvalidRequest")
  }))

/**
 * Interrupting a greedy run stops it after its current step, and the interruption returns once
 * that step is done: the sequence and its recorded tokens stay consistent (run with and without
 * `fastGreedy`; before, the run went on natively behind the next operations' back).
 */
const interruptedRunLeavesSequenceConsistent = () =>
  Effect.scoped(Effect.gen(function*() {
    const model = yield* TokenModel.TokenModel
    const sequence = (yield* model.sequence()) as TokenModel.TokenSequence & {
      readonly generateGreedy: (tokens: ReadonlyArray<number>, count: number) => Effect.Effect<ReadonlyArray<number>, unknown>
    }
    const start = yield* model.tokenize("Once upon a time", { addBos: true })
    const reference = yield* sequence.generateGreedy(start, 30)
    for (let round = 0; round < 5; round++) {
      yield* sequence.truncate(0)
      const run = yield* Effect.forkChild(sequence.generateGreedy(start, 400))
      // real time, not TestClock: the run decodes natively meanwhile
      for (let i = 0; i < 3 + round; i++) yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))
      yield* Fiber.interrupt(run)
      const left = sequence.tokens().length
      assert.isBelow(left, CONTEXT - 40, "the interrupted run stopped early")
      // nothing goes on behind the recorded tokens' back
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
      assert.strictEqual(sequence.tokens().length, left)
      yield* sequence.truncate(start.length)
      const again = yield* sequence.generateGreedy([reference[0]!], 29)
      assert.deepStrictEqual([reference[0], ...again], reference, `round ${round}`)
      assert.deepStrictEqual(sequence.tokens(), [...start, ...reference.slice(0, 29)])
    }
  }))

layer(Stories, { timeout: "60 seconds" })("Local (stories260K, 2 sequences)", (it) => {
  it.effect("greedy completion from a raw prompt is the reference story", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(greedy(12))
      assert.isTrue(completion.text.startsWith(story), completion.text)
      assert.strictEqual(completion.provider, "local")
      assert.strictEqual(completion.finishReason, "length")
      // BOS + 4 prompt tokens; 12 generated
      assert.deepStrictEqual(completion.usage, { inputTokens: 5, outputTokens: 12 })
      assert.isAtLeast(completion.timing.end, completion.timing.start)
    }))

  it.effect("messages without a chat template are sent as plain text", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(
        CompletionRequest.user("stories260K", "Once upon a time", { temperature: 0, maxTokens: 12 })
      )
      assert.isTrue(completion.text.startsWith(story), completion.text)
    }))

  it.effect("stops at a stop sequence, without it in the text", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(greedy(40, { stop: ["Lily"] }))
      assert.strictEqual(completion.text, ", there was a little girl named")
      assert.strictEqual(completion.finishReason, "stop")
    }))

  it.effect("streams the same text in chunks with exact token counts and usage last", () =>
    Effect.gen(function*() {
      const chunks = Array.from(yield* Stream.runCollect(Llm.stream(greedy(20))))
      const complete = yield* Llm.complete(greedy(20))
      assert.isAbove(chunks.length, 2)
      assert.strictEqual(chunks.map((chunk) => chunk.text).join(""), complete.text)
      assert.strictEqual(chunks.reduce((sum, chunk) => sum + (chunk.tokens ?? 0), 0), 20)
      const last = chunks.at(-1)!
      assert.deepStrictEqual(last.usage, { inputTokens: 5, outputTokens: 20 })
      assert.strictEqual(last.finishReason, "length")
    }))

  it.effect("JSON-schema response format yields parseable JSON matching the schema", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(greedy(80, {
        responseFormat: {
          type: "json",
          schema: {
            type: "object",
            properties: { name: { type: "string" }, happy: { type: "boolean" } },
            required: ["name", "happy"]
          }
        }
      }))
      const parsed = JSON.parse(completion.text) as { name: unknown; happy: unknown }
      assert.strictEqual(typeof parsed.name, "string")
      assert.strictEqual(typeof parsed.happy, "boolean")
    }))

  it.effect("repeat penalties change greedy output through the native sampler", () =>
    Effect.gen(function*() {
      const plain = yield* Llm.complete(greedy(60))
      const penalized = yield* Llm.complete(greedy(60, { repeatPenalty: 1.5, presencePenalty: 0.5, penaltyWindow: 64 }))
      assert.notStrictEqual(penalized.text, plain.text)
      assert.strictEqual(penalized.usage.outputTokens, 60)
    }))

  it.effect("sampling with a seed is reproducible", () =>
    Effect.gen(function*() {
      const first = yield* Llm.complete(greedy(30, { temperature: 1, seed: 7, topK: 40, topP: 0.95 }))
      const second = yield* Llm.complete(greedy(30, { temperature: 1, seed: 7, topK: 40, topP: 0.95 }))
      assert.strictEqual(first.text, second.text)
    }))

  it.effect("an oversized prompt fails with ContextLengthExceeded", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Llm.complete(greedy(10, { prompt: "Once upon a time ".repeat(200) })))
      assert.strictEqual(error.reason._tag, "ContextLengthExceeded")
      assert.match(error.message, /context size of 256/)
    }))

  it.effect("concurrent requests share one loaded model across sequences", () =>
    Effect.gen(function*() {
      const results = yield* Effect.all(Array.from({ length: 5 }, () => Llm.complete(greedy(12))), { concurrency: "unbounded" })
      for (const result of results) assert.isTrue(result.text.startsWith(story))
      const stats = yield* ModelPool.stats
      assert.strictEqual(stats.modelLoads, 1)
      assert.strictEqual(stats.contextLoads, 1)
      const status = yield* Effect.flatMap(Effect.service(Local.LocalModel), (model) => model.status)
      assert.strictEqual(status.freeSequences, 2)
    }))

  it.effect("when every sequence is busy a request queues until one is freed", () =>
    Effect.gen(function*() {
      const tokenModel = yield* TokenModel.TokenModel
      const local = yield* Local.LocalModel
      const hold = yield* Scope.make()
      yield* Scope.provide(hold)(Effect.all([tokenModel.sequence(), tokenModel.sequence()]))
      assert.strictEqual((yield* local.status).freeSequences, 0)
      const waiting = yield* Effect.forkChild(Llm.complete(greedy(12)))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.isUndefined(waiting.pollUnsafe())
      yield* TestClock.adjust("5 seconds")
      yield* Scope.close(hold, Exit.void)
      const completion = yield* Fiber.join(waiting)
      assert.isTrue(completion.text.startsWith(story))
      assert.strictEqual(completion.facts?.queueWaitMillis, 5000)
      assert.strictEqual((yield* local.status).freeSequences, 2)
    }))

  it.effect("interrupting a stream mid-generation frees its sequence for the next request", () =>
    Effect.gen(function*() {
      const local = yield* Local.LocalModel
      const before = (yield* local.status).generatedTokens
      const firstChunks = yield* Stream.runCollect(Stream.take(Llm.stream(greedy(200)), 3))
      assert.strictEqual(Array.from(firstChunks).length, 3)
      const status = yield* local.status
      assert.strictEqual(status.freeSequences, 2)
      // generation was aborted, not run to maxTokens in the background
      assert.isBelow(status.generatedTokens - before, 100)
      const interrupted = yield* Effect.forkChild(Llm.complete(greedy(200)))
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      yield* Fiber.interrupt(interrupted)
      assert.strictEqual((yield* local.status).freeSequences, 2)
      const next = yield* Llm.complete(greedy(12))
      assert.isTrue(next.text.startsWith(story), next.text)
    }))

  it.effect("embeds texts into model-sized vectors, same text same vector", () =>
    Effect.gen(function*() {
      const result = yield* Embedder.embed(["a little girl", "a big red ball", "a little girl"])
      assert.strictEqual(result.vectors.length, 3)
      assert.strictEqual(result.vectors[0]!.length, 64)
      assert.deepStrictEqual(result.vectors[0], result.vectors[2])
      assert.notDeepEqual(result.vectors[0], result.vectors[1])
      assert.isAbove(result.usage.inputTokens, 6)
      const tooLong = yield* Effect.flip(Embedder.embed(["a little girl ".repeat(200)]))
      assert.strictEqual(tooLong.reason._tag, "ContextLengthExceeded")
    }))

  it.effect("TokenModel: one append gives the step-by-step distributions at every position", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* TokenModel.TokenModel
      assert.strictEqual(model.vocabularySize, 512)
      assert.strictEqual(model.bos, 1)
      assert.include(model.endTokens, 2)
      const prompt = yield* model.tokenize("Once upon a time, there was a little girl", { addBos: true })
      const batched = yield* Effect.flatMap(model.sequence(), (sequence) => sequence.append(prompt))
      const stepwise = yield* model.sequence()
      assert.strictEqual(batched.length, prompt.length)
      for (let i = 0; i < prompt.length; i++) {
        const [distribution] = yield* stepwise.append([prompt[i]!])
        assert.strictEqual(distribution!.length, 512)
        let sum = 0
        let maxDiff = 0
        for (let token = 0; token < 512; token++) {
          sum += distribution![token]!
          maxDiff = Math.max(maxDiff, Math.abs(distribution![token]! - batched[i]![token]!))
        }
        assert.closeTo(sum, 1, 1e-4)
        assert.isBelow(maxDiff, 1e-5, `position ${i}`)
      }
      assert.deepStrictEqual(stepwise.tokens(), prompt)
    })))

  it.effect("TokenModel: the argmax chain reproduces greedy text; truncate rolls back exactly", () =>
    Effect.scoped(Effect.gen(function*() {
      const model = yield* TokenModel.TokenModel
      const sequence = yield* model.sequence()
      const prompt = yield* model.tokenize("Once upon a time", { addBos: true })
      let distributions = yield* sequence.append(prompt)
      const generated: Array<number> = []
      for (let i = 0; i < 12; i++) {
        const next = TokenModel.argmax(distributions.at(-1)!)
        generated.push(next)
        distributions = yield* sequence.append([next])
      }
      const text = yield* model.detokenize(generated)
      const reference = yield* Llm.complete(greedy(12))
      assert.strictEqual(text, reference.text)

      const before = yield* sequence.append([generated[0]!, generated[1]!, generated[2]!])
      yield* sequence.truncate(prompt.length + 12)
      assert.strictEqual(sequence.tokens().length, prompt.length + 12)
      const after = yield* sequence.append([generated[0]!, generated[1]!, generated[2]!])
      for (let i = 0; i < 3; i++) {
        for (let token = 0; token < 512; token++) {
          assert.closeTo(after[i]![token]!, before[i]![token]!, 1e-5)
        }
      }
      // evaluate() from core: prefix + candidates in one pass
      const verify = yield* TokenModel.evaluate(model, prompt, generated.slice(0, 4))
      assert.strictEqual(verify.length, 5)
      for (let i = 0; i < 4; i++) assert.strictEqual(TokenModel.argmax(verify[i]!), generated[i])
      const bad = yield* Effect.flip(sequence.append([100000]))
      assert.strictEqual(bad.reason._tag, "InvalidRequest")
    })))

  it.effect("TokenModel: appendGreedy gives append's argmax at every position from `from`, in one pass", appendGreedyMatchesAppend)

  it.effect("TokenModel: generateGreedy decodes a run natively, equal to single greedy steps", generateGreedyMatchesSteps)

  it.effect("TokenModel: an interrupted greedy run leaves the sequence consistent", interruptedRunLeavesSequenceConsistent)

  it.effect("Completion.fromStream over the local stream matches complete()", () =>
    Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const folded = yield* Completion.fromStream(llm.stream(greedy(15)), { model: "stories260K", provider: "local" })
      const direct = yield* llm.complete(greedy(15))
      assert.strictEqual(folded.text, direct.text)
      assert.deepStrictEqual(folded.usage, direct.usage)
    }))
})

// `leanGreedy: false`: greedy runs on the sequence's own decoder loop instead of the context's batching engine
const StoriesNoEngine = Local.layerWithPool({ model: "stories260K.gguf", sequences: 2, contextSize: CONTEXT, leanGreedy: false }).pipe(
  Layer.provideMerge(ModelPool.layer())
)

layer(StoriesNoEngine, { timeout: "60 seconds" })("Local (stories260K, leanGreedy: false)", (it) => {
  it.effect("TokenModel: generateGreedy decodes a run natively, equal to single greedy steps", generateGreedyMatchesSteps)
  it.effect("TokenModel: an interrupted greedy run leaves the sequence consistent", interruptedRunLeavesSequenceConsistent)
})

// `fastGreedy: false`: the same greedy contracts on node-llama-cpp's public API alone
const StoriesPublic = Local.layerWithPool({ model: "stories260K.gguf", sequences: 2, contextSize: CONTEXT, fastGreedy: false }).pipe(
  Layer.provideMerge(ModelPool.layer())
)

layer(StoriesPublic, { timeout: "60 seconds" })("Local (stories260K, fastGreedy: false)", (it) => {
  it.effect("TokenModel: appendGreedy gives append's argmax at every position from `from`, in one pass", appendGreedyMatchesAppend)
  it.effect("TokenModel: generateGreedy decodes a run natively, equal to single greedy steps", generateGreedyMatchesSteps)
  it.effect("TokenModel: an interrupted greedy run leaves the sequence consistent", interruptedRunLeavesSequenceConsistent)
})

layer(Local.layer({ model: "TinyStories-656K-Q8_0", contextSize: 256 }), { timeout: "60 seconds" })("Local (TinyStories-656K)", (it) => {
  it.effect("loads the Q8_0 model and continues the story greedily", () =>
    Effect.gen(function*() {
      const completion = yield* Llm.complete(
        CompletionRequest.makeUnsafe({ model: "tiny", messages: [], prompt: "Once upon a time", temperature: 0, maxTokens: 10 })
      )
      assert.isTrue(completion.text.startsWith(", a little girl named Lily"), completion.text)
      const tokens = yield* TokenModel.TokenModel
      assert.strictEqual(tokens.vocabularySize, 2048)
    }))
})

layer(
  Local.layer({ model: "stories260K.gguf", contextSize: 256, chatTemplate: new GeneralChatWrapper() }),
  { timeout: "60 seconds" }
)("Local (stories260K with an explicit chat wrapper)", (it) => {
  it.effect("messages go through the chat wrapper: rendered turns, its stop triggers, exact prompt count", () =>
    Effect.gen(function*() {
      const local = yield* Local.LocalModel
      const chat = CompletionRequest.makeUnsafe({
        model: "stories260K",
        messages: [{ role: "system", content: "Tell a story." }, { role: "user", content: "Once upon a time" }],
        temperature: 0,
        maxTokens: 24
      })
      const counted = yield* local.countPromptTokens(chat)
      const plain = yield* local.countPromptTokens(
        CompletionRequest.makeUnsafe({ model: "stories260K", messages: [], prompt: "Tell a story.\nOnce upon a time" })
      )
      // the wrapper adds its role headers around the two messages
      assert.isAbove(counted, plain + 4)
      const completion = yield* Llm.complete(chat)
      assert.strictEqual(completion.usage.inputTokens, counted)
      assert.isAtMost(completion.usage.outputTokens, 24)
      assert.notInclude(completion.text, "### Human")
      // a raw prompt bypasses the template
      const raw = yield* Llm.complete(greedy(12))
      assert.isTrue(raw.text.startsWith(story))
    }))
})
