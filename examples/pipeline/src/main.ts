#!/usr/bin/env node
/**
 * `hasten-pipeline`: filter → structure → classify → align over a dataset, with
 * batching, caching, rate limits and metrics. Run with --help for the options.
 */
import { Boundary } from "@hasten/core"
import { Cause, Effect, Exit, Fiber } from "effect"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { PipelineOptions } from "./Pipeline.js"
// Node 24 is needed (node:sqlite, type stripping); check before loading the stack so an older
// Node gets a sentence instead of a loader stack trace.
if (Number(process.versions.node.split(".")[0]) < 24) {
  console.error(
    `error: Node.js 24 or later is needed (this is ${process.version}). The repository's pnpm brings it: npx -y pnpm@12.21.0 --filter @hasten/example-pipeline start --help`
  )
  process.exit(1)
}
const { run } = await import("./Pipeline.js")

const here = Path.dirname(fileURLToPath(import.meta.url))
const bundledDataset = Path.resolve(here, "..", "data", "records.jsonl")

const usage = `hasten-pipeline — a dataset pipeline (filter → structure → classify → align) on Hasten

Usage: hasten-pipeline [options]

  --dataset <file>        JSONL input, one {"instruction": "..."} per line (default: the bundled 50 records)
  --provider <name>       local | openai | anthropic | replicate (default: local)
  --model <id>            model id or, for local, a .gguf name/path/hf: URI (default: stories260K)
  --batch-size <n>        largest batch (default 32)
  --batch-timeout <s>     batch window in seconds (default 0.1)
  --no-batching           one call at a time, no batching
  --filter <mode>         rules (length bounds, duplicates; default) | llm (the model keeps or drops each record)
  --enable-speculative    speculative decoding in the align stage (local; structure and classify keep
                          their JSON grammars, and every stage keeps the cache, batcher and rate limiter)
  --draft-model <file>    draft model for speculative decoding (default: prompt lookup); needs --enable-speculative
  --no-cache              do not read or write the response cache
  --cache-path <file>     SQLite cache file (default .hasten/cache.db)
  --seed <n>              sampling seed (default 42)
  --limit <n>             process only the first n records
  --quick                 a small, fast run (12 records, short outputs)
  --out <file>            output JSONL (default .hasten/pipeline-output.jsonl)
  --log-dir <dir>         performance logs folder (default performance_logs)
  --skip-bad-lines        skip malformed dataset lines instead of stopping
  --redis <url>           run the model stages on the workers of this Redis (default: HASTEN_REDIS_URL; none: one process)
  --worker                be a worker: serve every pipeline run on --redis until Ctrl-C (uses --provider/--cache-path/--batch-size here)
  --concurrency <n>       records a worker runs at once (default 8)
  -h, --help              this text

Environment: HASTEN_MODEL, OPENAI_API_KEY, OPENAI_BASE_URL, ANTHROPIC_API_KEY, REPLICATE_API_TOKEN,
MAX_CONCURRENCY, RPS_LIMIT, TPM_LIMIT, MAX_RETRIES, RETRIES_ENABLED (remote providers), HASTEN_REDIS_URL.`

const fail = (message: string): never => {
  console.error(`error: ${message}`)
  process.exit(1)
}

const flags = Boundary.parseFlags(process.argv.slice(2), {
  dataset: Boundary.Flag.string(),
  provider: Boundary.Flag.choice(["local", "openai", "anthropic", "replicate"]),
  model: Boundary.Flag.string(),
  "batch-size": Boundary.Flag.integer(1),
  "batch-timeout": Boundary.Flag.number(),
  "no-batching": Boundary.Flag.boolean(),
  filter: Boundary.Flag.choice(["rules", "llm"]),
  "enable-speculative": Boundary.Flag.boolean(),
  "draft-model": Boundary.Flag.string(),
  "no-cache": Boundary.Flag.boolean(),
  "cache-path": Boundary.Flag.string(),
  seed: Boundary.Flag.integer(0),
  limit: Boundary.Flag.integer(1),
  quick: Boundary.Flag.boolean(),
  out: Boundary.Flag.string(),
  "log-dir": Boundary.Flag.string(),
  "skip-bad-lines": Boundary.Flag.boolean(),
  redis: Boundary.Flag.string(),
  worker: Boundary.Flag.boolean(),
  concurrency: Boundary.Flag.integer(1),
  help: Boundary.Flag.boolean({ short: "h" })
})
if (flags._tag === "Failure") fail(`${flags.problem.message}\n\n${usage}`)
const parsed = flags._tag === "Success" ? flags.flags.values : {}

if (parsed.help) {
  console.log(usage)
  process.exit(0)
}

const quick = parsed.quick === true
const options: PipelineOptions = {
  dataset: parsed.dataset ?? bundledDataset,
  provider: parsed.provider ?? "local",
  model: parsed.model,
  batchSize: parsed["batch-size"] ?? 32,
  batchTimeoutSeconds: parsed["batch-timeout"] ?? 0.1,
  batching: parsed["no-batching"] !== true,
  filter: parsed.filter ?? "rules",
  speculative: parsed["enable-speculative"] === true,
  draftModel: parsed["draft-model"],
  cache: parsed["no-cache"] !== true,
  cachePath: parsed["cache-path"] ?? Path.join(".hasten", "cache.db"),
  seed: parsed.seed ?? 42,
  limit: parsed.limit ?? (quick ? 12 : undefined),
  quick,
  out: parsed.out ?? Path.join(".hasten", "pipeline-output.jsonl"),
  logDir: parsed["log-dir"] ?? "performance_logs",
  skipBadLines: parsed["skip-bad-lines"] === true,
  log: (line) => console.log(line)
}

const redis = parsed.redis ?? (process.env.HASTEN_REDIS_URL || undefined)
if (parsed.worker === true) {
  if (redis === undefined) fail("--worker needs --redis <url> (or HASTEN_REDIS_URL)")
  const { serveWorker } = await import("./Fleet.js")
  console.log(`hasten pipeline worker: serving pipeline runs (Ctrl-C to stop)`)
  const fiber = Effect.runFork(Effect.scoped(serveWorker(options, redis!, parsed.concurrency ?? 8)))
  const stop = () => Effect.runFork(Fiber.interrupt(fiber))
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
  const exit = await Effect.runPromise(Fiber.await(fiber))
  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
    fail(String((Cause.squash(exit.cause) as { message?: unknown }).message))
  }
  process.exit(0)
}
if (redis !== undefined) {
  const { runDistributed } = await import("./Fleet.js")
  const started = performance.now()
  const exit = await Effect.runPromiseExit(runDistributed(options, redis))
  if (Exit.isFailure(exit)) fail(String((Cause.squash(exit.cause) as { message?: unknown }).message))
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  process.exit(0)
}

console.log(`hasten pipeline: ${Path.relative(process.cwd(), options.dataset) || options.dataset} → filter → structure → classify → align`)
const started = performance.now()
Effect.runPromiseExit(run(options)).then((exit) => {
  if (Exit.isFailure(exit)) {
    const error = Cause.squash(exit.cause)
    fail(
      typeof error === "object" && error !== null && "message" in error ? String((error as { message: unknown }).message) : String(error)
    )
  }
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
})
