#!/usr/bin/env node
/**
 * `hasten-perf`: compare two runs, or regenerate a run's report.
 *
 *     hasten-perf compare <runA> <runB>   ratio table (B / A) of two runs' summary.json
 *     hasten-perf report <run>            rewrite summary.json and report.html from events.jsonl
 *     hasten-perf summary <run>           print the summary table of a run
 *
 * A run is a run folder, its `summary.json`, or a run id under `./performance_logs`.
 * @since 0.1.0
 */
import { Boundary } from "@hasten/core"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import * as PerfLogger from "./PerfLogger.js"
import { PerfLoggerError, RunNotFound } from "./PerfLoggerError.js"

const usage = `usage:
  hasten-perf compare <runA> <runB>   ratio table (B / A) of two runs
  hasten-perf report <run>            regenerate summary.json and report.html from events.jsonl
  hasten-perf summary <run>           print a run's summary table
a run is a run folder, a summary.json file, or a run id under ./performance_logs`

/** The flags of `hasten-perf` (core's `Boundary.parseFlags`, as every Hasten CLI). */
const flags = { help: Boundary.Flag.boolean({ short: "h" }) }

const resolveRun = (run: string, cwd: string): string => {
  const direct = Path.resolve(cwd, run)
  if (Fs.existsSync(direct)) return direct
  const underLogs = Path.resolve(cwd, "performance_logs", run)
  if (Fs.existsSync(underLogs)) return underLogs
  throw new PerfLoggerError({ reason: new RunNotFound({ path: run, description: `no run at ${direct} or ${underLogs}` }) })
}

const loadSummary = (run: string, cwd: string): PerfLogger.Summary => {
  const path = resolveRun(run, cwd)
  const isDirectory = Fs.statSync(path).isDirectory()
  if (isDirectory && !Fs.existsSync(Path.join(path, "summary.json")) && Fs.existsSync(Path.join(path, "events.jsonl"))) {
    return PerfLogger.readRun(path).summary
  }
  return PerfLogger.readSummary(path)
}

/**
 * Runs the CLI on `argv` (without `node` and the script) and returns the exit code and
 * what it printed: 0 ok, 2 bad usage (an unknown flag is named) or a run that cannot be read (`PerfLoggerError`, its
 * message), 1 anything else.
 * @category cli @since 0.1.0
 */
export const main = (argv: ReadonlyArray<string>, cwd = process.cwd()): { readonly code: number; readonly output: string } => {
  const parsed = Boundary.parseFlags(argv, flags, { positionals: true })
  if (parsed._tag === "Failure") return { code: 2, output: `hasten-perf: ${parsed.problem.message}\n${usage}` }
  if (parsed.flags.values.help === true) return { code: 0, output: usage }
  const [command, ...rest] = parsed.flags.positionals
  try {
    switch (command) {
      case "compare": {
        if (rest.length !== 2) return { code: 2, output: usage }
        const a = loadSummary(rest[0]!, cwd)
        const b = loadSummary(rest[1]!, cwd)
        return { code: 0, output: PerfLogger.renderCompare(a, b) }
      }
      case "report": {
        if (rest.length !== 1) return { code: 2, output: usage }
        const runDir = resolveRun(rest[0]!, cwd)
        const summary = PerfLogger.writeReport(runDir)
        return {
          code: 0,
          output: `${PerfLogger.renderSummary(summary)}\nwrote ${Path.join(runDir, "summary.json")} and ${Path.join(runDir, "report.html")}`
        }
      }
      case "summary": {
        if (rest.length !== 1) return { code: 2, output: usage }
        return { code: 0, output: PerfLogger.renderSummary(loadSummary(rest[0]!, cwd)) }
      }
      case "help":
        return { code: 0, output: usage }
      default:
        return { code: 2, output: command === undefined ? usage : `hasten-perf: unknown command ${command}\n${usage}` }
    }
  } catch (error) {
    if (error instanceof PerfLoggerError) return { code: 2, output: `hasten-perf: ${error.reason.description}` }
    return { code: 1, output: `hasten-perf: ${error instanceof Error ? error.message : String(error)}` }
  }
}

const entry = process.argv[1]
if (entry !== undefined && import.meta.url === pathToFileURL(Fs.realpathSync(entry)).href) {
  const { code, output } = main(process.argv.slice(2))
  ;(code === 0 ? process.stdout : process.stderr).write(output + "\n")
  process.exitCode = code
}
