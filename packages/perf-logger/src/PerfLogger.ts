/**
 * One consistent set of LLM performance metrics: an `Llm` middleware that measures every
 * call, a run recorder that writes `performance_logs/<run-id>/events.jsonl`,
 * `summary.json` and `report.html`, pipeline stage tracking, and Effect `Metric`s and
 * spans named after the OpenTelemetry GenAI semantic conventions for OTLP export.
 *
 * The entry namespace: everything the package's modules export, in one place —
 * `Recorder` (the run recorder service and its layers), `Middleware` (the measuring `Llm`
 * layer), `Stage`, `Metrics`, `Exporter` (OTLP, Prometheus), `RunLog` (the
 * `events.jsonl` records), `RunFiles`, `Summary`, `Price` and `Measure` (plain async code).
 * As in every Hasten package, `layer` is the `Llm` middleware; the run recorder's layer is
 * `layerRun`.
 * @since 0.1.0
 */
import type { Llm } from "@hasten/core"
import type * as Layer from "effect/Layer"
import * as Middleware from "./Middleware.js"
import type { PerfLogger } from "./Recorder.js"

export * from "./Exporter.js"
export * from "./Measure.js"
export * from "./Metrics.js"
export { layer, wrap } from "./Middleware.js"
export * from "./PerfLoggerError.js"
export * from "./Price.js"
export { flushConfig, layer as layerRun, layerConfig, layerMemory, make, PerfLogger, printSummary, summary } from "./Recorder.js"
export type { Options, PerfLoggerService } from "./Recorder.js"
export * from "./RunFiles.js"
export * from "./RunLog.js"
export * from "./Stage.js"
export * from "./Summary.js"

/**
 * The measuring middleware under its former name.
 * @deprecated Use `PerfLogger.layer` (the same layer); `layerLlm` will be removed in a later release.
 * @category layers @since 0.1.0
 */
export const layerLlm: Layer.Layer<Llm.Llm, never, Llm.Llm | PerfLogger> = Middleware.layer
