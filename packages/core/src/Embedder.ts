/**
 * The `Embedder` service: text in, vectors out.
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import type { LlmError } from "./LlmError.js"

/** Vectors for a batch of texts, in input order. @category models @since 0.1.0 */
export interface Embeddings {
  readonly vectors: ReadonlyArray<ReadonlyArray<number>>
  readonly model: string
  readonly usage: { readonly inputTokens: number }
  /** Set by the cache middleware when every vector came from the cache. */
  readonly cached?: boolean
}

/** Options for one embedding call. @category models @since 0.1.0 */
export interface EmbedOptions {
  /** Overrides the embedder's default model. */
  readonly model?: string
  /** Requested dimensions (providers that support truncation). */
  readonly dimensions?: number
}

/** The operations of an embedding backend. @category models @since 0.1.0 */
export interface EmbedderService {
  readonly name: string
  /** The default model id. */
  readonly model: string
  readonly embed: (texts: ReadonlyArray<string>, options?: EmbedOptions) => Effect.Effect<Embeddings, LlmError>
}

/**
 * The embedding service.
 * @category services @since 0.1.0
 */
export class Embedder extends Context.Service<Embedder, EmbedderService>()("@hasten/core/Embedder") {
  /**
   * A deterministic fake: 8-dimensional vectors hashed from the text (same text, same vector).
   * @category testing @since 0.1.0
   */
  static readonly layerHash: Layer.Layer<Embedder> = Layer.succeed(Embedder, {
    name: "hash",
    model: "hash-8",
    embed: (texts, options) =>
      Effect.succeed({
        vectors: texts.map((text) => hashVector(text, options?.dimensions ?? 8)),
        model: options?.model ?? "hash-8",
        usage: { inputTokens: texts.reduce((sum, text) => sum + Math.ceil(text.length / 4), 0) }
      })
  })
}

/**
 * A unit vector derived from a string by FNV-1a hashing: deterministic on every machine.
 * @category testing @since 0.1.0
 */
export const hashVector = (text: string, dimensions: number): Array<number> => {
  const vector: Array<number> = []
  let hash = 0x811c9dc5
  for (let i = 0; i < dimensions; i++) {
    for (let j = 0; j < text.length; j++) {
      hash ^= text.charCodeAt(j) + i
      hash = Math.imul(hash, 0x01000193) >>> 0
    }
    vector.push((hash / 0xffffffff) * 2 - 1)
  }
  const norm = Math.hypot(...vector) || 1
  return vector.map((value) => value / norm)
}

/** Calls `embed` on the current `Embedder`. @category accessors @since 0.1.0 */
export const embed = (texts: ReadonlyArray<string>, options?: EmbedOptions): Effect.Effect<Embeddings, LlmError, Embedder> =>
  Effect.flatMap(Effect.service(Embedder), (embedder) => embedder.embed(texts, options))
