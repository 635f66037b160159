/**
 * The run log, `events.jsonl`: the event records it holds (one JSON object per line), how
 * they reach the file (`FlushMode`), and how to read them back (`parseEvents`).
 * @since 0.1.0
 */
import * as internal from "./internal/events.js"
import * as schema from "./internal/eventSchema.js"
import type { PriceTable } from "./Price.js"

/**
 * Speculative-decoding statistics (`facts.speculative`, from `@hasten/speculative`).
 * @category models @since 0.1.0
 */
export interface SpeculativeStats {
  readonly acceptanceRate: number
  readonly meanAcceptedLength?: number
  readonly perPosition?: ReadonlyArray<number>
  readonly targetEvaluations?: number
}

/**
 * The first line of a run: its id, process, and price table.
 * @category models @since 0.1.0
 */
export interface RunStartEvent {
  readonly type: "run_start"
  readonly runId: string
  readonly t: number
  readonly pid: number
  readonly node: string
  readonly prices?: PriceTable
}

/**
 * The last line of a run that closed normally.
 * @category models @since 0.1.0
 */
export interface RunEndEvent {
  readonly type: "run_end"
  readonly t: number
}

/**
 * One measured `complete` or `stream` call. Times are epoch milliseconds (fractional).
 * @category models @since 0.1.0
 */
export interface CallEvent {
  readonly type: "call"
  readonly op: "complete" | "stream"
  readonly provider: string
  readonly model: string
  readonly responseModel?: string
  readonly stage?: string
  readonly start: number
  readonly latencyMs: number
  readonly ok: boolean
  /** `LlmError` reason tag, `Interrupted`, or `Defect`. */
  readonly error?: string
  readonly finishReason?: string
  readonly cached?: boolean
  readonly ttftMs?: number
  /** Inter-token latencies (ms), one per output token after the first chunk. */
  readonly itlMs?: ReadonlyArray<number>
  readonly chunks?: number
  readonly inputTokens?: number
  readonly outputTokens?: number
  readonly cachedInputTokens?: number
  readonly tokensEstimated?: boolean
  /** Facts (`Facts` of `@hasten/core`) the call carried or a layer above passed down. */
  readonly retries?: number
  readonly rateLimitWaitMs?: number
  readonly backoffMs?: number
  /** Attempts cut short by the rate limiter's attempt deadline. */
  readonly timeouts?: number
  readonly batchSize?: number
  readonly queueWaitMs?: number
  readonly speculative?: SpeculativeStats
}

/**
 * One finished invocation of `PerfLogger.stage`.
 * @category models @since 0.1.0
 */
export interface StageEvent {
  readonly type: "stage"
  readonly stage: string
  readonly start: number
  readonly durationMs: number
  readonly ok: boolean
}

/**
 * Items processed by a stage (`PerfLogger.recordItems`).
 * @category models @since 0.1.0
 */
export interface ItemsEvent {
  readonly type: "items"
  readonly stage: string
  readonly t: number
  readonly n: number
}

/**
 * A process memory sample.
 * @category models @since 0.1.0
 */
export interface MemoryEvent {
  readonly type: "memory"
  readonly t: number
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
}

/**
 * A local model's memory (the `modelMemory` fact of its calls), recorded the first time a
 * call of the model reports it and whenever it changes: weights, KV cache and compute buffers.
 * @category models @since 0.2.0
 */
export interface ModelMemoryEvent {
  readonly type: "model_memory"
  readonly t: number
  readonly model: string
  readonly weightsBytes: number
  readonly kvCacheBytes: number
  readonly computeBytes: number
  /** Tokens per sequence. */
  readonly contextSize: number
  readonly sequences: number
}

/**
 * One line of `events.jsonl`.
 * @category models @since 0.1.0
 */
export type Event = RunStartEvent | RunEndEvent | CallEvent | StageEvent | ItemsEvent | MemoryEvent | ModelMemoryEvent

/**
 * How events reach `events.jsonl`: `"event"` (one write per event, before the measured call
 * returns) or group commit (`{ intervalMs, maxEvents }`: events are written together at most
 * `intervalMs` after the previous write, or when `maxEvents` are pending).
 * @category configuration @since 0.1.0
 */
export type FlushMode =
  | "event"
  | { readonly intervalMs: number; readonly maxEvents: number }

/**
 * The default: group commit with a 10 ms window (`HASTEN_PERF_FLUSH=group`).
 * @category configuration @since 0.1.0
 */
export const groupFlush: FlushMode = { intervalMs: 10, maxEvents: 1_000 }

/**
 * Group commit with a 100 ms window (`HASTEN_PERF_FLUSH=buffered`).
 * @category configuration @since 0.1.0
 */
export const bufferedFlush: FlushMode = { intervalMs: 100, maxEvents: 1_000 }

/**
 * The schema of one line of `events.jsonl` (its `Type` is {@link Event}).
 * @category schemas @since 0.2.0
 */
export const EventSchema: typeof schema.EventSchema = schema.EventSchema

/**
 * Reads the text of `events.jsonl`, each line decoded with {@link EventSchema}, skipping a
 * torn last line (the one event a crash may cut short) and events of types this version does
 * not know. A malformed line elsewhere throws a `PerfLoggerError` (`InvalidRunFile`, with
 * its `line`) that names the line and the field.
 * @category files @since 0.1.0
 */
export const parseEvents: (text: string, source?: string) => Array<Event> = internal.parseEvents
