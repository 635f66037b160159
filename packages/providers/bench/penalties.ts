/**
 * What the benches' penalty comparisons share: the penalties they switch on, strictly
 * alternating off/on rounds, and node-llama-cpp alone (`LlamaCompletion`, no Hasten code)
 * generating with and without them — to tell the native penalty path's own cost from what
 * Hasten adds.
 */
import { ModelPool } from "@hasten/providers/local"
import { Effect } from "effect"
import { LlamaCompletion } from "node-llama-cpp"

/** `repeatPenalty` 1.1 with frequency and presence 0.1 over the last 64 tokens. */
export const penalties = { repeatPenalty: 1.1, frequencyPenalty: 0.1, presencePenalty: 0.1, penaltyWindow: 64 } as const

/** CPU milliseconds of this process (llama.cpp's threads included). */
export const cpuMs = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

/**
 * One warm-up each, then `rounds` strictly alternating off/on measurements (the order flips
 * every round, so drift hits both sides); returns every measurement of each side.
 */
export const alternate = async <A>(rounds: number, measure: (penalized: boolean) => Promise<A>) => {
  await measure(false)
  await measure(true)
  const off: Array<A> = []
  const on: Array<A> = []
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      off.push(await measure(false))
      on.push(await measure(true))
    } else {
      on.push(await measure(true))
      off.push(await measure(false))
    }
  }
  return { off, on }
}

/** node-llama-cpp alone: `LlamaCompletion` with and without `penalties`, tokens per wall and per CPU second of each round. */
export const nodeLlamaCppAlone = async (options: {
  readonly modelPath: string
  readonly prompt: string
  readonly maxTokens: number
  readonly rounds: number
  /** The context Hasten's side runs on (its size per sequence and its sequences), so both attend over the same cells. */
  readonly contextSize: number
  readonly sequences?: number
}) => {
  const llama = await Effect.runPromise(ModelPool.getLlama(false))
  const model = await llama.loadModel({ modelPath: options.modelPath })
  const context = await model.createContext({
    contextSize: options.contextSize,
    sequences: options.sequences ?? 1,
    threads: 1,
    flashAttention: ModelPool.defaultFlashAttention(model) // as Local's context (its default for this model)
  })
  const sequence = context.getSequence()
  const completion = new LlamaCompletion({ contextSequence: sequence })
  try {
    return await alternate(options.rounds, async (penalized) => {
      await sequence.clearHistory()
      const wall = performance.now()
      const cpu = cpuMs()
      let tokens = 0
      await completion.generateCompletion(options.prompt, {
        temperature: 0,
        maxTokens: options.maxTokens,
        onToken: (chunk) => void (tokens += chunk.length),
        repeatPenalty: penalized
          ? {
            lastTokens: penalties.penaltyWindow,
            penalty: penalties.repeatPenalty,
            frequencyPenalty: penalties.frequencyPenalty,
            presencePenalty: penalties.presencePenalty
          }
          : false
      })
      return { wall: (tokens / (performance.now() - wall)) * 1000, cpu: (tokens / (cpuMs() - cpu)) * 1000 }
    })
  } finally {
    completion.dispose()
    await context.dispose()
    await model.dispose()
  }
}
