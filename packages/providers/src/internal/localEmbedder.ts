/**
 * The local model as `Embedder`: one vector per text from an embedding context on the
 * loaded model, created on first use and kept warm by the pool's idle TTL.
 * @since 0.1.0
 */
import { LlmError } from "@hasten/core"
import type { Embedder } from "@hasten/core"
import { Effect } from "effect"
import type { LoadedModel } from "./loadedModel.js"
import { failure, provider } from "./localErrors.js"

/** The `Embedder` over a loaded model. */
export const make = ({ id, key, model, pool, prependBos, sanitize }: LoadedModel): Embedder.EmbedderService => {
  const { contextSize, gpu, modelPath, threads } = key
  const embeddingKey = { modelPath, threads, gpu, contextSize }
  const embed = Effect.fn("Local.embed")(function*(texts: ReadonlyArray<string>, embedOptions?: Embedder.EmbedOptions) {
    const context = yield* pool.embedding(embeddingKey)
    const vectors: Array<ReadonlyArray<number>> = []
    let inputTokens = 0
    for (const text of texts) {
      const safeText = sanitize(text)
      const tokens = model.tokenize(safeText).length + (prependBos ? 1 : 0)
      if (tokens > contextSize) {
        return yield* LlmError.make(
          provider,
          new LlmError.ContextLengthExceeded({ description: `an input has ${tokens} tokens, more than the context size of ${contextSize}` })
        )
      }
      inputTokens += tokens
      const embedding = yield* Effect.tryPromise({
        try: () => context.getEmbeddingFor(safeText),
        catch: failure("embedding failed")
      })
      const vector = Array.from(embedding.vector)
      vectors.push(embedOptions?.dimensions !== undefined ? vector.slice(0, embedOptions.dimensions) : vector)
    }
    const result: Embedder.Embeddings = { vectors, model: embedOptions?.model ?? id, usage: { inputTokens } }
    return result
  })
  return {
    name: provider,
    model: id,
    embed: (texts, embedOptions) => Effect.scoped(embed(texts, embedOptions))
  }
}
