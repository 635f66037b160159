/**
 * One evaluation across many processes and machines, on `@hasten/workers` (BullMQ on
 * Redis). The coordinator (`hasten-eval … --redis redis://…`) enqueues one job per
 * (candidate, item) — its id the SHA-256 of the run's fingerprint and the item's request
 * key, so a re-run enqueues only what is missing — and files each result as it arrives;
 * workers (`hasten-eval worker --redis redis://…`) build their own candidate and judge
 * stacks once per process and evaluate each job's item with `Evaluator.run` itself, so
 * the report is byte-identical (timing aside) to the same run in one process.
 * Needs `@hasten/workers` installed (an optional peer).
 * @since 0.3.0
 */
import { CompletionRequest, Llm, RequestKey } from "@hasten/core"
import { RedisConnection, WorkQueue } from "@hasten/workers"
import { Context, Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import type { Item } from "./Dataset.js"
import * as Evaluator from "./Evaluator.js"
import type { ItemRecord, ItemTiming } from "./ItemRecord.js"
import type { Scorer } from "./Scorer.js"

/**
 * What workers need to evaluate a run's items, stored once per run in Redis. Candidates
 * and the judge are named by the spec text workers resolve (`local:model.gguf`, `openai:gpt-4o-mini`).
 * @category models @since 0.3.0
 */
export interface RunSpec {
  readonly format: "hasten-evaluator-run/1"
  /** The dataset's name (item ids carry it; items travel in the jobs). */
  readonly dataset: string
  readonly scorer: string
  readonly rubric?: string
  readonly seed: number
  /** Candidate sampling temperature (default 0). */
  readonly temperature?: number
  readonly trials: number
  readonly selfCorrect: number
  readonly maxTokens: number
  readonly candidates: ReadonlyArray<string>
  readonly judge: string | null
}

/** The run's fingerprint: SHA-256 of its canonical spec (dataset, seed, scorer, candidate stack, options). @category utils @since 0.3.0 */
export const fingerprint = (spec: RunSpec): string => createHash("sha256").update(RequestKey.canonicalJson(spec)).digest("hex")

interface JobData {
  readonly candidate: string
  readonly item: Item
}

interface JobEntry {
  readonly record: ItemRecord
  readonly timing: ItemTiming
}

interface JobResult {
  readonly entries: ReadonlyArray<JobEntry>
}

/** Options of {@link executor}. @category models @since 0.3.0 */
export interface ExecutorOptions {
  readonly redis: RedisConnection.Url
  readonly spec: RunSpec
  /** The run's scorer (for the request keys the job ids are made from). */
  readonly scorer: Scorer
  /** Called once jobs are enqueued: items of the run, and how many were new. */
  readonly onEnqueued?: (counts: { readonly items: number; readonly added: number }) => void
  readonly settings?: WorkQueue.Settings
  readonly prefix?: string
}

const failedEntries = (spec: RunSpec, data: JobData, reason: string): JobResult => ({
  entries: Array.from({ length: spec.trials }, (_, trial) => ({
    record: {
      candidate: data.candidate,
      itemId: data.item.id,
      index: data.item.index,
      trial,
      status: "error",
      error: { stage: "generate", tag: "WorkerFailed", message: reason, turn: 0 },
      ...(spec.selfCorrect > 0 ? { turns: [] } : {}),
      usage: { inputTokens: 0, outputTokens: 0, calls: 0 }
    },
    timing: { millis: 0, cachedCalls: 0, calls: 0, resumed: false }
  }))
})

/**
 * The coordinator side: an `Evaluator.Executor` that sends the pending items to the
 * fleet and files each result as it arrives (progress, checkpoint, report).
 * @category constructors @since 0.3.0
 */
export const executor = (options: ExecutorOptions): Evaluator.Executor => ({
  execute: ({ record, tasks }) =>
    Effect.gen(function*() {
      const spec = options.spec
      const run = fingerprint(spec)
      // One job per (candidate, item): the tasks come grouped by candidate, then item, so a
      // group is a run of consecutive tasks and nothing per item is held here.
      function* items(): Generator<WorkQueue.WorkItem<JobData>> {
        let previous: Evaluator.Task | undefined
        for (const task of tasks) {
          if (previous !== undefined && previous.candidate === task.candidate && previous.item === task.item) continue
          previous = task
          const { candidate, item } = task
          const request = CompletionRequest.makeUnsafe({
            model: candidate.model,
            messages: [...options.scorer.prompt(item)],
            temperature: 0,
            seed: spec.seed,
            maxTokens: spec.maxTokens,
            trial: 0,
            ...(candidate.adapter !== undefined ? { adapter: candidate.adapter } : {})
          })
          const itemDigest = createHash("sha256").update(RequestKey.canonicalJson(item)).digest("hex")
          yield {
            key: `${RequestKey.make(request, { provider: candidate.name })}:${itemDigest}`,
            data: { candidate: candidate.name, item }
          }
        }
      }
      yield* WorkQueue.coordinate<JobData, JobResult>({
        redis: options.redis,
        run,
        spec,
        items: items(),
        ...(options.onEnqueued !== undefined ? { onEnqueued: options.onEnqueued } : {}),
        ...(options.settings !== undefined ? { settings: options.settings } : {}),
        ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
        // The job's result holds every trial of its item; `record` files the pending ones.
        onResult: (_key, result, worker) =>
          Effect.sync(() => {
            for (const entry of result.entries) record({ record: entry.record, timing: entry.timing, worker })
          }),
        onFailed: (work, reason) => failedEntries(spec, work.data, reason)
      })
    }).pipe(Effect.scoped)
})

/** Options of {@link serve}. @category models @since 0.3.0 */
export interface ServeOptions {
  readonly redis: RedisConnection.Url
  /** This worker's name in the coordinator's progress line. Default `<hostname>:<pid>`. */
  readonly name?: string
  /** Items this worker evaluates at once. Default 4. */
  readonly concurrency?: number
  /** A candidate from its spec text; return the same `llm` layer for the same model so it loads once per process. */
  readonly candidate: (name: string) => Effect.Effect<Evaluator.Candidate, unknown>
  /** The judge from its spec text. */
  readonly judge: (name: string) => Effect.Effect<Evaluator.JudgeSpec, unknown>
  /** The scorer from its name and rubric. */
  readonly scorer: (name: string, rubric: string | undefined) => Scorer
  readonly settings?: WorkQueue.Settings
  readonly prefix?: string
  readonly onEvent?: WorkQueue.ServeOptions<unknown, unknown, never>["onEvent"]
}

/**
 * The worker side: serves every active run in Redis until interrupted. Each run's
 * candidate and judge layers are built once per process (and kept across runs); each job
 * is one item through `Evaluator.run` with those services.
 * @category runners @since 0.3.0
 */
export const serve = Effect.fn("Distributed.serve")(function*(options: ServeOptions) {
  const memoMap = yield* Layer.makeMemoMap
  const outer = yield* Effect.scope
  const build = (layer: Layer.Layer<Llm.Llm, unknown>) =>
    Effect.map(Layer.buildWithMemoMap(layer, memoMap, outer), (context) => Context.get(context, Llm.Llm))
  return yield* WorkQueue.serve<JobData, JobResult, never>({
    redis: options.redis,
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    ...(options.settings !== undefined ? { settings: options.settings } : {}),
    ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
    ...(options.onEvent !== undefined ? { onEvent: options.onEvent } : {}),
    prepare: (_run, raw) =>
      Effect.gen(function*() {
        const spec = raw as RunSpec
        if (spec?.format !== "hasten-evaluator-run/1") return yield* Effect.fail(new Error("not a hasten-evaluator run spec"))
        const candidates = new Map<string, Evaluator.Candidate>()
        for (const name of spec.candidates) {
          const candidate = yield* options.candidate(name)
          const llm = yield* build(candidate.llm)
          candidates.set(name, { ...candidate, llm: Layer.succeed(Llm.Llm, llm) })
        }
        let judge: Evaluator.JudgeSpec | undefined
        if (spec.judge !== null) {
          const made = yield* options.judge(spec.judge)
          judge = { ...made, llm: Layer.succeed(Llm.Llm, yield* build(made.llm)) }
        }
        const scorer = options.scorer(spec.scorer, spec.rubric)
        return (data: JobData) =>
          Effect.gen(function*() {
            const candidate = candidates.get(data.candidate)
            if (candidate === undefined) return yield* Effect.die(new Error(`unknown candidate ${data.candidate}`))
            const result = yield* Evaluator.run({
              dataset: { name: spec.dataset, items: [data.item], report: { source: spec.dataset, rows: 1, loaded: 1, skipped: [] } },
              scorer,
              candidates: [candidate],
              ...(judge !== undefined ? { judge } : {}),
              seed: spec.seed,
              ...(spec.temperature !== undefined ? { temperature: spec.temperature } : {}),
              trials: spec.trials,
              selfCorrect: spec.selfCorrect,
              maxTokens: spec.maxTokens
            })
            const records = result.report.results[0]!.items
            return {
              entries: records.map((record, index): JobEntry => {
                const { calls, cachedCalls, millis } = result.timing.items[index]!
                return { record, timing: { millis, cachedCalls, calls, resumed: false } }
              })
            } satisfies JobResult
          })
      })
  })
})
