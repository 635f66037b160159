/**
 * The limiter's metrics: pre-call waits, retries, 429 answers and the adaptive
 * concurrency limit, each by key.
 * @since 0.1.0
 */
import { Metric } from "effect"

/** Pre-call waits (a budget, a header hold or a cooldown delayed a call), by key and reason. @category metrics @since 0.1.0 */
export const waitsTotal = Metric.counter("hasten_rate_limit_waits_total", {
  description: "Calls delayed before they were sent",
  incremental: true
})
/** Seconds spent in pre-call waits, by key and reason. @category metrics @since 0.1.0 */
export const waitSecondsTotal = Metric.counter("hasten_rate_limit_wait_seconds_total", {
  description: "Seconds calls waited for a budget before they were sent",
  incremental: true
})
/** Retries, by key and error reason. @category metrics @since 0.1.0 */
export const retriesTotal = Metric.counter("hasten_rate_limit_retries_total", {
  description: "Retries after retryable errors",
  incremental: true
})
/** HTTP 429 answers, by key and scope (`requests`, `tokens`, `quota`, …). @category metrics @since 0.1.0 */
export const http429Total = Metric.counter("hasten_rate_limit_http429_total", {
  description: "Calls answered 429 by the provider",
  incremental: true
})
/** The current adaptive concurrency limit, by key. @category metrics @since 0.1.0 */
export const concurrencyLimit = Metric.gauge("hasten_rate_limit_concurrency", {
  description: "Adaptive concurrency limit"
})

/** Attempts cut at their deadline (a hung call), by key. @category metrics @since 0.2.0 */
export const timeoutsTotal = Metric.counter("hasten_rate_limit_timeouts_total", {
  description: "Attempts cut at their deadline and retried",
  incremental: true
})
