/**
 * The files of a run folder after the fact: read `events.jsonl` and `summary.json`, and
 * regenerate `summary.json` and `report.html` (also for a run that crashed).
 * @since 0.1.0
 */
import { Boundary } from "@hasten/core"
import { Schema } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { parseEvents } from "./internal/events.js"
import { writeFileAtomic } from "./internal/files.js"
import { renderReport } from "./internal/report.js"
import { Aggregator, summarize } from "./internal/stats.js"
import { InvalidRunFile, PerfLoggerError, RunNotFound } from "./PerfLoggerError.js"
import type { Event } from "./RunLog.js"
import type { Summary } from "./Summary.js"

/**
 * Reads a run folder's `events.jsonl` (tolerating a torn last line) and summarizes it;
 * throws `PerfLoggerError` (`RunNotFound`, `InvalidRunFile`).
 * @category files @since 0.1.0
 */
export const readRun = (runDir: string): { readonly events: ReadonlyArray<Event>; readonly summary: Summary } => {
  const path = Path.join(runDir, "events.jsonl")
  if (!Fs.existsSync(path)) {
    throw new PerfLoggerError({ reason: new RunNotFound({ path: runDir, description: `no events.jsonl in ${runDir}` }) })
  }
  const events = parseEvents(Fs.readFileSync(path, "utf8"), path)
  return { events, summary: summarize(events) }
}

/**
 * Renders `report.html` for a list of events.
 * @category files @since 0.1.0
 */
export const renderReportHtml = (events: Iterable<Event>): string => {
  const aggregator = new Aggregator()
  for (const event of events) aggregator.add(event)
  return renderReport({
    summary: aggregator.summary(),
    points: aggregator.points,
    startT: aggregator.startT,
    pointWeight: aggregator.pointStride
  })
}

/**
 * Regenerates `summary.json` and `report.html` of a run folder from its `events.jsonl`
 * (also recovers the files of a run that crashed).
 * @category files @since 0.1.0
 */
export const writeReport = (runDir: string): Summary => {
  const { events, summary: current } = readRun(runDir)
  writeFileAtomic(Path.join(runDir, "summary.json"), JSON.stringify(current, null, 2) + "\n")
  writeFileAtomic(Path.join(runDir, "report.html"), renderReportHtml(events))
  return current
}

const parseJson = Boundary.jsonDecoder(Schema.Unknown)
// What marks a perf-logger summary; the rest is kept as written.
const checkShape = Boundary.decoder(Schema.Struct({ version: Schema.Literal(1), overall: Schema.Record(Schema.String, Schema.Unknown) }))

/**
 * Reads a run's `summary.json` (a run folder, or the file itself); throws
 * `PerfLoggerError` (`RunNotFound`, `InvalidRunFile`).
 * @category files @since 0.1.0
 */
export const readSummary = (path: string): Summary => {
  const file = Fs.existsSync(path) && Fs.statSync(path).isDirectory() ? Path.join(path, "summary.json") : path
  if (!Fs.existsSync(file)) throw new PerfLoggerError({ reason: new RunNotFound({ path, description: `no summary.json at ${path}` }) })
  const notASummary = (detail: string) =>
    new PerfLoggerError({ reason: new InvalidRunFile({ path: file, description: `${file} is not a perf-logger summary${detail}` }) })
  const json = parseJson(Fs.readFileSync(file, "utf8"))
  if (json._tag === "Failure") throw notASummary(` (${Boundary.formatProblems(json.problems)})`)
  const shape = checkShape(json.value)
  if (shape._tag === "Failure") throw notASummary(` (${Boundary.formatProblems(shape.problems)})`)
  return json.value as Summary
}
