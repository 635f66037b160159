/**
 * Several models (and LoRA adapters) evaluated on the same seeded questions with an LLM
 * judge, three ways: (a) the seeds' evaluator (model reloaded per question, judge calls one
 * after another, no cache), (b) Hasten's evaluator on a fresh response cache (each model
 * loaded once in a `ModelPool` that adapters share, temperature 0 + seed, judge calls in
 * parallel through the rate limiter), (c) the same Hasten run again on the warm cache.
 * Prints the timing table and the score table; writes `report.json` and `report.md`.
 */
import { Llm } from "@hasten/core"
import { Command, Dataset, Evaluator, Report, Sampling, Scorer, Stack } from "@hasten/evaluator"
import { Local, ModelPool } from "@hasten/providers/local"
import { RateLimit } from "@hasten/rate-limit"
import { Simulator } from "@hasten/testkit"
import { ConfigProvider, Effect, Layer, References, Schema, Stream } from "effect"
import { readGgufFileInfo } from "node-llama-cpp"
import { mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { performance } from "node:perf_hooks"
import * as Before from "./Before.js"
import * as Judge from "./Judge.js"

/** What {@link run} does. */
export interface Options {
  /** A `.jsonl`/`.csv` of question/answer pairs, or a built-in name (`truthfulqa`, `gsm8k`, …). */
  readonly dataset: string
  /** `local:<model.gguf>[@<lora.gguf>]` (or any `hasten-eval` spec; only all-local runs get the "before" row). */
  readonly candidates: ReadonlyArray<string>
  /** A judge spec such as `openai:gpt-4o-mini` (your key), or `undefined` for the simulator judge. */
  readonly judge: string | undefined
  readonly questions: number | undefined
  readonly seed: number
  readonly maxTokens: number
  readonly concurrency: number
  readonly judgeConcurrency: number
  readonly threads: number
  readonly contextSize: number
  /**
   * How candidates are prompted: `qa` is the evaluator's judge prompt (`Question: …\nAnswer:`,
   * lettered options for multiple choice); `continue` sends the question text alone, for
   * story openings that completion models continue (the bundled set).
   */
  readonly prompt: "qa" | "continue"
  /** Run (a), the seeds' evaluator. */
  readonly baseline: boolean
  /** Where report.json and report.md go. */
  readonly out: string
  /** The simulator judge's latency. */
  readonly latency: Judge.Latency
  readonly log: (line: string) => void
}

/** Bad input or a run that could not produce scores; the message says what was wrong. */
export class ExampleError extends Schema.TaggedError<ExampleError>()("ExampleError", {
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** One Hasten run: wall time, upstream calls under the cache, and the model pool's counters. */
export interface Phase {
  readonly seconds: number
  readonly result: Evaluator.RunResult
  readonly candidateUpstream: number
  readonly judgeUpstream: number
  readonly modelLoads: number
  readonly adapterLoads: number
}

/** The default judge model (the simulator answers to any name). */
export const judgeModel = "gpt-4o-mini"

const failWith = (description: string) => Effect.fail(new ExampleError({ description }))

const messageOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String((error as { message: unknown }).message) : String(error)

const isFile = (path: string): boolean => {
  try {
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/** An adapter file as the local provider finds it: a path, or a name in the model folders. */
const resolveAdapter = (adapter: string): Effect.Effect<string, ExampleError> =>
  Effect.suspend(() => {
    const folders = Local.modelFolders()
    const found = [adapter, ...folders.map((folder) => Path.join(folder, adapter))].find(isFile)
    return found !== undefined
      ? Effect.succeed(Path.resolve(found))
      : failWith(`LoRA adapter file not found: "${adapter}" (looked in the cwd and ${folders.join(", ") || "no shared/models folder"})`)
  })

/**
 * llama.cpp aborts the whole process (`std::out_of_range`) when a SentencePiece vocabulary
 * has neither a token for a character nor byte-fallback tokens (`<0xNN>`) for its bytes:
 * TinyStories-656K has no `+`, `=`, `{` or `’`, for instance. Check every prompt against the
 * model's vocabulary first and fail with a message instead.
 */
const checkVocabulary = (name: string, modelPath: string, prompts: ReadonlyArray<{ readonly id: string; readonly text: string }>) =>
  Effect.gen(function*() {
    const info = yield* Effect.tryPromise({
      try: () => readGgufFileInfo(modelPath, { readTensorInfo: false }),
      catch: (error) => new ExampleError({ description: `${name}: cannot read ${modelPath}: ${messageOf(error)}` })
    })
    const tokenizer = (info.metadata as { tokenizer?: { ggml?: { model?: string; tokens?: ReadonlyArray<string> } } }).tokenizer?.ggml
    if (tokenizer?.model !== "llama" || tokenizer.tokens === undefined) return
    const tokens = new Set(tokenizer.tokens)
    const encodable = (char: string) =>
      tokens.has(char === " " ? "\u2581" : char) ||
      [...Buffer.from(char, "utf8")].every((byte) => tokens.has(`<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`))
    for (const prompt of prompts) {
      const bad = [...prompt.text].find((char) => !encodable(char))
      if (bad !== undefined) {
        const code = `U+${bad.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`
        return yield* failWith(
          `${name} cannot encode ${
            JSON.stringify(bad)
          } (${code}) in the prompt of ${prompt.id}: its vocabulary has no such token and no byte fallback, and llama.cpp would abort the process. Choose another model (e.g. local:stories260K.gguf) or dataset.`
        )
      }
    }
  })

/** Counts the calls that reach the provider (it sits under the cache, so hits are not counted). */
const counted = (provider: Layer.Layer<Llm.Llm, unknown>, counter: { calls: number }): Layer.Layer<Llm.Llm, unknown> =>
  Llm.middleware((inner) =>
    Effect.succeed({
      ...inner,
      complete: (request) =>
        Effect.suspend(() => {
          counter.calls++
          return inner.complete(request)
        }),
      stream: (request) =>
        Stream.unwrap(Effect.sync(() => {
          counter.calls++
          return inner.stream(request)
        }))
    })
  ).pipe(Layer.provide(provider))

interface Setup {
  readonly dataset: Dataset.Dataset
  readonly scorer: Scorer.Scorer
  readonly specs: ReadonlyArray<{ readonly text: string; readonly spec: Command.Spec }>
  readonly judge: { readonly text: string; readonly spec: Command.Spec }
  readonly config: ConfigProvider.ConfigProvider
}

/** One Hasten evaluation on the cache at `cachePath`, with its own model pool. */
const hasten = (options: Options, setup: Setup, cachePath: string) =>
  Effect.scoped(Effect.gen(function*() {
    const pool = yield* ModelPool.make()
    const poolLayer = Layer.succeed(ModelPool.ModelPool, pool)
    const cache = Stack.cacheStore({ path: cachePath })
    const candidateCounter = { calls: 0 }
    const judgeCounter = { calls: 0 }
    // One stack per model: adapter candidates of the same base model share it (and its loaded model).
    const stacks = new Map<string, Layer.Layer<Llm.Llm, unknown>>()
    const stackFor = (spec: Command.Spec, counter: { calls: number }, role: string) => {
      const key = `${role}:${spec.provider}:${spec.model}`
      let layer = stacks.get(key)
      if (layer === undefined) {
        const provider = spec.provider === "local"
          ? Stack.lazy(
            "local",
            Local.layerWithPool({ model: spec.model, threads: options.threads, sequences: 1, contextSize: options.contextSize }).pipe(
              Layer.provide(poolLayer)
            ),
            Local.resolveModelPath(spec.model)
          )
          : Command.providerLayer(spec, { threads: options.threads, sequences: 1 })
        const remote = spec.provider === "openai" || spec.provider === "anthropic" || spec.provider === "replicate"
        layer = Stack.wrap(counted(provider, counter), remote ? { cache, rateLimit: RateLimit.layerConfig() } : { cache })
        stacks.set(key, layer)
      }
      return layer
    }
    const start = performance.now()
    const result = yield* Evaluator.run({
      dataset: setup.dataset,
      scorer: setup.scorer,
      candidates: setup.specs.map(({ spec, text }) => ({
        name: text,
        model: Command.modelId(spec),
        ...(spec.adapter !== undefined ? { adapter: spec.adapter } : {}),
        llm: stackFor(spec, candidateCounter, "candidate")
      })),
      judge: {
        name: setup.judge.text,
        model: Command.modelId(setup.judge.spec),
        llm: stackFor(setup.judge.spec, judgeCounter, "judge"),
        concurrency: options.judgeConcurrency
      },
      ...(options.questions !== undefined ? { questions: options.questions } : {}),
      seed: options.seed,
      maxTokens: options.maxTokens,
      concurrency: options.concurrency
    }).pipe(
      Effect.provideService(ConfigProvider.ConfigProvider, setup.config),
      // The rate limiter logs every wait at Info; the tables below say what matters.
      Effect.provideService(References.MinimumLogLevel, "Warn")
    )
    const seconds = (performance.now() - start) / 1000
    const stats = yield* pool.stats
    return {
      seconds,
      result,
      candidateUpstream: candidateCounter.calls,
      judgeUpstream: judgeCounter.calls,
      modelLoads: stats.modelLoads,
      adapterLoads: stats.adapterLoads
    } satisfies Phase
  }))

const pad = (rows: ReadonlyArray<ReadonlyArray<string>>, left: ReadonlyArray<number>): Array<string> => {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  const line = (row: ReadonlyArray<string>) =>
    `| ${row.map((cell, column) => (left.includes(column) ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(" | ")} |`
  const rule = `|${widths.map((width, column) => (left.includes(column) ? "-".repeat(width + 2) : `${"-".repeat(width + 1)}:`)).join("|")}|`
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)]
}

const mean = (values: ReadonlyArray<number>): number =>
  values.length === 0 ? 0 : values.reduce((sum, value) => sum + value, 0) / values.length

/**
 * Runs (a) before, (b) Hasten cold and (c) Hasten warm, logs both tables, writes the report
 * files, and returns every number it printed.
 */
export const run = (options: Options) =>
  Effect.gen(function*() {
    if (options.candidates.length === 0) return yield* failWith("give at least one --candidate")
    const specs: Array<{ text: string; spec: Command.Spec }> = []
    for (const text of options.candidates) specs.push({ text, spec: yield* Command.parseSpec(text) })
    // Fail on a missing model or adapter now, with the provider's message, before anything runs.
    const local: Array<Before.LocalCandidate> = []
    for (const { spec, text } of specs) {
      if (spec.provider !== "local") continue
      const modelPath = yield* Local.resolveModelPath(spec.model)
      const adapterPath = spec.adapter !== undefined ? yield* resolveAdapter(spec.adapter) : undefined
      local.push({ name: text, modelPath, adapterPath })
    }
    const dataset = yield* Dataset.load(options.dataset, { onInvalid: "fail" })
    if (dataset.items.length === 0) return yield* failWith(`${options.dataset}: no questions in the dataset`)

    // The judge: the simulator behind the OpenAI API, or the user's own.
    const judgeText = options.judge ?? `openai:${judgeModel}`
    const judgeSpec = yield* Command.parseSpec(judgeText)
    const simulator = options.judge === undefined
      ? yield* Effect.acquireRelease(
        Effect.promise(() => Simulator.start(Judge.simulatorOptions(options.latency))),
        (sim) => Effect.promise(() => sim.close())
      )
      : undefined
    const env: Record<string, string> = Object.fromEntries(
      Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined)
    )
    if (simulator !== undefined) {
      Object.assign(env, {
        OPENAI_BASE_URL: simulator.openaiBaseUrl,
        OPENAI_API_KEY: "sk-simulator",
        // The simulator allows 3000 requests/min and 32 at once; the seeds' defaults (2/s) are for real keys.
        MAX_CONCURRENCY: "16",
        RPS_LIMIT: "40",
        TPM_LIMIT: "2000000"
      })
    } else if (judgeSpec.provider === "openai" && (env.OPENAI_API_KEY ?? "").length === 0) {
      return yield* failWith(`OPENAI_API_KEY is not set: the judge ${judgeText} needs it (leave out --judge to use the simulator judge)`)
    }
    const scorer = options.prompt === "continue"
      ? Scorer.judge({ prompt: (item) => [{ role: "user", content: item.question }] })
      : Scorer.judge()
    const setup: Setup = { dataset, scorer, specs, judge: { text: judgeText, spec: judgeSpec }, config: ConfigProvider.fromEnv({ env }) }

    const selected = Sampling.select(dataset.items.length, options.questions, options.seed).map((index) => dataset.items[index]!)
    const prompts = selected.map((item) => ({ id: item.id, text: scorer.prompt(item).map((message) => message.content).join("\n") }))
    for (const candidate of local) yield* checkVocabulary(candidate.name, candidate.modelPath, prompts)
    options.log(
      `${selected.length} questions from ${dataset.name} (seed ${options.seed}), ${specs.length} candidates, judge ${judgeText}${
        simulator !== undefined
          ? ` = testkit simulator at ${simulator.url} (TTFT ${options.latency.ttftMs} ms, ${options.latency.perTokenMs} ms/token)`
          : ""
      }`
    )
    for (const candidate of local) {
      options.log(
        `  ${candidate.name}: ${candidate.modelPath}${candidate.adapterPath !== undefined ? ` + LoRA ${candidate.adapterPath}` : ""}`
      )
    }

    // (a) the seeds' evaluator
    const canBaseline = options.baseline && local.length === specs.length && judgeSpec.provider === "openai"
    if (options.baseline && !canBaseline) {
      options.log("(a) skipped: the seeds' evaluator ran local models and an OpenAI-API judge only")
    }
    const before = canBaseline
      ? yield* Effect.tryPromise({
        try: () => {
          options.log("(a) before: reloading the model for every question, judging one answer at a time …")
          return Before.run({
            candidates: local,
            items: selected,
            prompt: (item) => scorer.prompt(item).map((message) => message.content).join("\n"),
            judgeMessages: (item, output) => Scorer.judgePrompt(item, output, Scorer.defaultRubric, 1),
            judge: { model: Command.modelId(judgeSpec), baseURL: env.OPENAI_BASE_URL, apiKey: env.OPENAI_API_KEY ?? "" },
            maxTokens: options.maxTokens,
            contextSize: options.contextSize,
            threads: options.threads
          })
        },
        catch: (error) =>
          new ExampleError({
            description: `(a) before: ${messageOf(error)}${
              judgeSpec.provider === "openai" ? ` (judge at ${env.OPENAI_BASE_URL ?? "api.openai.com"})` : ""
            }`
          })
      })
      : undefined

    // (b) Hasten cold, (c) Hasten warm: the same cache, a fresh temporary one.
    const cacheDir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(Path.join(tmpdir(), "hasten-eval-adapters-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const cachePath = Path.join(cacheDir, "cache.db")
    options.log("(b) Hasten cold: fresh cache, each model loaded once, judge calls in parallel …")
    const cold = yield* hasten(options, setup, cachePath)
    const total = cold.result.report.results.reduce((sum, result) => sum + result.summary.total, 0)
    const errors = cold.result.report.results.reduce((sum, result) => sum + result.summary.errors, 0)
    if (total > 0 && errors === total) {
      const first = cold.result.report.results.flatMap((result) => result.items).find((item) => item.error !== undefined)?.error
      return yield* failWith(`every item failed (${total}); first error (${first?.stage}, ${first?.tag}): ${first?.message}`)
    }
    options.log("(c) Hasten warm re-run: the same cache …")
    const warm = yield* hasten(options, setup, cachePath)
    const identicalScores = Report.reportJson(cold.result.report) === Report.reportJson(warm.result.report)
    const files = Command.writeReports(options.out, cold.result)

    // The timing table
    const base = before?.seconds
    const speedup = (seconds: number) => base === undefined ? "—" : `${(base / seconds).toFixed(1)}x`
    const upstream = (candidate: number, judge: number) => `${candidate + judge} (${candidate} + ${judge})`
    const timingRows: Array<Array<string>> = [["run", "seconds", "speedup", "model loads", "upstream calls (candidate + judge)", "scores"]]
    if (before !== undefined) {
      timingRows.push([
        "(a) before: model reloaded per question, serial judge, no cache",
        before.seconds.toFixed(2),
        "1.0x",
        String(before.modelLoads),
        upstream(before.candidateCalls, before.judgeCalls),
        `mean ${[...before.scores.values()].map((scores) => mean(scores).toFixed(3)).join(" / ")}`
      ])
    }
    const means = (phase: Phase) => phase.result.report.results.map((result) => result.summary.mean.toFixed(3)).join(" / ")
    timingRows.push([
      "(b) Hasten cold: fresh cache, one load per model, parallel judge",
      cold.seconds.toFixed(2),
      speedup(cold.seconds),
      String(cold.modelLoads),
      upstream(cold.candidateUpstream, cold.judgeUpstream),
      `mean ${means(cold)}`
    ])
    timingRows.push([
      "(c) Hasten warm re-run: same cache",
      warm.seconds.toFixed(3),
      speedup(warm.seconds),
      String(warm.modelLoads),
      upstream(warm.candidateUpstream, warm.judgeUpstream),
      `mean ${means(warm)}, identical: ${identicalScores ? "yes" : "NO"}`
    ])
    options.log("")
    for (const line of pad(timingRows, [0, 5])) options.log(line)

    // The score table (Hasten's; the report is the same for cold and warm)
    const scoreRows: Array<Array<string>> = [[
      "candidate",
      "accuracy",
      "mean ± s.e.",
      "95% CI",
      "scored",
      "errors",
      ...(before !== undefined ? ["before: mean"] : [])
    ]]
    for (const result of cold.result.report.results) {
      const s = result.summary
      scoreRows.push([
        result.candidate,
        `${(s.accuracy * 100).toFixed(1)}%`,
        `${s.mean.toFixed(3)} ± ${s.standardError.toFixed(3)}`,
        `[${s.ci95[0].toFixed(3)}, ${s.ci95[1].toFixed(3)}]`,
        `${s.scored}/${s.total}`,
        s.errors === 0 ? "0" : `${s.errors} (${Object.entries(s.errorsByTag).map(([tag, n]) => `${n} ${tag}`).join(", ")})`,
        ...(before !== undefined ? [mean(before.scores.get(result.candidate) ?? []).toFixed(3)] : [])
      ])
    }
    options.log("")
    for (const line of pad(scoreRows, [0])) options.log(line)
    options.log("")
    if (before !== undefined) {
      const b = before.breakdown
      options.log(
        `(a) spent ${b.load.toFixed(1)} s starting llama.cpp and loading/freeing models, ${b.generate.toFixed(1)} s generating, ${
          b.judge.toFixed(1)
        } s waiting for the judge.`
      )
    }
    options.log(`accuracy = share of answers the judge scored ≥ 0.5; mean = mean judge score; 95% CI = seeded bootstrap of the mean.`)
    options.log(
      `scores identical across cold and warm runs: ${identicalScores}; warm upstream calls: ${warm.candidateUpstream + warm.judgeUpstream}`
    )
    options.log(`reports: ${files.json}, ${files.markdown}`)
    return { before, cold, warm, identicalScores, files, questions: selected.length }
  }).pipe(Effect.scoped)
