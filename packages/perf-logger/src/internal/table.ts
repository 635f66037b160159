/**
 * Plain-text tables: the end-of-run summary and the two-run comparison.
 * @since 0.1.0
 */
import type { CallStats, Distribution, Summary } from "../Summary.js"
import { EXACT_SAMPLES } from "./stats.js"

/** Renders rows as an aligned text table; the first row is the header. */
export const renderTable = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths: Array<number> = []
  for (const row of rows) row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, cell.length)))
  const line = (row: ReadonlyArray<string>) =>
    row.map((cell, index) => (index === 0 ? cell.padEnd(widths[index]!) : cell.padStart(widths[index]!))).join("  ")
  const [header, ...body] = rows
  if (header === undefined) return ""
  const rule = widths.map((width) => "-".repeat(width)).join("  ")
  return [line(header), rule, ...body.map(line)].join("\n")
}

const ms = (value: number | null | undefined): string =>
  value === null || value === undefined || Number.isNaN(value)
    ? "-"
    : value >= 1000
    ? `${(value / 1000).toFixed(2)}s`
    : value >= 10
    ? `${value.toFixed(0)}ms`
    : `${value.toFixed(2)}ms`

const num = (value: number | null | undefined, digits = 1): string =>
  value === null || value === undefined || Number.isNaN(value) ? "-" : value.toFixed(digits)

const pct = (value: number | null | undefined): string => value === null || value === undefined ? "-" : `${(value * 100).toFixed(1)}%`

const usd = (value: number | null | undefined): string => (value === null || value === undefined ? "-" : `$${value.toFixed(4)}`)

const callRow = (name: string, stats: CallStats): Array<string> => [
  name,
  String(stats.calls),
  String(stats.errors),
  ms(stats.latencyMs?.p50),
  ms(stats.latencyMs?.p90),
  ms(stats.latencyMs?.p99),
  ms(stats.ttftMs?.p50),
  ms(stats.itlMs?.p50),
  ms(stats.tpotMs?.p50),
  num(stats.outputTokensPerSecond),
  num(stats.requestsPerSecond),
  `${stats.tokens.input}/${stats.tokens.output}`,
  pct(stats.cache.hitRate),
  usd(stats.costUsd)
]

const callHeader = [
  "model",
  "calls",
  "err",
  "p50",
  "p90",
  "p99",
  "ttft p50",
  "itl p50",
  "tpot p50",
  "out tok/s",
  "req/s",
  "tok in/out",
  "cache hit",
  "cost"
]

/** The console summary printed when a run ends. */
export const renderSummary = (summary: Summary): string => {
  const parts: Array<string> = []
  parts.push(
    `perf-logger run ${summary.runId}: ${summary.overall.calls} calls in ${ms(summary.wallMs)}` +
      (summary.cost !== null ? `, cost ${usd(summary.cost.totalUsd)}` : "")
  )
  const rows = [callHeader, ...Object.entries(summary.byModel).map(([key, stats]) => callRow(key, stats))]
  if (Object.keys(summary.byModel).length > 1) rows.push(callRow("(all)", summary.overall))
  parts.push(renderTable(rows))
  const stages = Object.entries(summary.byStage)
  if (stages.length > 0) {
    parts.push(renderTable([
      ["stage", "items", "items/s", "wall", "dur p50", "dur p99", "calls", "call p50", "err"],
      ...stages.map(([name, stage]) => [
        name,
        String(stage.items),
        num(stage.itemsPerSecond),
        ms(stage.wallMs),
        ms(stage.durationMs?.p50),
        ms(stage.durationMs?.p99),
        String(stage.calls),
        ms(stage.latencyMs?.p50),
        String(stage.errors + stage.failedInvocations)
      ])
    ]))
  }
  const overall = summary.overall
  const extras: Array<string> = []
  const errors = Object.entries(overall.errorsByClass)
  if (errors.length > 0) extras.push(`errors: ${errors.map(([kind, count]) => `${kind}=${count}`).join(" ")}`)
  const retries = overall.retries
  if (retries.total > 0 || retries.rateLimitWaitMs > 0 || retries.timeouts > 0) {
    extras.push(
      `retries: ${retries.total} on ${retries.retriedCalls} calls, rate-limit wait ${ms(retries.rateLimitWaitMs)}, ` +
        `backoff ${ms(retries.backoffMs)}` + (retries.timeouts > 0 ? `, timeouts ${retries.timeouts}` : "")
    )
  }
  if (overall.cache.hits > 0) {
    extras.push(`cache: ${overall.cache.hits} hits / ${overall.cache.misses} misses, hit latency p50 ${ms(overall.cacheHitLatencyMs?.p50)}`)
  }
  if (overall.batch !== null) {
    extras.push(`batch: mean size ${num(overall.batch.sizes.mean)}, queue wait p50 ${ms(overall.batch.queueWaitMs?.p50)}`)
  }
  if (overall.speculative !== null) {
    const spec = overall.speculative
    extras.push(
      `speculative: acceptance ${pct(spec.acceptanceRate)}, mean accepted length ${num(spec.meanAcceptedLength, 2)}, ` +
        `per position ${spec.perPosition.map((rate) => pct(rate)).join(" ")}`
    )
  }
  if (summary.memory !== null) {
    extras.push(
      `memory: rss peak ${(summary.memory.rssPeakBytes / 2 ** 20).toFixed(1)} MiB, heap peak ${
        (summary.memory.heapUsedPeakBytes / 2 ** 20).toFixed(1)
      } MiB`
    )
  }
  for (const model of summary.modelMemory ?? []) {
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
    extras.push(
      `model ${model.model}: ${mib(model.totalBytes)} (weights ${mib(model.weightsBytes)}, KV cache ${
        mib(model.kvCacheBytes)
      } for ${model.sequences} x ${model.contextSize} tokens, compute ${mib(model.computeBytes)})`
    )
  }
  const sketched = overall.latencyMs?.relativeError ?? overall.itlMs?.relativeError ?? overall.tpotMs?.relativeError
  if (sketched !== undefined) {
    extras.push(
      `quantiles: past ${EXACT_SAMPLES.toLocaleString("en-US")} samples a distribution's p50/p90/p99 are DDSketch estimates within ${
        sketched * 100
      }%`
    )
  }
  parts.push(...extras)
  return parts.join("\n")
}

const ratio = (a: number | null | undefined, b: number | null | undefined): string =>
  a === null || a === undefined || b === null || b === undefined || a === 0 ? "-" : `${(b / a).toFixed(2)}x`

type Metric = readonly [
  label: string,
  pick: (stats: CallStats) => number | null | undefined,
  format: (value: number | null | undefined) => string
]

const dist = (pick: (stats: CallStats) => Distribution | null, field: keyof Distribution) => (stats: CallStats) => pick(stats)?.[field]

const compareMetrics: ReadonlyArray<Metric> = [
  ["calls", (stats) => stats.calls, (value) => num(value, 0)],
  ["errors", (stats) => stats.errors, (value) => num(value, 0)],
  ["latency p50", dist((stats) => stats.latencyMs, "p50"), ms],
  ["latency p90", dist((stats) => stats.latencyMs, "p90"), ms],
  ["latency p99", dist((stats) => stats.latencyMs, "p99"), ms],
  ["ttft p50", dist((stats) => stats.ttftMs, "p50"), ms],
  ["itl p50", dist((stats) => stats.itlMs, "p50"), ms],
  ["tpot p50", dist((stats) => stats.tpotMs, "p50"), ms],
  ["output tok/s", (stats) => stats.outputTokensPerSecond, num],
  ["requests/s", (stats) => stats.requestsPerSecond, num],
  ["input tokens", (stats) => stats.tokens.input, (value) => num(value, 0)],
  ["output tokens", (stats) => stats.tokens.output, (value) => num(value, 0)],
  ["cache hit rate", (stats) => stats.cache.hitRate, pct],
  ["retries", (stats) => stats.retries.total, (value) => num(value, 0)],
  ["acceptance rate", (stats) => stats.speculative?.acceptanceRate, pct],
  ["cost", (stats) => stats.costUsd, usd]
]

/** Ratio table of two runs (B / A), overall and per stage present in both. */
export const renderCompare = (a: Summary, b: Summary): string => {
  const rows: Array<Array<string>> = [["metric", `A ${a.runId}`, `B ${b.runId}`, "B/A"]]
  rows.push(["wall time", ms(a.wallMs), ms(b.wallMs), ratio(a.wallMs, b.wallMs)])
  for (const [label, pick, format] of compareMetrics) {
    const left = pick(a.overall)
    const right = pick(b.overall)
    if ((left === null || left === undefined) && (right === null || right === undefined)) continue
    rows.push([label, format(left), format(right), ratio(left, right)])
  }
  for (const [name, stageA] of Object.entries(a.byStage)) {
    const stageB = b.byStage[name]
    if (stageB === undefined) continue
    rows.push([
      `stage ${name} items/s`,
      num(stageA.itemsPerSecond),
      num(stageB.itemsPerSecond),
      ratio(stageA.itemsPerSecond, stageB.itemsPerSecond)
    ])
  }
  return renderTable(rows)
}
