import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type Options, run } from "../src/EvalAdapters.js"
import { grade, responder } from "../src/Judge.js"

const dataset = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "data", "stories.jsonl")
const options = (dir: string, overrides: Partial<Options> = {}): Options => ({
  dataset,
  candidates: ["local:stories260K.gguf", "local:TinyStories-656K-Q8_0.gguf"],
  judge: undefined,
  questions: 3,
  seed: 42,
  maxTokens: 24,
  concurrency: 4,
  judgeConcurrency: 8,
  threads: 1,
  contextSize: 512,
  prompt: "continue",
  baseline: true,
  out: Path.join(dir, "out"),
  latency: { ttftMs: 150, perTokenMs: 5 },
  log: () => {},
  ...overrides
})
const tempDir = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-eval-adapters-test-"))
const messageOf = (error: unknown) => String((error as { message?: string }).message ?? error)

describe("examples/eval-adapters (quick: 2 models × 3 questions, simulator judge)", () => {
  it.live("before, cold and warm: one load per model, warm run without upstream calls, identical scores", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const result = yield* run(options(tempDir(), { log: (line) => lines.push(line) }))
      // (a) the seeds' evaluator: a model load, a generation and a judge call per (model, question)
      assert.strictEqual(result.before?.modelLoads, 6)
      assert.strictEqual(result.before?.candidateCalls, 6)
      assert.strictEqual(result.before?.judgeCalls, 6)
      // (b) cold: each model loaded once, every call upstream
      assert.strictEqual(result.cold.modelLoads, 2)
      assert.strictEqual(result.cold.candidateUpstream, 6)
      assert.strictEqual(result.cold.judgeUpstream, 6)
      // (c) warm: nothing loaded, nothing upstream, the same report
      assert.strictEqual(result.warm.modelLoads, 0)
      assert.strictEqual(result.warm.candidateUpstream + result.warm.judgeUpstream, 0)
      assert.strictEqual(result.warm.result.timing.cachedCalls, 6)
      assert.isTrue(result.identicalScores)
      const results = result.cold.result.report.results
      assert.deepStrictEqual(results.map((r) => r.candidate), ["local:stories260K.gguf", "local:TinyStories-656K-Q8_0.gguf"])
      for (const r of results) {
        assert.strictEqual(r.summary.total, 3)
        assert.strictEqual(r.summary.errors, 0)
        // the verdicts are the simulator judge's: the grade of each answer against its reference
        for (const item of r.items) assert.strictEqual(item.details?.reason, grade(referenceOf(item.itemId), item.output!).reason)
      }
      assert.isTrue(Fs.existsSync(result.files.json))
      assert.isTrue(lines.some((line) => line.startsWith("| (c) Hasten warm re-run")))
      assert.isTrue(lines.some((line) => line.startsWith("| local:TinyStories-656K-Q8_0.gguf")))
    }), { timeout: 120_000 })

  it.live("a missing model is named before anything runs", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(run(options(tempDir(), { candidates: ["local:stories260K.gguf", "local:no-such-model.gguf"] })))
      assert.match(messageOf(error), /model not found: "no-such-model\.gguf"/)
    }))

  it.live("a missing LoRA adapter is named", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(run(options(tempDir(), { candidates: ["local:stories260K.gguf@no-such-lora.gguf"] })))
      assert.match(messageOf(error), /LoRA adapter file not found: "no-such-lora\.gguf"/)
    }))

  it.live("a real judge without OPENAI_API_KEY names the variable", () =>
    Effect.gen(function*() {
      const saved = process.env.OPENAI_API_KEY
      delete process.env.OPENAI_API_KEY
      const error = yield* Effect.flip(run(options(tempDir(), { judge: "openai:gpt-4o-mini" }))).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (saved !== undefined) process.env.OPENAI_API_KEY = saved
        }))
      )
      assert.match(messageOf(error), /OPENAI_API_KEY is not set/)
    }))

  it.live("a malformed dataset line is reported with its line number", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const file = Path.join(dir, "qa.jsonl")
      Fs.writeFileSync(file, `{"question": "What do bees make?", "answer": "honey"}\n{"question": "broken"\n`)
      const error = yield* Effect.flip(run(options(dir, { dataset: file })))
      assert.match(messageOf(error), /qa\.jsonl:2: invalid JSON/)
    }))

  it.live("a prompt the model's vocabulary cannot encode is refused instead of aborting the process", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const file = Path.join(dir, "sums.jsonl")
      Fs.writeFileSync(file, `{"question": "Tom had 1+2 apples", "answer": "3"}\n`)
      const error = yield* Effect.flip(run(options(dir, { dataset: file, candidates: ["local:TinyStories-656K-Q8_0.gguf"] })))
      assert.match(messageOf(error), /local:TinyStories-656K-Q8_0\.gguf cannot encode "\+" \(U\+002B\) in the prompt of sums:0/)
    }))
})

const references = new Map(
  Fs.readFileSync(dataset, "utf8").trim().split("\n").map((
    line,
    index
  ) => [`stories:${index}`, (JSON.parse(line) as { answer: string }).answer])
)
const referenceOf = (itemId: string) => references.get(itemId)!

describe("the simulator judge", () => {
  it("scores the share of reference words the answer contains", () => {
    assert.deepStrictEqual(grade("a nest in a tree", "The bird sat in the tree."), {
      score: 0.5,
      reason: "the answer mentions tree of nest, tree"
    })
    assert.strictEqual(grade("honey", "Bees make HONEY!").score, 1)
    assert.strictEqual(grade("green", "It was blue.").score, 0)
  })

  it("answers the evaluator's judge prompt with verdict JSON; TruthfulQA uses the best answer", () => {
    const ask = (reference: string, answer: string) =>
      JSON.parse(responder({
        api: "openai",
        route: "POST /v1/chat/completions",
        model: "gpt-4o-mini",
        body: {},
        messages: [{
          role: "user",
          content: `Rubric: r\n\nQuestion: q\n\nReference answer: ${reference}\n\nAnswer to grade: ${answer}\n\nReply with JSON: {}`
        }]
      }))
    assert.deepStrictEqual(ask("a cat", "the cat sat"), { score: 1, reason: "the answer mentions cat of cat" })
    assert.strictEqual(ask("Best answer: cats\nCorrect answers: dogs\nIncorrect answers: fish", "dogs").score, 0)
  })
})
