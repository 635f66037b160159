#!/usr/bin/env node
/**
 * `hasten-serve`: an OpenAI-compatible server and gateway over local GGUF models and remote
 * upstreams. `hasten-serve --model stories260K.gguf,sequences=4 --port 8080`;
 * `hasten-serve --upstream openai:gpt-4o-mini --cache sqlite --rps 5`. SIGTERM or SIGINT
 * drains in-flight requests, then exits 0.
 * @since 0.1.0
 */
import { Cause, Effect, Exit, Option } from "effect"
import * as Gateway from "./Gateway.js"
import * as ServerConfig from "./ServerConfig.js"
import { ServerError } from "./ServerError.js"

let cli: ServerConfig.Cli
try {
  cli = ServerConfig.parseCli(process.argv.slice(2), process.env)
} catch (error) {
  // the usage text for --help (exit 0), else the message naming the flag or config field (exit 2)
  if (error instanceof ServerError && error.reason._tag === "Usage") {
    process.stdout.write(`${error.message}\n`)
    process.exit(0)
  }
  process.stderr.write(`hasten-serve: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(2)
}

const fiber = Effect.runFork(Gateway.serve(cli, {
  onListening: (info) => process.stdout.write(`${JSON.stringify(info)}\n`),
  onReady: () => process.stdout.write(`${JSON.stringify({ ready: true })}\n`),
  ...(cli.plan.logRequests === true ? { onRequest: (log) => process.stdout.write(`${JSON.stringify(log)}\n`) } : {})
}))
// The first signal drains (the listeners stay registered: a library that re-raises a signal when
// it sees no other listener, as signal-exit does for node-llama-cpp's spinners, would otherwise
// kill the process mid-drain); a second one exits at once.
let stopping = false
const stop = (signal: NodeJS.Signals) => {
  if (stopping) process.exit(signal === "SIGINT" ? 130 : 143)
  stopping = true
  fiber.interruptUnsafe()
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)
fiber.addObserver((exit) => {
  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
    const error = Cause.findErrorOption(exit.cause)
    process.stderr.write(`hasten-serve: ${Option.isSome(error) ? error.value.message : Cause.pretty(exit.cause)}\n`)
    process.exit(1)
  }
  process.exit(0)
})
