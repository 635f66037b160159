/**
 * Aggregation of run events into a summary. The same code runs live (fed one event at a
 * time) and offline (`hasten-perf report` re-reads `events.jsonl`).
 * @since 0.1.0
 */
import { DDSketch } from "@datadog/sketches-js"
import type { Price, PriceTable } from "../Price.js"
import type { CallEvent, Event, MemoryEvent, ModelMemoryEvent, SpeculativeStats } from "../RunLog.js"
import type { CallStats, Distribution, StageStats, Summary } from "../Summary.js"

/** Samples a distribution keeps exactly before it folds them into a sketch. */
export const EXACT_SAMPLES = 10_000

/** Calls whose points the aggregator keeps for the report's charts before it thins them. */
export const POINTS_KEPT = 40_000

/** Relative accuracy of the quantiles once a distribution is sketched. */
export const SKETCH_RELATIVE_ACCURACY = 0.01

/** Nearest-rank quantile of an ascending array. */
export const quantile = (sorted: ArrayLike<number>, p: number): number => {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const rank = Math.min(n, Math.max(1, Math.ceil(p * n)))
  return sorted[rank - 1]!
}

const round = (value: number): number => Math.round(value * 1000) / 1000

/**
 * A growing sample set in bounded memory: the values themselves up to {@link EXACT_SAMPLES} (exact
 * quantiles, what short runs and the tests see), then a DDSketch with 1% relative accuracy
 * (a few kilobytes whatever the run's length: a long streaming run adds one inter-token
 * sample per token, which as an array would grow by gigabytes). Count, sum, min and max are
 * always exact.
 */
export class Samples {
  private values: Array<number> | undefined = []
  private sketch: DDSketch | undefined

  get count(): number {
    return this.values !== undefined ? this.values.length : this.sketch!.count
  }

  push(value: number): void {
    const values = this.values
    if (values === undefined) {
      this.sketch!.accept(value)
      return
    }
    values.push(value)
    if (values.length > EXACT_SAMPLES) {
      const sketch = new DDSketch({ relativeAccuracy: SKETCH_RELATIVE_ACCURACY })
      for (let index = 0; index < values.length; index++) sketch.accept(values[index]!)
      this.sketch = sketch
      this.values = undefined
    }
  }

  /** The distribution so far, or null when there are no samples. */
  distribution(): Distribution | null {
    if (this.values !== undefined) return distribution(this.values)
    const sketch = this.sketch!
    const at = (p: number) => round(Math.min(sketch.max, Math.max(sketch.min, sketch.getValueAtQuantile(p))))
    return {
      count: sketch.count,
      mean: round(sketch.sum / sketch.count),
      min: round(sketch.min),
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      max: round(sketch.max),
      relativeError: SKETCH_RELATIVE_ACCURACY
    }
  }
}

/** Distribution of samples, or null when there are none. */
export const distribution = (samples: ReadonlyArray<number>): Distribution | null => {
  if (samples.length === 0) return null
  const sorted = Float64Array.from(samples).sort()
  let sum = 0
  for (let index = 0; index < sorted.length; index++) sum += sorted[index]!
  return {
    count: sorted.length,
    mean: round(sum / sorted.length),
    min: round(sorted[0]!),
    p50: round(quantile(sorted, 0.5)),
    p90: round(quantile(sorted, 0.9)),
    p99: round(quantile(sorted, 0.99)),
    max: round(sorted[sorted.length - 1]!)
  }
}

/** Looks a price up by `provider/model`, then by `model`. */
export const findPrice = (prices: PriceTable | undefined, provider: string, model: string): Price | undefined =>
  prices === undefined ? undefined : prices[`${provider}/${model}`] ?? prices[model]

/** USD cost of one call; cache hits cost nothing. */
export const callCost = (price: Price, event: CallEvent): number => {
  if (event.cached === true) return 0
  const input = event.inputTokens ?? 0
  const cached = Math.min(input, event.cachedInputTokens ?? 0)
  const cachedPrice = price.cachedInput ?? price.input
  return ((input - cached) * price.input + cached * cachedPrice + (event.outputTokens ?? 0) * price.output) / 1_000_000
}

/** Time per output token of one successful upstream call, from the provider's token count. */
export const timePerOutputToken = (event: CallEvent): number | undefined => {
  const tokens = event.outputTokens ?? 0
  if (tokens <= 0) return undefined
  if (event.ttftMs !== undefined && tokens > 1) return (event.latencyMs - event.ttftMs) / (tokens - 1)
  return event.latencyMs / tokens
}

class CallGroup {
  calls = 0
  streams = 0
  succeeded = 0
  errors = 0
  errorsByClass: Record<string, number> = {}
  readonly latency = new Samples()
  readonly cacheHitLatency = new Samples()
  readonly ttft = new Samples()
  readonly itl = new Samples()
  readonly tpot = new Samples()
  firstStart = Number.POSITIVE_INFINITY
  lastEnd = Number.NEGATIVE_INFINITY
  inputTokens = 0
  outputTokens = 0
  upstreamOutputTokens = 0
  cachedInputTokens = 0
  hits = 0
  misses = 0
  retries = 0
  retriedCalls = 0
  waitMs = 0
  waitMaxMs = 0
  backoffMs = 0
  timeouts = 0
  readonly batchSizes = new Samples()
  readonly queueWait = new Samples()
  specCalls = 0
  specWeight = 0
  specAcceptance = 0
  specLengthWeight = 0
  specLength = 0
  specPosition: Array<number> = []
  specPositionWeight: Array<number> = []
  cost = 0
  priced = 0

  add(event: CallEvent, price: Price | undefined): void {
    this.calls++
    if (event.op === "stream") this.streams++
    if (event.start < this.firstStart) this.firstStart = event.start
    const end = event.start + event.latencyMs
    if (end > this.lastEnd) this.lastEnd = end
    if (!event.ok) {
      this.errors++
      const kind = event.error ?? "Unknown"
      this.errorsByClass[kind] = (this.errorsByClass[kind] ?? 0) + 1
    } else {
      this.succeeded++
      this.inputTokens += event.inputTokens ?? 0
      this.outputTokens += event.outputTokens ?? 0
      this.cachedInputTokens += event.cachedInputTokens ?? 0
      if (event.cached === true) {
        this.hits++
        this.cacheHitLatency.push(event.latencyMs)
      } else {
        this.misses++
        this.latency.push(event.latencyMs)
        this.upstreamOutputTokens += event.outputTokens ?? 0
        if (event.ttftMs !== undefined) this.ttft.push(event.ttftMs)
        if (event.itlMs !== undefined) { for (const value of event.itlMs) this.itl.push(value) }
        const tpot = timePerOutputToken(event)
        if (tpot !== undefined) this.tpot.push(tpot)
      }
      if (price !== undefined) {
        this.cost += callCost(price, event)
        this.priced++
      }
    }
    if (event.retries !== undefined && event.retries > 0) {
      this.retries += event.retries
      this.retriedCalls++
    }
    if (event.rateLimitWaitMs !== undefined) {
      this.waitMs += event.rateLimitWaitMs
      if (event.rateLimitWaitMs > this.waitMaxMs) this.waitMaxMs = event.rateLimitWaitMs
    }
    if (event.backoffMs !== undefined) this.backoffMs += event.backoffMs
    if (event.timeouts !== undefined) this.timeouts += event.timeouts
    if (event.batchSize !== undefined) this.batchSizes.push(event.batchSize)
    if (event.queueWaitMs !== undefined) this.queueWait.push(event.queueWaitMs)
    if (event.speculative !== undefined) this.addSpeculative(event.speculative)
  }

  private addSpeculative(stats: SpeculativeStats): void {
    const weight = stats.targetEvaluations !== undefined && stats.targetEvaluations > 0 ? stats.targetEvaluations : 1
    this.specCalls++
    this.specWeight += weight
    this.specAcceptance += stats.acceptanceRate * weight
    if (stats.meanAcceptedLength !== undefined) {
      this.specLength += stats.meanAcceptedLength * weight
      this.specLengthWeight += weight
    }
    if (stats.perPosition !== undefined) {
      stats.perPosition.forEach((rate, position) => {
        this.specPosition[position] = (this.specPosition[position] ?? 0) + rate * weight
        this.specPositionWeight[position] = (this.specPositionWeight[position] ?? 0) + weight
      })
    }
  }

  stats(): CallStats {
    const activeMs = this.calls === 0 ? 0 : this.lastEnd - this.firstStart
    const seconds = activeMs / 1000
    return {
      calls: this.calls,
      streams: this.streams,
      succeeded: this.succeeded,
      errors: this.errors,
      errorsByClass: this.errorsByClass,
      latencyMs: this.latency.distribution(),
      cacheHitLatencyMs: this.cacheHitLatency.distribution(),
      ttftMs: this.ttft.distribution(),
      itlMs: this.itl.distribution(),
      tpotMs: this.tpot.distribution(),
      outputTokensPerSecond: seconds > 0 ? round(this.upstreamOutputTokens / seconds) : null,
      requestsPerSecond: seconds > 0 ? round(this.calls / seconds) : null,
      activeMs: round(activeMs),
      tokens: { input: this.inputTokens, output: this.outputTokens, cachedInput: this.cachedInputTokens },
      cache: {
        hits: this.hits,
        misses: this.misses,
        hitRate: this.hits + this.misses > 0 ? round(this.hits / (this.hits + this.misses)) : null
      },
      retries: {
        total: this.retries,
        retriedCalls: this.retriedCalls,
        rateLimitWaitMs: round(this.waitMs),
        rateLimitWaitMaxMs: round(this.waitMaxMs),
        backoffMs: round(this.backoffMs),
        timeouts: this.timeouts
      },
      batch: this.batchSizes.count === 0
        ? null
        : { sizes: this.batchSizes.distribution()!, queueWaitMs: this.queueWait.distribution() },
      speculative: this.specCalls === 0
        ? null
        : {
          calls: this.specCalls,
          acceptanceRate: round(this.specAcceptance / this.specWeight),
          meanAcceptedLength: this.specLengthWeight > 0 ? round(this.specLength / this.specLengthWeight) : null,
          perPosition: Array.from(this.specPosition, (sum, position) => {
            const weight = this.specPositionWeight[position] ?? 0
            return weight > 0 ? round((sum ?? 0) / weight) : 0
          })
        },
      costUsd: this.priced > 0 ? Math.round(this.cost * 1e9) / 1e9 : null
    }
  }
}

class StageGroup {
  readonly calls = new CallGroup()
  invocations = 0
  failed = 0
  items = 0
  itemsRecorded = false
  firstStart = Number.POSITIVE_INFINITY
  lastEnd = Number.NEGATIVE_INFINITY
  readonly durations = new Samples()

  span(start: number, end: number): void {
    if (start < this.firstStart) this.firstStart = start
    if (end > this.lastEnd) this.lastEnd = end
  }

  stats(): StageStats {
    const wallMs = Number.isFinite(this.firstStart) ? this.lastEnd - this.firstStart : 0
    const items = this.itemsRecorded ? this.items : this.invocations - this.failed
    return {
      ...this.calls.stats(),
      invocations: this.invocations,
      failedInvocations: this.failed,
      items,
      itemsPerSecond: wallMs > 0 ? round(items / (wallMs / 1000)) : null,
      wallMs: round(wallMs),
      durationMs: this.durations.distribution()
    }
  }
}

/** Incremental summary of a run. */
export class Aggregator {
  runId = ""
  startT = Number.NaN
  endT = Number.NaN
  lastT = Number.NaN
  complete = false
  prices: PriceTable | undefined
  readonly overall = new CallGroup()
  readonly models = new Map<string, CallGroup>()
  readonly stages = new Map<string, StageGroup>()
  readonly unpriced = new Set<string>()
  /**
   * Flat `[start, latencyMs, outputTokens, flags]` per kept call for the report (flags: 1 ok,
   * 2 cache hit): every call up to {@link POINTS_KEPT}, then every `pointStride`-th one.
   */
  points: Array<number> = []
  /** Calls each kept point stands for: doubles each time the kept points reach the bound. */
  pointStride = 1
  private callIndex = 0
  memorySamples = 0
  memory: MemoryEvent | undefined
  /** The latest memory each local model reported, by model id. */
  readonly modelMemory = new Map<string, ModelMemoryEvent>()
  rssPeak = 0
  heapPeak = 0

  constructor(prices?: PriceTable) {
    this.prices = prices
  }

  private stage(name: string): StageGroup {
    let group = this.stages.get(name)
    if (group === undefined) {
      group = new StageGroup()
      this.stages.set(name, group)
    }
    return group
  }

  private seen(t: number): void {
    if (Number.isNaN(this.startT)) this.startT = t
    if (Number.isNaN(this.lastT) || t > this.lastT) this.lastT = t
  }

  /** Events added so far. */
  count = 0

  add(event: Event): void {
    this.count++
    switch (event.type) {
      case "run_start": {
        this.runId = event.runId
        this.startT = event.t
        this.seen(event.t)
        if (this.prices === undefined && event.prices !== undefined) this.prices = event.prices
        return
      }
      case "run_end": {
        this.endT = event.t
        this.complete = true
        this.seen(event.t)
        return
      }
      case "call": {
        this.seen(event.start)
        this.seen(event.start + event.latencyMs)
        const key = `${event.provider}/${event.model}`
        const price = findPrice(this.prices, event.provider, event.model)
        if (price === undefined && this.prices !== undefined) this.unpriced.add(key)
        this.overall.add(event, price)
        if (this.callIndex++ % this.pointStride === 0) {
          this.points.push(event.start, event.latencyMs, event.outputTokens ?? 0, (event.ok ? 1 : 0) | (event.cached === true ? 2 : 0))
          if (this.points.length >= POINTS_KEPT * 4) this.halvePoints()
        }
        let group = this.models.get(key)
        if (group === undefined) {
          group = new CallGroup()
          this.models.set(key, group)
        }
        group.add(event, price)
        if (event.stage !== undefined) this.stage(event.stage).calls.add(event, price)
        return
      }
      case "stage": {
        const end = event.start + event.durationMs
        this.seen(event.start)
        this.seen(end)
        const group = this.stage(event.stage)
        group.invocations++
        if (!event.ok) group.failed++
        group.durations.push(event.durationMs)
        group.span(event.start, end)
        return
      }
      case "items": {
        this.seen(event.t)
        const group = this.stage(event.stage)
        group.items += event.n
        group.itemsRecorded = true
        group.span(event.t, event.t)
        return
      }
      case "model_memory": {
        this.seen(event.t)
        this.modelMemory.set(event.model, event)
        return
      }
      case "memory": {
        this.seen(event.t)
        this.memorySamples++
        this.memory = event
        if (event.rss > this.rssPeak) this.rssPeak = event.rss
        if (event.heapUsed > this.heapPeak) this.heapPeak = event.heapUsed
        return
      }
    }
  }

  /** Keeps every other point (calls 0, 2s, 4s, … of stride s): the report's sample, evenly spaced, in bounded memory. */
  private halvePoints(): void {
    const kept: Array<number> = []
    for (let at = 0; at < this.points.length; at += 8) {
      kept.push(this.points[at]!, this.points[at + 1]!, this.points[at + 2]!, this.points[at + 3]!)
    }
    this.points = kept
    this.pointStride *= 2
  }

  summary(now?: number): Summary {
    const end = !Number.isNaN(this.endT) ? this.endT : now ?? this.lastT
    const start = Number.isNaN(this.startT) ? end : this.startT
    const byModel: Record<string, CallStats> = {}
    for (const [key, group] of this.models) byModel[key] = group.stats()
    const byStage: Record<string, StageStats> = {}
    for (const [key, group] of this.stages) byStage[key] = group.stats()
    const overall = this.overall.stats()
    let cost: Summary["cost"] = null
    if (this.prices !== undefined) {
      const costByModel: Record<string, number> = {}
      for (const [key, stats] of Object.entries(byModel)) if (stats.costUsd !== null) costByModel[key] = stats.costUsd
      cost = { totalUsd: overall.costUsd ?? 0, byModel: costByModel, unpricedModels: [...this.unpriced] }
    }
    return {
      version: 1,
      runId: this.runId,
      startedAt: new Date(Number.isFinite(start) ? start : 0).toISOString(),
      endedAt: new Date(Number.isFinite(end) ? end : 0).toISOString(),
      wallMs: Number.isFinite(end - start) ? round(end - start) : 0,
      complete: this.complete,
      overall,
      byModel,
      byStage,
      memory: this.memory === undefined ? null : {
        samples: this.memorySamples,
        rssPeakBytes: this.rssPeak,
        heapUsedPeakBytes: this.heapPeak,
        rssLastBytes: this.memory.rss,
        heapUsedLastBytes: this.memory.heapUsed
      },
      ...(this.modelMemory.size === 0 ? {} : {
        modelMemory: [...this.modelMemory.values()].map((event) => ({
          model: event.model,
          weightsBytes: event.weightsBytes,
          kvCacheBytes: event.kvCacheBytes,
          computeBytes: event.computeBytes,
          totalBytes: event.weightsBytes + event.kvCacheBytes + event.computeBytes,
          contextSize: event.contextSize,
          sequences: event.sequences
        }))
      }),
      cost
    }
  }
}

/** Summarizes a list of events (what `hasten-perf report` does with `events.jsonl`). */
export const summarize = (events: Iterable<Event>, prices?: PriceTable): Summary => {
  const aggregator = new Aggregator(prices)
  for (const event of events) aggregator.add(event)
  return aggregator.summary()
}
