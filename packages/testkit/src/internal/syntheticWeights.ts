/**
 * The weights of a synthetic llama model, generated row by row from seeded streams, and
 * the streaming GGUF writer. Every weight is `q · d`: `q` a uniform int8 from a named
 * xoshiro128** stream, `d` an f16 block scale; Q8_0 stores exactly that, F16 stores the
 * products. Only integer arithmetic and `Math.sqrt` feed the bytes, so every machine
 * writes the same file.
 *
 * The first `shared` coordinates of the token embeddings and of the output head come from
 * streams that do not depend on the model's shape: a model of width `shared` (the draft)
 * and a wider one (the target) share them. In the target, layers write little into that
 * subspace, so its logits are the draft's (nearly a bigram table) plus a context-dependent
 * perturbation from the other coordinates, weighted by `output_norm`: that weight sets the
 * draft's greedy acceptance.
 * @since 0.2.0
 */
import type { GGUFTypedMetadata } from "@huggingface/gguf"
import { createHash } from "node:crypto"
import { open, rename, rm } from "node:fs/promises"
import { elements, fromHalf, GgmlType, header, pad, tensorBytes, type TensorInfo, toHalf } from "./gguf.js"
import { hash } from "./random.js"

/** Bumped whenever the bytes written for the same options change. */
export const formatVersion = 1

/** A model shape with every field resolved. */
export interface ResolvedShape {
  readonly embedding: number
  readonly layers: number
  readonly heads: number
  readonly headsKv: number
  readonly feedForward: number
  readonly contextLength: number
}

/** Everything the bytes of a file depend on (with the donor tokenizer). */
export interface Spec {
  readonly shape: ResolvedShape
  /** Width of the subspace shared with a draft model (the whole width for the draft itself). */
  readonly shared: number
  readonly quantization: "Q8_0" | "F16"
  readonly seed: number
}

/** The tokenizer taken from the donor file. */
export interface Donor {
  /** Every `tokenizer.*` key of the donor, with its GGUF type. */
  readonly tokenizer: Record<string, GGUFTypedMetadata[string]>
  /** `tokenizer.ggml.token_type`: 1 = normal; the rest (unknown, control, byte) are never generated. */
  readonly tokenTypes: ReadonlyArray<number>
}

// Scale choices (see the module comment). Calibrated with node-llama-cpp: draft cost and
// greedy acceptance are measured by `bench/synthetic-pair.ts`.
/** Query and key weights: attention scores with a standard deviation of about this, so attention is sharp. */
const attentionSharpness = 3
/** Variance the target's layers add to each coordinate outside the shared subspace, against 1 for the embedding. */
const contextVariance = 2
/** Standard deviation, relative to the bigram logits, of what layers add to the shared subspace. */
const sharedNoise = 0.03
/** Standard deviation, relative to the bigram logits, of the target's perturbation through the other coordinates. */
export const headNoise = 0.16
/** Rough variance a layer (attention + gated FFN) adds per unit of output scale squared. */
const layerGain = 1.4

const valueType = { UINT32: 4, FLOAT32: 6, STRING: 8 } as const

/** Parameters of a model (weights and norms). */
export const parameterCount = (spec: Spec, vocabulary: number): number =>
  plan(spec, vocabulary, []).tensors.reduce((sum, tensor) => sum + elements(tensor.info), 0)

interface Tensor {
  readonly info: TensorInfo
  /** F32 values (norms), or a row filler for weights: int8 quants and f16 block scales. */
  readonly values?: Float32Array
  readonly fillRow?: (row: number, quants: Int8Array, scales: Uint16Array) => void
}

type Stream = (into: Int8Array) => void

/** Uniform int8s in [-127, 127] (−128 becomes 0) from a xoshiro128** stream named by seed and label. */
const stream = (seed: number, label: string): Stream => {
  let a = hash(seed, label, 0) | 0
  let b = hash(seed, label, 1) | 0
  let c = hash(seed, label, 2) | 0
  let d = hash(seed, label, 3) | 1
  return (into) => {
    const words = new Uint32Array(into.buffer, into.byteOffset, into.length >>> 2)
    for (let i = 0; i < words.length; i++) {
      const x = Math.imul(b, 5)
      words[i] = Math.imul((x << 7) | (x >>> 25), 9)
      const t = b << 9
      c ^= a
      d ^= b
      b ^= c
      a ^= d
      c ^= t
      d = (d << 11) | (d >>> 21)
    }
    for (let i = 0; i < into.length; i++) if (into[i] === -128) into[i] = 0
  }
}

/** The f16 block scale of uniform values with standard deviation `sigma`. */
const scaleFor = (sigma: number): number => toHalf((sigma * Math.sqrt(3)) / 127)

const fillScales = (scales: Uint16Array, from: number, to: number, scale: number) => {
  for (let j = from; j < to; j++) scales[j] = scale
}

/** A weight with one standard deviation per output row. */
const uniform = (seed: number, label: string, info: TensorInfo, sigma: (row: number) => number): Tensor => {
  const next = stream(seed, label)
  let lastSigma = NaN
  let lastScale = 0
  return {
    info,
    fillRow: (row, quants, scales) => {
      next(quants)
      const value = sigma(row)
      if (value !== lastSigma) {
        lastSigma = value
        lastScale = scaleFor(value)
      }
      fillScales(scales, 0, scales.length, lastScale)
    }
  }
}

const shapeKey = (shape: ResolvedShape): string => `${shape.embedding}x${shape.layers}x${shape.heads}x${shape.headsKv}x${shape.feedForward}`

/** The tensors of a model (weights typed by the quantization, norms F32) and its metadata. */
export const plan = (
  spec: Spec,
  vocabulary: number,
  tokenTypes: ReadonlyArray<number>
): { readonly tensors: ReadonlyArray<Tensor> } => {
  const { seed, shape, shared } = spec
  const D = shape.embedding
  const F = shape.feedForward
  const headSize = D / shape.heads
  const kv = headSize * shape.headsKv
  const rest = D - shared
  const type = spec.quantization === "Q8_0" ? GgmlType.Q8_0 : GgmlType.F16
  const key = shapeKey(shape)
  // output scales of the layers: small into the shared subspace, `contextVariance` outside it
  const intoShared = sharedNoise / Math.sqrt(shape.layers * layerGain)
  const intoRest = Math.sqrt(contextVariance / (shape.layers * layerGain))
  const outScale = (row: number) => row < shared ? intoShared : intoRest
  const ones = new Float32Array(D).fill(1)
  const tensors: Array<Tensor> = []

  const sharedEmbedding = stream(seed, "token_embd.shared")
  const restEmbedding = stream(seed, `${key}.token_embd.rest`)
  const unit = scaleFor(1)
  tensors.push({
    info: { name: "token_embd.weight", dims: [D, vocabulary], type },
    fillRow: (_row, quants, scales) => {
      sharedEmbedding(quants.subarray(0, shared))
      if (rest > 0) restEmbedding(quants.subarray(shared))
      fillScales(scales, 0, scales.length, unit)
    }
  })

  for (let layer = 0; layer < shape.layers; layer++) {
    const label = (name: string) => `${key}.blk.${layer}.${name}`
    const sharp = Math.sqrt(attentionSharpness) / Math.sqrt(D)
    const flat = 1 / Math.sqrt(D)
    tensors.push(
      { info: { name: `blk.${layer}.attn_norm.weight`, dims: [D], type: GgmlType.F32 }, values: ones },
      uniform(seed, label("attn_q"), { name: `blk.${layer}.attn_q.weight`, dims: [D, D], type }, () => sharp),
      uniform(seed, label("attn_k"), { name: `blk.${layer}.attn_k.weight`, dims: [D, kv], type }, () => sharp),
      uniform(seed, label("attn_v"), { name: `blk.${layer}.attn_v.weight`, dims: [D, kv], type }, () => flat),
      uniform(
        seed,
        label("attn_output"),
        { name: `blk.${layer}.attn_output.weight`, dims: [D, D], type },
        (row) => outScale(row) / Math.sqrt(D)
      ),
      { info: { name: `blk.${layer}.ffn_norm.weight`, dims: [D], type: GgmlType.F32 }, values: ones },
      uniform(seed, label("ffn_gate"), { name: `blk.${layer}.ffn_gate.weight`, dims: [D, F], type }, () => flat),
      uniform(seed, label("ffn_up"), { name: `blk.${layer}.ffn_up.weight`, dims: [D, F], type }, () => flat),
      uniform(
        seed,
        label("ffn_down"),
        { name: `blk.${layer}.ffn_down.weight`, dims: [F, D], type },
        (row) => outScale(row) / Math.sqrt(F)
      )
    )
  }

  // output_norm weighs the coordinates outside the shared subspace so that their part of the
  // logits has `headNoise` times the standard deviation of the shared (bigram) part
  const outputNorm = new Float32Array(D).fill(1)
  if (rest > 0) outputNorm.fill(headNoise / Math.sqrt(1 + contextVariance), shared)
  tensors.push({ info: { name: "output_norm.weight", dims: [D], type: GgmlType.F32 }, values: outputNorm })

  const sharedHead = stream(seed, "output.shared")
  const restHead = stream(seed, `${key}.output.rest`)
  const restScale = rest > 0 ? scaleFor(1 / Math.sqrt(rest)) : 0
  const sharedBlocks = shared / 32
  tensors.push({
    info: { name: "output.weight", dims: [D, vocabulary], type },
    fillRow: (row, quants, scales) => {
      const head = quants.subarray(0, shared)
      sharedHead(head)
      if (rest > 0) restHead(quants.subarray(shared))
      if (row < tokenTypes.length && tokenTypes[row] !== 1) {
        // unknown, control (BOS, EOS) and byte tokens: a zero row, so greedy never picks them
        quants.fill(0)
        scales.fill(0)
        return
      }
      // the shared part of each row has norm 1: every token is the argmax for a similar share of contexts
      let squares = 0
      for (let i = 0; i < shared; i++) squares += head[i]! * head[i]!
      fillScales(scales, 0, sharedBlocks, toHalf(1 / Math.sqrt(squares)))
      fillScales(scales, sharedBlocks, scales.length, restScale)
    }
  })
  return { tensors }
}

/** The GGUF metadata: llama hyperparameters, then every tokenizer key of the donor. */
export const metadata = (spec: Spec, name: string, donor: Donor, vocabulary: number): Record<string, GGUFTypedMetadata[string]> => {
  const { shape } = spec
  const u32 = (value: number) => ({ value, type: valueType.UINT32 })
  return {
    "general.architecture": { value: "llama", type: valueType.STRING },
    "general.name": { value: name, type: valueType.STRING },
    "general.file_type": u32(spec.quantization === "Q8_0" ? 7 : 1),
    ...(spec.quantization === "Q8_0" ? { "general.quantization_version": u32(2) } : {}),
    "llama.vocab_size": u32(vocabulary),
    "llama.context_length": u32(shape.contextLength),
    "llama.embedding_length": u32(shape.embedding),
    "llama.block_count": u32(shape.layers),
    "llama.feed_forward_length": u32(shape.feedForward),
    "llama.rope.dimension_count": u32(shape.embedding / shape.heads),
    "llama.attention.head_count": u32(shape.heads),
    "llama.attention.head_count_kv": u32(shape.headsKv),
    "llama.attention.layer_norm_rms_epsilon": { value: 1e-5, type: valueType.FLOAT32 },
    "llama.rope.freq_base": { value: 10000, type: valueType.FLOAT32 },
    ...donor.tokenizer
  }
}

const chunkBytes = 8 << 20

/**
 * Writes the model to `path` (through a temporary file renamed at the end) and returns the
 * sha256 and size of what was written.
 */
export const writeFile = async (
  spec: Spec,
  name: string,
  donor: Donor,
  path: string
): Promise<{ readonly sha256: string; readonly bytes: number; readonly parameters: number }> => {
  const vocabulary = donor.tokenTypes.length
  const { tensors } = plan(spec, vocabulary, donor.tokenTypes)
  const head = await header(metadata(spec, name, donor, vocabulary), tensors.map((tensor) => tensor.info))
  const digest = createHash("sha256")
  const temporary = `${path}.${process.pid}.${Date.now()}.tmp`
  const file = await open(temporary, "w")
  let written = 0
  try {
    let chunk = Buffer.alloc(chunkBytes)
    let at = 0
    const flush = async () => {
      if (at === 0) return
      const view = chunk.subarray(0, at)
      digest.update(view)
      await file.write(view, 0, at)
      written += at
      at = 0
    }
    const room = async (bytes: number) => {
      if (at + bytes > chunk.length) await flush()
      if (bytes > chunk.length) chunk = Buffer.alloc(bytes)
    }
    const zeros = async (bytes: number) => {
      await room(bytes)
      chunk.fill(0, at, at + bytes)
      at += bytes
    }
    const bytes = Buffer.from(head.bytes.buffer, head.bytes.byteOffset, head.bytes.length)
    await room(bytes.length)
    bytes.copy(chunk, at)
    at += bytes.length
    let offset = 0
    for (const tensor of tensors) {
      const { info } = tensor
      await zeros(pad(offset) - offset)
      offset = pad(offset)
      if (tensor.values !== undefined) {
        const data = Buffer.from(tensor.values.buffer, tensor.values.byteOffset, tensor.values.byteLength)
        await room(data.length)
        data.copy(chunk, at)
        at += data.length
      } else {
        const width = info.dims[0]!
        const rows = elements(info) / width
        const quants = new Int8Array(width)
        const scales = new Uint16Array(width / 32)
        const rowBytes = info.type === GgmlType.Q8_0 ? (width / 32) * 34 : width * 2
        for (let row = 0; row < rows; row++) {
          tensor.fillRow!(row, quants, scales)
          await room(rowBytes)
          if (info.type === GgmlType.Q8_0) {
            for (let block = 0; block < scales.length; block++) {
              const scale = scales[block]!
              chunk[at++] = scale & 0xff
              chunk[at++] = scale >>> 8
              const from = block * 32
              for (let i = from; i < from + 32; i++) chunk[at++] = quants[i]! & 0xff
            }
          } else {
            for (let block = 0; block < scales.length; block++) {
              const scale = fromHalf(scales[block]!)
              const from = block * 32
              for (let i = from; i < from + 32; i++) {
                const half = toHalf(quants[i]! * scale)
                chunk[at++] = half & 0xff
                chunk[at++] = half >>> 8
              }
            }
          }
        }
      }
      offset += tensorBytes(info)
    }
    await zeros(pad(offset) - offset)
    await flush()
    await file.close()
  } catch (error) {
    await file.close().catch(() => undefined)
    await rm(temporary, { force: true })
    throw error
  }
  await rename(temporary, path)
  return {
    sha256: digest.digest("hex"),
    bytes: written,
    parameters: tensors.reduce((sum, tensor) => sum + elements(tensor.info), 0)
  }
}
