#!/usr/bin/env node
/** `hasten-local-server`: serve a local model over HTTP and load-test it. Run with --help. */
import { Boundary } from "@hasten/core"
import { Cause, Effect, Exit } from "effect"
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
const parsed = Boundary.parseFlags(process.argv.slice(2), {
  model: Boundary.Flag.string(),
  sequences: Boundary.Flag.integer(1),
  clients: Boundary.Flag.integer(1),
  requests: Boundary.Flag.integer(1),
  "max-tokens": Boundary.Flag.integer(1),
  port: Boundary.Flag.integer(0),
  "no-cache": Boundary.Flag.boolean(),
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
Effect.runPromiseExit(run({
  model: values.model ?? process.env.HASTEN_MODEL ?? "stories260K.gguf",
  sequences: values.sequences ?? 4,
  clients: values.clients ?? 4,
  requests: values.requests ?? (quick ? 8 : 32),
  maxTokens: values["max-tokens"] ?? (quick ? 16 : 48),
  port: values.port ?? 0,
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
