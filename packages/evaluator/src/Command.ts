/**
 * The `hasten-eval` command: parses arguments, builds candidate and judge stacks
 * (provider → rate limit → perf-logger → cache), runs the evaluation and writes
 * `report.json`, `report.md` and perf-logger's `report.html` into the output folder.
 * Bad arguments, missing files and models end with a one-line message, not a stack trace.
 * @since 0.1.0
 */
import { Boundary, Llm } from "@hasten/core"
import { PerfLogger } from "@hasten/perf-logger"
import { RateLimit } from "@hasten/rate-limit"
import { Cause, ConfigProvider, Effect, Exit, Fiber, Layer, Redacted, Schema } from "effect"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import * as Dataset from "./Dataset.js"
import * as Evaluator from "./Evaluator.js"
import { EvaluatorError, UsageError } from "./EvaluatorError.js"
import * as Memory from "./internal/memory.js"
import * as MultipleChoice from "./MultipleChoice.js"
import * as Progress from "./Progress.js"
import * as Report from "./Report.js"
import * as Sampling from "./Sampling.js"
import * as Scorer from "./Scorer.js"
import * as Stack from "./Stack.js"

/** Wrong command-line usage: a reason of `EvaluatorError`. @category errors @since 0.1.0 */
export { EvaluatorError, UsageError } from "./EvaluatorError.js"

const usageError = (description: string, flag?: string): EvaluatorError =>
  new EvaluatorError({ reason: new UsageError(flag === undefined || flag.length === 0 ? { description } : { flag, description }) })

/** What marks a `report.json` that `--compare` reads. */
const reportFile = Boundary.jsonDecoder(Schema.Struct({ report: Schema.Struct({ format: Schema.Literal("hasten-evaluator/1") }) }))

/** The usage text. @category configuration @since 0.1.0 */
export const usage = `Usage: hasten-eval --dataset <name|file> --candidate <spec> [--candidate <spec> ...] [options]

  --dataset <d>           gsm8k | gsm8k-train | truthfulqa-mc | truthfulqa-mc1 | truthfulqa-mc2 | truthfulqa | path to .jsonl/.csv/.json
  --candidate <spec>      local:<model.gguf>[@<lora.gguf>] | openai:<model> | anthropic:<model> | replicate:<owner/model> | echo:<name>
  --judge <spec>          the LLM judge (same spec forms); required by --scorer judge
  --scorer <s>            gsm8k | gsm8k-strict | multiple-choice | exact-match | judge | loglikelihood
                          (default: by dataset; loglikelihood for truthfulqa-mc1/-mc2: options scored by
                          log-probability on local: candidates, as lm-evaluation-harness does)
  --rubric <text>         the judge's rubric
  --questions <n>         questions to sample (default: all)
  --seed <n>              selection, generation and bootstrap seed (default 42)
  --trials <n>            trials per question (default 1); more than one needs --temperature > 0,
                          and each trial samples with its own seed (recorded in the report)
  --temperature <t>       candidate sampling temperature (default 0: greedy)
  --self-correct <k>      revision turns after the first answer (default 0)
  --concurrency <n>       concurrent candidate calls (default 4)
  --judge-concurrency <n> concurrent judge calls (default 8)
  --max-tokens <n>        generation budget per answer (default 256)
  --out <dir>             output folder (default .hasten/eval/<dataset>-seed<seed>)
  --cache <path>          SQLite response cache (default .hasten/cache.db)
  --no-cache              do not read or write the response cache
  --no-perf               do not record perf-logger measurements
  --fresh                 ignore (delete) the checkpoint in --out and start over
  --retry-errors          on resume, run items that failed in the checkpoint again (the default)
  --keep-errors           on resume, keep the checkpoint's failed items as they are
  --on-invalid <mode>     skip | fail: what to do with invalid dataset rows (default skip)
  --threads <n>           CPU threads of local models (default 1)
  --redis <url>           run the items on the workers of this Redis (or HASTEN_REDIS_URL); see below
  --memory <mode>         saver | default: saver (the default) runs V8 in memory-saver mode, the heap kept
                          near what is live (flat memory however long the run), for some CPU in hasten-eval's
                          own code; default leaves V8's heap growth as it is
  --compare <a.json> <b.json> ...   print a side-by-side comparison of report files and exit
  --help

hasten-eval worker --redis <url> [--concurrency <n>] [--threads <n>] [--cache <path> | --no-cache]
                        evaluate items of every run started with --redis on that Redis (one per machine)

Environment: OPENAI_API_KEY, OPENAI_BASE_URL, ANTHROPIC_API_KEY, REPLICATE_API_TOKEN,
rate limits of remote calls: MAX_CONCURRENCY, RPS_LIMIT, RPM_LIMIT, TPM_LIMIT, MAX_RETRIES, RETRIES_ENABLED;
HASTEN_DATA_DIR, HASTEN_MODELS_DIR, HASTEN_REDIS_URL (distributed runs), CI (plain progress lines).`

/** Parsed command-line options. @category models @since 0.1.0 */
export interface Args {
  readonly dataset: string
  readonly candidates: ReadonlyArray<string>
  readonly judge: string | undefined
  readonly scorer: string | undefined
  readonly rubric: string | undefined
  readonly questions: number | undefined
  readonly seed: number
  readonly trials: number
  /** Candidate sampling temperature (default 0). */
  readonly temperature: number
  readonly selfCorrect: number
  readonly concurrency: number
  readonly judgeConcurrency: number
  readonly maxTokens: number
  readonly out: string | undefined
  readonly cache: string | false
  readonly perf: boolean
  readonly fresh: boolean
  /** Run the checkpoint's errored items again on resume (default true; `--keep-errors` turns it off). */
  readonly retryErrors: boolean
  readonly onInvalid: Dataset.OnInvalid
  readonly threads: number
  /** A distributed run's Redis (`--redis`); `HASTEN_REDIS_URL` when omitted. */
  readonly redis?: string | undefined
  /** V8's heap mode of the `hasten-eval` process (`saver`, the default, or `default`); the CLI entry applies it. @since 0.3.0 */
  readonly memory?: Memory.Mode | undefined
}

const scorers = ["gsm8k", "gsm8k-strict", "multiple-choice", "exact-match", "judge", "loglikelihood"] as const

/** The flags of `hasten-eval`, each with its decoder. */
const flags = {
  dataset: Boundary.Flag.string(),
  candidate: Boundary.Flag.strings(),
  judge: Boundary.Flag.string(),
  scorer: Boundary.Flag.choice(scorers),
  rubric: Boundary.Flag.string(),
  questions: Boundary.Flag.integer(1),
  seed: Boundary.Flag.integer(0),
  trials: Boundary.Flag.integer(1),
  temperature: Boundary.Flag.number({ maximum: 2 }),
  "self-correct": Boundary.Flag.integer(0),
  concurrency: Boundary.Flag.integer(1),
  "judge-concurrency": Boundary.Flag.integer(1),
  "max-tokens": Boundary.Flag.integer(1),
  out: Boundary.Flag.string(),
  cache: Boundary.Flag.string(),
  "no-cache": Boundary.Flag.boolean(),
  "no-perf": Boundary.Flag.boolean(),
  fresh: Boundary.Flag.boolean(),
  "retry-errors": Boundary.Flag.boolean(),
  "keep-errors": Boundary.Flag.boolean(),
  "on-invalid": Boundary.Flag.choice(["skip", "fail"]),
  threads: Boundary.Flag.integer(1),
  redis: Boundary.Flag.string(),
  memory: Boundary.Flag.choice(Memory.modes),
  compare: Boundary.Flag.boolean(),
  help: Boundary.Flag.boolean({ short: "h" })
}

/**
 * Parses `hasten-eval` arguments (without the node and script paths) with core's
 * `Boundary.parseFlags`; a bad flag is a `UsageError` that names it.
 * @category parsing @since 0.1.0
 */
export const parse = (
  argv: ReadonlyArray<string>
): Effect.Effect<Args | { readonly help: true } | { readonly compare: ReadonlyArray<string> }, EvaluatorError> =>
  Effect.gen(function*() {
    const parsed = Boundary.parseFlags(argv, flags, { positionals: true })
    if (parsed._tag === "Failure") return yield* usageError(`${parsed.problem.message}\n\n${usage}`, parsed.problem.flag)
    const { positionals, values } = parsed.flags
    if (values.help === true) return { help: true } as const
    if (values.compare === true) {
      if (positionals.length < 1) return yield* usageError("--compare needs one or more report.json files", "compare")
      return { compare: positionals } as const
    }
    if (positionals.length > 0) return yield* usageError(`unexpected argument "${positionals[0]}"\n\n${usage}`)
    if (values.dataset === undefined) return yield* usageError(`--dataset is required\n\n${usage}`, "dataset")
    if (values.candidate === undefined || values.candidate.length === 0) {
      return yield* usageError(`at least one --candidate is required\n\n${usage}`, "candidate")
    }
    if (values["retry-errors"] === true && values["keep-errors"] === true) {
      return yield* usageError("--retry-errors and --keep-errors contradict each other; give one", "keep-errors")
    }
    for (const spec of [...values.candidate, ...(values.judge !== undefined ? [values.judge] : [])]) {
      yield* parseSpec(spec)
    }
    return {
      dataset: values.dataset,
      candidates: values.candidate,
      judge: values.judge,
      scorer: values.scorer,
      rubric: values.rubric,
      questions: values.questions,
      seed: values.seed ?? Sampling.defaultSeed,
      trials: values.trials ?? 1,
      temperature: values.temperature ?? 0,
      selfCorrect: values["self-correct"] ?? 0,
      concurrency: values.concurrency ?? 4,
      judgeConcurrency: values["judge-concurrency"] ?? 8,
      maxTokens: values["max-tokens"] ?? 256,
      out: values.out,
      cache: values["no-cache"] === true ? false : values.cache ?? ".hasten/cache.db",
      perf: values["no-perf"] !== true,
      fresh: values.fresh === true,
      retryErrors: values["keep-errors"] !== true,
      onInvalid: values["on-invalid"] ?? "skip",
      threads: values.threads ?? 1,
      redis: values.redis,
      memory: values.memory ?? "saver"
    } satisfies Args
  })

/** A parsed candidate or judge spec. @category models @since 0.1.0 */
export interface Spec {
  readonly provider: "local" | "openai" | "anthropic" | "replicate" | "echo"
  readonly model: string
  readonly adapter?: string
}

/**
 * Parses `provider:model[@adapter]` (the adapter only for `local`).
 * @category parsing @since 0.1.0
 */
export const parseSpec = (spec: string): Effect.Effect<Spec, EvaluatorError> => {
  const match = /^(local|openai|anthropic|replicate|echo):(.+)$/.exec(spec)
  if (match === null) {
    return Effect.fail(
      usageError(
        `bad model spec "${spec}": expected local:<model.gguf>[@<lora.gguf>], openai:<model>, anthropic:<model>, replicate:<owner/model> or echo:<name>`
      )
    )
  }
  const provider = match[1] as Spec["provider"]
  const rest = match[2]!
  if (provider === "local" && rest.includes("@")) {
    const [model, adapter] = rest.split("@") as [string, string]
    if (model.length === 0 || adapter.length === 0) {
      return Effect.fail(usageError(`bad model spec "${spec}": expected local:<model>@<adapter>`))
    }
    return Effect.succeed({ provider, model, adapter })
  }
  return Effect.succeed({ provider, model: rest })
}

/** The scorer a dataset uses when `--scorer` is not given. @category parsing @since 0.1.0 */
export const defaultScorer = (dataset: string, hasJudge: boolean): string =>
  /^truthfulqa-mc[12]$/i.test(dataset)
    ? "loglikelihood"
    : /gsm8k/i.test(dataset)
    ? "gsm8k"
    : /truthfulqa|\.json$/i.test(dataset)
    ? "multiple-choice"
    : hasJudge
    ? "judge"
    : "exact-match"

/** The scorer of a `--scorer` name. @category parsing @since 0.3.0 */
export const scorerOf = (name: string, rubric: string | undefined): Scorer.Scorer => {
  switch (name) {
    case "gsm8k":
      return Scorer.gsm8k()
    case "gsm8k-strict":
      return Scorer.gsm8k({ mode: "strict" })
    case "multiple-choice":
      return Scorer.multipleChoice
    case "exact-match":
      return Scorer.exactMatch
    default:
      return Scorer.judge(rubric !== undefined ? { rubric } : undefined)
  }
}

/** The model id a provider layer answers to for a spec. @category parsing @since 0.1.0 */
export const modelId = (spec: Spec): string => spec.provider === "local" ? Path.basename(spec.model).replace(/\.gguf$/i, "") : spec.model

/**
 * The provider layer for a spec. Providers are loaded on demand from `@hasten/providers`,
 * so the library itself does not depend on any SDK.
 * @category constructors @since 0.1.0
 */
export const providerLayer = (
  spec: Spec,
  options: { readonly threads: number; readonly sequences: number }
): Layer.Layer<Llm.Llm, unknown> =>
  Layer.unwrap(Effect.tryPromise({
    try: async (): Promise<Layer.Layer<Llm.Llm, unknown>> => {
      switch (spec.provider) {
        case "echo":
          return Llm.Llm.layerEcho
        case "local": {
          const { Local } = await import("@hasten/providers/local")
          // Load the model on the first cache miss; fail at startup when the file is missing.
          return Stack.lazy(
            "local",
            Local.layer({ model: spec.model, threads: options.threads, sequences: options.sequences }),
            Local.resolveModelPath(spec.model)
          )
        }
        case "openai": {
          const { OpenAi } = await import("@hasten/providers/openai")
          return OpenAi.layerConfig({ model: spec.model })
        }
        case "anthropic": {
          const { Anthropic } = await import("@hasten/providers/anthropic")
          return Anthropic.layerConfig({ model: spec.model })
        }
        case "replicate": {
          const { Replicate } = await import("@hasten/providers/replicate")
          return Replicate.layerConfig({ model: spec.model })
        }
      }
    },
    catch: (error) =>
      usageError(
        `cannot load the ${spec.provider} provider (is @hasten/providers installed?): ${
          error instanceof Error ? error.message : String(error)
        }`
      )
  }))

const withoutFleet = ({ fleet: _fleet, ...rest }: Stack.Middleware): Stack.Middleware => rest

/**
 * Builds candidate and judge stacks from specs: one provider layer per model (adapters
 * share it, so a local model loads once), remote ones under the rate limiter
 * (`MAX_CONCURRENCY`, `RPS_LIMIT`, `TPM_LIMIT`, `MAX_RETRIES`…), all under `middleware`.
 * @category constructors @since 0.3.0
 */
export const stacks = (threads: number, middleware: Stack.Middleware, rateLimit: RateLimit.Options = {}) => {
  const providers = new Map<string, Layer.Layer<Llm.Llm, unknown>>()
  return (spec: Spec, sequences: number): Layer.Layer<Llm.Llm, unknown> => {
    const key = `${spec.provider}:${spec.model}`
    let layer = providers.get(key)
    if (layer === undefined) {
      const remote = spec.provider === "openai" || spec.provider === "anthropic" || spec.provider === "replicate"
      layer = Stack.wrap(
        providerLayer(spec, { threads, sequences }),
        // Fleet middleware (a distributed run's single-flight) pays Redis round trips per call:
        // worth it for remote calls only.
        remote ? { ...middleware, rateLimit: RateLimit.layerConfig(rateLimit) } : withoutFleet(middleware)
      )
      providers.set(key, layer)
    }
    return layer
  }
}

/**
 * `--scorer loglikelihood`: every candidate must be `local:` (token probabilities come from
 * the model itself); runs `MultipleChoice.run` on the dataset.
 * @category runners @since 0.3.0
 */
export const loglikelihood = (args: Args, dataset: Dataset.Dataset, progress: Progress.Progress) =>
  Effect.gen(function*() {
    // log-likelihoods are computed, not sampled: nothing varies between trials or turns
    if (args.trials > 1) {
      return yield* usageError("--scorer loglikelihood computes probabilities, not samples: --trials must be 1", "trials")
    }
    if (args.selfCorrect > 0) {
      return yield* usageError("--scorer loglikelihood generates no answer to revise: drop --self-correct", "self-correct")
    }
    if (args.judge !== undefined) {
      return yield* usageError("--scorer loglikelihood needs no judge: drop --judge", "judge")
    }
    const candidates: Array<MultipleChoice.Candidate> = []
    for (const text of args.candidates) {
      const spec = yield* parseSpec(text)
      if (spec.provider !== "local") {
        return yield* usageError(
          `--scorer loglikelihood needs token probabilities, which only local: candidates give; "${text}" is ${spec.provider}`,
          "scorer"
        )
      }
      const tokenModel = Layer.unwrap(Effect.tryPromise({
        try: async () => {
          const { Local } = await import("@hasten/providers/local")
          // one sequence: llama.cpp's logits depend on which sequences share a batch, and the
          // report keeps every log-likelihood, so items run one at a time for identical reports
          return Local.layer({ model: spec.model, threads: args.threads, sequences: 1 })
        },
        catch: (error) => usageError(`cannot load the local provider: ${error instanceof Error ? error.message : String(error)}`)
      }))
      candidates.push({ name: text, model: modelId(spec), tokenModel })
    }
    return yield* MultipleChoice.run({
      dataset,
      candidates,
      ...(args.questions !== undefined ? { questions: args.questions } : {}),
      seed: args.seed,
      progress
    })
  })

/** Writes the report files; returns their paths. @category rendering @since 0.1.0 */
export const writeReports = (out: string, result: Evaluator.RunResult): { readonly json: string; readonly markdown: string } => {
  mkdirSync(out, { recursive: true })
  const json = Path.join(out, "report.json")
  const markdown = Path.join(out, "report.md")
  writeFileSync(json, Report.toJson(result))
  writeFileSync(markdown, Report.toMarkdown(result.report, result.timing))
  return { json, markdown }
}

/** Runs an evaluation from parsed arguments. @category runners @since 0.1.0 */
export const evaluate = (
  args: Args,
  progress: Progress.Progress = Progress.make(),
  warn: (text: string) => void = (text) => process.stderr.write(text)
) =>
  Effect.gen(function*() {
    const dataset = yield* Dataset.load(args.dataset, { onInvalid: args.onInvalid })
    const skipped = dataset.report.skipped
    if (skipped.length > 0) {
      warn(
        `hasten-eval: skipped ${skipped.length} invalid row(s) of ${dataset.report.source} (listed in report.json); first: line ${
          skipped[0]!.line
        }: ${skipped[0]!.message}\n`
      )
    }
    const out = args.out ?? Path.join(".hasten", "eval", `${dataset.name}-seed${args.seed}`)
    mkdirSync(out, { recursive: true })
    if ((args.scorer ?? defaultScorer(args.dataset, args.judge !== undefined)) === "loglikelihood") {
      const result = yield* loglikelihood(args, dataset, progress)
      return { result, files: writeReports(out, result), out, perfReport: undefined }
    }
    const checkpoint = Path.join(out, "checkpoint.jsonl")
    if (args.fresh && existsSync(checkpoint)) rmSync(checkpoint)
    const cache = args.cache === false ? undefined : Stack.cacheStore({ path: args.cache })
    const perf = args.perf ? PerfLogger.layerRun({ dir: out, runId: "perf", console: false }) : undefined
    const middleware: Stack.Middleware = { ...(cache !== undefined ? { cache } : {}), ...(perf !== undefined ? { perf } : {}) }
    const stackFor = stacks(args.threads, middleware)
    const candidates: Array<Evaluator.Candidate> = []
    for (const text of args.candidates) {
      const spec = yield* parseSpec(text)
      // A local model gets as many parallel sequences as candidate calls may run at once.
      candidates.push({
        name: text,
        model: modelId(spec),
        ...(spec.adapter !== undefined ? { adapter: spec.adapter } : {}),
        llm: stackFor(spec, Math.min(args.concurrency, 8))
      })
    }
    const judgeSpec = args.judge === undefined ? undefined : yield* parseSpec(args.judge)
    const scorerName = args.scorer ?? defaultScorer(args.dataset, judgeSpec !== undefined)
    const scorer = scorerOf(scorerName, args.rubric)
    // With a Redis URL the items run on the workers of that Redis (see `Distributed`).
    const redis = args.redis ?? process.env.HASTEN_REDIS_URL
    const executor = redis === undefined || redis.length === 0 ? undefined : yield* Effect.promise(() => import("./Distributed.js")).pipe(
      Effect.map((Distributed) =>
        Distributed.executor({
          redis: Redacted.make(redis),
          scorer,
          spec: {
            format: "hasten-evaluator-run/1",
            dataset: dataset.name,
            scorer: scorerName,
            ...(args.rubric !== undefined ? { rubric: args.rubric } : {}),
            seed: args.seed,
            ...(args.temperature !== 0 ? { temperature: args.temperature } : {}),
            trials: args.trials,
            selfCorrect: args.selfCorrect,
            maxTokens: args.maxTokens,
            candidates: args.candidates,
            judge: args.judge ?? null
          }
        })
      )
    )
    // The records stay in the checkpoint and stream into report.json: memory stays flat.
    const { files, ...result } = yield* Evaluator.runToFiles({
      out,
      dataset,
      scorer,
      ...(executor !== undefined ? { executor } : {}),
      candidates,
      ...(judgeSpec !== undefined
        ? {
          judge: {
            name: args.judge!,
            model: modelId(judgeSpec),
            llm: stackFor(judgeSpec, Math.min(args.judgeConcurrency, 8)),
            concurrency: args.judgeConcurrency
          }
        }
        : {}),
      ...(args.questions !== undefined ? { questions: args.questions } : {}),
      seed: args.seed,
      trials: args.trials,
      temperature: args.temperature,
      selfCorrect: args.selfCorrect,
      concurrency: args.concurrency,
      maxTokens: args.maxTokens,
      checkpoint,
      retryErrors: args.retryErrors,
      progress
    })
    return { result, files, out, perfReport: args.perf ? Path.join(out, "perf", "report.html") : undefined }
  })

const messageOf = (cause: Cause.Cause<unknown>): string => {
  const failure = cause.reasons.find((reason) => reason._tag === "Fail")
  if (failure?._tag === "Fail") {
    const error = failure.error as { message?: unknown }
    return typeof error?.message === "string" ? error.message : String(failure.error)
  }
  return Cause.pretty(cause)
}

/**
 * The command: returns the process exit code (0 ok, 1 run failed, 2 bad usage).
 * SIGINT interrupts the run cleanly (the checkpoint stays consistent; re-run to resume).
 * @category runners @since 0.1.0
 */
export const main = async (
  argv: ReadonlyArray<string>,
  io: { readonly out: (text: string) => void; readonly err: (text: string) => void } = {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text)
  }
): Promise<number> => {
  const parsed = await Effect.runPromiseExit(parse(argv))
  if (Exit.isFailure(parsed)) {
    io.err(`hasten-eval: ${messageOf(parsed.cause)}\n`)
    return 2
  }
  const args = parsed.value
  if ("help" in args) {
    io.out(`${usage}\n`)
    return 0
  }
  if ("compare" in args) {
    try {
      const runs = args.compare.map((file) => {
        if (!existsSync(file)) throw usageError(`${file}: file not found`)
        const text = readFileSync(file, "utf8")
        const shape = reportFile(text)
        if (shape._tag === "Failure") {
          throw usageError(`${file}: not a hasten-evaluator report (${Boundary.formatProblems(shape.problems)})`)
        }
        // The shape is checked; the report itself is kept as written.
        return { label: Path.basename(Path.dirname(Path.resolve(file))), report: (JSON.parse(text) as { report: Report.Report }).report }
      })
      io.out(Report.compare(runs))
      return 0
    } catch (error) {
      io.err(`hasten-eval: ${error instanceof Error ? error.message : String(error)}\n`)
      return error instanceof EvaluatorError ? 2 : 1
    }
  }
  // Read the environment as of this invocation (the default provider snapshots it once).
  const fiber = Effect.runFork(
    evaluate(args, Progress.make({ stream: { write: io.err } }), io.err).pipe(
      Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv())
    )
  )
  const interrupt = () => {
    Effect.runFork(Fiber.interrupt(fiber))
  }
  process.once("SIGINT", interrupt)
  const exit = await Effect.runPromise(Fiber.await(fiber))
  process.removeListener("SIGINT", interrupt)
  if (Exit.isFailure(exit)) {
    if (Cause.hasInterruptsOnly(exit.cause)) {
      io.err("hasten-eval: interrupted; run the same command again to resume from the checkpoint\n")
      return 130
    }
    io.err(`hasten-eval: ${messageOf(exit.cause)}\n`)
    return 1
  }
  const { files, perfReport, result } = exit.value
  io.out(Report.toMarkdown(result.report, result.timing))
  io.out(`\nWrote ${files.json}, ${files.markdown}${perfReport !== undefined ? `, ${perfReport}` : ""}\n`)
  return 0
}
