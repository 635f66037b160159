/**
 * The seeds' GSM8K self-correction run on Hasten's evaluator: the learner answers, is
 * told whether its answer was right, revises, up to k turns; accuracy per turn and how
 * many answers each turn fixed or broke. Remote learners go through the rate limiter;
 * every call goes through the SQLite response cache and perf-logger.
 */
import { Command, Progress } from "@hasten/evaluator"
import { ConfigProvider, Effect } from "effect"
import * as Path from "node:path"

export interface Options {
  readonly dataset: string
  readonly provider: "local" | "openai" | "anthropic" | "replicate"
  readonly model: string | undefined
  readonly turns: number
  readonly questions: number
  readonly seed: number
  readonly cache: boolean
  readonly cachePath: string
  readonly out: string
  readonly maxTokens: number
  readonly fresh: boolean
  readonly log: (line: string) => void
}

const defaults: Record<Options["provider"], string> = {
  local: "stories260K.gguf",
  openai: "gpt-4o-mini",
  anthropic: "claude-3-5-haiku-latest",
  replicate: "meta/meta-llama-3-8b-instruct"
}

export const run = (options: Options) =>
  Effect.gen(function*() {
    const candidate = `${options.provider}:${options.model ?? defaults[options.provider]}`
    const argv = [
      "--dataset",
      options.dataset,
      "--candidate",
      candidate,
      "--scorer",
      "gsm8k",
      "--self-correct",
      String(options.turns),
      "--questions",
      String(options.questions),
      "--seed",
      String(options.seed),
      "--max-tokens",
      String(options.maxTokens),
      "--out",
      options.out,
      ...(options.cache ? ["--cache", options.cachePath] : ["--no-cache"]),
      ...(options.fresh ? ["--fresh"] : [])
    ]
    const args = yield* Command.parse(argv)
    if (!("candidates" in args)) return yield* Effect.die(new Error("unexpected help/compare result"))
    options.log(
      `learner: ${candidate}; ${options.questions} questions from ${
        Path.basename(options.dataset)
      } (seed ${options.seed}); up to ${options.turns} revision turns`
    )
    const { files, perfReport, result } = yield* Command.evaluate(args, Progress.make()).pipe(
      // Read the environment as it is now (Effect's default provider snapshots it at first use).
      Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv())
    )
    const summary = result.report.results[0]!.summary
    const turns = summary.selfCorrection ?? [{ turn: 0, answered: summary.scored, accuracy: summary.accuracy, fixed: 0, broken: 0 }]
    options.log("")
    options.log("turn  answered  accuracy  fixed  broken")
    for (const turn of turns) {
      options.log(
        `${String(turn.turn).padStart(4)} ${String(turn.answered).padStart(9)} ${(turn.accuracy * 100).toFixed(1).padStart(8)}% ${
          String(turn.fixed).padStart(6)
        } ${String(turn.broken).padStart(7)}`
      )
    }
    options.log("")
    options.log(`errors: ${summary.errors}${
      summary.errors > 0
        ? ` (${Object.entries(summary.errorsByTag).map(([tag, n]) => `${n} ${tag}`).join(", ")})`
        : ""
    }`)
    const timing = result.timing
    options.log(
      `calls: ${timing.calls} (${timing.cachedCalls} from cache, ${timing.upstreamCalls} upstream), tokens in/out ${summary.usage.inputTokens}/${summary.usage.outputTokens}, wall ${
        (timing.wallMillis / 1000).toFixed(1)
      } s`
    )
    options.log(`reports: ${files.json}, ${files.markdown}${perfReport !== undefined ? `, ${perfReport}` : ""}`)
    return { summary, turns, timing, files }
  })
