import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type Options, run } from "../src/SelfCorrection.js"

const dataset = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "data", "problems.jsonl")
const options = (dir: string, overrides: Partial<Options> = {}): Options => ({
  dataset,
  provider: "local",
  model: "stories260K.gguf",
  turns: 1,
  questions: 3,
  seed: 42,
  cache: true,
  cachePath: Path.join(dir, "cache.db"),
  out: Path.join(dir, "out"),
  maxTokens: 32,
  fresh: true,
  log: () => {},
  ...overrides
})

describe("examples/gsm8k-self-correction (quick, stories260K)", () => {
  it.live("answers, revises once, reports accuracy per turn; a re-run is served from the cache", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-gsm8k-"))
      const first = yield* run(options(dir))
      assert.deepStrictEqual(first.turns.map((t) => t.turn), [0, 1])
      assert.strictEqual(first.turns[0]!.answered + first.summary.errors, 3)
      // every item: one answer + one revision
      assert.strictEqual(first.timing.calls, 6)
      assert.strictEqual(first.timing.upstreamCalls, 6)
      assert.isTrue(Fs.existsSync(first.files.json))
      const second = yield* run(options(dir))
      assert.strictEqual(second.timing.upstreamCalls, 0)
      assert.deepStrictEqual(second.turns, first.turns)
    }), { timeout: 120_000 })

  it.live("a missing API key names the variable", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-gsm8k-"))
      const saved = process.env.OPENAI_API_KEY
      delete process.env.OPENAI_API_KEY
      const error = yield* Effect.flip(run(options(dir, { provider: "openai", model: "gpt-4o-mini" }))).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (saved !== undefined) process.env.OPENAI_API_KEY = saved
        }))
      )
      assert.match(String((error as { message?: string }).message ?? error), /OPENAI_API_KEY/)
    }), { timeout: 60_000 })
})
