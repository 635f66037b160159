/**
 * The run summary (`summary.json`): latency, TTFT, ITL, throughput, tokens, cache, retries,
 * batches, speculative statistics, memory and cost, over the run, per model and per stage;
 * how it is computed from events, and how it is printed.
 * @since 0.1.0
 */
import * as stats from "./internal/stats.js"
import * as table from "./internal/table.js"
import type { PriceTable } from "./Price.js"
import type { Event } from "./RunLog.js"

/**
 * Distribution of a sample set: nearest-rank quantiles (p = sorted[ceil(p·n) − 1]). Past
 * 10,000 samples the quantiles come from a DDSketch and are within `relativeError` of the
 * exact ones; count, mean, min and max stay exact.
 * @category models @since 0.1.0
 */
export interface Distribution {
  readonly count: number
  readonly mean: number
  readonly min: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
  /** Present when the quantiles are a sketch's: their bound on relative error (0.01 = 1%). */
  readonly relativeError?: number
}

/**
 * Metrics of a set of calls (the whole run, one provider/model, or one stage).
 * @category models @since 0.1.0
 */
export interface CallStats {
  readonly calls: number
  readonly streams: number
  readonly succeeded: number
  readonly errors: number
  readonly errorsByClass: Readonly<Record<string, number>>
  /** End-to-end latency of successful calls that went upstream (cache hits excluded). */
  readonly latencyMs: Distribution | null
  /** Latency of cache hits, reported apart from upstream latency. */
  readonly cacheHitLatencyMs: Distribution | null
  /** Time to first token (streams, and completions whose provider reported a first-token time). */
  readonly ttftMs: Distribution | null
  /** Inter-token latency: one sample per output token after the first chunk. */
  readonly itlMs: Distribution | null
  /** Time per output token from provider-reported `usage.outputTokens`. */
  readonly tpotMs: Distribution | null
  /** Output tokens of upstream calls divided by the group's active wall time. */
  readonly outputTokensPerSecond: number | null
  readonly requestsPerSecond: number | null
  /** First call start to last call end. */
  readonly activeMs: number
  readonly tokens: { readonly input: number; readonly output: number; readonly cachedInput: number }
  readonly cache: { readonly hits: number; readonly misses: number; readonly hitRate: number | null }
  /** From the calls' facts (`retries`, `rateLimitWaitMillis`, `backoffMillis`, `timeouts`). */
  readonly retries: {
    readonly total: number
    readonly retriedCalls: number
    readonly rateLimitWaitMs: number
    readonly rateLimitWaitMaxMs: number
    /** Time slept between attempts. */
    readonly backoffMs: number
    /** Attempts cut short by the attempt deadline. */
    readonly timeouts: number
  }
  /** From the calls' `batchSize` and `queueWaitMillis` facts. */
  readonly batch: { readonly sizes: Distribution; readonly queueWaitMs: Distribution | null } | null
  readonly speculative: {
    readonly calls: number
    readonly acceptanceRate: number
    readonly meanAcceptedLength: number | null
    readonly perPosition: ReadonlyArray<number>
  } | null
  /** USD; null when no price matched any call. */
  readonly costUsd: number | null
}

/**
 * Stage throughput plus the calls made inside the stage.
 * @category models @since 0.1.0
 */
export interface StageStats extends CallStats {
  readonly invocations: number
  readonly failedInvocations: number
  /** Items recorded with `recordItems`, or the number of finished invocations when none were. */
  readonly items: number
  readonly itemsPerSecond: number | null
  /** First stage start to last stage end. */
  readonly wallMs: number
  readonly durationMs: Distribution | null
}

/**
 * The `summary.json` document.
 * @category models @since 0.1.0
 */
export interface Summary {
  readonly version: 1
  readonly runId: string
  readonly startedAt: string
  readonly endedAt: string
  readonly wallMs: number
  readonly complete: boolean
  readonly overall: CallStats
  /** Keyed by `provider/model`. */
  readonly byModel: Readonly<Record<string, CallStats>>
  readonly byStage: Readonly<Record<string, StageStats>>
  readonly memory: {
    readonly samples: number
    readonly rssPeakBytes: number
    readonly heapUsedPeakBytes: number
    readonly rssLastBytes: number
    readonly heapUsedLastBytes: number
  } | null
  /**
   * Each local model's memory as it reported it (`modelMemory` facts): weights, KV cache and
   * compute buffers, in bytes, beside the process RSS in `memory`. Absent when no call reported one.
   */
  readonly modelMemory?: ReadonlyArray<ModelMemorySummary>
  readonly cost: {
    readonly totalUsd: number
    readonly byModel: Readonly<Record<string, number>>
    readonly unpricedModels: ReadonlyArray<string>
  } | null
}

/**
 * One local model's memory in a {@link Summary}.
 * @category models @since 0.2.0
 */
export interface ModelMemorySummary {
  readonly model: string
  readonly weightsBytes: number
  readonly kvCacheBytes: number
  readonly computeBytes: number
  /** weights + KV cache + compute. */
  readonly totalBytes: number
  readonly contextSize: number
  readonly sequences: number
}

/**
 * Nearest-rank quantile of an ascending array: `sorted[ceil(p·n) − 1]` (`NaN` when empty).
 * @category utils @since 0.1.0
 */
export const quantile: (sorted: ArrayLike<number>, p: number) => number = stats.quantile

/**
 * Summarizes a list of events (what `hasten-perf report` does with `events.jsonl`).
 * @category constructors @since 0.1.0
 */
export const summarize: (events: Iterable<Event>, prices?: PriceTable) => Summary = stats.summarize

/**
 * The console summary table of a run.
 * @category rendering @since 0.1.0
 */
export const renderSummary: (summary: Summary) => string = table.renderSummary

/**
 * The ratio table (B / A) of two runs, as `hasten-perf compare` prints it.
 * @category rendering @since 0.1.0
 */
export const renderCompare: (a: Summary, b: Summary) => string = table.renderCompare

/**
 * A plain-text table with aligned columns; the first row is the header.
 * @category rendering @since 0.1.0
 */
export const renderTable: (rows: ReadonlyArray<ReadonlyArray<string>>) => string = table.renderTable
