/**
 * Sampled speculative decoding (temperature > 0) at a 32,000-token vocabulary, on the
 * synthetic draft/target pair of `--shape` (default `110M`; synthetic weights of real shapes:
 * timing only). What exact speculative sampling needs per position is the whole next-token
 * distribution of the target (p) and of the draft (q); this measures what one costs through
 * node-llama-cpp, and what the speculation gains over node-llama-cpp's own sampled generation.
 *
 *   1. per-position costs (CPU ms, medians): a one-token greedy step (`appendGreedy`), a
 *      one-token step that returns all logits as a distribution (`append`), and, with `--top-k`
 *      (default 40; 0: the whole vocabulary), one that returns the top-k sampler's candidates
 *      (`appendDistributions`, the layer's path), target and draft;
 *   2. generation, interleaved request by request: node-llama-cpp's `sequence.evaluate` at
 *      `temperature` (plain sampled decoding), and Hasten's speculative layer with the draft
 *      model (adaptive γ, the default, and γ = 2) at the same temperature;
 *   3. the step-count bound for sampled speculation from the measured parts.
 *
 * `npx -y pnpm@12.21.0 --filter @hasten/speculative bench:sampled [-- --shape 15M --tokens 32 --rounds 2]`.
 * A table, then ONE JSON line.
 */
import { CompletionRequest, Llm, type LlmError, TokenModel } from "@hasten/core"
import { ModelPool } from "@hasten/providers/local"
import { Drafter, Speculative } from "@hasten/speculative"
import { SyntheticModel } from "@hasten/testkit"
import { Effect, Layer, ManagedRuntime } from "effect"
import { getLlama, type Token } from "node-llama-cpp"
import { atPrompt, cpuMillis, storyPrompts, tokenModels } from "./support.js"

const option = (name: string): string | undefined => {
  const index = process.argv.indexOf(`--${name}`)
  if (index >= 0) return process.argv[index + 1]
  return process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
}
const shape = (option("shape") ?? "110M") as SyntheticModel.ShapeName
const tokens = Number(option("tokens") ?? 64)
const rounds = Number(option("rounds") ?? 2)
const temperature = Number(option("temperature") ?? 0.8)
/** Top-k of every request, both sides (0: the whole vocabulary). */
const topK = Number(option("top-k") ?? 40)
const contextSize = 1024
const prompts = storyPrompts.slice(0, 3)

const cpuNow = cpuMillis
const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const pair = await SyntheticModel.pair({ target: shape })
const llama = await getLlama({ gpu: false })
const { tokenModel, dispose: disposePools } = tokenModels(contextSize)

// --- 1. per-position costs -------------------------------------------------------------------
const stepCosts = (layer: Layer.Layer<TokenModel.TokenModel, LlmError.LlmError>, repeats: number) =>
  atPrompt(layer, (extended, base) =>
    Effect.gen(function*() {
      const greedy: Array<number> = []
      const distribution: Array<number> = []
      const candidates: Array<number> = []
      for (let repeat = 0; repeat < repeats; repeat++) {
        const token = 1000 + ((repeat * 37) % 20000)
        let start = cpuNow()
        yield* extended.appendGreedy!([token])
        greedy.push(cpuNow() - start)
        yield* extended.truncate(base)
        start = cpuNow()
        yield* extended.append([token])
        distribution.push(cpuNow() - start)
        yield* extended.truncate(base)
        if (topK > 0) {
          start = cpuNow()
          yield* extended.appendDistributions!([token], 0, { temperature, topK })
          candidates.push(cpuNow() - start)
          yield* extended.truncate(base)
        }
      }
      return {
        greedyMillis: median(greedy),
        distributionMillis: median(distribution),
        // what a sampled step costs on the path the layer takes
        sampledMillis: topK > 0 ? median(candidates) : median(distribution)
      }
    }))
const targetLayer = await tokenModel(pair.target.path)
const draftLayer = await tokenModel(pair.draft.path)
const targetCosts = await stepCosts(targetLayer, 30)
const draftCosts = await stepCosts(draftLayer, 60)

// --- 2. generation ---------------------------------------------------------------------------
interface Session {
  readonly request: (prompt: string, seed: number) => Promise<number>
  /** Drafted and accepted tokens, target passes (Hasten's sessions). */
  readonly stats?: { drafted: number; accepted: number; evaluations: number }
  readonly close: () => Promise<void>
}
const plainSession = async (): Promise<Session> => {
  const model = await llama.loadModel({ modelPath: pair.target.path, gpuLayers: 0 })
  const context = await model.createContext({
    contextSize,
    threads: 1,
    sequences: 1,
    flashAttention: ModelPool.defaultFlashAttention(model)
  })
  const sequence = context.getSequence()
  return {
    request: async (text, seed) => {
      await sequence.clearHistory()
      const prompt = [model.tokens.bos!, ...model.tokenize(text, false)] as Array<Token>
      let count = 0
      for await (const _ of sequence.evaluate(prompt, { temperature, topK, topP: 1, minP: 0, seed, yieldEogToken: true })) {
        if (++count >= tokens) break
      }
      return count
    },
    close: async () => {
      await context.dispose()
      await model.dispose()
    }
  }
}
const hastenSession = async (gamma: number | "adaptive"): Promise<Session> => {
  // each session its own pools: a context of one sequence serves one session at a time
  const runtime = ManagedRuntime.make(
    Speculative.layer({ drafter: Drafter.modelLayer(await tokenModel(pair.draft.path)), gamma }).pipe(
      Layer.provide(await tokenModel(pair.target.path))
    )
  )
  const llm = await runtime.runPromise(Effect.service(Llm.Llm))
  const stats = { drafted: 0, accepted: 0, evaluations: 0 }
  return {
    stats,
    request: async (prompt, seed) => {
      const completion = await runtime.runPromise(
        llm.complete(CompletionRequest.makeUnsafe({
          model: "target",
          messages: [],
          prompt,
          temperature,
          ...(topK > 0 ? { topK } : {}),
          seed,
          maxTokens: tokens
        }))
      )
      const facts = completion.facts!.speculative as Speculative.RequestStats
      stats.drafted += facts.draftTokens
      stats.accepted += facts.acceptedTokens
      stats.evaluations += facts.targetEvaluations
      return (completion.metadata!["tokens"] as ReadonlyArray<number>).length
    },
    close: () => runtime.dispose()
  }
}
const configs: Array<{ readonly name: string; readonly open: () => Promise<Session> }> = [
  { name: `node-llama-cpp sampled (temperature ${temperature}, top-k ${topK || "off"})`, open: plainSession },
  { name: "hasten speculative, draft model, adaptive γ", open: () => hastenSession("adaptive") },
  { name: "hasten speculative, draft model, γ = 2", open: () => hastenSession(2) },
  { name: "hasten speculative, draft model, γ = 4", open: () => hastenSession(4) }
]
const sessions: Array<Session> = []
for (const config of configs) sessions.push(await config.open())
const cpu = configs.map(() => 0)
const produced = configs.map(() => 0)
for (const session of sessions) await session.request(prompts[0]!, 1) // warm-up
for (const session of sessions) if (session.stats !== undefined) Object.assign(session.stats, { drafted: 0, accepted: 0, evaluations: 0 })
for (let round = 0; round < rounds; round++) {
  for (const [p, prompt] of prompts.entries()) {
    for (const [index, session] of sessions.entries()) {
      const start = cpuNow()
      produced[index]! += await session.request(prompt, 100 * round + p + 1)
      cpu[index]! += cpuNow() - start
    }
  }
}
for (const session of sessions) await session.close()
await disposePools()

// --- 3. report -------------------------------------------------------------------------------
const perSecond = configs.map((_, index) => produced[index]! / (cpu[index]! / 1000))
console.log(
  `\nSampled decoding at temperature ${temperature}, ${shape} target (synthetic weights: timing only), ${tokens} tokens × ${prompts.length} prompts × ${rounds} rounds, threads 1\n`
)
console.log(
  `per position (CPU ms, median): target greedy step ${targetCosts.greedyMillis.toFixed(2)}, with all logits ${
    targetCosts.distributionMillis.toFixed(2)
  }, with the top-k sampler's candidates ${topK > 0 ? targetCosts.sampledMillis.toFixed(2) : "-"}; draft greedy step ${
    draftCosts.greedyMillis.toFixed(2)
  }, with all logits ${draftCosts.distributionMillis.toFixed(2)}, with the candidates ${
    topK > 0 ? draftCosts.sampledMillis.toFixed(2) : "-"
  }`
)
for (const [index, config] of configs.entries()) {
  const stats = sessions[index]!.stats
  console.log(
    `${config.name.padEnd(56)} ${produced[index]} tokens  ${perSecond[index]!.toFixed(1)} tok/CPU-s  ${
      (perSecond[index]! / perSecond[0]!).toFixed(3)
    }x${
      stats === undefined
        ? ""
        : `  acceptance ${(stats.accepted / Math.max(1, stats.drafted)).toFixed(2)}, ${
          (produced[index]! / Math.max(1, stats.evaluations)).toFixed(2)
        } tokens per target pass`
    }`
  )
}
// Sampled speculation per cycle of γ drafts: γ draft steps with q, one target pass over γ + 1
// positions with p at each; at best every draft is accepted (γ + 1 tokens per cycle).
const distributionExtra = targetCosts.sampledMillis - targetCosts.greedyMillis
const bound = (gamma: number) =>
  ((gamma + 1) * targetCosts.greedyMillis) /
  (gamma * draftCosts.sampledMillis + targetCosts.greedyMillis + (gamma + 1) * Math.max(0, distributionExtra))
console.log(
  `\nupper bound (every draft accepted; verification as cheap as one step; + the measured cost of each distribution): γ=2 ${
    bound(2).toFixed(2)
  }x, γ=4 ${bound(4).toFixed(2)}x`
)
console.log(JSON.stringify({
  bench: "speculative-sampled",
  shape,
  temperature,
  topK,
  tokens,
  targetGreedyStepMillis: Number(targetCosts.greedyMillis.toFixed(3)),
  targetDistributionStepMillis: Number(targetCosts.distributionMillis.toFixed(3)),
  draftGreedyStepMillis: Number(draftCosts.greedyMillis.toFixed(3)),
  draftDistributionStepMillis: Number(draftCosts.distributionMillis.toFixed(3)),
  targetSampledStepMillis: Number(targetCosts.sampledMillis.toFixed(3)),
  draftSampledStepMillis: Number(draftCosts.sampledMillis.toFixed(3)),
  speedupAdaptive: Number((perSecond[1]! / perSecond[0]!).toFixed(3)),
  speedupGamma2: Number((perSecond[2]! / perSecond[0]!).toFixed(3)),
  speedupGamma4: Number((perSecond[3]! / perSecond[0]!).toFixed(3)),
  acceptanceAdaptive: Number((sessions[1]!.stats!.accepted / Math.max(1, sessions[1]!.stats!.drafted)).toFixed(3)),
  boundGamma2: Number(bound(2).toFixed(3)),
  boundGamma4: Number(bound(4).toFixed(3))
}))
process.exit(0)
