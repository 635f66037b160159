/**
 * The server's own metrics (requests by route and status, latency histograms, tokens, queue
 * depth, in-flight requests, rejections) kept as plain counters on the hot path, and the
 * `/metrics` page: them in the Prometheus text format followed by every Effect `Metric` of
 * the stacks (cache hits, rate-limit waits, perf-logger histograms, batch sizes).
 * @since 0.1.0
 */
import { Effect } from "effect"
import { PrometheusMetrics } from "effect/observability"

/** Upper bounds (seconds) of the latency histogram buckets. @category metrics @since 0.1.0 */
export const latencyBuckets: ReadonlyArray<number> = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60
]

interface Histogram {
  readonly counts: Array<number>
  sum: number
  count: number
}

interface Series {
  readonly labels: string
  readonly statusKeys: Map<number, string>
  histogram: Histogram | undefined
}

/**
 * The server's counters; one instance per server.
 * @category metrics @since 0.1.0
 */
export class ServerMetrics {
  private readonly requests = new Map<string, number>()
  private readonly durations = new Map<string, Histogram>()
  private readonly tokens = new Map<string, number>()
  private readonly rejected = new Map<string, number>()
  /** Requests being answered now. */
  inFlight = 0
  /** Requests waiting for a slot. */
  queued = 0
  /** Models whose stacks are built. */
  modelsReady = 0
  /** Models configured. */
  modelsTotal = 0

  // The label strings of each route and model (and status), built once: a request's counters
  // are then updated by keys that exist already (no escaping, no new string to hash).
  private readonly series = new Map<string, Map<string, Series>>()
  private readonly tokenKeys = new Map<string, { readonly input: string; readonly output: string }>()

  /** Counts one answered request and its latency. */
  record(route: string, model: string, status: number, seconds: number): void {
    let byModel = this.series.get(route)
    if (byModel === undefined) this.series.set(route, byModel = new Map())
    let series = byModel.get(model)
    if (series === undefined) {
      const labels = `route="${route}",model="${escapeLabel(model)}"`
      series = { labels, statusKeys: new Map(), histogram: undefined }
      byModel.set(model, series)
    }
    let key = series.statusKeys.get(status)
    if (key === undefined) series.statusKeys.set(status, key = `${series.labels},status="${status}"`)
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1)
    let histogram = series.histogram
    if (histogram === undefined) {
      histogram = { counts: Array.from({ length: latencyBuckets.length }, () => 0), sum: 0, count: 0 }
      series.histogram = histogram
      this.durations.set(series.labels, histogram)
    }
    for (let index = 0; index < latencyBuckets.length; index++) {
      if (seconds <= latencyBuckets[index]!) {
        histogram.counts[index]!++
        break
      }
    }
    histogram.sum += seconds
    histogram.count++
  }

  /** Adds tokens used by a model. */
  addTokens(model: string, input: number, output: number): void {
    let keys = this.tokenKeys.get(model)
    if (keys === undefined) {
      const label = escapeLabel(model)
      keys = { input: `model="${label}",type="input"`, output: `model="${label}",type="output"` }
      this.tokenKeys.set(model, keys)
    }
    this.tokens.set(keys.input, (this.tokens.get(keys.input) ?? 0) + input)
    this.tokens.set(keys.output, (this.tokens.get(keys.output) ?? 0) + output)
  }

  /** Counts a request refused before it ran (`queue_full`, `unauthorized`, `draining`, `loading`). */
  reject(reason: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1)
  }

  /** The server's metrics in the Prometheus text format. */
  text(): string {
    const lines: Array<string> = []
    lines.push("# HELP hasten_server_requests_total Requests answered, by route, model and status")
    lines.push("# TYPE hasten_server_requests_total counter")
    for (const [key, value] of this.requests) lines.push(`hasten_server_requests_total{${key}} ${value}`)
    lines.push("# HELP hasten_server_request_duration_seconds Time from the request's arrival to the end of its response")
    lines.push("# TYPE hasten_server_request_duration_seconds histogram")
    for (const [key, histogram] of this.durations) {
      let cumulative = 0
      for (let index = 0; index < latencyBuckets.length; index++) {
        cumulative += histogram.counts[index]!
        lines.push(`hasten_server_request_duration_seconds_bucket{${key},le="${latencyBuckets[index]}"} ${cumulative}`)
      }
      lines.push(`hasten_server_request_duration_seconds_bucket{${key},le="+Inf"} ${histogram.count}`)
      lines.push(`hasten_server_request_duration_seconds_sum{${key}} ${histogram.sum}`)
      lines.push(`hasten_server_request_duration_seconds_count{${key}} ${histogram.count}`)
    }
    lines.push("# HELP hasten_server_tokens_total Tokens reported by the models, by type")
    lines.push("# TYPE hasten_server_tokens_total counter")
    for (const [key, value] of this.tokens) lines.push(`hasten_server_tokens_total{${key}} ${value}`)
    lines.push("# HELP hasten_server_rejected_total Requests refused before they ran, by reason")
    lines.push("# TYPE hasten_server_rejected_total counter")
    for (const [key, value] of this.rejected) lines.push(`hasten_server_rejected_total{reason="${key}"} ${value}`)
    lines.push("# HELP hasten_server_in_flight Requests being answered")
    lines.push("# TYPE hasten_server_in_flight gauge")
    lines.push(`hasten_server_in_flight ${this.inFlight}`)
    lines.push("# HELP hasten_server_queue_depth Requests waiting for a slot")
    lines.push("# TYPE hasten_server_queue_depth gauge")
    lines.push(`hasten_server_queue_depth ${this.queued}`)
    lines.push("# HELP hasten_server_models_ready Models whose stacks are built")
    lines.push("# TYPE hasten_server_models_ready gauge")
    lines.push(`hasten_server_models_ready ${this.modelsReady}`)
    lines.push("# HELP hasten_server_models Models configured")
    lines.push("# TYPE hasten_server_models gauge")
    lines.push(`hasten_server_models ${this.modelsTotal}`)
    return `${lines.join("\n")}\n`
  }
}

const escapeLabel = (value: string): string => value.replace(/["\\\n]/g, (character) => character === "\n" ? "\\n" : `\\${character}`)

/**
 * The whole `/metrics` page: the server's counters, then every Effect `Metric` in the
 * registry (cache, rate-limit, batcher, perf-logger).
 * @category metrics @since 0.1.0
 */
export const prometheusText = (metrics: ServerMetrics): Effect.Effect<string> =>
  Effect.map(PrometheusMetrics.format(), (effectMetrics) => `${metrics.text()}${effectMetrics}`)
