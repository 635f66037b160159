/**
 * The weights of a synthetic llama model, generated row by row from seeded streams, and
 * the streaming GGUF writer. Every weight is `q · d`: `q` a uniform int8 from a named
 * xoshiro128** stream, `d` an f16 block scale; Q8_0 stores exactly that, F16 stores the
 * products. Only integer arithmetic and `Math.sqrt` feed the bytes, so every machine
 * writes the same file.
 *
 * The logits are peaked, like a trained model's: each normal token's output row is aligned
 * with the embedding of the token it follows, so greedy's choice wins by several standard
 * deviations of the other logits and batched and one-token evaluation pick the same token.
 * The first `shared` coordinates of the token embeddings and of the output head come from
 * streams that do not depend on the model's shape: a model of width `shared` (the draft)
 * and a wider one (the target) share them, and there row `v` is aligned with the embedding
 * of `v`'s draft predecessor. The target's other coordinates align row `v` with the
 * embedding of its target predecessor, weighted by `output_norm` above the shared part.
 * The target's successors form one cycle through every normal token (its text never
 * loops); the draft's are the same except for a `switched` share of tokens, whose
 * successors are rotated among themselves: that share sets the draft's greedy acceptance.
 * Layers write little into the shared subspace; elsewhere they add context that only
 * perturbs the logits.
 * @since 0.2.0
 */
import type { GGUFTypedMetadata } from "@huggingface/gguf"
import { createHash } from "node:crypto"
import { open, rename, rm } from "node:fs/promises"
import { elements, fromHalf, GgmlType, header, pad, tensorBytes, type TensorInfo, toHalf } from "./gguf.js"
import { hash } from "./random.js"

/** Bumped whenever the bytes written for the same options change. */
export const formatVersion = 3

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
/** The target's successor logit against the draft's (both peaked), set by `output_norm` on the other coordinates. */
const targetStrength = 1.7
/** Share of normal tokens whose draft successor differs from the target's: 1 − greedy acceptance. */
export const switched = 0.25
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

  // the embeddings, kept (built on first use, not for `parameterCount`): output rows copy them
  let tables: { readonly sharedTable: Int8Array; readonly restTable: Int8Array } | undefined
  const embeddings = () => {
    if (tables === undefined) {
      const sharedTable = new Int8Array(vocabulary * shared)
      const restTable = new Int8Array(vocabulary * rest)
      const sharedEmbedding = stream(seed, "token_embd.shared")
      const restEmbedding = stream(seed, `${key}.token_embd.rest`)
      for (let row = 0; row < vocabulary; row++) {
        sharedEmbedding(sharedTable.subarray(row * shared, (row + 1) * shared))
        if (rest > 0) restEmbedding(restTable.subarray(row * rest, (row + 1) * rest))
      }
      tables = { sharedTable, restTable }
    }
    return tables
  }
  const unit = scaleFor(1)
  tensors.push({
    info: { name: "token_embd.weight", dims: [D, vocabulary], type },
    fillRow: (row, quants, scales) => {
      const { restTable, sharedTable } = embeddings()
      quants.set(sharedTable.subarray(row * shared, (row + 1) * shared), 0)
      if (rest > 0) quants.set(restTable.subarray(row * rest, (row + 1) * rest), shared)
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

  // output_norm weighs the coordinates outside the shared subspace so that the aligned row's
  // logit there is `targetStrength` times the shared (draft) one: |e_rest| · g = strength · |e_shared|
  const outputNorm = new Float32Array(D).fill(1)
  if (rest > 0) outputNorm.fill(targetStrength * Math.sqrt(shared / rest), shared)
  tensors.push({ info: { name: "output_norm.weight", dims: [D], type: GgmlType.F32 }, values: outputNorm })

  let maps: ReturnType<typeof successors> | undefined
  const sharedBlocks = shared / 32
  /** Copies an embedding part into a row part and scales it to norm 1. */
  const aligned = (table: Int8Array, width: number, token: number, into: Int8Array, scales: Uint16Array, from: number, to: number) => {
    const source = table.subarray(token * width, (token + 1) * width)
    into.set(source)
    let squares = 0
    for (let i = 0; i < width; i++) squares += source[i]! * source[i]!
    fillScales(scales, from, to, squares === 0 ? 0 : toHalf(1 / Math.sqrt(squares)))
  }
  tensors.push({
    info: { name: "output.weight", dims: [D, vocabulary], type },
    fillRow: (row, quants, scales) => {
      maps ??= successors(seed, vocabulary, tokenTypes)
      const { draftPredecessor, targetPredecessor } = maps
      const { restTable, sharedTable } = embeddings()
      const draftFrom = draftPredecessor[row]!
      if (draftFrom < 0) {
        // unknown, control (BOS, EOS) and byte tokens: a zero row, so greedy never picks them
        quants.fill(0)
        scales.fill(0)
        return
      }
      aligned(sharedTable, shared, draftFrom, quants.subarray(0, shared), scales, 0, sharedBlocks)
      if (rest > 0) aligned(restTable, rest, targetPredecessor[row]!, quants.subarray(shared), scales, sharedBlocks, scales.length)
    }
  })
  return { tensors }
}

/**
 * The successor maps as predecessors per row (−1 for tokens that are never generated): the
 * target's successors are one seeded cycle through the normal tokens, and the draft's the
 * same but for a `switched` share of tokens whose successors are rotated among themselves.
 * They depend on the seed and the tokenizer only, never on the shape.
 */
const successors = (seed: number, vocabulary: number, tokenTypes: ReadonlyArray<number>) => {
  const normal: Array<number> = []
  for (let token = 0; token < vocabulary; token++) if ((tokenTypes[token] ?? 1) === 1) normal.push(token)
  const n = normal.length
  const bytes = new Int8Array(4 * n)
  stream(seed, "successors")(bytes)
  const words = new Uint32Array(bytes.buffer, 0, n)
  // Fisher–Yates with integer draws: the order of the target's cycle
  const order = normal.slice()
  for (let i = n - 1; i > 0; i--) {
    const j = words[i]! % (i + 1)
    const swap = order[i]!
    order[i] = order[j]!
    order[j] = swap
  }
  const targetSuccessor = new Int32Array(vocabulary).fill(-1)
  for (let i = 0; i < n; i++) targetSuccessor[order[i]!] = order[(i + 1) % n]!
  const draftSuccessor = targetSuccessor.slice()
  const choice = new Int8Array(4 * n)
  stream(seed, "switched")(choice)
  const draws = new Uint32Array(choice.buffer, 0, n)
  const threshold = Math.round(switched * 2 ** 32)
  const rotated = normal.filter((_, i) => draws[i]! < threshold)
  for (let i = 0; i < rotated.length; i++) {
    draftSuccessor[rotated[i]!] = targetSuccessor[rotated[(i + 1) % rotated.length]!]!
  }
  const draftPredecessor = new Int32Array(vocabulary).fill(-1)
  const targetPredecessor = new Int32Array(vocabulary).fill(-1)
  for (const token of normal) {
    draftPredecessor[draftSuccessor[token]!] = token
    targetPredecessor[targetSuccessor[token]!] = token
  }
  return { draftPredecessor, targetPredecessor }
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
