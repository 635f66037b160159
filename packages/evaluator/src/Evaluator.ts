/**
 * The runner: evaluates one or more candidate `Llm`s on the same seeded selection of a
 * dataset, at temperature 0 with the run's seed (or a set temperature, each trial with its
 * own seed), with per-item error isolation, repeated trials, an optional self-correction
 * loop, an optional LLM judge called in parallel with bounded concurrency, and a JSONL
 * checkpoint that lets a killed run resume.
 * @since 0.1.0
 */
import { Boundary, CompletionRequest, Llm, RequestKey } from "@hasten/core"
import { Cause, Clock, Context, Effect, Exit, Layer, Schema, Semaphore } from "effect"
import type * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import type { Dataset, Item } from "./Dataset.js"
import { CheckpointMismatch, EvaluatorError, InvalidOptions, StartFailed } from "./EvaluatorError.js"
import { Checkpoint, RecordTable } from "./internal/checkpoint.js"
import type { ItemError, ItemRecord, ItemTiming, Turn } from "./ItemRecord.js"
import type { Progress, RateLimitFacts } from "./Progress.js"
import * as Report from "./Report.js"
import * as Sampling from "./Sampling.js"
import { Judge, type Score, type Scorer } from "./Scorer.js"

/**
 * A candidate: a model (and LoRA adapter) served by an `Llm` layer. Candidates whose
 * `llm` is the same layer value share one instance (one model load).
 * @category models @since 0.1.0
 */
export interface Candidate {
  /** The label in reports, e.g. `local:stories260K.gguf`. Unique within a run. */
  readonly name: string
  /** The model id sent in each request. */
  readonly model: string
  readonly adapter?: string
  readonly llm: Layer.Layer<Llm.Llm, unknown>
}

/** The judge: an `Llm` layer, a model id and how many judge calls may run at once. @category models @since 0.1.0 */
export interface JudgeSpec {
  readonly name: string
  readonly model: string
  readonly llm: Layer.Layer<Llm.Llm, unknown>
  /** Concurrent judge calls. Default 8. */
  readonly concurrency?: number
}

/** Options of {@link run}. @category models @since 0.1.0 */
export interface Options {
  readonly dataset: Dataset
  readonly scorer: Scorer
  readonly candidates: ReadonlyArray<Candidate>
  readonly judge?: JudgeSpec
  /** How many questions to select; all when omitted. */
  readonly questions?: number
  /** Selection, generation, judge and bootstrap seed. Default 42. */
  readonly seed?: number
  /**
   * Trials per item. Each trial samples with its own seed (`Sampling.trialSeed`, recorded in
   * `ItemRecord.seed` and `config.trialSeeds`) and a distinct `trial` index (distinct cache
   * keys). More than one trial needs `temperature > 0`: at temperature 0 every trial decodes
   * the same greedy answer whatever its seed, so the run is refused. Default 1.
   */
  readonly trials?: number
  /**
   * Candidate sampling temperature. Default 0 (greedy: the reproducible single answer).
   * @since 0.3.0
   */
  readonly temperature?: number
  /** Self-correction: revision turns after the first answer. Default 0 (off). */
  readonly selfCorrect?: number
  /** Concurrent candidate generations. Default 4. */
  readonly concurrency?: number
  /** Generation budget per answer. Default 256. */
  readonly maxTokens?: number
  /** A JSONL checkpoint file: finished items are appended; a re-run skips them. */
  readonly checkpoint?: string
  /**
   * On resume, run the checkpoint's errored items again (their new outcome is appended and
   * replaces the old one); `timing.retried` lists them. Default true; `false` keeps them as
   * they were.
   * @since 0.3.0
   */
  readonly retryErrors?: boolean
  readonly progress?: Progress
  /** Where the pending items run: default in this process; `Distributed.executor` runs them on a fleet of workers. */
  readonly executor?: Executor
}

/** One (candidate, item, trial) of a run. @category models @since 0.3.0 */
export interface Task {
  readonly candidate: Candidate
  readonly item: Item
  readonly trial: number
}

/** What evaluating one task gives: its record, its timing and what the rate limiter reported. @category models @since 0.3.0 */
export interface Entry {
  readonly record: ItemRecord
  readonly timing: ItemTiming
  readonly rateLimit?: RateLimitFacts
  /** The worker that evaluated it, in a distributed run. */
  readonly worker?: string
}

/**
 * Runs a run's pending tasks: `evaluate` runs one here, `record` files an entry (report,
 * checkpoint, progress), found by its record's candidate, item id and trial; an entry of a
 * task that is not pending, or already filed, is ignored. The default runs them in this
 * process; `Distributed.executor` (`@hasten/evaluator/Distributed`) sends them to workers.
 * @category models @since 0.3.0
 */
export interface Executor {
  readonly execute: (run: {
    readonly config: Report.RunConfig
    /** The pending tasks (iterated once, made as they are read), grouped by candidate, then item, then trial. */
    readonly tasks: Iterable<Task>
    readonly evaluate: (task: Task) => Effect.Effect<Entry>
    readonly record: (entry: Entry) => void
  }) => Effect.Effect<void, unknown>
}

/** The one error of the evaluator (reasons in `EvaluatorError`). @category errors @since 0.1.0 */
export { EvaluatorError } from "./EvaluatorError.js"

const optional = Schema.optionalKey

/** The numeric options of {@link run}, checked before anything starts. */
const checkOptions = Boundary.optionsChecker(Schema.Struct({
  trials: optional(Boundary.PositiveInt),
  selfCorrect: optional(Boundary.NonNegativeInt),
  concurrency: optional(Boundary.PositiveInt),
  judge: optional(Schema.Struct({ concurrency: optional(Boundary.PositiveInt) })),
  temperature: optional(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))),
  questions: optional(Boundary.PositiveInt),
  maxTokens: optional(Boundary.PositiveInt)
}))

const invalid = (field: string, description: string) => new EvaluatorError({ reason: new InvalidOptions({ field, description }) })

/** The outcome of one (candidate, item, trial) and its timing (defined in `ItemRecord`). @category models @since 0.1.0 */
export type { ItemError, ItemRecord, ItemTiming, Turn } from "./ItemRecord.js"

/** What {@link run} returns: the report and its timing section. @category models @since 0.1.0 */
export interface RunResult {
  readonly report: Report.Report
  readonly timing: Report.Timing
}

/**
 * Opens the checkpoint at `path` (creating it with the run's header when empty), handing
 * each item line to `onItem`; fails when it belongs to another run.
 */
const openCheckpoint = (path: string, configHash: string, onItem: Parameters<Checkpoint["read"]>[0]) =>
  Effect.gen(function*() {
    mkdirSync(Path.dirname(path), { recursive: true })
    const checkpoint = yield* Effect.acquireRelease(Effect.sync(() => Checkpoint.open(path)), (open) => Effect.sync(() => open.close()))
    // Lines are filed as they are read; a checkpoint of another run fails the run below.
    const found = checkpoint.read(onItem)
    if (found.header === undefined && found.items > 0) {
      return yield* new EvaluatorError({
        reason: new CheckpointMismatch({ path, description: `checkpoint ${path} has no header line; delete it to start over` })
      })
    }
    if (found.header !== undefined && found.header !== configHash) {
      return yield* new EvaluatorError({
        reason: new CheckpointMismatch({
          path,
          description:
            `checkpoint ${path} belongs to a different run (dataset, selection, candidates, judge or options changed); delete it or choose another --out`
        })
      })
    }
    if (found.header === undefined) checkpoint.append(JSON.stringify({ type: "header", config: configHash }))
    return checkpoint
  })

const errorOf = (cause: Cause.Cause<unknown>, stage: ItemError["stage"], turn: number): ItemError => {
  const failure = cause.reasons.find((reason) => reason._tag === "Fail")
  const error: unknown = failure?._tag === "Fail" ? failure.error : cause.reasons.find((reason) => reason._tag === "Die")?.defect
  if (failure === undefined && error === undefined) return { stage, tag: "Interrupted", message: "interrupted", turn }
  const tagged = error as { _tag?: unknown; message?: unknown; reason?: { _tag?: unknown } }
  const tag = typeof tagged?._tag === "string"
    ? (typeof tagged.reason?._tag !== "string" ?
      tagged._tag
      : tagged._tag === "LlmError" ?
      `LlmError.${tagged.reason._tag}`
      // the evaluator's own error is reported by its reason (`JudgeParseError`)
      : tagged._tag === "EvaluatorError" ?
      tagged.reason._tag
      : tagged._tag)
    : failure === undefined
    ? "Defect"
    : "Error"
  const message = typeof tagged?.message === "string" ? tagged.message : String(error)
  return { stage, tag, message, turn }
}

const build = <A>(layer: Layer.Layer<A, unknown>, memoMap: Layer.MemoMap, scope: Scope.Scope, what: string) =>
  Layer.buildWithMemoMap(layer, memoMap, scope).pipe(
    Effect.mapError((error) =>
      new EvaluatorError({ reason: new StartFailed({ what, description: error instanceof Error ? error.message : String(error) }) })
    )
  )

/** The configuration fingerprint a checkpoint is tied to. @category utils @since 0.1.0 */
export const configHash = (config: Report.RunConfig): string => createHash("sha256").update(RequestKey.canonicalJson(config)).digest("hex")

/**
 * Evaluates a run's pending tasks and returns what the report is made from: every task in
 * report order and each one's stored record (`keep: "slim"` keeps only what summaries read
 * in memory and reads records back from the checkpoint).
 */
const execute = (options: Options, keep: "full" | "slim") =>
  Effect.gen(function*() {
    const seed = options.seed ?? Sampling.defaultSeed
    const trials = options.trials ?? 1
    const selfCorrect = options.selfCorrect ?? 0
    const maxTokens = options.maxTokens ?? 256
    const scorer = options.scorer
    if (options.candidates.length === 0) return yield* invalid("candidates", "no candidates given")
    const names = new Set(options.candidates.map((candidate) => candidate.name))
    if (names.size !== options.candidates.length) return yield* invalid("candidates", "candidate names must be unique")
    if (scorer.usesJudge && options.judge === undefined) {
      return yield* invalid("judge", `scorer "${scorer.name}" needs a judge (--judge)`)
    }
    const bad = checkOptions(options)
    if (bad !== undefined) return yield* invalid(bad.field, bad.message)
    const temperature = options.temperature ?? 0
    if (trials > 1 && temperature === 0) {
      return yield* invalid(
        "trials",
        `trials ${trials} at temperature 0 would repeat one greedy answer ${trials} times (a seed changes nothing at temperature 0); set a temperature above 0 (each trial then samples with its own seed) or run 1 trial`
      )
    }
    if (options.dataset.items.length === 0) return yield* invalid("dataset", `dataset ${options.dataset.name} has no valid items`)

    const selection = Sampling.select(options.dataset.items.length, options.questions, seed)
    const items = selection.map((index) => options.dataset.items[index]!)
    const config: Report.RunConfig = {
      dataset: Report.datasetOf(options.dataset),
      scorer: scorer.name,
      seed,
      questions: items.length,
      trials,
      ...(temperature !== 0 ? { temperature } : {}),
      ...(trials > 1 ? { trialSeeds: Array.from({ length: trials }, (_, trial) => Sampling.trialSeed(seed, trial)) } : {}),
      selfCorrect,
      maxTokens,
      selection: items.map((item) => item.id),
      candidates: options.candidates.map((candidate) => ({
        name: candidate.name,
        model: candidate.model,
        ...(candidate.adapter !== undefined ? { adapter: candidate.adapter } : {})
      })),
      judge: options.judge === undefined ? null : { name: options.judge.name, model: options.judge.model }
    }
    const hash = configHash(config)

    const startedAt = yield* Clock.currentTimeMillis
    const memoMap = yield* Layer.makeMemoMap
    const scope = yield* Effect.scope
    const llms = new Map<string, Llm.LlmService>()
    // With an executor the items run elsewhere: nothing is built here.
    for (const candidate of options.executor === undefined ? options.candidates : []) {
      const context = yield* build(candidate.llm, memoMap, scope, `candidate ${candidate.name}`)
      llms.set(candidate.name, Context.get(context, Llm.Llm))
    }
    let judgeContext = Context.empty() as Context.Context<Judge>
    const judgeCalls = { calls: 0, cachedCalls: 0 }
    if (options.judge !== undefined && options.executor === undefined) {
      const context = yield* build(options.judge.llm, memoMap, scope, `judge ${options.judge.name}`)
      const semaphore = yield* Semaphore.make(options.judge.concurrency ?? 8)
      const judgeLlm = Context.get(context, Llm.Llm)
      judgeContext = Context.make(Judge, {
        // Counts judge calls and cache hits for the timing section.
        llm: {
          ...judgeLlm,
          complete: (request) =>
            judgeLlm.complete(request).pipe(Effect.tap((completion) =>
              Effect.sync(() => {
                judgeCalls.calls++
                if (completion.cached === true) judgeCalls.cachedCalls++
              })
            ))
        },
        model: options.judge.model,
        withPermit: semaphore.withPermit,
        seed
      })
    }

    // Tasks by index: candidate, then item (in selection order), then trial; the report's order.
    const perCandidate = items.length * trials
    const taskCount = options.candidates.length * perCandidate
    const taskAt = (index: number): Task => ({
      candidate: options.candidates[Math.floor(index / perCandidate)]!,
      item: items[Math.floor((index % perCandidate) / trials)]!,
      trial: index % trials
    })
    const candidateIndex = new Map(options.candidates.map((candidate, index) => [candidate.name, index]))
    const itemIndex = new Map(items.map((item, index) => [item.id, index]))
    /** The index of a record's task, or undefined when the record is not one of this run's. */
    const indexOf = (record: ItemRecord): number | undefined => {
      const candidate = candidateIndex.get(record.candidate)
      const item = itemIndex.get(record.itemId)
      if (candidate === undefined || item === undefined || !(record.trial >= 0 && record.trial < trials)) return undefined
      return candidate * perCandidate + item * trials + record.trial
    }
    /** The slim record with the run's own strings (a record parsed from JSON has copies of them). */
    const slimOf = (index: number, record: ItemRecord): ItemRecord => {
      const task = taskAt(index)
      return { ...Report.slim(record), candidate: task.candidate.name, itemId: task.item.id }
    }

    // Each finished task: what summaries read, its timing and its checkpoint line (or the whole record).
    const table = new RecordTable(taskCount, keep)
    // errored items from the checkpoint that run again, with the error they had
    const retrying = new Map<number, ItemError>()
    let checkpoint: Checkpoint | undefined
    if (options.checkpoint !== undefined) {
      checkpoint = yield* openCheckpoint(options.checkpoint, hash, (record, timing, line) => {
        const index = indexOf(record)
        if (index === undefined) return
        if (record.status === "error" && options.retryErrors !== false) {
          retrying.set(index, record.error!)
          table.clear(index)
        } else {
          retrying.delete(index)
          table.set(index, record, slimOf(index, record), { ...timing, resumed: true }, line)
        }
      })
    }

    // What `record` may still file: each pending task once (1 = pending).
    const open = new Uint8Array(taskCount)
    let pendingCount = 0
    let resumedErrors = 0
    for (let index = 0; index < taskCount; index++) {
      if (!table.has(index)) {
        open[index] = 1
        pendingCount++
      } else if (table.slim(index).status === "error") resumedErrors++
    }
    function* pendingTasks(): Generator<Task> {
      for (let index = 0; index < taskCount; index++) if (open[index] === 1) yield taskAt(index)
    }
    options.progress?.start({ total: taskCount, done: taskCount - pendingCount, errors: resumedErrors })

    const generation = yield* Semaphore.make(options.concurrency ?? 4)

    const evaluate = (task: Task) =>
      Effect.gen(function*() {
        const llm = llms.get(task.candidate.name)!
        const start = yield* Clock.currentTimeMillis
        const prompt = scorer.prompt(task.item)
        const messages: Array<CompletionRequest.Message> = [...prompt]
        const turns: Array<Turn> = []
        let usage = { inputTokens: 0, outputTokens: 0, calls: 0 }
        let cachedCalls = 0
        // what the rate limiter reported on this item's upstream calls (facts), for the progress line
        const rateLimit = { retries: 0, waitMillis: 0, http429: 0, timeouts: 0 }
        let previous: Score | undefined
        let failure: ItemError | undefined
        for (let turn = 0; turn <= selfCorrect; turn++) {
          if (turn > 0) messages.push({ role: "user", content: previous?.feedback ?? "Check your answer and answer again." })
          const request = CompletionRequest.makeUnsafe({
            model: task.candidate.model,
            messages: [...messages],
            temperature,
            seed: Sampling.trialSeed(seed, task.trial),
            maxTokens,
            trial: task.trial,
            ...(task.candidate.adapter !== undefined ? { adapter: task.candidate.adapter } : {})
          })
          const completion = yield* Effect.exit(generation.withPermit(llm.complete(request)))
          if (Exit.isFailure(completion)) {
            failure = errorOf(completion.cause, "generate", turn)
            break
          }
          const value = completion.value
          usage = {
            inputTokens: usage.inputTokens + value.usage.inputTokens,
            outputTokens: usage.outputTokens + value.usage.outputTokens,
            calls: usage.calls + 1
          }
          if (value.cached === true) cachedCalls++
          if (value.cached !== true && value.facts !== undefined) {
            rateLimit.retries += value.facts.retries ?? 0
            rateLimit.waitMillis += value.facts.rateLimitWaitMillis ?? 0
            rateLimit.http429 += value.facts.http429 ?? 0
            rateLimit.timeouts += value.facts.timeouts ?? 0
          }
          const scored = yield* Effect.exit(
            scorer.score({ item: task.item, output: value.text, trial: task.trial, turn }).pipe(Effect.provideContext(judgeContext))
          )
          if (Exit.isFailure(scored)) {
            failure = errorOf(scored.cause, "score", turn)
            break
          }
          previous = scored.value
          turns.push({
            turn,
            output: value.text,
            score: scored.value.score,
            correct: scored.value.correct,
            extracted: scored.value.extracted,
            ...(scored.value.details !== undefined ? { details: scored.value.details } : {})
          })
          messages.push({ role: "assistant", content: value.text })
        }
        const end = yield* Clock.currentTimeMillis
        const last = turns.at(-1)
        const base = {
          candidate: task.candidate.name,
          itemId: task.item.id,
          index: task.item.index,
          trial: task.trial,
          ...(trials > 1 ? { seed: Sampling.trialSeed(seed, task.trial) } : {})
        }
        const record: ItemRecord = failure !== undefined
          ? { ...base, status: "error", error: failure, ...(selfCorrect > 0 ? { turns } : {}), usage }
          : {
            ...base,
            status: "ok",
            output: last!.output,
            score: last!.score,
            correct: last!.correct,
            extracted: last!.extracted,
            ...(last!.details !== undefined ? { details: last!.details } : {}),
            ...(selfCorrect > 0 ? { turns } : {}),
            usage
          }
        const timing: ItemTiming = { millis: end - start, cachedCalls, calls: usage.calls, resumed: false }
        return { record, timing, rateLimit }
      })

    const record = (entry: Entry) => {
      const index = indexOf(entry.record)
      if (index === undefined || open[index] !== 1) return // not a pending task of this run, or filed already
      open[index] = 0
      const line = checkpoint?.append(JSON.stringify({ type: "item", record: entry.record, timing: entry.timing }))
      table.set(index, entry.record, slimOf(index, entry.record), entry.timing, line)
      options.progress?.advance({ error: entry.record.status === "error", rateLimit: entry.rateLimit, worker: entry.worker })
    }
    if (options.executor !== undefined) {
      yield* options.executor.execute({ config, tasks: pendingTasks(), evaluate, record }).pipe(
        Effect.mapError((error) =>
          new EvaluatorError({
            reason: new StartFailed({ what: "distributed run", description: error instanceof Error ? error.message : String(error) })
          })
        )
      )
    } else {
      yield* Effect.forEach(pendingTasks(), (task) => evaluate(task).pipe(Effect.tap((entry) => Effect.sync(() => record(entry)))), {
        concurrency: (options.concurrency ?? 4) + (options.judge?.concurrency ?? 8),
        discard: true
      })
    }
    options.progress?.finish()

    const finishedAt = yield* Clock.currentTimeMillis
    const retried: Array<Report.RetriedItem> = []
    for (const [index, previousError] of [...retrying].sort(([a], [b]) => a - b)) {
      const task = taskAt(index)
      const now = table.slim(index)
      retried.push({
        candidate: task.candidate.name,
        itemId: task.item.id,
        trial: task.trial,
        previous: previousError.tag,
        status: now.status,
        ...(now.error !== undefined ? { error: now.error.tag } : {})
      })
    }
    /** Every task's record in report order: slim, or whole (kept, or read back from the checkpoint). */
    function* records(form: "slim" | "full", from = 0, to = taskCount): Generator<ItemRecord> {
      for (let index = from; index < to; index++) yield form === "slim" ? table.slim(index) : table.full(index, checkpoint)
    }
    const timing = () =>
      Report.timing({
        startedAt,
        finishedAt,
        judge: judgeCalls,
        entries: Array.from({ length: taskCount }, (_, index) => ({ record: table.slim(index), timing: table.timing(index) })),
        retried
      })
    return { config, perCandidate, records, timing }
  })

/**
 * Runs an evaluation. Each candidate (and the judge) layer is built once for the run and
 * released at the end. Failed items are recorded as errors; the run itself fails only
 * when a candidate or the judge cannot start, or the checkpoint belongs to another run.
 * Every record is in the returned report; for runs too large to hold, see {@link runToFiles}.
 * @category runners @since 0.1.0
 */
export const run = Effect.fn("Evaluator.run")(function*(options: Options) {
  const { config, records, timing } = yield* execute(options, "full")
  return { report: Report.build(config, [...records("full")]), timing: timing() } satisfies RunResult
}, Effect.scoped)

/** What {@link runToFiles} returns: the report's summaries (no items), the timing section and the files written. @category models @since 0.3.0 */
export interface FilesResult {
  /** The report without its records: each `results[i].items` is empty (the records are in `report.json`). */
  readonly report: Report.Report
  readonly timing: Report.Timing
  readonly files: { readonly json: string; readonly markdown: string }
}

/**
 * Runs an evaluation like {@link run} and writes `report.json` (byte for byte what
 * `Report.toJson` of `run`'s result renders) and `report.md` into `out`, holding only what
 * the summaries read in memory: each record lives in the checkpoint (default
 * `<out>/checkpoint.jsonl`) and is read back from it while `report.json` is written, so
 * memory stays flat however many items the run has (about 0.3 KB per item instead of the
 * whole record).
 * @category runners @since 0.3.0
 */
export const runToFiles = Effect.fn("Evaluator.runToFiles")(function*(options: Options & { readonly out: string }) {
  mkdirSync(options.out, { recursive: true })
  const checkpoint = options.checkpoint ?? Path.join(options.out, "checkpoint.jsonl")
  const { config, perCandidate, records, timing } = yield* execute({ ...options, checkpoint }, "slim")
  const report = Report.build(config, [...records("slim")])
  const timingSection = timing()
  const json = Path.join(options.out, "report.json")
  const markdown = Path.join(options.out, "report.md")
  Report.writeJson(json, { report, timing: timingSection }, (index) => records("full", index * perCandidate, (index + 1) * perCandidate))
  writeFileSync(markdown, Report.toMarkdown(report, timingSection))
  return {
    report: { ...report, results: report.results.map((result) => ({ ...result, items: [] })) },
    timing: timingSection,
    files: { json, markdown }
  } satisfies FilesResult
}, Effect.scoped)

/**
 * {@link run} as a Promise, for plain async TypeScript: rejects with the `EvaluatorError`
 * when a candidate or the judge cannot start.
 * @category runners @since 0.1.0
 */
export const runPromise = (options: Options): Promise<RunResult> => Effect.runPromise(run(options))
