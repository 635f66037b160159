/**
 * The dataset pipeline: filter → structure (JSON schema output) → classify (domain) →
 * align, every LLM call through Cache → Batcher → PerfLogger → RateLimit → provider.
 * `run` is what the CLI calls; tests call it in quick mode.
 */
import { Batcher } from "@hasten/batcher"
import { Cache } from "@hasten/cache"
import { type Completion, CompletionRequest, Llm, LlmError } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { Anthropic } from "@hasten/providers/anthropic"
import { Local, ModelPool } from "@hasten/providers/local"
import { OpenAi } from "@hasten/providers/openai"
import { Replicate } from "@hasten/providers/replicate"
import { RateLimit } from "@hasten/rate-limit"
import { Drafter, Speculative } from "@hasten/speculative"
import { ConfigProvider, Context, Data, Duration, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** Everything the command line can set. */
export interface PipelineOptions {
  readonly dataset: string
  readonly provider: "local" | "openai" | "anthropic" | "replicate"
  readonly model: string | undefined
  readonly batchSize: number
  readonly batchTimeoutSeconds: number
  readonly batching: boolean
  /** The filter stage: `rules` (length bounds, duplicates; no model call) or `llm` (the model keeps or drops each record). */
  readonly filter: "rules" | "llm"
  readonly speculative: boolean
  readonly draftModel: string | undefined
  readonly cache: boolean
  readonly cachePath: string
  readonly seed: number
  readonly limit: number | undefined
  readonly quick: boolean
  readonly out: string
  readonly logDir: string
  readonly skipBadLines: boolean
  readonly log: (line: string) => void
}

/** A record of the input dataset. */
export interface InputRecord {
  readonly id: string
  readonly instruction: string
  readonly line: number
}

/** A clear, user-facing failure (printed without a stack trace). */
export class PipelineError extends Data.TaggedError("PipelineError")<{ readonly message: string }> {}

export const domains = ["network", "web", "crypto", "identity", "malware", "cloud"] as const

export const structureSchema = {
  type: "object",
  properties: {
    risk: { enum: ["low", "medium", "high"] },
    audience: { enum: ["developer", "operator", "user"] },
    urgent: { type: "boolean" }
  },
  required: ["risk", "audience", "urgent"]
} as const

export const classifySchema = { type: "object", properties: { domain: { enum: domains } }, required: ["domain"] } as const

const keepSchema = { type: "object", properties: { keep: { type: "boolean" } }, required: ["keep"] } as const

/** The prompt of the LLM filter: keep a record that reads as a clear, answerable security instruction. */
export const filterPrompt = (instruction: string): string =>
  `Is this a clear, self-contained security instruction worth answering? Reply as JSON {"keep": true} or {"keep": false}.\nInstruction: ${instruction}`

/**
 * Checks option combinations before anything loads: speculative decoding needs the local
 * model's tokens, and a draft model means nothing without it.
 */
export const checkOptions = (options: Pick<PipelineOptions, "provider" | "speculative" | "draftModel">): string | undefined => {
  if (options.speculative && options.provider !== "local") {
    return `--enable-speculative needs --provider local: speculative decoding verifies drafted tokens on the model's own token probabilities, which ${options.provider}'s API does not expose`
  }
  if (options.draftModel !== undefined && !options.speculative) {
    return "--draft-model is the draft model of speculative decoding: add --enable-speculative (or drop --draft-model)"
  }
  return undefined
}

/** Reads the JSONL dataset; a malformed line is an error naming its line number (or skipped with `skipBadLines`). */
export const readDataset = (path: string, skipBadLines: boolean, log: (line: string) => void) =>
  Effect.gen(function*() {
    const text = yield* Effect.try({
      try: () => Fs.readFileSync(path, "utf8"),
      catch: () =>
        new PipelineError({
          message: `cannot read the dataset ${path}: no such file (give --dataset a JSONL file with one {"instruction": "..."} per line)`
        })
    })
    const records: Array<InputRecord> = []
    const lines = text.split("\n")
    for (let index = 0; index < lines.length; index++) {
      const raw = lines[index]!.trim()
      if (raw.length === 0) continue
      const problem = (() => {
        try {
          const value = JSON.parse(raw) as Record<string, unknown>
          const instruction = value.instruction ?? value.text ?? value.prompt
          if (typeof instruction !== "string") return `line ${index + 1}: no "instruction" string field`
          records.push({ id: typeof value.id === "string" ? value.id : `line-${index + 1}`, instruction, line: index + 1 })
          return undefined
        } catch (error) {
          return `line ${index + 1}: not valid JSON (${(error as Error).message})`
        }
      })()
      if (problem !== undefined) {
        if (!skipBadLines) {
          return yield* new PipelineError({ message: `malformed dataset ${path}, ${problem} (fix the line or pass --skip-bad-lines)` })
        }
        log(`skipping ${problem}`)
      }
    }
    return records
  })

/** The filter stage: rule-based, no model call (length bounds, duplicates, must read as an instruction). */
export const filterRecords = (records: ReadonlyArray<InputRecord>) => {
  const seen = new Set<string>()
  const kept: Array<InputRecord> = []
  const dropped: Record<string, number> = {}
  const drop = (reason: string) => (dropped[reason] = (dropped[reason] ?? 0) + 1)
  for (const record of records) {
    const normalized = record.instruction.toLowerCase().replace(/\s+/g, " ").trim()
    const words = normalized.split(" ").length
    if (words < 4) drop("too short")
    else if (words > 60) drop("too long")
    else if (seen.has(normalized)) drop("duplicate")
    else {
      seen.add(normalized)
      kept.push(record)
    }
  }
  return { kept, dropped }
}

export const parseJson = (text: string): Record<string, unknown> | undefined => {
  const start = text.indexOf("{")
  const end = text.lastIndexOf("}")
  if (start < 0 || end <= start) return undefined
  try {
    return JSON.parse(text.slice(start, end + 1)) as Record<string, unknown>
  } catch {
    return undefined
  }
}

/** The remote provider layer for the chosen backend (keys from the environment). */
export const remoteLayer = (options: PipelineOptions): Layer.Layer<Llm.Llm, unknown> => {
  const model = options.model !== undefined ? { model: options.model } : {}
  switch (options.provider) {
    case "openai":
      return OpenAi.layerConfig(model)
    case "anthropic":
      return Anthropic.layerConfig(model)
    default:
      return Replicate.layerConfig(model)
  }
}

const messageOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String((error as { message: unknown }).message) : String(error)

export const defaultModel = (options: PipelineOptions) =>
  options.model ??
    (options.provider === "openai"
      ? "gpt-4o-mini"
      : options.provider === "anthropic"
      ? "claude-3-5-haiku-latest"
      : options.provider === "replicate"
      ? "meta/meta-llama-3-8b-instruct"
      : "stories260K")

/** The model stages' prompts for one record (shared with the fleet workers of `Fleet.ts`). */
export const prompts = {
  structure: (instruction: string) => `Describe this security instruction as JSON {risk, audience, urgent}: ${instruction}`,
  classify: (instruction: string) => `Which security domain (${domains.join(", ")}) does this belong to? ${instruction}`,
  align: (instruction: string) => `Instruction: ${instruction}\nResponse:`
}

/** An output row from a record and its three completions (`undefined` where a call failed). */
export const outputRow = (
  record: InputRecord,
  structured: Completion.Completion | undefined,
  classified: Completion.Completion | undefined,
  aligned: Completion.Completion | undefined
) => {
  const domain = classified !== undefined ? parseJson(classified.text)?.domain : undefined
  return {
    id: record.id,
    instruction: record.instruction,
    structure: (structured !== undefined ? parseJson(structured.text) : undefined) ?? null,
    domain: typeof domain === "string" ? domain : null,
    response: aligned?.text.trim() ?? null
  }
}

/**
 * The parts of the pipeline's stack, shared by `run` and the fleet's workers: the provider
 * (the local model through the pool, loaded once and shared by every stack, or a remote
 * one), the cache, the batcher and the rate limit.
 */
export const stackParts = (options: PipelineOptions, modelPath: string | undefined) => {
  const sequences = options.batching ? Math.min(16, options.batchSize) : 1
  const local = options.provider === "local"
  const localLayer = Local.layerWithPool({ model: modelPath, sequences, contextSize: 256, threads: 1, chatTemplate: "none" })
  const provider: Layer.Layer<Llm.Llm, unknown, ModelPool.ModelPool> = local ? localLayer : remoteLayer(options)
  const rateLimit = local
    // a local model has no request or token budget: only bound concurrency to its sequences
    ? RateLimit.layer({ maxConcurrency: sequences, requestsPerSecond: Infinity, tokensPerMinute: Infinity, adaptiveConcurrency: false })
    : RateLimit.layerConfig()
  const cache = Cache.layer({ store: "sqlite", path: options.cachePath, enabled: options.cache, namespace: "pipeline" })
  const batcher = Batcher.layer({
    enabled: options.batching,
    maxBatchSize: options.batchSize,
    window: Duration.millis(options.batchTimeoutSeconds * 1000),
    concurrency: sequences
  })
  return { local, localLayer, provider, cache, batcher, rateLimit, sequences }
}

/** Runs the whole pipeline; returns the summary it printed. */
export const run = (options: PipelineOptions) =>
  Effect.gen(function*() {
    const log = options.log
    const refused = checkOptions(options)
    if (refused !== undefined) return yield* new PipelineError({ message: refused })
    const records = yield* readDataset(options.dataset, options.skipBadLines, log)
    const limited = options.limit !== undefined ? records.slice(0, options.limit) : records
    const model = defaultModel(options)
    let modelPath: string | undefined
    if (options.provider === "local") {
      modelPath = yield* Local.resolveModelPath(options.model ?? process.env.HASTEN_MODEL ?? "stories260K.gguf").pipe(
        Effect.mapError((error) => new PipelineError({ message: `model not found: ${error.reason.description}` }))
      )
      log(`model: ${Path.basename(modelPath)} from ${Path.dirname(modelPath)} (local, node-llama-cpp, threads 1)`)
    } else {
      log(`model: ${model} via ${options.provider}`)
    }
    const { localLayer, provider, cache, batcher, rateLimit } = stackParts(options, modelPath)
    // Top to bottom as the call path; each middleware is built fresh per stack.
    const Stack = Llm.stack(provider, cache, batcher, PerfLogger.layer, rateLimit)
    // Speculative decoding (local only) runs the align stage: free text, the only stage without a
    // JSON grammar (the speculative engine refuses response formats, so structure and classify
    // keep their grammars on the plain model). Its calls go through the same middleware:
    // Cache → Batcher → PerfLogger → RateLimit → speculative engine over the local model.
    const speculativeLayer = options.speculative
      ? Speculative.layer({
        drafter: options.draftModel !== undefined
          ? Drafter.modelLayer(Local.layerWithPool({ model: options.draftModel, threads: 1, contextSize: 256, chatTemplate: "none" }))
          : Drafter.promptLookup(),
        gamma: "adaptive",
        temperature: 0,
        seed: options.seed
      }).pipe(Layer.provide(localLayer))
      : undefined
    if (speculativeLayer !== undefined) {
      log(
        `speculative decoding: align stage, drafter ${
          options.draftModel ?? "prompt lookup"
        } (structure and classify keep their JSON grammar on the plain model)`
      )
    }

    const maxTokens = options.quick ? 24 : 48
    const concurrency = options.batching ? "unbounded" as const : 1
    const request = (content: string, extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
      CompletionRequest.makeUnsafe({
        model,
        messages: [{ role: "user", content }],
        temperature: 0,
        seed: options.seed,
        maxTokens,
        ...extra
      })

    const program = Effect.gen(function*() {
      const upstreamOf = (completions: ReadonlyArray<Completion.Completion | undefined>) =>
        completions.filter((c) => c !== undefined && c.cached !== true).length
      // what the middleware reported on the stage's upstream calls: proof each layer was on the path
      const factsOf = (completions: ReadonlyArray<Completion.Completion | undefined>) => {
        const upstream = completions.filter((c): c is Completion.Completion => c !== undefined && c.cached !== true)
        return {
          largestBatch: Math.max(0, ...upstream.map((c) => c.facts?.batchSize ?? 0)),
          rateLimited: upstream.filter((c) => c.facts?.retries !== undefined).length,
          speculative: upstream.filter((c) => c.facts?.speculative !== undefined).length
        }
      }
      const stats: Array<{
        stage: string
        items: number
        seconds: number
        errors: number
        cached: number
        upstream: number
        /** The largest batch the batcher dispatched this stage's upstream calls in (its `batchSize` fact). */
        largestBatch?: number
        /** Upstream calls the rate limiter admitted (they carry its `retries` fact). */
        rateLimited?: number
        /** Upstream calls decoded speculatively (they carry the `speculative` fact). */
        speculative?: number
      }> = []
      const errors: Array<string> = []
      const stage = <A>(
        name: string,
        items: ReadonlyArray<A>,
        call: (item: A) => Effect.Effect<Completion.Completion, LlmError.LlmError, Llm.Llm>,
        llm?: Llm.LlmService
      ) =>
        Effect.gen(function*() {
          const start = performance.now()
          const results = yield* Effect.forEach(items, (item) =>
            PerfLogger.stage(name, llm !== undefined ? Effect.provideService(call(item), Llm.Llm, llm) : call(item)).pipe(
              Effect.map((completion) => completion as Completion.Completion | undefined),
              Effect.catchTag("LlmError", (error) =>
                Effect.sync(() => {
                  errors.push(`${name}: ${error.message}`)
                  return undefined
                }))
            ), { concurrency })
          const seconds = (performance.now() - start) / 1000
          const failed = results.filter((r) =>
            r === undefined
          ).length
          yield* PerfLogger.recordItems(name, items.length - failed)
          stats.push({
            stage: name,
            items: items.length,
            seconds,
            errors: failed,
            cached: results.filter((r) =>
              r?.cached === true
            ).length,
            upstream: upstreamOf(results),
            ...factsOf(results)
          })
          if (items.length > 0 && failed === items.length) {
            return yield* new PipelineError({ message: `every ${name} call failed; the first error: ${errors[errors.length - failed]}` })
          }
          return results
        })

      // 1. filter: rules, or the model's keep/drop decision (a JSON grammar; batched like every stage)
      const filterStart = performance.now()
      const { dropped, kept } = options.filter === "llm"
        ? yield* Effect.gen(function*() {
          const decisions = yield* stage("filter", limited, (record) =>
            Llm.complete(request(filterPrompt(record.instruction), {
              maxTokens: 16,
              responseFormat: { type: "json", name: "keep", schema: keepSchema as never }
            })))
          const dropped: Record<string, number> = {}
          const kept = limited.filter((_, index) => {
            const completion = decisions[index]
            const keep = completion === undefined ? undefined : parseJson(completion.text)?.keep
            const reason = completion === undefined
              ? "filter call failed"
              : keep === false
              ? "model said drop"
              : keep === true
              ? undefined
              : "no decision"
            if (reason !== undefined) dropped[reason] = (dropped[reason] ?? 0) + 1
            return reason === undefined
          })
          return { dropped, kept }
        })
        : filterRecords(limited)
      if (options.filter !== "llm") {
        stats.push({
          stage: "filter",
          items: limited.length,
          seconds: (performance.now() - filterStart) / 1000,
          errors: 0,
          cached: 0,
          upstream: 0
        })
      }
      log(
        `filter: kept ${kept.length} of ${limited.length}${
          Object.keys(dropped).length > 0 ? ` (dropped: ${Object.entries(dropped).map(([k, v]) => `${v} ${k}`).join(", ")})` : ""
        }`
      )

      // 2. structure (JSON schema output)
      const structured = yield* stage("structure", kept, (record) =>
        Llm.complete(
          request(prompts.structure(record.instruction), {
            maxTokens: 128,
            responseFormat: { type: "json", name: "structure", schema: structureSchema as never }
          })
        ))
      // 3. classify (domain, an enum the grammar enforces)
      const classified = yield* stage("classify", kept, (record) =>
        Llm.complete(request(prompts.classify(record.instruction), {
          maxTokens: 64,
          responseFormat: { type: "json", name: "domain", schema: classifySchema as never }
        })))
      // 4. align (a short response to the instruction; speculative decoding when enabled)
      let speculativeLlm: Llm.LlmService | undefined
      let speculativeStats: Speculative.SpeculativeStats["Service"] | undefined
      if (speculativeLayer !== undefined) {
        const built = yield* Layer.build(speculativeLayer)
        speculativeStats = Context.get(built, Speculative.SpeculativeStats)
        speculativeLlm = yield* Layer.build(
          Llm.stack(Layer.succeed(Llm.Llm, Context.get(built, Llm.Llm)), cache, batcher, PerfLogger.layer, rateLimit)
        )
          .pipe(Effect.map((context) => Context.get(context, Llm.Llm)))
      }
      const aligned = yield* stage("align", kept, (record) => Llm.complete(request(prompts.align(record.instruction))), speculativeLlm)
      const speculative = speculativeStats !== undefined ? yield* speculativeStats.get : undefined

      const output = kept.map((record, index) => outputRow(record, structured[index], classified[index], aligned[index]))
      Fs.mkdirSync(Path.dirname(Path.resolve(options.out)), { recursive: true })
      Fs.writeFileSync(
        options.out,
        output.map((row) => JSON.stringify(row)).join("\n") + "\n"
      )
      const invalidStructure = output.filter((row) => structured[output.indexOf(row)] !== undefined && row.structure === null).length

      // the rule-based filter makes no call; the LLM filter's calls count like every stage's
      const llmStats = stats.filter((s) => s.stage !== "filter" || options.filter === "llm")
      const calls = llmStats.reduce((sum, s) => sum + s.items - s.errors, 0)
      const cached = llmStats.reduce((sum, s) => sum + s.cached, 0)
      const upstream = llmStats.reduce((sum, s) => sum + s.upstream, 0)
      log("")
      log("stage       items  errors  cached  seconds   items/s")
      for (const s of stats) {
        log(
          `${s.stage.padEnd(10)} ${String(s.items).padStart(6)} ${String(s.errors).padStart(7)} ${String(s.cached).padStart(7)} ${
            s.seconds.toFixed(2).padStart(8)
          } ${(s.items / Math.max(s.seconds, 1e-6)).toFixed(1).padStart(9)}`
        )
      }
      log("")
      log(`records: ${limited.length} read, ${kept.length} processed, written to ${options.out}`)
      if (invalidStructure > 0) log(`structure: ${invalidStructure} outputs were not valid JSON (kept as null)`)
      if (errors.length > 0) log(`errors: ${errors.length} calls failed, e.g. ${errors[0]}`)
      log(
        cached === calls && calls > 0
          ? `cache: all ${calls} calls served from cache (0 upstream calls) — this run re-used an earlier one`
          : `cache: ${cached} of ${calls} calls served from cache, ${upstream} upstream calls${
            options.cache ? "" : " (cache off: --no-cache)"
          }`
      )
      const recorder = yield* Effect.service(PerfLogger.PerfLogger)
      if (recorder.runDir !== undefined) log(`report: ${Path.join(recorder.runDir, "report.html")}`)
      if (speculative !== undefined) {
        log(
          `speculative: ${speculative.requests} align requests, acceptance ${(speculative.acceptanceRate * 100).toFixed(1)}%, ${
            speculative.tokensPerEvaluation.toFixed(2)
          } tokens per target pass`
        )
      }
      return { stats, calls, cached, upstream, errors, output, runDir: recorder.runDir, speculative, kept: kept.map((record) => record.id) }
    })
    return yield* program.pipe(
      Effect.scoped,
      Effect.provide(Stack),
      Effect.provide(PerfLogger.layerRun({ dir: options.logDir, console: false })),
      Effect.provide(ModelPool.layer()),
      // Read the environment as it is now (Effect's default provider snapshots it at first use).
      Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv()),
      Effect.mapError((error) => error instanceof PipelineError ? error : new PipelineError({ message: messageOf(error) }))
    )
  })
