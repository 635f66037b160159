/**
 * One consistent set of LLM performance metrics: an `Llm` middleware that measures every
 * call, a run recorder that writes `performance_logs/<run-id>/events.jsonl`,
 * `summary.json` and `report.html`, pipeline stage tracking, and Effect `Metric`s and
 * spans named after the OpenTelemetry GenAI semantic conventions for OTLP export.
 * @since 0.1.0
 */
import type { CompletionRequest } from "@hasten/core"
import { Completion, Llm, LlmError } from "@hasten/core"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { FetchHttpClient } from "effect/http"
import { Otlp, PrometheusMetrics } from "effect/observability"
import type { OtlpExporter } from "effect/observability"
import type {
  CallEvent,
  Event,
  FlushMode,
  ItemsEvent,
  MemoryEvent,
  Price,
  PriceTable,
  SpeculativeStats,
  StageEvent
} from "./internal/events.js"
import { bufferedFlush, defaultFlush, EventLog, groupFlush, parseEvents } from "./internal/events.js"
export { bufferedFlush, groupFlush, parseEvents }
import { renderReport } from "./internal/report.js"
import type { CallStats, Distribution, StageStats, Summary } from "./internal/stats.js"
import { Aggregator, quantile, summarize } from "./internal/stats.js"
import { renderCompare, renderSummary, renderTable } from "./internal/table.js"

export type {
  CallEvent,
  CallStats,
  Distribution,
  Event,
  FlushMode,
  ItemsEvent,
  MemoryEvent,
  Price,
  PriceTable,
  SpeculativeStats,
  StageEvent,
  StageStats,
  Summary
}
export { quantile, renderCompare, renderSummary, renderTable, summarize }

// -----------------------------------------------------------------------------
// configuration
// -----------------------------------------------------------------------------

/**
 * Options of the run recorder.
 * @category configuration @since 0.1.0
 */
export interface Options {
  /** Parent folder of the run folders. Default `performance_logs` (relative to the working directory). */
  readonly dir?: string
  /** Run id and folder name. Default: the start time (`2026-01-02T03-04-05-678Z`) plus the process id. */
  readonly runId?: string
  /** USD per one million tokens, keyed by `provider/model` or `model`; enables the cost estimate. */
  readonly prices?: PriceTable
  /**
   * How events reach `events.jsonl`. Default group commit `{ intervalMs: 10, maxEvents: 1000 }`:
   * an event is written at the end of its event-loop turn when nothing was written in the last
   * 10 ms, else together with the others at most 10 ms after the previous write; everything is
   * written on exit, uncaught exceptions and SIGINT/SIGTERM/SIGHUP. SIGKILL or a native abort
   * loses at most the last event when calls end more than 10 ms apart, at most the last 10 ms
   * of events when they end faster. `"event"`: one `writeSync` per event before the call
   * returns (any crash loses at most the event being written; a system call per call).
   */
  readonly flush?: FlushMode
  /** Print the summary table when the run ends. Default `true`. */
  readonly console?: boolean
  /** Write `report.html` when the run ends. Default `true`. */
  readonly report?: boolean
  /** Process-memory sampling period, or `false` to sample only at start and end. Default 1 second. */
  readonly memoryInterval?: Duration.Input | false
  /** How often `summary.json` is rewritten while the run goes. Default 5 seconds; `false`: only at the end. */
  readonly summaryInterval?: Duration.Input | false
  /**
   * Open a `PerfLogger.complete` / `PerfLogger.stream` span per call, with the `gen_ai.*`
   * attributes. `"auto"` (default): only when a tracer other than Effect's native in-memory
   * one is installed (OTLP, DevTools, …), so nobody pays for spans nobody exports.
   */
  readonly spans?: boolean | "auto"
  /**
   * Update the Effect `Metric`s (`gen_ai.client.*`, `hasten_perf_logger_*`) that OTLP and
   * Prometheus export. Default `true`; `false` keeps only the run files and summary.
   */
  readonly metrics?: boolean
}

// -----------------------------------------------------------------------------
// the recorder service
// -----------------------------------------------------------------------------

/**
 * The run recorder: receives measured events and owns the run's files.
 * @category models @since 0.1.0
 */
export interface PerfLoggerService {
  readonly runId: string
  /** The run folder, or `undefined` for an in-memory recorder. */
  readonly runDir: string | undefined
  /** Whether `layerLlm` opens a span per call (`"auto"`: when a non-native tracer is installed). */
  readonly spans: boolean | "auto"
  /** Whether `layerLlm` updates the exported Effect metrics. */
  readonly metrics: boolean
  /**
   * Records one event: aggregated and written with the next group commit (see `Options.flush`);
   * at once with `flush: "event"` and in the in-memory recorder.
   */
  readonly recordUnsafe: (event: Event) => void
  /**
   * Records the event `build` returns, calling `build` when the event is committed (as for
   * `recordUnsafe`): the hot path defers building the event, its metric updates, aggregation
   * and writing until the group commit, off the measured call's path.
   */
  readonly recordLazyUnsafe: (build: () => Event) => void
  /** Records items processed by a stage (items/s per stage). */
  readonly recordItems: (stage: string, n: number) => Effect.Effect<void>
  /** The summary so far. */
  readonly summary: Effect.Effect<Summary>
  /** Samples process memory now. */
  readonly sampleMemory: Effect.Effect<void>
  /** Writes buffered events, `summary.json` and (when enabled) `report.html` now. */
  readonly flush: Effect.Effect<void>
}

/**
 * The run recorder service.
 * @category services @since 0.1.0
 */
export class PerfLogger extends Context.Service<PerfLogger, PerfLoggerService>()("@hasten/perf-logger/PerfLogger") {}

/**
 * The pipeline stage the current fiber runs in (set by {@link stage}); calls made inside
 * are attributed to it.
 * @category services @since 0.1.0
 */
export const CurrentStage = Context.Reference<string | undefined>("@hasten/perf-logger/CurrentStage", {
  defaultValue: () => undefined
})

/** The live clock (the `Clock` reference's default): its time is also `performance`'s. */
const liveClock = Context.get(Context.empty(), Clock.Clock)

/**
 * Epoch milliseconds with sub-millisecond precision from `clock`. The live clock is read
 * through `performance` (no BigInt arithmetic on the hot path); any other clock (`TestClock`)
 * through its own `currentTimeNanosUnsafe`.
 */
const nowMs = (clock: Clock.Clock): number =>
  clock === liveClock ? performance.timeOrigin + performance.now() : Number(clock.currentTimeNanosUnsafe()) / 1e6

const round3 = (value: number): number => Math.round(value * 1000) / 1000

const memoryEvent = (t: number): MemoryEvent => {
  const usage = process.memoryUsage()
  return { type: "memory", t, rss: usage.rss, heapUsed: usage.heapUsed, heapTotal: usage.heapTotal, external: usage.external }
}

const defaultRunId = (t: number): string =>
  `${new Date(Math.floor(t)).toISOString().replace(/[:.]/g, "-")}-${process.pid}`

/** A run id or folder that would escape the log folder is bad input. */
export class InvalidOptions extends Error {
  override readonly name = "InvalidOptions"
}

const validateRunId = (runId: string): string => {
  if (runId.length === 0 || runId === "." || runId === ".." || /[/\\\0]/.test(runId)) {
    throw new InvalidOptions(`perf-logger: runId ${JSON.stringify(runId)} must be a plain folder name`)
  }
  return runId
}

const writeFileAtomic = (path: string, data: string): void => {
  const temporary = `${path}.${process.pid}.tmp`
  Fs.writeFileSync(temporary, data)
  Fs.renameSync(temporary, path)
}

interface Recorder {
  readonly service: PerfLoggerService
  readonly periodicFlush: Effect.Effect<void>
  readonly close: Effect.Effect<Summary>
}

const makeRecorder = (
  options: Options & { readonly write: boolean }
): Effect.Effect<Recorder> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const start = nowMs(clock)
    const runId = validateRunId(options.runId ?? defaultRunId(clock.currentTimeMillisUnsafe()))
    const runDir = options.write ? Path.resolve(options.dir ?? "performance_logs", runId) : undefined
    const eventsPath = runDir === undefined ? undefined : Path.join(runDir, "events.jsonl")
    const aggregator = new Aggregator(options.prices)
    // A write error (disk full, folder removed) stops the file log and is reported once;
    // the measured calls and the in-memory summary carry on.
    const log = new EventLog(
      eventsPath,
      options.flush ?? defaultFlush,
      (event) => aggregator.add(event),
      (error) => process.emitWarning(`perf-logger: writing ${eventsPath} failed, the run log stops here: ${String(error)}`)
    )
    const recordLazyUnsafe = (build: () => Event): void => log.record(build)
    const recordUnsafe = (event: Event): void => recordLazyUnsafe(() => event)
    recordUnsafe({
      type: "run_start",
      runId,
      t: round3(start),
      pid: process.pid,
      node: process.version,
      ...(options.prices !== undefined ? { prices: options.prices } : {})
    })
    recordUnsafe(memoryEvent(round3(start)))

    const writeFiles = (summary: Summary, report: boolean): void => {
      if (runDir === undefined) return
      writeFileAtomic(Path.join(runDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n")
      if (report) {
        writeFileAtomic(
          Path.join(runDir, "report.html"),
          renderReport({ summary, points: aggregator.points, startT: aggregator.startT, pointWeight: aggregator.pointStride })
        )
      }
    }
    const safely = (label: string, thunk: () => void) =>
      Effect.try({ try: thunk, catch: (error) => error }).pipe(
        Effect.catch((error) => Effect.logWarning(`perf-logger: ${label} failed`, error))
      )

    const summary = Effect.sync(() => {
      log.flush()
      return aggregator.summary(nowMs(clock))
    })
    const service: PerfLoggerService = {
      runId,
      runDir,
      spans: options.spans ?? "auto",
      metrics: options.metrics !== false,
      recordUnsafe,
      recordLazyUnsafe,
      recordItems: (stage, n) =>
        Effect.contextWith((context: Context.Context<never>) => {
          if (Number.isFinite(n) && n >= 0) {
            recordUnsafe({ type: "items", stage, n, t: round3(nowMs(clock)) })
            stageInstrumentsFor(stage).items.updateUnsafe(n, context)
          }
          return Effect.void
        }),
      summary,
      sampleMemory: Effect.contextWith((context: Context.Context<never>) => {
        const event = memoryEvent(round3(nowMs(clock)))
        recordUnsafe(event)
        memoryRss.updateUnsafe(event.rss, context)
        memoryHeapUsed.updateUnsafe(event.heapUsed, context)
        return Effect.void
      }),
      flush: Effect.suspend(() =>
        safely("flush", () => {
          log.flush()
          writeFiles(aggregator.summary(nowMs(clock)), options.report !== false)
        })
      )
    }
    let flushedAt = -1
    /** The periodic rewrite: buffered events and summary.json, only when something happened. */
    const periodicFlush = Effect.suspend(() => {
      log.flush()
      if (aggregator.count === flushedAt) return Effect.void
      flushedAt = aggregator.count
      return safely("flush", () => {
        writeFiles(aggregator.summary(nowMs(clock)), false)
      })
    })
    let closed: Summary | undefined
    const close = Effect.suspend(() => {
      if (closed !== undefined) return Effect.succeed(closed)
      const end = round3(nowMs(clock))
      recordUnsafe(memoryEvent(end))
      recordUnsafe({ type: "run_end", t: end })
      try {
        log.close()
      } catch (error) {
        // measuring never fails the measured program; the summary below still comes out
        process.emitWarning(`perf-logger: closing the run log failed: ${String(error)}`)
      }
      const final = aggregator.summary(end)
      closed = final
      return safely("writing summary.json/report.html", () => writeFiles(final, options.report !== false)).pipe(
        Effect.andThen(options.console === false ? Effect.void : Console.log(renderSummary(final))),
        Effect.as(final)
      )
    })
    return { service, periodicFlush, close }
  })

/**
 * Starts a run recorder in the current scope: creates `<dir>/<runId>/`, appends every
 * event to `events.jsonl`, samples memory, rewrites `summary.json` periodically, and when
 * the scope closes writes `summary.json`, `report.html` and prints the summary table.
 * @category constructors @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<PerfLoggerService, never, Scope.Scope> =>
  makeScoped({ ...options, write: true })

const makeScoped = (options: Options & { readonly write: boolean }) =>
  Effect.gen(function*() {
    const recorder = yield* Effect.acquireRelease(makeRecorder(options), (recorder) => Effect.asVoid(recorder.close))
    const memoryInterval = options.memoryInterval ?? Duration.seconds(1)
    if (memoryInterval !== false) {
      yield* recorder.service.sampleMemory.pipe(
        Effect.delay(memoryInterval),
        Effect.forever,
        Effect.forkScoped
      )
    }
    const summaryInterval = options.summaryInterval ?? Duration.seconds(5)
    if (options.write && summaryInterval !== false) {
      yield* recorder.periodicFlush.pipe(Effect.delay(summaryInterval), Effect.forever, Effect.forkScoped)
    }
    return recorder.service
  })

/**
 * The run recorder as a layer: `PerfLogger.layer({ dir: "performance_logs", runId, prices })`.
 * Combine with {@link layerLlm}, which measures the calls.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<PerfLogger> => Layer.effect(PerfLogger, make(options))

/**
 * An in-memory recorder: same measurements and summary, no files and no console table.
 * @category testing @since 0.1.0
 */
export const layerMemory = (options: Pick<Options, "runId" | "prices" | "spans" | "metrics"> = {}): Layer.Layer<PerfLogger> =>
  Layer.effect(
    PerfLogger,
    makeScoped({ ...options, write: false, console: false, report: false, memoryInterval: false, summaryInterval: false })
  )

/**
 * The recorder configured from the environment: `HASTEN_PERF_DIR` (default
 * `performance_logs`), `HASTEN_PERF_RUN_ID`, `HASTEN_PERF_FLUSH` (`group`, the default 10 ms group commit; `buffered`, 100 ms; or `event`),
 * `HASTEN_PERF_CONSOLE` and `HASTEN_PERF_REPORT` (default `true`), `HASTEN_PERF_SPANS`
 * (default `true`).
 * @category layers @since 0.1.0
 */
export const layerConfig: Layer.Layer<PerfLogger, Config.ConfigError> = Layer.unwrap(
  Effect.map(
    Config.all({
      dir: Config.String("HASTEN_PERF_DIR").pipe(Config.withDefault("performance_logs")),
      runId: Config.option(Config.String("HASTEN_PERF_RUN_ID")),
      flush: Config.Literals(["group", "event", "buffered"], "HASTEN_PERF_FLUSH").pipe(Config.withDefault("group" as const)),
      console: Config.Boolean("HASTEN_PERF_CONSOLE").pipe(Config.withDefault(true)),
      report: Config.Boolean("HASTEN_PERF_REPORT").pipe(Config.withDefault(true)),
      spans: Config.Literals(["auto", "true", "false"], "HASTEN_PERF_SPANS").pipe(Config.withDefault("auto" as const))
    }),
    (config) =>
      layer({
        dir: config.dir,
        ...(Option.isSome(config.runId) ? { runId: config.runId.value } : {}),
        flush: config.flush === "buffered" ? bufferedFlush : config.flush === "event" ? "event" : groupFlush,
        console: config.console,
        report: config.report,
        spans: config.spans === "auto" ? "auto" : config.spans === "true"
      })
  )
)

/**
 * A measured `Llm` for plain async code: wraps `llm` with {@link layerLlm} and a
 * recorder on a `ManagedRuntime`. `close()` ends the run (files, console table) and
 * returns its summary.
 * @category constructors @since 0.1.0
 */
export const measure = <E>(llm: Layer.Layer<Llm.Llm, E>, options: Options = {}): {
  /** One call; `stage` attributes it to a pipeline stage (Promises do not carry the stage along). */
  readonly complete: (
    request: CompletionRequest.CompletionRequest,
    options?: { readonly stage?: string }
  ) => Promise<Completion.Completion>
  readonly stream: (
    request: CompletionRequest.CompletionRequest,
    options?: { readonly stage?: string }
  ) => Promise<ReadonlyArray<Completion.CompletionChunk>>
  /** Times one invocation of a stage (duration, items/s). */
  readonly stage: <A>(name: string, run: () => Promise<A>) => Promise<A>
  readonly recordItems: (stage: string, n: number) => Promise<void>
  readonly summary: () => Promise<Summary>
  readonly close: () => Promise<Summary>
} => {
  const runtime = ManagedRuntime.make(layerLlm.pipe(Layer.provideMerge(llm), Layer.provideMerge(layer(options))))
  return {
    complete: (request, options) =>
      runtime.runPromise(Effect.provideService(Llm.complete(request), CurrentStage, options?.stage)),
    stream: (request, options) =>
      runtime.runPromise(Effect.provideService(Stream.runCollect(Llm.stream(request)), CurrentStage, options?.stage)),
    stage: (name, run) => runtime.runPromise(stage(name, Effect.promise(run))),
    recordItems: (stageName, n) => runtime.runPromise(recordItems(stageName, n)),
    summary: () => runtime.runPromise(summary),
    close: async () => {
      const recorder = await runtime.runPromise(Effect.service(PerfLogger))
      const beforeClose = await runtime.runPromise(recorder.summary)
      await runtime.dispose()
      const file = recorder.runDir === undefined ? undefined : Path.join(recorder.runDir, "summary.json")
      return file !== undefined && Fs.existsSync(file) ? readSummary(file) : beforeClose
    }
  }
}

// -----------------------------------------------------------------------------
// Effect metrics (GenAI semantic conventions + Hasten extras)
// -----------------------------------------------------------------------------

const durationBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
const tokenBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
const chunkBoundaries = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5]

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
  description: "Retries reported in Completion.metadata.retries",
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
  boundaries: [1, 2, 4, 8, 16, 32, 64, 128, 256]
})

/**
 * Speculative acceptance rate per call.
 * @category metrics @since 0.1.0
 */
export const acceptanceRate = Metric.histogram("hasten_perf_logger_speculative_acceptance_rate", {
  description: "Speculative decoding acceptance rate per call",
  boundaries: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]
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

/** Metric instances bound to one attribute set, cached so the hot path does not rebuild them. */
interface Instruments {
  readonly duration: Metric.Metric<number, unknown>
  readonly input: Metric.Metric<number, unknown>
  readonly output: Metric.Metric<number, unknown>
  readonly ttft: Metric.Metric<number, unknown>
  readonly chunk: Metric.Metric<number, unknown>
  readonly requests: Metric.Metric<number, unknown>
  readonly retries: Metric.Metric<number, unknown>
  readonly wait: Metric.Metric<number, unknown>
  readonly batch: Metric.Metric<number, unknown>
  readonly acceptance: Metric.Metric<number, unknown>
}

const instrumentCache = new Map<string, Instruments>()

/** The last series used: consecutive calls usually share provider, model and stage. */
let lastInstruments: {
  readonly operation: string
  readonly provider: string
  readonly model: string
  readonly responseModel: string | undefined
  readonly stage: string | undefined
  readonly errorType: string | undefined
  readonly cached: boolean
  readonly instruments: Instruments
} | undefined

/**
 * Metric instances bound to one attribute set. They are built with the attributes as the
 * metric's own (not `Metric.withAttributes`, which merges attributes and re-derives the
 * series key on every update) and cached, so an update is a map lookup.
 */
const instrumentsFor = (
  operation: string,
  provider: string,
  model: string,
  responseModel: string | undefined,
  stage: string | undefined,
  errorType: string | undefined,
  cached: boolean
): Instruments => {
  const last = lastInstruments
  if (
    last !== undefined && last.provider === provider && last.model === model && last.responseModel === responseModel &&
    last.stage === stage && last.errorType === errorType && last.cached === cached && last.operation === operation
  ) return last.instruments
  const key = `${operation}\u0000${provider}\u0000${model}\u0000${responseModel}\u0000${stage}\u0000${errorType}\u0000${cached}`
  let instruments = instrumentCache.get(key)
  if (instruments === undefined) {
    const attributes: Record<string, string> = {
      "gen_ai.operation.name": operation,
      "gen_ai.provider.name": provider,
      "gen_ai.request.model": model
    }
    if (responseModel !== undefined) attributes["gen_ai.response.model"] = responseModel
    if (stage !== undefined) attributes["hasten.stage"] = stage
    if (errorType !== undefined) attributes["error.type"] = errorType
    const withCache = { ...attributes, "hasten.cache": cached ? "hit" : "miss" }
    const seconds = { ...attributes, unit: "s" }
    const tokens = { ...attributes, unit: "{token}" }
    instruments = {
      duration: Metric.histogram(operationDuration.id, {
        description: operationDuration.description,
        boundaries: durationBoundaries,
        attributes: { ...withCache, unit: "s" }
      }),
      input: Metric.histogram(tokenUsage.id, {
        description: tokenUsage.description,
        boundaries: tokenBoundaries,
        attributes: { ...tokens, "gen_ai.token.type": "input" }
      }),
      output: Metric.histogram(tokenUsage.id, {
        description: tokenUsage.description,
        boundaries: tokenBoundaries,
        attributes: { ...tokens, "gen_ai.token.type": "output" }
      }),
      ttft: Metric.histogram(timeToFirstChunk.id, {
        description: timeToFirstChunk.description,
        boundaries: chunkBoundaries,
        attributes: seconds
      }),
      chunk: Metric.histogram(timePerOutputChunk.id, {
        description: timePerOutputChunk.description,
        boundaries: chunkBoundaries,
        attributes: seconds
      }),
      requests: Metric.counter(requestsTotal.id, { description: requestsTotal.description, incremental: true, attributes: withCache }),
      retries: Metric.counter(retriesTotal.id, { description: retriesTotal.description, incremental: true, attributes }),
      wait: Metric.counter(rateLimitWaitSeconds.id, {
        description: rateLimitWaitSeconds.description,
        incremental: true,
        attributes
      }),
      batch: Metric.histogram(batchSize.id, {
        description: batchSize.description,
        boundaries: [1, 2, 4, 8, 16, 32, 64, 128, 256],
        attributes
      }),
      acceptance: Metric.histogram(acceptanceRate.id, {
        description: acceptanceRate.description,
        boundaries: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1],
        attributes
      })
    }
    if (instrumentCache.size > 10_000) instrumentCache.clear()
    instrumentCache.set(key, instruments)
  }
  lastInstruments = { operation, provider, model, responseModel, stage, errorType, cached, instruments }
  return instruments
}

const stageInstruments = new Map<string, { readonly duration: Metric.Metric<number, unknown>; readonly items: Metric.Metric<number, unknown> }>()

const stageInstrumentsFor = (stage: string) => {
  let instruments = stageInstruments.get(stage)
  if (instruments === undefined) {
    instruments = {
      duration: Metric.histogram(stageDuration.id, {
        description: stageDuration.description,
        boundaries: durationBoundaries,
        attributes: { "hasten.stage": stage, unit: "s" }
      }),
      items: Metric.counter(stageItems.id, { description: stageItems.description, incremental: true, attributes: { "hasten.stage": stage } })
    }
    if (stageInstruments.size > 1_000) stageInstruments.clear()
    stageInstruments.set(stage, instruments)
  }
  return instruments
}

// -----------------------------------------------------------------------------
// measuring calls
// -----------------------------------------------------------------------------

const numberField = (record: Record<string, unknown> | undefined, key: string): number | undefined => {
  const value = record?.[key]
  return typeof value === "number" && Number.isFinite(value) ? value : undefined
}

const speculativeField = (record: Record<string, unknown> | undefined): SpeculativeStats | undefined => {
  const value = record?.["speculative"]
  if (typeof value !== "object" || value === null) return undefined
  const stats = value as Record<string, unknown>
  const rate = numberField(stats, "acceptanceRate")
  if (rate === undefined) return undefined
  const meanAcceptedLength = numberField(stats, "meanAcceptedLength")
  const targetEvaluations = numberField(stats, "targetEvaluations")
  const perPosition = Array.isArray(stats["perPosition"]) &&
      stats["perPosition"].every((entry) => typeof entry === "number" && Number.isFinite(entry))
    ? (stats["perPosition"] as ReadonlyArray<number>)
    : undefined
  return {
    acceptanceRate: rate,
    ...(meanAcceptedLength !== undefined ? { meanAcceptedLength } : {}),
    ...(perPosition !== undefined ? { perPosition } : {}),
    ...(targetEvaluations !== undefined ? { targetEvaluations } : {})
  }
}

/** The error class of a failed call: the `LlmError` reason tag, `Interrupted`, or `Defect`. */
const errorClass = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error)) {
    const value = error.value
    if (LlmError.isLlmError(value)) return value.reason._tag
    if (typeof value === "object" && value !== null && "_tag" in value) return String((value as { _tag: unknown })._tag)
    return "Error"
  }
  return Cause.hasInterruptsOnly(cause) ? "Interrupted" : "Defect"
}

interface Outcome {
  readonly op: "complete" | "stream"
  readonly provider: string
  readonly request: CompletionRequest.CompletionRequest
  readonly stage: string | undefined
  readonly start: number
  readonly latencyMs: number
  readonly error: string | undefined
  readonly responseModel: string | undefined
  readonly finishReason: string | undefined
  readonly usage: Completion.Usage | undefined
  readonly cached: boolean | undefined
  readonly metadata: Record<string, unknown> | undefined
  readonly ttftMs: number | undefined
  readonly itlMs: ReadonlyArray<number> | undefined
  readonly chunkGapsMs: ReadonlyArray<number> | undefined
  readonly chunks: number | undefined
  readonly outputTokens: number | undefined
  readonly tokensEstimated: boolean
}

const toEvent = (outcome: Outcome): CallEvent => {
  const metadata = outcome.metadata
  const usage = outcome.usage
  const event: { -readonly [K in keyof CallEvent]: CallEvent[K] } = {
    type: "call",
    op: outcome.op,
    provider: outcome.provider,
    model: outcome.request.model,
    start: round3(outcome.start),
    latencyMs: round3(outcome.latencyMs),
    ok: outcome.error === undefined
  }
  if (outcome.responseModel !== undefined && outcome.responseModel !== outcome.request.model) {
    event.responseModel = outcome.responseModel
  }
  if (outcome.stage !== undefined) event.stage = outcome.stage
  if (outcome.error !== undefined) event.error = outcome.error
  if (outcome.finishReason !== undefined) event.finishReason = outcome.finishReason
  if (outcome.cached !== undefined) event.cached = outcome.cached
  if (outcome.ttftMs !== undefined) event.ttftMs = round3(outcome.ttftMs)
  if (outcome.itlMs !== undefined && outcome.itlMs.length > 0) event.itlMs = outcome.itlMs.map(round3)
  if (outcome.chunks !== undefined) event.chunks = outcome.chunks
  if (usage !== undefined) event.inputTokens = usage.inputTokens
  const outputTokens = outcome.outputTokens ?? usage?.outputTokens
  if (outputTokens !== undefined) event.outputTokens = outputTokens
  if (usage?.cachedInputTokens !== undefined) event.cachedInputTokens = usage.cachedInputTokens
  if (outcome.tokensEstimated || usage?.estimated === true) event.tokensEstimated = true
  if (metadata !== undefined) {
    const retries = numberField(metadata, "retries")
    if (retries !== undefined) event.retries = retries
    const wait = numberField(metadata, "rateLimitWaitMillis")
    if (wait !== undefined) event.rateLimitWaitMs = wait
    const batch = numberField(metadata, "batchSize")
    if (batch !== undefined) event.batchSize = batch
    const queueWait = numberField(metadata, "queueWaitMillis")
    if (queueWait !== undefined) event.queueWaitMs = queueWait
    const speculative = speculativeField(metadata)
    if (speculative !== undefined) event.speculative = speculative
  }
  return event
}

const updateMetrics = (event: CallEvent, chunkGapsMs: ReadonlyArray<number> | undefined, context: Context.Context<never>): void => {
  const instruments = instrumentsFor(
    "chat",
    event.provider,
    event.model,
    event.responseModel,
    event.stage,
    event.error,
    event.cached === true
  )
  instruments.requests.updateUnsafe(1, context)
  instruments.duration.updateUnsafe(event.latencyMs / 1000, context)
  if (!event.ok) return
  if (event.inputTokens !== undefined) instruments.input.updateUnsafe(event.inputTokens, context)
  if (event.outputTokens !== undefined) instruments.output.updateUnsafe(event.outputTokens, context)
  if (event.ttftMs !== undefined && event.op === "stream") instruments.ttft.updateUnsafe(event.ttftMs / 1000, context)
  if (chunkGapsMs !== undefined) for (const gap of chunkGapsMs) instruments.chunk.updateUnsafe(gap / 1000, context)
  if (event.retries !== undefined) instruments.retries.updateUnsafe(event.retries, context)
  if (event.rateLimitWaitMs !== undefined) instruments.wait.updateUnsafe(event.rateLimitWaitMs / 1000, context)
  if (event.batchSize !== undefined) instruments.batch.updateUnsafe(event.batchSize, context)
  if (event.speculative !== undefined) instruments.acceptance.updateUnsafe(event.speculative.acceptanceRate, context)
}

const requestAttributes = (provider: string, request: CompletionRequest.CompletionRequest): Record<string, unknown> => {
  const attributes: Record<string, unknown> = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": provider,
    "gen_ai.system": provider,
    "gen_ai.request.model": request.model
  }
  if (request.maxTokens !== undefined) attributes["gen_ai.request.max_tokens"] = request.maxTokens
  if (request.temperature !== undefined) attributes["gen_ai.request.temperature"] = request.temperature
  if (request.topP !== undefined) attributes["gen_ai.request.top_p"] = request.topP
  if (request.seed !== undefined) attributes["gen_ai.request.seed"] = request.seed
  return attributes
}

const setResponseAttributes = (span: Tracer.Span, event: CallEvent): void => {
  span.attribute("gen_ai.response.model", event.responseModel ?? event.model)
  if (event.inputTokens !== undefined) span.attribute("gen_ai.usage.input_tokens", event.inputTokens)
  if (event.outputTokens !== undefined) span.attribute("gen_ai.usage.output_tokens", event.outputTokens)
  if (event.finishReason !== undefined) span.attribute("gen_ai.response.finish_reasons", [event.finishReason])
  if (event.error !== undefined) span.attribute("error.type", event.error)
  if (event.cached === true) span.attribute("hasten.cache.hit", true)
  if (event.stage !== undefined) span.attribute("hasten.stage", event.stage)
  if (event.ttftMs !== undefined) span.attribute("hasten.ttft_ms", event.ttftMs)
}

/** Spans are opened when asked for, or (`"auto"`) when a tracer that exports them is installed. */
const wantsSpan = (spans: boolean | "auto", context: Context.Context<never>): boolean =>
  spans === "auto" ? Context.get(context, Tracer.Tracer) !== Tracer.nativeTracer : spans

/**
 * Wraps an `Llm` so every `complete` and `stream` call is measured and recorded.
 * @category constructors @since 0.1.0
 */
export const wrap = (inner: Llm.LlmService, recorder: PerfLoggerService): Llm.LlmService => {
  /** The call's event (and its metric updates), built once the call has returned. */
  const completeEvent = (
    request: CompletionRequest.CompletionRequest,
    stage: string | undefined,
    start: number,
    latencyMs: number,
    context: Context.Context<never>,
    exit: Exit.Exit<Completion.Completion, unknown>
  ): CallEvent => {
    let outcome: Outcome
    if (Exit.isSuccess(exit)) {
      const completion = exit.value
      const timing = completion.timing
      outcome = {
        op: "complete",
        provider: completion.provider,
        request,
        stage,
        start,
        latencyMs,
        error: undefined,
        responseModel: completion.model,
        finishReason: completion.finishReason,
        usage: completion.usage,
        cached: completion.cached,
        metadata: completion.metadata,
        ttftMs: timing.firstToken !== undefined && timing.firstToken < timing.end ? timing.firstToken - timing.start : undefined,
        itlMs: undefined,
        chunkGapsMs: undefined,
        chunks: undefined,
        outputTokens: undefined,
        tokensEstimated: false
      }
    } else {
      outcome = {
        op: "complete",
        provider: inner.name,
        request,
        stage,
        start,
        latencyMs,
        error: errorClass(exit.cause),
        responseModel: undefined,
        finishReason: undefined,
        usage: undefined,
        cached: undefined,
        metadata: undefined,
        ttftMs: undefined,
        itlMs: undefined,
        chunkGapsMs: undefined,
        chunks: undefined,
        outputTokens: undefined,
        tokensEstimated: false
      }
    }
    const event = toEvent(outcome)
    if (recorder.metrics) updateMetrics(event, undefined, context)
    return event
  }

  // `Effect.withSpan` rather than `Effect.fn`: the same "PerfLogger.complete" span, without
  // the per-call stack capture `Effect.fn` does (the largest cost of measuring a fast call).
  /** Times `inner.complete` in the fiber's `context`; the event is built later (group commit). */
  const measured = (request: CompletionRequest.CompletionRequest, context: Context.Context<never>, withSpan: boolean) => {
    const clock = Context.get(context, Clock.Clock)
    const stage = Context.get(context, CurrentStage)
    const start = nowMs(clock)
    // The exit callback records synchronously and returns the shared `Effect.void`: no
    // per-call `Effect.sync` on the measured path.
    return Effect.onExit(inner.complete(request), (exit) => {
      const latencyMs = nowMs(clock) - start
      const span = withSpan ? Context.getOrUndefined(context, Tracer.ParentSpan) : undefined
      if (span !== undefined && span._tag === "Span") {
        // the span ends right after this: its attributes need the event now
        const event = completeEvent(request, stage, start, latencyMs, context, exit)
        setResponseAttributes(span, event)
        recorder.recordUnsafe(event)
      } else {
        recorder.recordLazyUnsafe(() => completeEvent(request, stage, start, latencyMs, context, exit))
      }
      return Effect.void
    })
  }
  const complete = (request: CompletionRequest.CompletionRequest): Effect.Effect<Completion.Completion, LlmError.LlmError> =>
    Effect.contextWith((context: Context.Context<never>) =>
      wantsSpan(recorder.spans, context)
        ? Effect.withSpan(
          Effect.contextWith((inSpan: Context.Context<never>) => measured(request, inSpan, true)),
          "PerfLogger.complete",
          { kind: "client", attributes: requestAttributes(inner.name, request), captureStackTrace: false }
        )
        : measured(request, context, false)
    )

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.gen(function*() {
      const clock = yield* Clock.Clock
      const stage = yield* CurrentStage
      const context = yield* Effect.context<never>()
      const span = wantsSpan(recorder.spans, context)
        ? yield* Effect.makeSpan("PerfLogger.stream", { kind: "client", attributes: requestAttributes(inner.name, request) })
        : undefined
      const start = nowMs(clock)
      let first: number | undefined
      let last = 0
      let chunks = 0
      let countedTokens = 0
      let tokenChunks = 0
      const itl: Array<number> = []
      const gaps: Array<number> = []
      let usage: Completion.Usage | undefined
      let finishReason: string | undefined
      let model: string | undefined
      let cached: boolean | undefined
      let metadata: Record<string, unknown> | undefined
      const onChunk = (chunk: Completion.CompletionChunk): void => {
        chunks++
        const tokens = chunk.tokens
        if (chunk.text.length > 0 || (tokens !== undefined && tokens > 0)) {
          const now = nowMs(clock)
          const count = tokens !== undefined && tokens > 0 ? tokens : 1
          countedTokens += count
          tokenChunks++
          if (first === undefined) {
            first = now
          } else {
            const gap = now - last
            gaps.push(gap)
            const perToken = gap / count
            for (let index = 0; index < count; index++) itl.push(perToken)
          }
          last = now
        }
        if (chunk.usage !== undefined) usage = chunk.usage
        if (chunk.finishReason !== undefined) finishReason = chunk.finishReason
        if (chunk.model !== undefined) model = chunk.model
        if (chunk.cached !== undefined) cached = chunk.cached
        if (chunk.metadata !== undefined) metadata = metadata === undefined ? chunk.metadata : { ...metadata, ...chunk.metadata }
      }
      const onExit = (exit: Exit.Exit<unknown, LlmError.LlmError>) =>
        Effect.sync(() => {
          const end = nowMs(clock)
          const build = (): CallEvent => {
            const error = Exit.isSuccess(exit) ? undefined : errorClass(exit.cause)
            const reported = usage?.outputTokens
            const event = toEvent({
              op: "stream",
              provider: inner.name,
              request,
              stage,
              start,
              latencyMs: end - start,
              error,
              responseModel: model,
              finishReason,
              usage,
              cached,
              metadata,
              ttftMs: first === undefined ? undefined : first - start,
              itlMs: itl,
              chunkGapsMs: gaps,
              chunks,
              outputTokens: reported ?? (tokenChunks > 0 ? countedTokens : undefined),
              tokensEstimated: reported === undefined && tokenChunks > 0
            })
            if (recorder.metrics) updateMetrics(event, gaps, context)
            return event
          }
          if (span !== undefined) {
            const event = build()
            setResponseAttributes(span, event)
            span.end(clock.currentTimeNanosUnsafe(), exit)
            recorder.recordUnsafe(event)
          } else {
            recorder.recordLazyUnsafe(build)
          }
        })
      const measuredStream = inner.stream(request).pipe(
        Stream.tap((chunk) => Effect.sync(() => onChunk(chunk))),
        Stream.onExit(onExit)
      )
      return span === undefined ? measuredStream : Stream.provideService(measuredStream, Tracer.ParentSpan, span)
    }))

  return { name: inner.name, complete, stream }
}

/**
 * The measuring middleware: needs the `Llm` below it and the {@link PerfLogger} recorder,
 * provides an `Llm` that records every call. Place it just above the provider (and the
 * rate limiter) to measure what goes upstream, or outermost to measure what the app sees.
 * @category layers @since 0.1.0
 */
export const layerLlm: Layer.Layer<Llm.Llm, never, Llm.Llm | PerfLogger> = Llm.middleware((inner) =>
  Effect.map(Effect.service(PerfLogger), (recorder) => wrap(inner, recorder))
)

// -----------------------------------------------------------------------------
// stages
// -----------------------------------------------------------------------------

/**
 * Runs `effect` as one invocation of pipeline stage `name`: calls inside are attributed to
 * the stage, the invocation's duration is recorded, and (unless `recordItems` is used for
 * the stage) each successful invocation counts as one item for items/s.
 * @category stages @since 0.1.0
 */
export const stage: {
  (name: string): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R | PerfLogger>
  <A, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | PerfLogger>
} = function(name: string, effect?: Effect.Effect<any, any, any>): any {
  if (effect === undefined) return (self: Effect.Effect<any, any, any>) => runStage(name, self)
  return runStage(name, effect)
} as any

const runStage = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | PerfLogger> =>
  Effect.flatMap(Effect.service(PerfLogger), (recorder) =>
    Effect.clockWith((clock) => {
      const start = nowMs(clock)
      return effect.pipe(
        Effect.provideService(CurrentStage, name),
        Effect.onExit((exit) =>
          Effect.contextWith((context: Context.Context<never>) => {
            const durationMs = nowMs(clock) - start
            recorder.recordUnsafe({
              type: "stage",
              stage: name,
              start: round3(start),
              durationMs: round3(durationMs),
              ok: Exit.isSuccess(exit)
            })
            const instruments = stageInstrumentsFor(name)
            instruments.duration.updateUnsafe(durationMs / 1000, context)
            if (Exit.isSuccess(exit)) instruments.items.updateUnsafe(1, context)
            return Effect.void
          })
        ),
        Effect.withSpan("PerfLogger.stage", { attributes: { "hasten.stage": name } })
      )
    }))

/**
 * Records `n` items processed by stage `stage` (for stages that handle many items per
 * invocation, e.g. a batch).
 * @category stages @since 0.1.0
 */
export const recordItems = (stage: string, n: number): Effect.Effect<void, never, PerfLogger> =>
  Effect.flatMap(Effect.service(PerfLogger), (recorder) => recorder.recordItems(stage, n))

/**
 * The run summary so far.
 * @category accessors @since 0.1.0
 */
export const summary: Effect.Effect<Summary, never, PerfLogger> = Effect.flatMap(
  Effect.service(PerfLogger),
  (recorder) => recorder.summary
)

/**
 * Prints the summary table now (it is printed anyway when the run's scope closes).
 * @category accessors @since 0.1.0
 */
export const printSummary: Effect.Effect<Summary, never, PerfLogger> = Effect.tap(
  summary,
  (current) => Console.log(renderSummary(current))
)

// -----------------------------------------------------------------------------
// export
// -----------------------------------------------------------------------------

/**
 * OTLP/HTTP JSON export of the perf-logger metrics and spans (and every other Effect
 * metric and span) to an OpenTelemetry collector, via `effect/observability`.
 * @category layers @since 0.1.0
 */
export const layerOtlp = (options: {
  /** Collector base URL, e.g. `http://localhost:4318`; `/v1/metrics` and `/v1/traces` are appended. */
  readonly baseUrl: string
  readonly serviceName?: string
  readonly metricsExportInterval?: Duration.Input
  readonly tracerExportInterval?: Duration.Input
}): Layer.Layer<OtlpExporter.Flusher> =>
  Otlp.layerJson({
    baseUrl: options.baseUrl,
    resource: { serviceName: options.serviceName ?? "hasten" },
    ...(options.metricsExportInterval !== undefined ? { metricsExportInterval: options.metricsExportInterval } : {}),
    ...(options.tracerExportInterval !== undefined ? { tracerExportInterval: options.tracerExportInterval } : {})
  }).pipe(Layer.provide(FetchHttpClient.layer))

/**
 * The current metrics in the Prometheus text exposition format.
 * @category accessors @since 0.1.0
 */
export const prometheusText: Effect.Effect<string> = PrometheusMetrics.format()

/**
 * Serves {@link prometheusText} on `http://<host>:<port>/metrics` (node:http) for the
 * lifetime of the layer. Port 0 picks a free port; read it from {@link PrometheusEndpoint}.
 * @category layers @since 0.1.0
 */
export class PrometheusEndpoint extends Context.Service<PrometheusEndpoint, { readonly url: string }>()(
  "@hasten/perf-logger/PrometheusEndpoint"
) {}

/**
 * Layer of {@link PrometheusEndpoint}.
 * @category layers @since 0.1.0
 */
export const layerPrometheus = (options: { readonly port?: number; readonly host?: string } = {}): Layer.Layer<PrometheusEndpoint> =>
  Layer.effect(
    PrometheusEndpoint,
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const Http = yield* Effect.promise(() => import("node:http"))
      const server = Http.createServer((request, response) => {
        if (request.method === "GET" && (request.url ?? "").split("?")[0] === "/metrics") {
          response.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
          response.end(PrometheusMetrics.formatUnsafe(context))
        } else {
          response.writeHead(404).end()
        }
      })
      const host = options.host ?? "127.0.0.1"
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          server.listen(options.port ?? 9464, host, () => resume(Effect.void))
        }),
        () =>
          Effect.callback<void>((resume) => {
            server.close(() => resume(Effect.void))
          })
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : options.port ?? 9464
      return { url: `http://${host}:${port}/metrics` }
    })
  )

// -----------------------------------------------------------------------------
// files
// -----------------------------------------------------------------------------

/**
 * Reads a run folder's `events.jsonl` (tolerating a torn last line) and summarizes it.
 * @category files @since 0.1.0
 */
export const readRun = (runDir: string): { readonly events: ReadonlyArray<Event>; readonly summary: Summary } => {
  const path = Path.join(runDir, "events.jsonl")
  if (!Fs.existsSync(path)) throw new InvalidOptions(`perf-logger: no events.jsonl in ${runDir}`)
  const events = parseEvents(Fs.readFileSync(path, "utf8"), path)
  return { events, summary: summarize(events) }
}

/**
 * Renders `report.html` for a list of events.
 * @category files @since 0.1.0
 */
export const renderReportHtml = (events: Iterable<Event>): string => {
  const aggregator = new Aggregator()
  for (const event of events) aggregator.add(event)
  return renderReport({ summary: aggregator.summary(), points: aggregator.points, startT: aggregator.startT, pointWeight: aggregator.pointStride })
}

/**
 * Regenerates `summary.json` and `report.html` of a run folder from its `events.jsonl`
 * (also recovers the files of a run that crashed).
 * @category files @since 0.1.0
 */
export const writeReport = (runDir: string): Summary => {
  const { events, summary: current } = readRun(runDir)
  writeFileAtomic(Path.join(runDir, "summary.json"), JSON.stringify(current, null, 2) + "\n")
  writeFileAtomic(Path.join(runDir, "report.html"), renderReportHtml(events))
  return current
}

/**
 * Reads a run's `summary.json` (a run folder, or the file itself).
 * @category files @since 0.1.0
 */
export const readSummary = (path: string): Summary => {
  const file = Fs.existsSync(path) && Fs.statSync(path).isDirectory() ? Path.join(path, "summary.json") : path
  if (!Fs.existsSync(file)) throw new InvalidOptions(`perf-logger: no summary.json at ${path}`)
  const parsed = JSON.parse(Fs.readFileSync(file, "utf8")) as Summary
  if (parsed.version !== 1 || typeof parsed.overall !== "object") {
    throw new InvalidOptions(`perf-logger: ${file} is not a perf-logger summary`)
  }
  return parsed
}
