/**
 * What the speculative benches share: the story openings they prompt with, and a sequence of a
 * TokenModel opened on the first of them, to time single operations on.
 */
import type { LlmError } from "@hasten/core"
import { TokenModel } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { SyntheticModel } from "@hasten/testkit"
import { Effect, type Layer, Layer as LayerModule, ManagedRuntime } from "effect"
import type { SequenceExtensions } from "../src/Drafter.js"

/** Story openings (TinyStories style); the synthetic models' text is meaningless, only lengths matter. */
export const storyPrompts: ReadonlyArray<string> = [
  "Once upon a time",
  "Lily went to the park with her mom.",
  "Tom had a big red ball. One day,",
  "The little bird was sad because",
  "Ben and Mia wanted to build a house.",
  "There was a small cat named Kitty."
]

/**
 * A target shape from the command line: a name in `SyntheticModel.shapes` (`110M`), or a custom
 * llama shape `<embedding>x<layers>` (`1024x24`) with heads of width 64 (`embedding / 64`) and
 * llama2.c's feed-forward width (`2/3 · 4 · embedding`, rounded up to a multiple of 32), the
 * rule the named shapes follow. Throws on anything else.
 */
export const parseShape = (text: string): SyntheticModel.ShapeName | SyntheticModel.Shape => {
  if (text in SyntheticModel.shapes) return text as SyntheticModel.ShapeName
  const match = /^(\d+)x(\d+)$/.exec(text)
  const embedding = Number(match?.[1])
  const layers = Number(match?.[2])
  if (match === null || embedding < 64 || embedding % 64 !== 0 || layers < 1) {
    throw new Error(
      `shape "${text}": expected one of ${
        Object.keys(SyntheticModel.shapes).join(", ")
      } or <embedding>x<layers> with the embedding a multiple of 64 and at least 1 layer (e.g. 1024x24)`
    )
  }
  const feedForward = Math.ceil(Math.floor((2 * 4 * embedding) / 3) / 32) * 32
  return { embedding, layers, heads: embedding / 64, feedForward }
}

/** CPU milliseconds of this process (every thread) so far. */
export const cpuMillis = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e3
}

/**
 * Runs `body` on a sequence of the layer's TokenModel that holds the first story prompt;
 * `base` is its length (truncate back to it between timed operations).
 */
export const atPrompt = async <A>(
  layer: Layer.Layer<TokenModel.TokenModel, LlmError.LlmError>,
  body: (
    sequence: TokenModel.TokenSequence & SequenceExtensions,
    base: number,
    model: TokenModel.TokenModelService
  ) => Effect.Effect<A, LlmError.LlmError>
): Promise<A> => {
  const runtime = ManagedRuntime.make(layer)
  try {
    return await runtime.runPromise(Effect.scoped(Effect.gen(function*() {
      const model = yield* TokenModel.TokenModel
      const sequence = yield* model.sequence()
      yield* sequence.append(yield* model.tokenize(storyPrompts[0]!, { addBos: true }))
      return yield* body(sequence, sequence.tokens().length, model)
    })))
  } finally {
    await runtime.dispose()
  }
}

/**
 * `Local.layer` TokenModels of model files, each on its own model pool (one sequence, one
 * thread, `contextSize`), as the benches time them; `dispose` closes every pool made.
 */
export const tokenModels = (contextSize: number) => {
  const pools: Array<ManagedRuntime.ManagedRuntime<ModelPool.ModelPool, never>> = []
  return {
    tokenModel: async (path: string): Promise<Layer.Layer<TokenModel.TokenModel, LlmError.LlmError>> => {
      const poolRuntime = ManagedRuntime.make(ModelPool.layer({ idleTimeToLive: "1 hour" }))
      pools.push(poolRuntime)
      const pool = LayerModule.succeed(ModelPool.ModelPool, await poolRuntime.runPromise(Effect.service(ModelPool.ModelPool)))
      return LayerModule.effect(TokenModel.TokenModel, Effect.service(TokenModel.TokenModel)).pipe(
        LayerModule.provide(Local.layerWithPool({ model: path, contextSize, sequences: 1, threads: 1 })),
        LayerModule.provide(pool)
      )
    },
    dispose: async () => {
      for (const pool of pools) await pool.dispose()
    }
  }
}
