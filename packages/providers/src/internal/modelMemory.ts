/**
 * What a local model costs in memory, from the model itself: its weights (node-llama-cpp's
 * `model.size`), its KV cache (bytes per token from the GGUF's attention shape and the cache
 * types, × the context's cells), and the rest of the context — output buffers and compute
 * graph — from node-llama-cpp's own estimate for the context. The cost of one more
 * sequence gives the number of sequences free memory allows (`sequences: "auto"`).
 * @internal
 */
import type { LlamaModel } from "node-llama-cpp"

/** A model's memory, as perf-logger reports it (`Facts.ModelMemory` without the model id). */
export interface ModelMemory {
  readonly weightsBytes: number
  readonly kvCacheBytes: number
  readonly computeBytes: number
  /** Tokens per sequence. */
  readonly contextSize: number
  readonly sequences: number
}

/** Bytes per value of the KV cache types llama.cpp offers (ggml's block sizes: Q8_0 is 34 bytes per 32 values). */
const typeBytes: Record<number, number> = {
  0: 4, // F32
  1: 2, // F16
  2: 18 / 32, // Q4_0
  3: 20 / 32, // Q4_1
  6: 22 / 32, // Q5_0
  7: 24 / 32, // Q5_1
  8: 34 / 32, // Q8_0
  30: 2 // BF16
}

/** Bytes per value of a KV cache type (F16 when unknown: llama.cpp's default). */
export const kvTypeBytes = (ggmlType: number | undefined): number => typeBytes[ggmlType ?? 1] ?? 2

interface AttentionShape {
  readonly block_count?: number
  readonly embedding_length?: number
  readonly attention?: {
    readonly head_count?: number | ReadonlyArray<number>
    readonly head_count_kv?: number | ReadonlyArray<number>
    readonly key_length?: number
    readonly value_length?: number
  }
}

const perLayer = (value: number | ReadonlyArray<number> | undefined, layer: number, fallback: number): number =>
  value === undefined ? fallback : typeof value === "number" ? value : value[layer] ?? fallback

/**
 * KV-cache bytes one token takes in every layer: Σ over layers of `head_count_kv ×
 * (key_length × K type + value_length × V type)`, with llama.cpp's defaults (key and value
 * length `embedding_length / head_count`, `head_count_kv` = `head_count`).
 */
export const kvBytesPerToken = (shape: AttentionShape, keyType?: number, valueType?: number): number => {
  const layers = shape.block_count ?? 0
  const embedding = shape.embedding_length ?? 0
  let total = 0
  for (let layer = 0; layer < layers; layer++) {
    const heads = perLayer(shape.attention?.head_count, layer, 0)
    const headsKv = perLayer(shape.attention?.head_count_kv, layer, heads)
    const keyLength = shape.attention?.key_length ?? (heads === 0 ? 0 : embedding / heads)
    const valueLength = shape.attention?.value_length ?? (heads === 0 ? 0 : embedding / heads)
    total += headsKv * (keyLength * kvTypeBytes(keyType) + valueLength * kvTypeBytes(valueType))
  }
  return total
}

/** The settings of a context whose memory is measured. */
export interface ContextShape {
  readonly contextSize: number
  readonly sequences: number
  readonly batchSize?: number | undefined
  readonly flashAttention: boolean
}

/** node-llama-cpp's estimate of a context's memory (KV cache, outputs and compute graph); 0 when it cannot estimate. */
const contextEstimate = async (model: LlamaModel, shape: ContextShape): Promise<number> => {
  try {
    const estimate = await model.fileInsights.estimateContextResourceRequirementsV2({
      contextSize: shape.contextSize,
      sequences: shape.sequences,
      modelGpuLayers: 0,
      flashAttention: shape.flashAttention,
      ...(shape.batchSize !== undefined ? { batchSize: shape.batchSize } : {})
    })
    return estimate.cpuRam + estimate.gpuVram
  } catch {
    return 0
  }
}

/** The memory of `model` with a context of `shape`. */
export const measure = async (model: LlamaModel, shape: ContextShape): Promise<ModelMemory> => {
  const shapeOf = model.fileInfo.architectureMetadata as AttentionShape
  const kvCacheBytes = Math.round(
    kvBytesPerToken(shapeOf, model.defaultContextKvCacheKeyType, model.defaultContextKvCacheValueType) * shape.contextSize * shape.sequences
  )
  const context = await contextEstimate(model, shape)
  return {
    weightsBytes: model.size,
    kvCacheBytes,
    computeBytes: Math.max(0, Math.round(context - kvCacheBytes)),
    contextSize: shape.contextSize,
    sequences: shape.sequences
  }
}

/**
 * The bytes one more sequence of `contextSize` tokens costs: its KV cache (bytes per token ×
 * context) plus what node-llama-cpp's estimate grows by beyond that for one more sequence.
 */
export const perSequenceBytes = async (model: LlamaModel, shape: Omit<ContextShape, "sequences">): Promise<number> => {
  const shapeOf = model.fileInfo.architectureMetadata as AttentionShape
  const kv = kvBytesPerToken(shapeOf, model.defaultContextKvCacheKeyType, model.defaultContextKvCacheValueType) * shape.contextSize
  const one = await contextEstimate(model, { ...shape, sequences: 1 })
  const two = await contextEstimate(model, { ...shape, sequences: 2 })
  return Math.max(kv, two - one)
}

/**
 * How many sequences fit: `fraction` of `freeBytes` over the cost of one, within `[1, max]`.
 */
export const sequencesFor = (perSequence: number, freeBytes: number, fraction: number, max: number): number => {
  if (!(perSequence > 0)) return max
  return Math.max(1, Math.min(max, Math.floor((freeBytes * fraction) / perSequence)))
}
