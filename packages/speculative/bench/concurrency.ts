/**
 * Continuous batching and speculative decoding together: k concurrent requests (4 and 16)
 * on a synthetic target/draft pair of a real shape (timing only), fixed length, greedy,
 * threads 1 per context, each configuration a fresh layer per round, interleaved:
 *   - batching alone: `Local.layer({ sequences: k })`'s own `Llm` — its continuous-batching
 *     greedy engine steps the k requests together (what a user of plain batching gets);
 *   - batching alone, speculative layer at γ = 0 (`sequences: k`): its plain stretches run on
 *     the same engine (`Local`'s `TokenModel`), without `LlamaCompletion`'s per-token work;
 *   - speculation alone: the draft model with adaptive γ, one sequence (requests in turn);
 *   - plain alone: the speculative layer at γ = 0, one sequence (requests in turn): what
 *     speculation alone is measured against (its own factor at this shape);
 *   - both: `sequences: k`, the draft model (k draft sequences), adaptive γ in lockstep (the
 *     default: one γ per step for the k requests), default `stepTokenBudget` (16: γ ≤ 16 / k − 1,
 *     so γ → 0 at 16 requests);
 *   - both, per-request γ: the same with `lockstep: false` (each request its own adaptive γ);
 *   - both, no back-off: lockstep with an unbounded step budget;
 *   - with `fixedGammas`: both with that fixed γ for every request (a reference point: every
 *     verification has the same length, nothing adapts).
 * Throughput is output tokens per wall second for the k requests together. With `warm`, each
 * layer first decodes one untimed round of k other requests (other prompts, the same length):
 * the steady state of a long-lived layer, whose adaptive state has learned, rather than a
 * fresh layer's first requests.
 */
import { CompletionRequest, Llm, type LlmError, TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Drafter, Speculative } from "@hasten/speculative"
import { SyntheticModel } from "@hasten/testkit"
import { Effect, Layer, ManagedRuntime } from "effect"

const CONTEXT = 256

interface Config {
  readonly name: string
  /** The layer for k concurrent requests. */
  readonly layer: (k: number) => Layer.Layer<Llm.Llm, unknown>
}

/** One concurrency level's results: tokens per wall second by configuration, and the comparison. */
export interface ConcurrencyResult {
  readonly concurrency: number
  readonly tokPerS: Record<string, number>
  /** both / the best of batching alone (either) and speculation alone. */
  readonly combinedOverBestSingle: number
  /** both / both without back-off. */
  readonly backoffGain: number
  /** both (lockstep) / both with per-request γ. */
  readonly lockstepGain: number
  /** speculation alone / plain alone (one sequence each): speculation's own factor at this shape. */
  readonly speculationAloneFactor: number
  /** Requests whose text equals batching alone's. */
  readonly identical: Record<string, string>
  /** Mean γ of the combined configuration's speculative steps. */
  readonly combinedMeanGamma: number
  /** Share of the combined configuration's target evaluations that verified drafts. */
  readonly combinedSpeculativeShare: number
  /** Mean γ of the per-request configuration's speculative steps. */
  readonly perRequestMeanGamma: number
}

/** Runs the section: `concurrencies` levels on `shape`, `tokens` per request, `rounds` interleaved rounds. */
export const concurrencySection = async (options: {
  readonly shape: SyntheticModel.ShapeName
  readonly concurrencies: ReadonlyArray<number>
  readonly tokens: number
  readonly rounds: number
  readonly prompts: ReadonlyArray<string>
  readonly fixedGammas?: ReadonlyArray<number> | undefined
  readonly warm?: boolean | undefined
}): Promise<Array<ConcurrencyResult>> => {
  const pair = await SyntheticModel.pair({ target: options.shape })
  const poolRuntime = ManagedRuntime.make(ModelPool.layer({ idleTimeToLive: "1 hour" }))
  const pool = Layer.succeed(ModelPool.ModelPool, await poolRuntime.runPromise(Effect.service(ModelPool.ModelPool)))
  const tokenModel = (path: string, sequences: number): Layer.Layer<TokenModel.TokenModel, LlmError.LlmError> =>
    Layer.effect(TokenModel.TokenModel, Effect.service(TokenModel.TokenModel)).pipe(
      Layer.provide(Local.layerWithPool({ model: path, contextSize: CONTEXT, sequences, threads: 1 })),
      Layer.provide(pool)
    ) as never
  const speculative = (k: number, options: Partial<Speculative.Options<LlmError.LlmError>>, draft: boolean) =>
    Speculative.layer({
      drafter: draft ? Drafter.modelLayer(tokenModel(pair.draft.path, k)) : Drafter.promptLookup(),
      sequences: k,
      ...options
    }).pipe(Layer.provide(tokenModel(pair.target.path, k)))
  const localLlm = (k: number): Layer.Layer<Llm.Llm, unknown> =>
    Layer.effect(Llm.Llm, Effect.service(Llm.Llm)).pipe(
      Layer.provide(
        Local.layerWithPool({ model: pair.target.path, contextSize: CONTEXT, sequences: k, threads: 1 })
      ),
      Layer.provide(pool)
    )
  const configs: ReadonlyArray<Config> = [
    { name: "batching alone", layer: localLlm },
    { name: "batching alone, γ=0 layer", layer: (k) => speculative(k, { gamma: 0 }, false) },
    { name: "speculation alone", layer: () => speculative(1, {}, true) },
    { name: "plain alone", layer: () => speculative(1, { gamma: 0 }, false) },
    { name: "both", layer: (k) => speculative(k, {}, true) },
    { name: "both, per-request γ", layer: (k) => speculative(k, { lockstep: false }, true) },
    { name: "both, no back-off", layer: (k) => speculative(k, { stepTokenBudget: 1_000_000 }, true) },
    ...(options.fixedGammas ?? []).map((gamma): Config => ({
      name: `both, γ=${gamma} for all`,
      layer: (k) => speculative(k, { gamma }, true)
    }))
  ]
  const results: Array<ConcurrencyResult> = []
  for (const k of options.concurrencies) {
    const prompts = Array.from({ length: k }, (_, i) => `${options.prompts[i % options.prompts.length]!} (${i})`)
    const wall = configs.map(() => 0)
    const tokens = configs.map(() => 0)
    const outputs = configs.map(() => [] as Array<string>)
    const gammas = { sum: 0, steps: 0, evaluations: 0 }
    const perRequestGammas = { sum: 0, steps: 0 }
    for (let round = 0; round < options.rounds; round++) {
      // a new order each round: no configuration keeps one place
      const order = configs.map((_, i) => (i + round) % configs.length)
      for (const c of order) {
        const runtime = ManagedRuntime.make(configs[c]!.layer(k))
        const llm = await runtime.runPromise(Effect.service(Llm.Llm))
        // warm: the layer's contexts and sequences are built before the clock starts
        await runtime.runPromise(
          llm.complete(CompletionRequest.makeUnsafe({ model: "t", messages: [], prompt: "Hi", temperature: 0, maxTokens: 2 }))
        )
        if (options.warm === true) {
          await runtime.runPromise(Effect.forEach(
            prompts,
            (prompt) =>
              llm.complete(
                CompletionRequest.makeUnsafe({
                  model: "t",
                  messages: [],
                  prompt: `Warm: ${prompt}`,
                  temperature: 0,
                  maxTokens: options.tokens
                })
              ),
            { concurrency: "unbounded" }
          ))
        }
        const start = performance.now()
        const completions = await runtime.runPromise(Effect.forEach(
          prompts,
          (prompt) =>
            llm.complete(CompletionRequest.makeUnsafe({ model: "t", messages: [], prompt, temperature: 0, maxTokens: options.tokens })),
          { concurrency: "unbounded" }
        ))
        wall[c]! += (performance.now() - start) / 1000
        for (const completion of completions) {
          tokens[c]! += completion.usage.outputTokens
          if (round === 0) outputs[c]!.push(completion.text)
          const stats = completion.facts?.speculative as Speculative.RequestStats | undefined
          if (configs[c]!.name === "both" && stats !== undefined) {
            gammas.sum += stats.meanGamma * stats.speculativeSteps
            gammas.steps += stats.speculativeSteps
            gammas.evaluations += stats.speculativeSteps + stats.plainSteps
          }
          if (configs[c]!.name === "both, per-request γ" && stats !== undefined) {
            perRequestGammas.sum += stats.meanGamma * stats.speculativeSteps
            perRequestGammas.steps += stats.speculativeSteps
          }
        }
        await runtime.dispose()
      }
    }
    const tokPerS = Object.fromEntries(configs.map((config, c) => [config.name, Math.round((tokens[c]! / wall[c]!) * 10) / 10]))
    const rate = (name: string) => tokPerS[name]!
    results.push({
      concurrency: k,
      tokPerS,
      combinedOverBestSingle: Math.round(
        (rate("both") / Math.max(rate("batching alone"), rate("batching alone, γ=0 layer"), rate("speculation alone"))) * 1000
      ) / 1000,
      backoffGain: Math.round((rate("both") / rate("both, no back-off")) * 1000) / 1000,
      lockstepGain: Math.round((rate("both") / rate("both, per-request γ")) * 1000) / 1000,
      speculationAloneFactor: Math.round((rate("speculation alone") / rate("plain alone")) * 1000) / 1000,
      identical: Object.fromEntries(
        configs.map((config, c) => [config.name, `${outputs[c]!.filter((output, i) => output === outputs[0]![i]).length}/${k}`])
      ),
      combinedMeanGamma: gammas.steps === 0 ? 0 : Math.round((gammas.sum / gammas.steps) * 100) / 100,
      combinedSpeculativeShare: gammas.evaluations === 0 ? 0 : Math.round((gammas.steps / gammas.evaluations) * 1000) / 1000,
      perRequestMeanGamma: perRequestGammas.steps === 0 ? 0 : Math.round((perRequestGammas.sum / perRequestGammas.steps) * 100) / 100
    })
  }
  await poolRuntime.dispose()
  return results
}
