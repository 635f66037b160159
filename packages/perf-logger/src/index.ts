/**
 * `@hasten/perf-logger`: LLM performance metrics — run logs, summary tables, an HTML
 * report with charts, and OpenTelemetry export.
 * @since 0.1.0
 */

/** The measuring middleware, the run recorder, stages and exporters. @since 0.1.0 */
export * as PerfLogger from "./PerfLogger.js"
