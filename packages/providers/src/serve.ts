#!/usr/bin/env node
/**
 * `hasten-serve`: an OpenAI-compatible HTTP server over a local GGUF model.
 * `hasten-serve --model stories260K.gguf --port 8080 --sequences 4`
 * @since 0.1.0
 */
import { Cause, Effect, Exit, Option } from "effect"
import * as Server from "./CompatibleServer.js"

let options: Server.CliOptions
try {
  options = Server.parseCli(process.argv.slice(2))
} catch (error) {
  // a ProviderError: the usage text for --help (exit 0), else its message naming the flag (exit 2)
  if (error instanceof Server.ProviderError && error.reason._tag === "Usage") {
    process.stdout.write(`${error.message}\n`)
    process.exit(0)
  }
  process.stderr.write(`hasten-serve: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(2)
}

const fiber = Effect.runFork(Server.serve(options, (info) => {
  process.stdout.write(`${JSON.stringify(info)}\n`)
}))
const stop = () => fiber.interruptUnsafe()
process.once("SIGINT", stop)
process.once("SIGTERM", stop)
fiber.addObserver((exit) => {
  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) {
    const error = Cause.findErrorOption(exit.cause)
    process.stderr.write(`hasten-serve: ${Option.isSome(error) ? error.value.message : Cause.pretty(exit.cause)}\n`)
    process.exit(1)
  }
  process.exit(0)
})
