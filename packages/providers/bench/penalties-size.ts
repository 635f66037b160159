/**
 * Penalties on vs off at real sizes (testkit's SyntheticModel: synthetic weights of real
 * shapes with the 32k Llama-2 vocabulary, timing only; the models never end early, so every
 * answer is exactly `maxTokens` greedy tokens). Per shape, strictly alternating rounds of one
 * request each, tokens per CPU second of this process (llama.cpp's threads included):
 *
 *   Hasten            `Local.layer`'s `Llm.complete`, no penalties vs `repeatPenalty` 1.1,
 *                     `frequencyPenalty` / `presencePenalty` 0.1 over a window of 64 (what users get:
 *                     both run on `Local`'s batching engine; the penalised one samples with a
 *                     bias on the window's tokens and takes llama.cpp's full penalty pass only
 *                     when the winner is in the window — `fallbackShare` is how often)
 *   node-llama-cpp    `LlamaCompletion` alone, `repeatPenalty` off vs the same penalties
 *
 * Run from packages/providers: `node bench/penalties-size.ts [--quick] [--shapes 42M,110M]`
 * (default `42M`; `--quick` → `15M`; `--rounds N`, default 12). A third Hasten side,
 * `worstCase`, forces llama.cpp's full penalty pass on every penalised token (as if every
 * biased greedy pick were a window token: the synthetic weights never repeat a token, so the
 * measured `fallbackShare` is 0 there, while trained models fall back on a share of tokens).
 * Prints a table, then ONE JSON line last:
 * `{ penaltyRatioBySize: { "<shape>": { hasten, nodeLlamaCpp, … } } }` (on / off, tokens per CPU second).
 */
import { CompletionRequest, Llm } from "@hasten/core"
import { Local } from "@hasten/providers/local"
import { SyntheticModel } from "@hasten/testkit"
import { ManagedRuntime } from "effect"
import { benchOptions, counters } from "../src/internal/batchStepper.js"
import { alternate, cpuMs, nodeLlamaCppAlone, penalties } from "./penalties.js"

const quick = process.argv.includes("--quick")
const at = process.argv.indexOf("--shapes")
const shapes = (at >= 0 ? process.argv[at + 1]! : quick ? "15M" : "42M").split(",").filter((shape) => shape.length > 0)
const roundsAt = process.argv.indexOf("--rounds")
const rounds = roundsAt >= 0 ? Number(process.argv[roundsAt + 1]) : quick ? 6 : 12
const maxTokens = quick ? 48 : 128
const prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside"
const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
const round = (value: number, digits = 3): number => Number(value.toFixed(digits))

const penaltyRatioBySize: Record<string, unknown> = {}
for (const shape of shapes) {
  const file = await SyntheticModel.ensure({ shape: shape as SyntheticModel.ShapeName })
  // Hasten: Local.layer's Llm
  const runtime = ManagedRuntime.make(Local.layer({ model: file.path, contextSize: 512, threads: 1 }))
  const before = { ...counters }
  const measure = async (penalized: boolean) => {
    const cpu = cpuMs()
    const completion = await runtime.runPromise(Llm.complete(CompletionRequest.makeUnsafe({
      model: "synthetic",
      messages: [],
      prompt,
      temperature: 0,
      maxTokens,
      ...(penalized ? penalties : {})
    })))
    return (completion.usage.outputTokens / (cpuMs() - cpu)) * 1000
  }
  const hastenRounds = await alternate(rounds, measure)
  const penalized = counters.penalized - before.penalized
  const fallbackShare = penalized === 0 ? 0 : (counters.penaltyFallbacks - before.penaltyFallbacks) / penalized
  // the same with llama.cpp's full penalty pass on every penalised token
  const worstRounds = await alternate(rounds, (penalized) => {
    benchOptions.forceFullPass = penalized
    return measure(penalized).finally(() => {
      benchOptions.forceFullPass = false
    })
  })
  await runtime.dispose()
  const hasten = { off: median(hastenRounds.off), on: median(hastenRounds.on) }
  const worst = { off: median(worstRounds.off), on: median(worstRounds.on) }
  // node-llama-cpp alone
  const aloneRounds = await nodeLlamaCppAlone({ modelPath: file.path, prompt, maxTokens, rounds, contextSize: 512 })
  const alone = { off: median(aloneRounds.off.map((x) => x.cpu)), on: median(aloneRounds.on.map((x) => x.cpu)) }
  const entry = {
    hasten: round(hasten.on / hasten.off),
    nodeLlamaCpp: round(alone.on / alone.off),
    hastenTokensPerCpuSecond: { off: round(hasten.off, 1), on: round(hasten.on, 1) },
    nodeLlamaCppTokensPerCpuSecond: { off: round(alone.off, 1), on: round(alone.on, 1) },
    withinFivePercent: hasten.on / hasten.off >= 0.95,
    /** Through Hasten with the full penalty pass on every penalised token (the fast path's worst case). */
    hastenWorstCase: round(worst.on / worst.off),
    hastenWorstCaseTokensPerCpuSecond: { off: round(worst.off, 1), on: round(worst.on, 1) },
    /** Share of penalised tokens whose biased greedy winner was in the window (llama.cpp's full penalty pass). */
    fallbackShare: round(fallbackShare)
  }
  penaltyRatioBySize[shape] = entry
  console.log(
    `${shape}: penalties on/off ${entry.hasten} through Hasten (${entry.hastenTokensPerCpuSecond.on} / ${entry.hastenTokensPerCpuSecond.off} tok/CPU-s), ` +
      `${entry.nodeLlamaCpp} with node-llama-cpp alone (${entry.nodeLlamaCppTokensPerCpuSecond.on} / ${entry.nodeLlamaCppTokensPerCpuSecond.off}); ` +
      `${rounds} alternating rounds of ${maxTokens} tokens, synthetic weights (timing only); ` +
      `full penalty pass on ${(entry.fallbackShare * 100).toFixed(1)}% of penalised tokens; ` +
      `${entry.hastenWorstCase} through Hasten with it on every token (${entry.hastenWorstCaseTokensPerCpuSecond.on} / ${entry.hastenWorstCaseTokensPerCpuSecond.off})`
  )
}
console.log(JSON.stringify({ bench: "providers-penalties-size", quick, maxTokens, rounds, penaltyRatioBySize }))
process.exit(0)
