import { assert, describe, it } from "@effect/vitest"
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
