#!/usr/bin/env node
/** `hasten-local-server`: serve a local model over HTTP and load-test it. Run with --help. */
import { Cause, Effect, Exit } from "effect"
import { parseArgs } from "node:util"
// Node 24 is needed (node:sqlite, type stripping); check before loading the stack so an older
// Node gets a sentence instead of a loader stack trace.
if (Number(process.versions.node.split(".")[0]) < 24) {
  console.error(
    `error: Node.js 24 or later is needed (this is ${process.version}). The repository's pnpm brings it: npx -y pnpm@12.21.0 --filter @hasten/example-local-server start --help`
  )
  process.exit(1)
}
const { run } = await import("./LoadTest.js")

const usage = `hasten local-server example — the OpenAI-compatible server over a local model, load-tested

Usage: node examples/local-server/dist/main.js [options]

  --model <name>       GGUF name in shared/models, a path or an hf: URI (default: HASTEN_MODEL or stories260K.gguf)
  --sequences <n>      parallel sequences in the model's context (default 4)
  --clients <n>        concurrent clients in the load test (default 4)
  --requests <n>       requests per phase (default 32)
  --max-tokens <n>     tokens per completion (default 48)
  --port <n>           port to listen on (default 0: a free port)
  --no-cache           serve without the response cache
  --quick              a small run (8 requests, 16 tokens)
  -h, --help           this text`

const fail = (message: string): never => {
  console.error(`error: ${message}`)
  process.exit(1)
}
const values = (() => {
  try {
    return parseArgs({
      options: {
        model: { type: "string" },
        sequences: { type: "string" },
        clients: { type: "string" },
        requests: { type: "string" },
        "max-tokens": { type: "string" },
        port: { type: "string" },
        "no-cache": { type: "boolean" },
        quick: { type: "boolean" },
        help: { type: "boolean", short: "h" }
      }
    }).values
  } catch (error) {
    return fail(`${(error as Error).message}\n\n${usage}`)
  }
})()
if (values.help) {
  console.log(usage)
  process.exit(0)
}
const int = (name: string, value: string | undefined, fallback: number, min: number) => {
  if (value === undefined) return fallback
  const n = Number(value)
  return Number.isInteger(n) && n >= min ? n : fail(`--${name} must be an integer >= ${min}, got "${value}"`)
}
const quick = values.quick === true
Effect.runPromiseExit(run({
  model: values.model ?? process.env.HASTEN_MODEL ?? "stories260K.gguf",
  sequences: int("sequences", values.sequences, 4, 1),
  clients: int("clients", values.clients, 4, 1),
  requests: int("requests", values.requests, quick ? 8 : 32, 1),
  maxTokens: int("max-tokens", values["max-tokens"], quick ? 16 : 48, 1),
  port: int("port", values.port, 0, 0),
  cache: values["no-cache"] !== true,
  log: (line) => console.log(line)
})).then((exit) => {
  if (Exit.isFailure(exit)) {
    const error = Cause.squash(exit.cause)
    fail(
      typeof error === "object" && error !== null && "message" in error ? String((error as { message: unknown }).message) : String(error)
    )
  }
})
