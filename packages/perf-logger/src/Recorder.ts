/**
 * The run recorder: the `PerfLogger` service that receives the measured events, aggregates
 * them, and owns the run's files — `performance_logs/<run-id>/events.jsonl`, `summary.json`,
 * `report.html` — and the console summary table.
 * @since 0.1.0
 */
import { Boundary } from "@hasten/core"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Path from "node:path"
import { EventLog } from "./internal/events.js"
import { writeFileAtomic } from "./internal/files.js"
import { stageInstrumentsFor } from "./internal/instruments.js"
import { renderReport } from "./internal/report.js"
import { Aggregator } from "./internal/stats.js"
import { renderSummary } from "./internal/table.js"
import { nowMs, round3 } from "./internal/time.js"
import { memoryHeapUsed, memoryRss } from "./Metrics.js"
import { InvalidOptionsReason, InvalidRunId, PerfLoggerError } from "./PerfLoggerError.js"
import type { PriceTable } from "./Price.js"
import type { Event, FlushMode, MemoryEvent } from "./RunLog.js"
import { bufferedFlush, groupFlush } from "./RunLog.js"
import type { Summary } from "./Summary.js"

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
  /** Whether the middleware opens a span per call (`"auto"`: when a non-native tracer is installed). */
  readonly spans: boolean | "auto"
  /** Whether the middleware updates the exported Effect metrics. */
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

const memoryEvent = (t: number): MemoryEvent => {
  const usage = process.memoryUsage()
  return { type: "memory", t, rss: usage.rss, heapUsed: usage.heapUsed, heapTotal: usage.heapTotal, external: usage.external }
}

const defaultRunId = (t: number): string => `${new Date(Math.floor(t)).toISOString().replace(/[:.]/g, "-")}-${process.pid}`

/** Bad input, as it was named before 0.2.0: now `PerfLoggerError`. @category errors @since 0.1.0 */
export { InvalidOptions } from "./PerfLoggerError.js"

const optional = Schema.optionalKey
const durationOrOff = Schema.Unknown.check(
  Schema.makeFilter((input: unknown) =>
    input === false || Option.isSome(Duration.fromInput(input as Duration.Input))
      ? undefined
      : `must be a duration ("1 second", milliseconds) or false, got ${String(input)}`
  )
)

/**
 * The recorder's {@link Options}, checked when a run starts.
 * @category configuration @since 0.2.0
 */
export const OptionsSchema = Schema.Struct({
  dir: optional(Schema.String),
  runId: optional(Schema.String),
  prices: optional(Schema.Record(
    Schema.String,
    Schema.Struct({
      input: Boundary.NonNegative,
      output: Boundary.NonNegative,
      cachedInput: optional(Boundary.NonNegative)
    })
  )),
  flush: optional(Schema.Union([
    Schema.Literal("event"),
    Schema.Struct({ intervalMs: Boundary.NonNegative, maxEvents: Boundary.PositiveInt })
  ])),
  console: optional(Schema.Boolean),
  report: optional(Schema.Boolean),
  memoryInterval: optional(durationOrOff),
  summaryInterval: optional(durationOrOff),
  spans: optional(Schema.Union([Schema.Boolean, Schema.Literal("auto")])),
  metrics: optional(Schema.Boolean)
})

const checkOptions = Boundary.optionsChecker(OptionsSchema)

const validateOptions = (options: Options): Effect.Effect<void, PerfLoggerError> => {
  const bad = checkOptions(options)
  return bad === undefined
    ? Effect.void
    : Effect.fail(
      new PerfLoggerError({ reason: new InvalidOptionsReason({ field: bad.field, description: `invalid options: ${bad.message}` }) })
    )
}

const validateRunId = (runId: string): Effect.Effect<string, PerfLoggerError> =>
  runId.length === 0 || runId === "." || runId === ".." || /[/\\\0]/.test(runId)
    ? Effect.fail(
      new PerfLoggerError({
        reason: new InvalidRunId({ runId, description: `runId ${JSON.stringify(runId)} must be a plain folder name` })
      })
    )
    : Effect.succeed(runId)

interface RecorderHandle {
  readonly service: PerfLoggerService
  readonly periodicFlush: Effect.Effect<void>
  readonly close: Effect.Effect<Summary>
}

const makeRecorder = (
  options: Options & { readonly write: boolean }
): Effect.Effect<RecorderHandle, PerfLoggerError> =>
  Effect.gen(function*() {
    yield* validateOptions(options)
    const clock = yield* Clock.Clock
    const start = nowMs(clock)
    const runId = yield* validateRunId(options.runId ?? defaultRunId(clock.currentTimeMillisUnsafe()))
    const runDir = options.write ? Path.resolve(options.dir ?? "performance_logs", runId) : undefined
    const eventsPath = runDir === undefined ? undefined : Path.join(runDir, "events.jsonl")
    const aggregator = new Aggregator(options.prices)
    // A write error (disk full, folder removed) stops the file log and is reported once;
    // the measured calls and the in-memory summary carry on.
    const log = new EventLog(
      eventsPath,
      options.flush ?? groupFlush,
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
export const make = (options: Options = {}): Effect.Effect<PerfLoggerService, PerfLoggerError, Scope.Scope> =>
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
 * The run recorder as a layer (`PerfLogger.layerRun`): `Recorder.layer({ dir: "performance_logs", runId, prices })`.
 * Combine with the middleware (`PerfLogger.layer`), which measures the calls.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<PerfLogger, PerfLoggerError> => Layer.effect(PerfLogger, make(options))

/**
 * An in-memory recorder: same measurements and summary, no files and no console table.
 * @category testing @since 0.1.0
 */
export const layerMemory = (
  options: Pick<Options, "runId" | "prices" | "spans" | "metrics"> = {}
): Layer.Layer<PerfLogger, PerfLoggerError> =>
  Layer.effect(
    PerfLogger,
    makeScoped({ ...options, write: false, console: false, report: false, memoryInterval: false, summaryInterval: false })
  )

/**
 * `HASTEN_PERF_FLUSH` as a flush mode: `group` (the 10 ms group commit), `buffered` (100 ms)
 * or `event`; `fallback` when it is not set.
 * @category configuration @since 0.4.0
 */
export const flushConfig = (fallback: "group" | "event" | "buffered" = "group"): Config.Config<FlushMode> =>
  Config.Literals(["group", "event", "buffered"], "HASTEN_PERF_FLUSH").pipe(
    Config.withDefault(fallback),
    Config.map((mode): FlushMode => mode === "buffered" ? bufferedFlush : mode === "event" ? "event" : groupFlush)
  )

/**
 * Like {@link layer}, reading the environment: `HASTEN_PERF_DIR` (default
 * `performance_logs`), `HASTEN_PERF_RUN_ID`, `HASTEN_PERF_FLUSH` (`group`, the default 10 ms
 * group commit; `buffered`, 100 ms; or `event`), `HASTEN_PERF_CONSOLE` and
 * `HASTEN_PERF_REPORT` (default `true`), `HASTEN_PERF_SPANS` (`auto`, the default; `true` or
 * `false`). Explicit options win over the environment.
 * @category layers @since 0.1.0
 */
export const layerConfig = (options: Options = {}): Layer.Layer<PerfLogger, Config.ConfigError | PerfLoggerError> =>
  Layer.unwrap(
    Effect.map(
      Config.all({
        dir: Config.String("HASTEN_PERF_DIR").pipe(Config.withDefault("performance_logs")),
        runId: Config.option(Config.String("HASTEN_PERF_RUN_ID")),
        flush: flushConfig(),
        console: Config.Boolean("HASTEN_PERF_CONSOLE").pipe(Config.withDefault(true)),
        report: Config.Boolean("HASTEN_PERF_REPORT").pipe(Config.withDefault(true)),
        spans: Config.Literals(["auto", "true", "false"], "HASTEN_PERF_SPANS").pipe(Config.withDefault("auto" as const))
      }),
      (config) =>
        layer({
          dir: config.dir,
          ...(Option.isSome(config.runId) ? { runId: config.runId.value } : {}),
          flush: config.flush,
          console: config.console,
          report: config.report,
          spans: config.spans === "auto" ? "auto" : config.spans === "true",
          ...options
        })
    )
  )

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
