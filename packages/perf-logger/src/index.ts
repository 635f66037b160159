/**
 * `@hasten/perf-logger`: LLM performance metrics — run logs, summary tables, an HTML
 * report with charts, and OpenTelemetry export.
 * @since 0.1.0
 */

/** Everything in one namespace: the measuring middleware, the run recorder, stages and exporters. @since 0.1.0 */
export * as PerfLogger from "./PerfLogger.js"

/** OTLP/HTTP export and the Prometheus endpoint. @since 0.1.0 */
export * as Exporter from "./Exporter.js"

/** `measure`: the middleware and a recorder for plain async code. @since 0.1.0 */
export * as Measure from "./Measure.js"

/** The exported Effect metrics (GenAI semantic conventions and Hasten's own). @since 0.1.0 */
export * as Metrics from "./Metrics.js"

/** The measuring `Llm` middleware. @since 0.1.0 */
export * as Middleware from "./Middleware.js"

/** `PerfLoggerError`, the package's one error, and its reasons. @since 0.2.0 */
export * as PerfLoggerError from "./PerfLoggerError.js"

/** Model prices for the cost estimate. @since 0.1.0 */
export * as Price from "./Price.js"

/** The run recorder service (`PerfLogger`) and its layers. @since 0.1.0 */
export * as Recorder from "./Recorder.js"

/** Reading and regenerating a run folder's files. @since 0.1.0 */
export * as RunFiles from "./RunFiles.js"

/** The `events.jsonl` records, flush modes and parser. @since 0.1.0 */
export * as RunLog from "./RunLog.js"

/** Pipeline stages: `stage`, `recordItems`, `CurrentStage`. @since 0.1.0 */
export * as Stage from "./Stage.js"

/** The run summary document, how it is computed and printed. @since 0.1.0 */
export * as Summary from "./Summary.js"
