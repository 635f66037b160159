#!/usr/bin/env node
/**
 * `hasten-eval`: the evaluator's command line (see `Command.usage`); `hasten-eval worker`
 * is a worker of a distributed run (see `WorkerCommand.usage`).
 * @since 0.1.0
 */
import * as Memory from "./internal/memory.js"

const argv = process.argv.slice(2)
// Flat memory however long the run: V8's memory-saver mode from the start (`--memory default` opts out).
Memory.ensure(argv)
process.exitCode = argv[0] === "worker"
  ? await (await import("./WorkerCommand.js")).main(argv.slice(1))
  : await (await import("./Command.js")).main(argv)
