import { assert, describe, it } from "@effect/vitest"
import { Simulator } from "@hasten/testkit"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type PipelineOptions, run } from "../src/Pipeline.js"

const here = Path.dirname(fileURLToPath(import.meta.url))
const dataset = Path.resolve(here, "..", "data", "records.jsonl")

const options = (dir: string, overrides: Partial<PipelineOptions> = {}): PipelineOptions => ({
  dataset,
  provider: "local",
  model: "stories260K.gguf",
  batchSize: 32,
  batchTimeoutSeconds: 0.05,
  batching: true,
  filter: "rules",
  speculative: false,
  draftModel: undefined,
  cache: true,
  cachePath: Path.join(dir, "cache.db"),
  seed: 42,
  limit: 8,
  quick: true,
  out: Path.join(dir, "out.jsonl"),
  logDir: Path.join(dir, "logs"),
  skipBadLines: false,
  log: () => {},
  ...overrides
})

describe("examples/pipeline (quick mode, stories260K)", () => {
  it.live("runs filter → structure → classify → align, and a second run is served from the cache", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
      const first = yield* run(options(dir))
      assert.deepStrictEqual(first.stats.map((s) => s.stage), ["filter", "structure", "classify", "align"])
      assert.strictEqual(first.output.length, 8)
      assert.strictEqual(first.cached, 0)
      assert.strictEqual(first.upstream, 24)
      // grammar-constrained stages always give schema-valid JSON
      for (const row of first.output) {
        assert.includeMembers(["low", "medium", "high"], [(row.structure as { risk: string }).risk])
        assert.include(["network", "web", "crypto", "identity", "malware", "cloud"], row.domain)
      }
      const lines = Fs.readFileSync(Path.join(dir, "out.jsonl"), "utf8").trim().split("\n")
      assert.strictEqual(lines.length, 8)
      assert.isTrue(Fs.existsSync(Path.join(first.runDir!, "report.html")))

      const second = yield* run(options(dir))
      assert.strictEqual(second.cached, 24)
      assert.strictEqual(second.upstream, 0)
      assert.deepStrictEqual(second.output, first.output)

      const uncached = yield* run(options(dir, { cache: false, batching: false, limit: 3 }))
      assert.strictEqual(uncached.cached, 0)
      assert.deepStrictEqual(uncached.output, first.output.slice(0, 3))
    }), { timeout: 180_000 })

  it.live(
    "--filter llm: the model keeps or drops each record; later stages see only the kept ones; cached like every stage",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
        // An OpenAI-compatible model over real HTTP that keeps instructions mentioning a key or password.
        const sim = yield* Effect.promise(() =>
          Simulator.start({
            seed: 1,
            responder: (request) => {
              const prompt = request.messages.map((message) => message.content).join("\n")
              if (prompt.startsWith("Is this a clear")) return JSON.stringify({ keep: /\b(key|keys|password|passwords)\b/i.test(prompt) })
              if (prompt.startsWith("Describe")) return "{\"risk\": \"high\", \"audience\": \"operator\", \"urgent\": true}"
              if (prompt.startsWith("Which security domain")) return "{\"domain\": \"identity\"}"
              return "Do it now."
            }
          })
        )
        const saved = { ...process.env }
        yield* Effect.addFinalizer(() =>
          Effect.promise(async () => {
            for (const key of ["OPENAI_API_KEY", "OPENAI_BASE_URL", "RPS_LIMIT"]) {
              if (saved[key] === undefined) delete process.env[key]
              else process.env[key] = saved[key]
            }
            await sim.close()
          })
        )
        Object.assign(process.env, { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: sim.openaiBaseUrl, RPS_LIMIT: "1000" })
        const records = Fs.readFileSync(dataset, "utf8").trim().split("\n").slice(0, 12).map((line) =>
          JSON.parse(line) as { instruction: string }
        )
        const expected = records.filter((record) => /\b(key|keys|password|passwords)\b/i.test(record.instruction)).length
        assert.isAbove(expected, 0)
        assert.isBelow(expected, 12)
        const lines: Array<string> = []
        const llm = { provider: "openai", model: "gpt-4o-mini", filter: "llm", limit: 12 } as const
        const first = yield* run(options(dir, { ...llm, log: (line) => lines.push(line) }))
        const filter = first.stats[0]!
        assert.deepStrictEqual([filter.stage, filter.items, filter.errors, filter.upstream], ["filter", 12, 0, 12])
        // through the batcher (several records per dispatch) and the rate limiter, like every stage
        assert.isAbove(filter.largestBatch!, 1)
        assert.strictEqual(filter.rateLimited, 12)
        assert.strictEqual(first.kept.length, expected)
        assert.deepStrictEqual(first.output.map((row) => row.id), first.kept)
        assert.include(lines, `filter: kept ${expected} of 12 (dropped: ${12 - expected} model said drop)`)
        // 12 filter calls, then 3 calls per kept record
        assert.strictEqual(sim.counters().requests, 12 + 3 * expected)
        assert.strictEqual(first.upstream, 12 + 3 * expected)
        const second = yield* run(options(dir, llm))
        assert.deepStrictEqual([second.stats[0]!.cached, second.upstream, sim.counters().requests], [12, 0, 12 + 3 * expected])
        assert.deepStrictEqual(second.kept, first.kept)
      }),
    { timeout: 120_000 }
  )

  it.live(
    "--enable-speculative: align decodes speculatively; structure keeps its JSON grammar; cache in front",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
        const lines: Array<string> = []
        const first = yield* run(options(dir, { limit: 4, speculative: true, log: (line) => lines.push(line) }))
        assert.strictEqual(first.speculative!.requests, 4)
        // align: decoded speculatively, dispatched by the batcher, admitted by the rate limiter
        const align = first.stats.find((stage) => stage.stage === "align")!
        assert.deepStrictEqual([align.speculative, align.rateLimited], [4, 4])
        assert.isAbove(align.largestBatch!, 1)
        // structure: the plain model with its JSON grammar, not the speculative engine
        const structure = first.stats.find((stage) => stage.stage === "structure")!
        assert.deepStrictEqual([structure.speculative, structure.rateLimited], [0, 4])
        assert.strictEqual(first.speculative!.drafter, "prompt-lookup")
        for (const row of first.output) {
          assert.include(["low", "medium", "high"], (row.structure as { risk: string }).risk)
          assert.include(["network", "web", "crypto", "identity", "malware", "cloud"], row.domain)
        }
        assert.isTrue(first.output.every((row) => (row.response ?? "").length > 0))
        assert.isTrue(lines.some((line) => line.startsWith("speculative decoding: align stage, drafter prompt lookup")))
        // the cache sits above the speculative engine: a re-run makes no speculative request
        const second = yield* run(options(dir, { limit: 4, speculative: true }))
        assert.strictEqual(second.speculative!.requests, 0)
        assert.strictEqual(second.upstream, 0)
        // --draft-model: a draft GGUF (the same file: a self-draft, what the fixtures allow)
        const drafted = yield* run(options(dir, { limit: 4, speculative: true, draftModel: "stories260K.gguf", cache: false }))
        assert.strictEqual(drafted.speculative!.drafter, "model")
        assert.strictEqual(drafted.speculative!.requests, 4)
        // both drafters are exact greedy decoding of the same target: the same responses
        assert.deepStrictEqual(drafted.output.map((row) => row.response), first.output.map((row) => row.response))
      }),
    { timeout: 240_000 }
  )

  it.live("refuses --enable-speculative on a remote provider and --draft-model without it, saying why", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
      const remote = yield* Effect.flip(run(options(dir, { provider: "openai", model: "gpt-4o-mini", speculative: true })))
      assert.match(remote.message, /--enable-speculative needs --provider local: .*token probabilities, which openai's API does not expose/)
      const draft = yield* Effect.flip(run(options(dir, { draftModel: "stories260K.gguf" })))
      assert.match(draft.message, /--draft-model is the draft model of speculative decoding: add --enable-speculative/)
    }))

  it.live("a malformed dataset line stops the run with its line number", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
      const bad = Path.join(dir, "bad.jsonl")
      Fs.writeFileSync(bad, `{"instruction": "Rotate every key in the vault today please"}\n{"instruction": oops}\n`)
      const error = yield* Effect.flip(run(options(dir, { dataset: bad })))
      assert.match(error.message, /line 2: not valid JSON/)
      const skipped = yield* run(options(dir, { dataset: bad, skipBadLines: true, limit: undefined }))
      assert.strictEqual(skipped.output.length, 1)
    }), { timeout: 120_000 })

  it.live("a missing model says how to provide one", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
      const error = yield* Effect.flip(run(options(dir, { model: "no-such-model.gguf" })))
      assert.match(error.message, /model not found/)
      assert.match(error.message, /HASTEN_MODEL/)
    }))

  it.live("a missing API key names the variable", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
      const saved = process.env.OPENAI_API_KEY
      delete process.env.OPENAI_API_KEY
      const error = yield* Effect.flip(run(options(dir, { provider: "openai", model: undefined })))
      if (saved !== undefined) process.env.OPENAI_API_KEY = saved
      assert.match(error.message, /OPENAI_API_KEY/)
    }))

  it.live("an unreachable endpoint stops the run with the transport error", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-pipeline-"))
      const saved = { ...process.env }
      Object.assign(process.env, { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: "http://127.0.0.1:9/v1", RETRIES_ENABLED: "0" })
      const error = yield* Effect.flip(run(options(dir, { provider: "openai", model: "gpt-4o-mini", limit: 2 }))).pipe(
        Effect.ensuring(Effect.sync(() => {
          for (const key of ["OPENAI_API_KEY", "OPENAI_BASE_URL", "RETRIES_ENABLED"]) {
            if (saved[key] === undefined) delete process.env[key]
            else process.env[key] = saved[key]
          }
        }))
      )
      assert.match(error.message, /every structure call failed/)
      assert.match(error.message, /Transport|connect|ECONNREFUSED/i)
      assert.notMatch(error.message, /sk-test/)
    }), { timeout: 60_000 })
})
