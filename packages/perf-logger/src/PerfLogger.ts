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
 * @since 0.1.0
 */
export * from "./Exporter.js"
export * from "./Measure.js"
export * from "./Metrics.js"
export { wrap } from "./Middleware.js"
/**
 * The measuring middleware: needs the `Llm` below it and the {@link PerfLogger} recorder,
 * provides an `Llm` that records every call (`Middleware.layer`).
 * @category layers @since 0.1.0
 */
export { layer as layerLlm } from "./Middleware.js"
export * from "./Price.js"
export * from "./Recorder.js"
export * from "./RunFiles.js"
export * from "./RunLog.js"
export * from "./Stage.js"
export * from "./Summary.js"
