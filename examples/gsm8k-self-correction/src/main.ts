#!/usr/bin/env node
/** GSM8K self-correction example. Run with --help. */
import { Boundary } from "@hasten/core"
import { Cause, Effect, Exit } from "effect"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { Options } from "./SelfCorrection.js"
// Node 24 is needed (node:sqlite, type stripping); check before loading the stack so an older
// Node gets a sentence instead of a loader stack trace.
if (Number(process.versions.node.split(".")[0]) < 24) {
  console.error(
    `error: Node.js 24 or later is needed (this is ${process.version}). The repository's pnpm brings it: npx -y pnpm@12.21.0 --filter @hasten/example-gsm8k-self-correction start --help`
  )
  process.exit(1)
}
const { run } = await import("./SelfCorrection.js")

const bundled = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..", "data", "problems.jsonl")
const usage = `GSM8K self-correction on Hasten: answer, get feedback, revise up to k turns

Usage: node examples/gsm8k-self-correction/dist/main.js [options]

  --dataset <file|gsm8k>  GSM8K-format JSONL (question, answer ending "#### n"); "gsm8k" = shared/data/gsm8k/test.jsonl
                          (default: the bundled 12 problems)
  --provider <name>       local | openai | anthropic | replicate (default local)
  --model <id>            learner model (default: stories260K.gguf / gpt-4o-mini / …)
  --turns <k>             revision turns after the first answer (default 2)
  --questions <n>         questions sampled with the seed (default 10)
  --seed <n>              selection and generation seed (default 42)
  --max-tokens <n>        tokens per answer (default 256)
  --no-cache              do not use the response cache
  --out <dir>             report folder (default .hasten/gsm8k-self-correction)
  --fresh                 start over instead of resuming a killed run
  --quick                 3 questions, 1 turn, 64 tokens
  -h, --help`

const fail = (message: string): never => {
  console.error(`error: ${message}`)
  process.exit(1)
}
const parsed = Boundary.parseFlags(process.argv.slice(2), {
  dataset: Boundary.Flag.string(),
  provider: Boundary.Flag.choice(["local", "openai", "anthropic", "replicate"]),
  model: Boundary.Flag.string(),
  turns: Boundary.Flag.integer(0),
  questions: Boundary.Flag.integer(1),
  seed: Boundary.Flag.integer(0),
  "max-tokens": Boundary.Flag.integer(1),
  "no-cache": Boundary.Flag.boolean(),
  out: Boundary.Flag.string(),
  fresh: Boundary.Flag.boolean(),
  quick: Boundary.Flag.boolean(),
  help: Boundary.Flag.boolean({ short: "h" })
})
if (parsed._tag === "Failure") fail(`${parsed.problem.message}\n\n${usage}`)
const values = parsed._tag === "Success" ? parsed.flags.values : {}
if (values.help) {
  console.log(usage)
  process.exit(0)
}
const provider = values.provider ?? "local"
const quick = values.quick === true
const options: Options = {
  dataset: values.dataset ?? bundled,
  provider,
  model: values.model,
  turns: values.turns ?? (quick ? 1 : 2),
  questions: values.questions ?? (quick ? 3 : 10),
  seed: values.seed ?? 42,
  cache: values["no-cache"] !== true,
  cachePath: Path.join(".hasten", "cache.db"),
  out: values.out ?? Path.join(".hasten", "gsm8k-self-correction"),
  maxTokens: values["max-tokens"] ?? (quick ? 64 : 256),
  fresh: values.fresh === true,
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
