#!/usr/bin/env node
/**
 * `hasten-eval`: the evaluator's command line (see `Command.usage`).
 * @since 0.1.0
 */
import { main } from "./Command.js"

process.exitCode = await main(process.argv.slice(2))
