import { assert, describe, it } from "@effect/vitest"
import { Command } from "@hasten/evaluator"
import { Simulator } from "@hasten/testkit"
import { Effect } from "effect"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { judgeResponder } from "./fakes.js"

const run = async (argv: ReadonlyArray<string>) => {
  let out = ""
  let err = ""
  const code = await Command.main(argv, { out: (text) => (out += text), err: (text) => (err += text) })
  return { code, out, err }
}

const dir = mkdtempSync(Path.join(tmpdir(), "hasten-cli-"))
const dataset = Path.join(dir, "pairs.jsonl")
writeFileSync(
  dataset,
  Array.from({ length: 8 }, (_, i) => JSON.stringify({ question: `q${i}`, answer: i % 2 === 0 ? `echo: Answer briefly.` : "no" })).join(
    "\n"
  ) + "\nnot json\n"
)

describe("hasten-eval", () => {
  it("rejects bad arguments with a one-line message and exit code 2", async () => {
    const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
      [["--candidate", "echo:x"], /--dataset is required/],
      [["--dataset", "gsm8k"], /at least one --candidate/],
      [["--dataset", "gsm8k", "--candidate", "gpt4"], /bad model spec "gpt4"/],
      [["--dataset", "gsm8k", "--candidate", "echo:x", "--questions", "abc"], /--questions must be an integer >= 1, got "abc"/],
      [["--dataset", "gsm8k", "--candidate", "echo:x", "--bogus"], /Unknown option '--bogus'/],
      [["--dataset", "gsm8k", "--candidate", "echo:x", "--scorer", "bleu"], /--scorer must be one of/],
      [["--compare", Path.join(dir, "missing.json")], /missing\.json: file not found/],
      [["--compare", dataset], /pairs\.jsonl: not a hasten-evaluator report/]
    ]
    for (const [argv, pattern] of cases) {
      const result = await run(argv)
      assert.strictEqual(result.code, 2, argv.join(" "))
      assert.match(result.err, pattern)
      assert.notMatch(result.err, /\n\s+at /) // no stack trace
    }
  })

  it("a bad flag is a UsageError naming it; every bad flag is listed", async () => {
    const error = await Effect.runPromise(
      Effect.flip(Command.parse(["--dataset", "d.jsonl", "--candidate", "echo:x", "--trials", "0", "--on-invalid", "drop"]))
    )
    assert.strictEqual(error.reason._tag, "UsageError")
    assert.strictEqual(error.reason._tag === "UsageError" ? error.reason.flag : undefined, "trials")
    assert.match(error.message, /^--trials must be an integer >= 1, got "0"; --on-invalid must be one of skip, fail, got "drop"\n/)
    const both = await Effect.runPromise(
      Effect.flip(Command.parse(["--dataset", "d.jsonl", "--candidate", "echo:x", "--retry-errors", "--keep-errors"]))
    )
    assert.match(both.message, /--retry-errors and --keep-errors contradict each other/)
    const keep = await Effect.runPromise(Command.parse(["--dataset", "d.jsonl", "--candidate", "echo:x", "--keep-errors"]))
    assert.isFalse("retryErrors" in keep && keep.retryErrors)
    const retry = await Effect.runPromise(Command.parse(["--dataset", "d.jsonl", "--candidate", "echo:x"]))
    assert.isTrue("retryErrors" in retry && retry.retryErrors)
    const unknown = await Effect.runPromise(Effect.flip(Command.parse(["--bogus"])))
    assert.strictEqual(unknown.reason._tag === "UsageError" ? unknown.reason.flag : undefined, "bogus")
  })

  it("reports a missing dataset file and a missing local model clearly (exit 1)", async () => {
    const missing = await run(["--dataset", Path.join(dir, "nope.jsonl"), "--candidate", "echo:x", "--out", Path.join(dir, "o1")])
    assert.strictEqual(missing.code, 1)
    assert.match(missing.err, /nope\.jsonl: file not found/)
    const model = await run([
      "--dataset",
      dataset,
      "--candidate",
      "local:does-not-exist.gguf",
      "--out",
      Path.join(dir, "o2"),
      "--no-cache",
      "--no-perf"
    ])
    assert.strictEqual(model.code, 1)
    assert.match(model.err, /\nhasten-eval: candidate local:does-not-exist\.gguf failed to start: .*does-not-exist/)
    assert.notMatch(model.err, /\n\s+at /)
  })

  it("runs, writes report.json/report.md/perf report.html, and a re-run resumes to an identical report", async () => {
    const out = Path.join(dir, "run")
    const argv = ["--dataset", dataset, "--candidate", "echo:a", "--questions", "6", "--out", out, "--cache", Path.join(dir, "cache.db")]
    const first = await run(argv)
    assert.strictEqual(first.code, 0, first.err)
    assert.match(first.out, /\| echo:a \|/)
    assert.match(first.err, /skipped 1 invalid row\(s\) of .*pairs\.jsonl .*first: line 9: invalid JSON/)
    const report = JSON.parse(readFileSync(Path.join(out, "report.json"), "utf8"))
    assert.strictEqual(report.report.config.questions, 6)
    assert.deepStrictEqual(report.report.config.dataset.skipped, [{ line: 9, message: report.report.config.dataset.skipped[0].message }])
    assert.strictEqual(report.report.results[0].summary.scored, 6)
    assert.isTrue(existsSync(Path.join(out, "report.md")))
    assert.isTrue(existsSync(Path.join(out, "perf", "report.html")))
    const second = await run(argv)
    assert.strictEqual(second.code, 0, second.err)
    const again = JSON.parse(readFileSync(Path.join(out, "report.json"), "utf8"))
    assert.strictEqual(JSON.stringify(again.report), JSON.stringify(report.report))
    assert.strictEqual(again.timing.resumedItems, 6)

    const compared = await run(["--compare", Path.join(out, "report.json"), Path.join(out, "report.json")])
    assert.strictEqual(compared.code, 0, compared.err)
    assert.match(compared.out, /# Comparison/)
    assert.match(compared.out, /both right/)
    // the same report against itself: 6 pairs, no discordant pair, McNemar p = 1, Δ = 0 [0, 0]
    assert.match(
      compared.out,
      /\| run \| echo:a \| echo:a \| 6 \| \d \| 0 \| 0 \| \d \| \+0\.0 pt \| 1 \| \+0\.000 \[\+0\.000, \+0\.000\] \|/
    )
  })

  it("judges through the OpenAI provider against the simulator (env config), with trials", async () => {
    const sim = await Simulator.start({ seed: 2, responder: judgeResponder })
    const saved = { key: process.env.OPENAI_API_KEY, url: process.env.OPENAI_BASE_URL, rps: process.env.RPS_LIMIT }
    try {
      delete process.env.OPENAI_API_KEY
      const noKey = await run([
        "--dataset",
        "gsm8k",
        "--candidate",
        "echo:x",
        "--judge",
        "openai:gpt-4o-mini",
        "--questions",
        "2",
        "--out",
        Path.join(dir, "nokey"),
        "--no-cache",
        "--no-perf"
      ])
      assert.strictEqual(noKey.code, 1)
      assert.match(noKey.err, /judge openai:gpt-4o-mini failed to start: .*OPENAI_API_KEY/)
      process.env.OPENAI_API_KEY = "sk-test"
      process.env.OPENAI_BASE_URL = sim.openaiBaseUrl
      process.env.RPS_LIMIT = "1000"
      const result = await run([
        "--dataset",
        "gsm8k",
        "--candidate",
        "echo:x",
        "--judge",
        "openai:gpt-4o-mini",
        "--scorer",
        "judge",
        "--questions",
        "3",
        "--trials",
        "2",
        "--temperature",
        "0.5",
        "--out",
        Path.join(dir, "judged"),
        "--no-cache",
        "--no-perf"
      ])
      assert.strictEqual(result.code, 0, result.err)
      const report = JSON.parse(readFileSync(Path.join(dir, "judged", "report.json"), "utf8")).report
      assert.deepStrictEqual([report.results[0].summary.scored, report.results[0].summary.errors], [6, 0])
      assert.strictEqual(report.results[0].summary.judgeAgreement, 1)
      assert.strictEqual(sim.counters().requests, 6)
    } finally {
      for (const [name, value] of [["OPENAI_API_KEY", saved.key], ["OPENAI_BASE_URL", saved.url], ["RPS_LIMIT", saved.rps]] as const) {
        if (value === undefined) delete process.env[name]
        else process.env[name] = value
      }
      await sim.close()
    }
  })
})
