// Benchmark for @hasten/evaluator: `node bench/run.ts [--quick]` (Node 24 strips the types).
// The seeds' scenario: GSM8K questions, candidate = the local stories260K GGUF model, judge =
// the testkit simulator (OpenAI API) with realistic latency.
//   (a) before: the seeds' evaluator — node-llama-cpp directly, getLlama/loadModel/createContext
//       per question, default sampling, judge calls one after another through the OpenAI SDK,
//       no cache;
//   (b) Hasten cold: Evaluator.run — model loaded once (lazily), temperature 0 + seed, judges in
//       parallel (bounded, through the rate limiter), responses written to a fresh SQLite cache;
//   (c) Hasten warm: the same run again on the warm cache (no checkpoint: every item re-evaluated).
// A third Hasten run on a second fresh cache checks that scores are identical without the cache.
// Prints a table for people and, last, one JSON line for machines.
import { Dataset, Evaluator, Report, Sampling, Scorer, Stack } from "@hasten/evaluator"
import { Local } from "@hasten/providers/local"
import { OpenAi } from "@hasten/providers/openai"
import { RateLimit } from "@hasten/rate-limit"
import { Simulator } from "@hasten/testkit"
import { Effect, Redacted } from "effect"
import { getLlama, LlamaCompletion } from "node-llama-cpp"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { performance } from "node:perf_hooks"
import OpenAI from "openai"

const quick = process.argv.includes("--quick")
const questions = quick ? 10 : 20
const seed = 42
const maxTokens = 48
const judgeModel = "gpt-4o-mini"
const latency = { ttftMs: 350, perTokenMs: 12, jitter: 0.2 }
const workDir = mkdtempSync(join(tmpdir(), "hasten-eval-bench-"))

const findModel = (name: string): string => {
  const fromEnv = process.env.HASTEN_MODELS_DIR
  if (fromEnv !== undefined && existsSync(join(fromEnv, name))) return join(fromEnv, name)
  let dir = process.cwd()
  while (true) {
    const candidate = join(dir, "shared", "models", name)
    if (existsSync(candidate)) return candidate
    const parent = dirname(dir)
    if (parent === dir) throw new Error(`${name} not found in any shared/models above ${process.cwd()}; set HASTEN_MODELS_DIR`)
    dir = parent
  }
}
const modelPath = findModel("stories260K.gguf")

// The judge: reads the reference's `#### n` and the graded answer from the prompt, answers JSON.
const judgeResponder = (request: { readonly messages: ReadonlyArray<{ readonly content: string }> }): string => {
  const prompt = request.messages.map((message) => message.content).join("\n")
  const reference = /#### (-?[\d,.]+)/.exec(/Reference answer: ([\s\S]*?)\n\nAnswer to grade:/.exec(prompt)?.[1] ?? "")?.[1]?.replace(
    /,/g,
    ""
  )
  const answer = /Answer to grade: ([\s\S]*?)\n\nReply with JSON/.exec(prompt)?.[1] ?? ""
  const last = (answer.match(/-?\d[\d,]*(?:\.\d+)?/g) ?? []).at(-1)?.replace(/,/g, "")
  const correct = reference !== undefined && last === reference
  return JSON.stringify({
    score: correct ? 1 : 0,
    reason: correct ? "matches the reference" : `expected ${reference ?? "?"}, got ${last ?? "no number"}`
  })
}

const sim = await Simulator.start({ seed: 7, latency, limits: { rpm: 3000, maxConcurrency: 32 }, responder: judgeResponder })
const dataset = await Effect.runPromise(Dataset.load("gsm8k"))
const items = Sampling.select(dataset.items.length, questions, seed).map((index) => dataset.items[index]!)

// (a) before ------------------------------------------------------------------------------------
const before = async () => {
  const client = new OpenAI({ baseURL: sim.openaiBaseUrl, apiKey: "sk-bench", maxRetries: 0 })
  const scores: Array<number> = []
  const start = performance.now()
  for (const item of items) {
    const llama = await getLlama({ gpu: false, build: "never" })
    const model = await llama.loadModel({ modelPath })
    const context = await model.createContext({ contextSize: 512, threads: 1 })
    const completion = new LlamaCompletion({ contextSequence: context.getSequence() })
    const prompt = Scorer.gsm8kPrompt(item)[0]!.content
    const output = await completion.generateCompletion(prompt, { maxTokens })
    await context.dispose()
    await model.dispose()
    const response = await client.chat.completions.create({
      model: judgeModel,
      messages: Scorer.judgePrompt(item, output, Scorer.defaultRubric, 1).map((message) => ({
        role: message.role,
        content: message.content
      })),
      max_tokens: 256
    })
    try {
      scores.push(Number(JSON.parse(response.choices[0]?.message.content ?? "").score))
    } catch {
      scores.push(0) // the seeds counted an unreadable verdict as 0
    }
  }
  return { seconds: (performance.now() - start) / 1000, scores }
}

// (b, c) Hasten ---------------------------------------------------------------------------------
const hasten = async (cachePath: string) => {
  const cache = Stack.cacheStore({ path: cachePath })
  const local = Stack.lazy("local", Local.layer({ model: modelPath, threads: 1, contextSize: 512, sequences: 4 }))
  const judge = OpenAi.layer({ baseURL: sim.openaiBaseUrl, apiKey: Redacted.make("sk-bench"), model: judgeModel })
  const rateLimit = RateLimit.layer({ requestsPerSecond: 40, maxConcurrency: 16, tokensPerMinute: 2_000_000 })
  const requestsBefore = sim.counters().requests
  const start = performance.now()
  const result = await Effect.runPromise(Evaluator.run({
    dataset,
    scorer: Scorer.judge(),
    questions,
    seed,
    maxTokens,
    concurrency: 4,
    candidates: [{ name: "local:stories260K.gguf", model: "stories260K", llm: Stack.wrap(local, { cache }) }],
    judge: { name: `openai:${judgeModel}`, model: judgeModel, llm: Stack.wrap(judge, { cache, rateLimit }), concurrency: 16 }
  }))
  const seconds = (performance.now() - start) / 1000
  const judgeUpstream = sim.counters().requests - requestsBefore
  if (judgeUpstream !== result.timing.judge.upstreamCalls) {
    throw new Error(`judge calls disagree: simulator saw ${judgeUpstream}, the run counted ${result.timing.judge.upstreamCalls}`)
  }
  return { seconds, result, upstreamCalls: result.timing.upstreamCalls + judgeUpstream, judgeUpstream }
}

const a = await before()
const cacheA = join(workDir, "cache-a.db")
const cold = await hasten(cacheA)
const warm = await hasten(cacheA)
const check = await hasten(join(workDir, "cache-b.db"))
await sim.close()
rmSync(workDir, { recursive: true, force: true })

const reports = [cold, warm, check].map((run) => Report.reportJson(run.result.report))
const identicalScores = reports.every((report) => report === reports[0])
const summary = cold.result.report.results[0]!.summary
const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits
const coldSpeedup = a.seconds / cold.seconds
const warmSpeedup = a.seconds / warm.seconds

const rows: Array<[string, string, string, string, string]> = [
  [
    "(a) before: reload per question, sequential judge",
    a.seconds.toFixed(2),
    "1.0x",
    String(items.length * 1 + items.length),
    `mean ${(a.scores.reduce((s, x) => s + x, 0) / a.scores.length).toFixed(3)}`
  ],
  [
    "(b) Hasten cold",
    cold.seconds.toFixed(2),
    `${coldSpeedup.toFixed(1)}x`,
    String(cold.upstreamCalls),
    `mean ${summary.mean.toFixed(3)}, errors ${summary.errors}`
  ],
  [
    "(c) Hasten warm re-run",
    warm.seconds.toFixed(3),
    `${warmSpeedup.toFixed(1)}x`,
    String(warm.upstreamCalls),
    `identical report: ${reports[1] === reports[0]}`
  ],
  [
    "Hasten, second fresh cache",
    check.seconds.toFixed(2),
    `${(a.seconds / check.seconds).toFixed(1)}x`,
    String(check.upstreamCalls),
    `identical report: ${reports[2] === reports[0]}`
  ]
]
console.log(
  `\n@hasten/evaluator bench: ${items.length} GSM8K questions (seed ${seed}), candidate stories260K (maxTokens ${maxTokens}), judge = simulator (TTFT ${latency.ttftMs} ms, ${latency.perTokenMs} ms/token)${
    quick ? ", --quick" : ""
  }\n`
)
const header: [string, string, string, string, string] = ["run", "seconds", "speedup", "upstream calls", "scores"]
const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column]!.length)))
const line = (row: ReadonlyArray<string>) =>
  `| ${
    row.map((cell, column) => (column === 0 || column === 4 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(" | ")
  } |`
console.log(line(header))
console.log(
  `|${widths.map((width, column) => (column === 0 || column === 4 ? "-".repeat(width + 2) : `${"-".repeat(width + 1)}:`)).join("|")}|`
)
for (const row of rows) console.log(line(row))
console.log(
  `\nidentical scores across the 3 Hasten runs: ${identicalScores}; warm upstream calls: ${warm.upstreamCalls} (candidate ${warm.result.timing.upstreamCalls}, judge ${warm.judgeUpstream})\n`
)
console.log(JSON.stringify({
  bench: "evaluator",
  beforeS: round(a.seconds, 3),
  coldS: round(cold.seconds, 3),
  warmS: round(warm.seconds, 4),
  coldSpeedup: round(coldSpeedup, 1),
  warmSpeedup: round(warmSpeedup, 1),
  warmUpstreamCalls: warm.upstreamCalls,
  identicalScores
}))
