#!/usr/bin/env node
/** Evaluate several models/adapters with a judge: before vs Hasten cold vs warm. Run with --help. */
import { Boundary } from "@hasten/core"
import { Cause, Effect, Exit } from "effect"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { Options } from "./EvalAdapters.js"
// Node 24 is needed (node:sqlite, type stripping); check before loading the stack so an older
// Node gets a sentence instead of a loader stack trace.
if (Number(process.versions.node.split(".")[0]) < 24) {
  console.error(
    `error: Node.js 24 or later is needed (this is ${process.version}). The repository's pnpm brings it: npx -y pnpm@12.21.0 --filter @hasten/example-eval-adapters start --help`
  )
  process.exit(1)
}
const { run } = await import("./EvalAdapters.js")

const bundled = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "data", "stories.jsonl")
const defaultCandidates = ["local:stories260K.gguf", "local:TinyStories-656K-Q8_0.gguf"]
const usage = `Several models/adapters on the same seeded questions with an LLM judge:
the seeds' evaluator vs Hasten (cold cache) vs Hasten (warm re-run), then the score table

Usage: node examples/eval-adapters/dist/main.js [options]

  --candidate <spec>      repeatable: local:<model.gguf>[@<lora.gguf>] (a name in shared/models or a path)
                          (default: ${defaultCandidates.join(" and ")})
  --judge <spec>          e.g. openai:gpt-4o-mini with your OPENAI_API_KEY (and OPENAI_BASE_URL);
                          default: the testkit simulator behind the OpenAI API
  --dataset <d>           .jsonl/.csv of {question, answer}, or truthfulqa | gsm8k (shared/data)
                          (default: the bundled 12 story openings, data/stories.jsonl)
  --prompt <style>        continue: send the question text alone (default for the bundled set);
                          qa: "Question: …\nAnswer:" (default for other datasets)
  --questions <n>         questions sampled with the seed (default: all)
  --seed <n>              selection, generation and bootstrap seed (default 42)
  --max-tokens <n>        tokens per answer (default 48)
  --concurrency <n>       concurrent candidate calls (default 4)
  --judge-concurrency <n> concurrent judge calls (default 8)
  --threads <n>           CPU threads per local model (default 1)
  --ttft-ms <n>           simulator judge: time to first token (default 150)
  --per-token-ms <n>      simulator judge: time per output token (default 5)
  --no-baseline           skip (a), the seeds' evaluator
  --out <dir>             report folder (default .hasten/eval-adapters)
  --quick                 3 questions, 24 tokens
  -h, --help`

const fail = (message: string): never => {
  console.error(`error: ${message}`)
  process.exit(1)
}
const parsed = Boundary.parseFlags(process.argv.slice(2), {
  candidate: Boundary.Flag.strings(),
  judge: Boundary.Flag.string(),
  dataset: Boundary.Flag.string(),
  questions: Boundary.Flag.integer(1),
  seed: Boundary.Flag.integer(0),
  "max-tokens": Boundary.Flag.integer(1),
  concurrency: Boundary.Flag.integer(1),
  "judge-concurrency": Boundary.Flag.integer(1),
  threads: Boundary.Flag.integer(1),
  "ttft-ms": Boundary.Flag.integer(0),
  "per-token-ms": Boundary.Flag.integer(0),
  prompt: Boundary.Flag.choice(["qa", "continue"]),
  "no-baseline": Boundary.Flag.boolean(),
  out: Boundary.Flag.string(),
  quick: Boundary.Flag.boolean(),
  help: Boundary.Flag.boolean({ short: "h" })
})
if (parsed._tag === "Failure") fail(`${parsed.problem.message}\n\n${usage}`)
const values = parsed._tag === "Success" ? parsed.flags.values : {}
if (values.help) {
  console.log(usage)
  process.exit(0)
}
const quick = values.quick === true
const prompt = values.prompt ?? (values.dataset === undefined ? "continue" : "qa")
const options: Options = {
  dataset: values.dataset ?? bundled,
  candidates: values.candidate ?? defaultCandidates,
  judge: values.judge,
  questions: values.questions ?? (quick ? 3 : undefined),
  seed: values.seed ?? 42,
  maxTokens: values["max-tokens"] ?? (quick ? 24 : 48),
  concurrency: values.concurrency ?? 4,
  judgeConcurrency: values["judge-concurrency"] ?? 8,
  threads: values.threads ?? 1,
  contextSize: 512,
  prompt,
  baseline: values["no-baseline"] !== true,
  out: values.out ?? Path.join(".hasten", "eval-adapters"),
  latency: { ttftMs: values["ttft-ms"] ?? 150, perTokenMs: values["per-token-ms"] ?? 5 },
  log: (line) => console.log(line)
}
Effect.runPromiseExit(run(options)).then((exit) => {
  if (Exit.isFailure(exit)) {
    const error = Cause.squash(exit.cause)
    fail(
      typeof error === "object" && error !== null && "message" in error ? String((error as { message: unknown }).message) : String(error)
    )
  }
})
