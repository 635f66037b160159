/**
 * The run-log event records (one JSON object per line of `events.jsonl`) and the
 * writer/reader for the log file.
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** Prices in USD per one million tokens. */
export interface Price {
  readonly input: number
  readonly output: number
  /** Price of input tokens served from the provider's prompt cache; defaults to `input`. */
  readonly cachedInput?: number
}

/** Price table keyed by `provider/model` or by `model`. */
export type PriceTable = Readonly<Record<string, Price>>

/** Speculative-decoding statistics attached by `@hasten/speculative`. */
export interface SpeculativeStats {
  readonly acceptanceRate: number
  readonly meanAcceptedLength?: number
  readonly perPosition?: ReadonlyArray<number>
  readonly targetEvaluations?: number
}

export interface RunStartEvent {
  readonly type: "run_start"
  readonly runId: string
  readonly t: number
  readonly pid: number
  readonly node: string
  readonly prices?: PriceTable
}

export interface RunEndEvent {
  readonly type: "run_end"
  readonly t: number
}

/** One measured `complete` or `stream` call. Times are epoch milliseconds (fractional). */
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
  readonly retries?: number
  readonly rateLimitWaitMs?: number
  readonly batchSize?: number
  readonly queueWaitMs?: number
  readonly speculative?: SpeculativeStats
}

/** One finished invocation of `PerfLogger.stage`. */
export interface StageEvent {
  readonly type: "stage"
  readonly stage: string
  readonly start: number
  readonly durationMs: number
  readonly ok: boolean
}

/** Items processed by a stage (`PerfLogger.recordItems`). */
export interface ItemsEvent {
  readonly type: "items"
  readonly stage: string
  readonly t: number
  readonly n: number
}

/** A process memory sample. */
export interface MemoryEvent {
  readonly type: "memory"
  readonly t: number
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
}

export type Event = RunStartEvent | RunEndEvent | CallEvent | StageEvent | ItemsEvent | MemoryEvent

/** How events reach the file. */
export type FlushMode =
  | "event"
  | { readonly intervalMs: number; readonly maxEvents: number }

/** The default: buffered lines, written at least every 100 ms. */
/** The buffered mode's settings (opt in with `flush: bufferedFlush` or `HASTEN_PERF_FLUSH=buffered`). */
export const bufferedFlush: FlushMode = { intervalMs: 100, maxEvents: 1_000 }
/** The default: one write per event, so any crash loses at most the event being written. */
export const defaultFlush: FlushMode = "event"

const flushSignals = ["SIGINT", "SIGTERM", "SIGHUP"] as const

/**
 * Appends events to `events.jsonl`.
 *
 * - `{ intervalMs, maxEvents }` (default 100 ms / 1,000 events): lines are buffered and
 *   written when `maxEvents` are pending, every `intervalMs`, when the process exits
 *   (normal end, `process.exit`, an uncaught exception), on SIGINT/SIGTERM/SIGHUP (then the
 *   signal is re-raised so the process still dies as it would have), and when the run
 *   closes. Only SIGKILL, an out-of-memory abort or a power loss can lose events: at most
 *   the last `intervalMs` of them.
 * - `"event"`: one `writeSync` per event on an open descriptor. The line is in the kernel
 *   before `record` returns, so any crash loses at most the event being written — at the
 *   cost of a system call per event.
 */
export class EventWriter {
  private fd: number | undefined
  private pending: Array<string> = []
  private readonly timer: ReturnType<typeof setInterval> | undefined
  private readonly maxEvents: number
  private readonly onExit = () => this.flush()
  private readonly onSignal = (signal: NodeJS.Signals) => {
    this.flush()
    this.removeSignalHandlers()
    // Unless someone else handles the signal, end the process as the signal would have
    // (exit status 128 + signal number, what a shell reports for a signal death).
    if (process.listenerCount(signal) === 0) process.exit(128 + (Os.constants.signals[signal] ?? 0))
  }
  private readonly onError: (error: unknown) => void
  readonly path: string
  readonly mode: FlushMode

  constructor(path: string, mode: FlushMode, onError: (error: unknown) => void) {
    this.path = path
    this.mode = mode
    this.onError = onError
    Fs.mkdirSync(Path.dirname(path), { recursive: true })
    this.fd = Fs.openSync(path, "a")
    if (mode === "event") {
      this.maxEvents = 1
      this.timer = undefined
    } else {
      this.maxEvents = Math.max(1, mode.maxEvents)
      this.timer = setInterval(this.onExit, Math.max(1, mode.intervalMs))
      this.timer.unref()
      process.on("exit", this.onExit)
      for (const signal of flushSignals) process.on(signal, this.onSignal)
    }
  }

  private removeSignalHandlers(): void {
    for (const signal of flushSignals) process.off(signal, this.onSignal)
  }

  write(event: Event): void {
    if (this.fd === undefined) return
    const line = JSON.stringify(event) + "\n"
    if (this.maxEvents === 1) {
      this.writeOrStop(line)
      return
    }
    this.pending.push(line)
    if (this.pending.length >= this.maxEvents) this.flush()
  }

  flush(): void {
    if (this.fd === undefined || this.pending.length === 0) return
    const data = this.pending.join("")
    this.pending = []
    this.writeOrStop(data)
  }

  /**
   * Measuring must never fail the measured program: a failed write (disk full, folder gone)
   * stops the log and is reported once through `onError`.
   */
  private writeOrStop(data: string): void {
    try {
      Fs.writeSync(this.fd!, data)
    } catch (error) {
      this.stop()
      this.onError(error)
    }
  }

  private stop(): void {
    if (this.timer !== undefined) {
      clearInterval(this.timer)
      process.off("exit", this.onExit)
      this.removeSignalHandlers()
    }
    const fd = this.fd
    this.fd = undefined
    this.pending = []
    if (fd !== undefined) {
      try {
        Fs.closeSync(fd)
      } catch {
        // already unusable
      }
    }
  }

  close(): void {
    this.flush()
    this.stop()
  }
}

/**
 * Reads `events.jsonl`, skipping a torn last line (the one event a crash may cut short).
 * A malformed line elsewhere is an error that names the line.
 */
export const parseEvents = (text: string, source = "events.jsonl"): Array<Event> => {
  const lines = text.split("\n")
  const events: Array<Event> = []
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!
    if (line.trim().length === 0) continue
    try {
      events.push(JSON.parse(line) as Event)
    } catch (error) {
      const isLast = lines.slice(index + 1).every((rest) => rest.trim().length === 0)
      if (isLast && !text.endsWith("\n")) continue
      throw new Error(`${source}:${index + 1}: not a JSON event (${(error as Error).message})`)
    }
  }
  return events
}
