/**
 * The pipeline on a fleet (`--redis` on the coordinator, `--worker --redis` on each
 * machine), on `@hasten/workers`: after the filter stage, each kept record is one
 * content-addressed BullMQ job (its id from the run's fingerprint and the record), run by
 * a worker through its own stack (structure → classify → align); the coordinator writes
 * the rows in dataset order. A re-run enqueues only records without a result.
 * Speculative decoding is a one-process option; workers use the plain stack.
 */
import { type Completion, CompletionRequest, Llm, RequestKey } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { Local, ModelPool } from "@hasten/providers/local"
import { WorkQueue } from "@hasten/workers"
import { ConfigProvider, Context, Effect, Exit, Layer } from "effect"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import {
  classifySchema,
  defaultModel,
  filterRecords,
  type InputRecord,
  outputRow,
  PipelineError,
  type PipelineOptions,
  prompts,
  readDataset,
  stackParts,
  structureSchema
} from "./Pipeline.js"

/**
 * A worker's stack for a run: the composition `run` uses (Cache → Batcher → PerfLogger →
 * RateLimit → provider; the local model through the pool), without speculative decoding.
 */
const workerStack = (options: PipelineOptions) =>
  Effect.gen(function*() {
    const model = defaultModel(options)
    const local = options.provider === "local"
    const modelPath = local ? yield* Local.resolveModelPath(options.model ?? process.env.HASTEN_MODEL ?? "stories260K.gguf") : undefined
    const { provider, cache, batcher, rateLimit } = stackParts(options, modelPath)
    const maxTokens = options.quick ? 24 : 48
    const request = (content: string, extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
      CompletionRequest.makeUnsafe({
        model,
        messages: [{ role: "user", content }],
        temperature: 0,
        seed: options.seed,
        maxTokens,
        ...extra
      })
    return { Stack: Llm.stack(provider, cache, batcher, PerfLogger.layer, rateLimit), request }
  })

const structureExtra = {
  maxTokens: 128,
  responseFormat: { type: "json", name: "structure", schema: structureSchema as never }
} satisfies Partial<CompletionRequest.CompletionRequestInput>
const classifyExtra = {
  maxTokens: 64,
  responseFormat: { type: "json", name: "domain", schema: classifySchema as never }
} satisfies Partial<CompletionRequest.CompletionRequestInput>

/** What every worker must agree on: whatever changes a row. */
interface Spec {
  readonly provider: PipelineOptions["provider"]
  readonly model: string | undefined
  readonly seed: number
  readonly quick: boolean
}

interface Job {
  readonly record: InputRecord
}

interface Result {
  readonly row: ReturnType<typeof outputRow>
  readonly cached: number
  readonly upstream: number
  readonly errors: ReadonlyArray<string>
}

const specOf = (options: PipelineOptions): Spec => ({
  provider: options.provider,
  model: options.model,
  seed: options.seed,
  quick: options.quick
})

/** The run's fingerprint: SHA-256 of its spec. */
export const fingerprint = (options: PipelineOptions): string =>
  createHash("sha256").update(RequestKey.canonicalJson({ pipeline: 1, ...specOf(options) })).digest("hex")

/** A worker: serves every pipeline run on `redis` until interrupted, with its own stack per run. */
export const serveWorker = (options: PipelineOptions, redis: string, concurrency: number) =>
  WorkQueue.serve<Job, Result, never>({
    redis,
    concurrency,
    onEvent: (event) =>
      options.log(`worker: ${event.type} run ${event.run.slice(0, 12)}${event.detail !== undefined ? `: ${event.detail}` : ""}`),
    prepare: (_run, raw) =>
      Effect.gen(function*() {
        const run: PipelineOptions = { ...options, ...(raw as Spec), speculative: false }
        const { Stack, request } = yield* workerStack(run)
        const context = yield* Layer.build(
          Stack.pipe(Layer.provide(PerfLogger.layerRun({ dir: run.logDir, console: false })), Layer.provide(ModelPool.layer()))
        ).pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv()))
        const llm = Context.get(context, Llm.Llm)
        return ({ record }: Job) =>
          Effect.gen(function*() {
            const [structured, classified, aligned] = yield* Effect.all([
              Effect.exit(llm.complete(request(prompts.structure(record.instruction), structureExtra))),
              Effect.exit(llm.complete(request(prompts.classify(record.instruction), classifyExtra))),
              Effect.exit(llm.complete(request(prompts.align(record.instruction))))
            ], { concurrency: "unbounded" })
            const completions = [structured, classified, aligned].map((exit) => (Exit.isSuccess(exit) ? exit.value : undefined))
            const errors = [structured, classified, aligned].flatMap((exit) => (Exit.isFailure(exit) ? [String(exit.cause)] : []))
            const done = completions.filter((completion): completion is Completion.Completion => completion !== undefined)
            return {
              row: outputRow(record, completions[0], completions[1], completions[2]),
              cached: done.filter((completion) => completion.cached === true).length,
              upstream: done.filter((completion) => completion.cached !== true).length,
              errors
            } satisfies Result
          })
      })
  })

/** The coordinator: filter here, the model stages on the fleet, the rows written in dataset order. */
export const runDistributed = (options: PipelineOptions, redis: string) =>
  Effect.gen(function*() {
    const log = options.log
    if (options.filter === "llm") {
      return yield* new PipelineError({ message: "--filter llm runs in one process only; use the rule filter (the default) with --redis" })
    }
    const records = yield* readDataset(options.dataset, options.skipBadLines, log)
    const limited = options.limit !== undefined ? records.slice(0, options.limit) : records
    const { kept } = filterRecords(limited)
    log(
      `filter: kept ${kept.length} of ${limited.length}; structure → classify → align on the workers of ${
        redis.replace(/\/\/[^@/]*@/, "//***@")
      }`
    )
    const rows: Array<Result["row"] | undefined> = Array.from({ length: kept.length })
    const perWorker = new Map<string, number>()
    const totals = { cached: 0, upstream: 0, errors: [] as Array<string> }
    const started = performance.now()
    const keyOf = (record: (typeof kept)[number]) => `${record.id}\u0000${record.instruction}`
    // A record's rows by its key (identical records are one job; each gets its row).
    const positions = new Map<string, Array<number>>()
    kept.forEach((record, position) => {
      const key = keyOf(record)
      const list = positions.get(key)
      if (list === undefined) positions.set(key, [position])
      else list.push(position)
    })
    yield* WorkQueue.coordinate<Job, Result>({
      redis,
      run: fingerprint(options),
      spec: specOf(options),
      items: kept.map((record) => ({ key: keyOf(record), data: { record } })),
      onResult: (key, result, worker) =>
        Effect.sync(() => {
          for (const position of positions.get(key) ?? []) rows[position] = result.row
          perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1)
          totals.cached += result.cached
          totals.upstream += result.upstream
          totals.errors.push(...result.errors)
        }),
      onFailed: (item, reason) => ({
        row: outputRow(item.data.record, undefined, undefined, undefined),
        cached: 0,
        upstream: 0,
        errors: [reason]
      })
    }).pipe(Effect.scoped)
    const output = rows.map((row, position) => row ?? outputRow(kept[position]!, undefined, undefined, undefined))
    Fs.mkdirSync(Path.dirname(Path.resolve(options.out)), { recursive: true })
    Fs.writeFileSync(options.out, output.map((row) => JSON.stringify(row)).join("\n") + "\n")
    const seconds = (performance.now() - started) / 1000
    log(`records: ${limited.length} read, ${kept.length} processed in ${seconds.toFixed(1)} s, written to ${options.out}`)
    log(`workers: ${[...perWorker].map(([name, count]) => `${name} ${count}`).join(", ")}`)
    log(`calls: ${totals.cached} from cache, ${totals.upstream} upstream, ${totals.errors.length} failed`)
    return { output, ...totals, perWorker }
  })
