/**
 * The Effect `Metric`s the middleware, stages and recorder update, named after the
 * OpenTelemetry GenAI semantic conventions (`gen_ai.client.*`) plus Hasten's own
 * (`hasten_perf_logger_*`); OTLP and Prometheus export them (see `Exporter`).
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import { acceptanceBoundaries, batchBoundaries, chunkBoundaries, durationBoundaries, tokenBoundaries } from "./internal/buckets.js"

/**
 * `gen_ai.client.operation.duration` (seconds).
 * @category metrics @since 0.1.0
 */
export const operationDuration = Metric.histogram("gen_ai.client.operation.duration", {
  description: "GenAI operation duration",
  boundaries: durationBoundaries,
  attributes: { unit: "s" }
})

/**
 * `gen_ai.client.token.usage` with `gen_ai.token.type` = `input` | `output`.
 * @category metrics @since 0.1.0
 */
export const tokenUsage = Metric.histogram("gen_ai.client.token.usage", {
  description: "Number of input and output tokens used",
  boundaries: tokenBoundaries,
  attributes: { unit: "{token}" }
})

/**
 * `gen_ai.client.operation.time_to_first_chunk` (seconds, streaming calls).
 * @category metrics @since 0.1.0
 */
export const timeToFirstChunk = Metric.histogram("gen_ai.client.operation.time_to_first_chunk", {
  description: "Time to receive the first chunk of a streamed response",
  boundaries: chunkBoundaries,
  attributes: { unit: "s" }
})

/**
 * `gen_ai.client.operation.time_per_output_chunk` (seconds, each chunk after the first).
 * @category metrics @since 0.1.0
 */
export const timePerOutputChunk = Metric.histogram("gen_ai.client.operation.time_per_output_chunk", {
  description: "Time between successive chunks of a streamed response",
  boundaries: chunkBoundaries,
  attributes: { unit: "s" }
})

/**
 * Calls by outcome: `hasten_perf_logger_requests_total` (attribute `hasten.cache` = hit|miss, `error.type` on failures).
 * @category metrics @since 0.1.0
 */
export const requestsTotal = Metric.counter("hasten_perf_logger_requests_total", {
  description: "LLM calls measured by perf-logger",
  incremental: true
})

/**
 * Retries reported by the rate-limit middleware.
 * @category metrics @since 0.1.0
 */
export const retriesTotal = Metric.counter("hasten_perf_logger_retries_total", {
  description: "Retries reported in Completion.facts.retries",
  incremental: true
})

/**
 * Rate-limit wait reported by the rate-limit middleware (seconds).
 * @category metrics @since 0.1.0
 */
export const rateLimitWaitSeconds = Metric.counter("hasten_perf_logger_rate_limit_wait_seconds_total", {
  description: "Time spent waiting for rate-limit budget",
  incremental: true
})

/**
 * Batch sizes reported by the batcher.
 * @category metrics @since 0.1.0
 */
export const batchSize = Metric.histogram("hasten_perf_logger_batch_size", {
  description: "Batch size a call was served in",
  boundaries: batchBoundaries
})

/**
 * Speculative acceptance rate per call.
 * @category metrics @since 0.1.0
 */
export const acceptanceRate = Metric.histogram("hasten_perf_logger_speculative_acceptance_rate", {
  description: "Speculative decoding acceptance rate per call",
  boundaries: acceptanceBoundaries
})

/**
 * Items processed per stage.
 * @category metrics @since 0.1.0
 */
export const stageItems = Metric.counter("hasten_perf_logger_stage_items_total", {
  description: "Items processed by a pipeline stage",
  incremental: true
})

/**
 * Stage invocation duration (seconds).
 * @category metrics @since 0.1.0
 */
export const stageDuration = Metric.histogram("hasten_perf_logger_stage_duration_seconds", {
  description: "Duration of one pipeline stage invocation",
  boundaries: durationBoundaries,
  attributes: { unit: "s" }
})

/**
 * Process resident set size (bytes), sampled by the recorder.
 * @category metrics @since 0.1.0
 */
export const memoryRss = Metric.gauge("hasten_perf_logger_process_rss_bytes", {
  description: "Process resident set size",
  attributes: { unit: "bytes" }
})

/**
 * Process V8 heap used (bytes), sampled by the recorder.
 * @category metrics @since 0.1.0
 */
export const memoryHeapUsed = Metric.gauge("hasten_perf_logger_process_heap_used_bytes", {
  description: "V8 heap used",
  attributes: { unit: "bytes" }
})
