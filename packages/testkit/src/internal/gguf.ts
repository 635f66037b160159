/**
 * The parts of a GGUF v3 file that `@huggingface/gguf` does not write: tensor infos, the
 * aligned header around its serialized metadata, and IEEE half floats.
 * @since 0.2.0
 */
import type { GGUFTypedMetadata } from "@huggingface/gguf"

/** ggml tensor types used here (`ggml_type`). */
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8 } as const
/** A ggml tensor type used here. */
export type GgmlType = typeof GgmlType[keyof typeof GgmlType]

/** Tensor data alignment (`general.alignment` default). */
export const alignment = 32

/** A tensor as GGUF describes it: `dims` in ggml order (`ne[0]`, the contiguous one, first). */
export interface TensorInfo {
  readonly name: string
  readonly dims: ReadonlyArray<number>
  readonly type: GgmlType
}

/** Elements of a tensor. */
export const elements = (info: TensorInfo): number => info.dims.reduce((product, dim) => product * dim, 1)

/** Bytes of a tensor's data (Q8_0: 34 bytes per block of 32). */
export const tensorBytes = (info: TensorInfo): number => {
  const count = elements(info)
  switch (info.type) {
    case GgmlType.F32:
      return count * 4
    case GgmlType.F16:
      return count * 2
    case GgmlType.Q8_0:
      return (count / 32) * 34
  }
}

/** `n` rounded up to a multiple of `to`. */
export const pad = (n: number, to: number = alignment): number => Math.ceil(n / to) * to

/**
 * The header of a GGUF file up to its tensor data: the metadata serialized by
 * `@huggingface/gguf` (without its padding), the tensor infos, then zeros to the alignment.
 * Returns the header and each tensor's offset inside the data section.
 */
export const header = async (
  metadata: Record<string, GGUFTypedMetadata[string]>,
  tensors: ReadonlyArray<TensorInfo>
): Promise<{ readonly bytes: Uint8Array; readonly offsets: ReadonlyArray<number>; readonly dataBytes: number }> => {
  // loaded on first use: importing `@hasten/testkit` for the simulator should not load it
  const { serializeGgufMetadata } = await import("@huggingface/gguf")
  const typed = {
    version: { value: 3, type: 4 },
    tensor_count: { value: BigInt(tensors.length), type: 10 },
    kv_count: { value: BigInt(Object.keys(metadata).length), type: 10 },
    ...metadata
  } as GGUFTypedMetadata
  // alignment 1: no padding after the key-value pairs, so the tensor infos follow them directly
  const head = serializeGgufMetadata(typed, { alignment: 1 })
  const encoder = new TextEncoder()
  const offsets: Array<number> = []
  const infos: Array<Uint8Array> = []
  let offset = 0
  for (const tensor of tensors) {
    const name = encoder.encode(tensor.name)
    const info = new Uint8Array(8 + name.length + 4 + 8 * tensor.dims.length + 4 + 8)
    const view = new DataView(info.buffer)
    let at = 0
    view.setBigUint64(at, BigInt(name.length), true)
    info.set(name, at += 8)
    view.setUint32(at += name.length, tensor.dims.length, true)
    at += 4
    for (const dim of tensor.dims) {
      view.setBigUint64(at, BigInt(dim), true)
      at += 8
    }
    view.setUint32(at, tensor.type, true)
    view.setBigUint64(at + 4, BigInt(offset), true)
    infos.push(info)
    offsets.push(offset)
    offset = pad(offset + tensorBytes(tensor))
  }
  const unpadded = head.length + infos.reduce((sum, info) => sum + info.length, 0)
  const bytes = new Uint8Array(pad(unpadded))
  bytes.set(head, 0)
  let at = head.length
  for (const info of infos) {
    bytes.set(info, at)
    at += info.length
  }
  return { bytes, offsets, dataBytes: offset }
}

const float = new Float32Array(1)
const bits = new Uint32Array(float.buffer)

/** The IEEE binary16 bits nearest to `value` (rounded to float32 first; ties to even). */
export const toHalf = (value: number): number => {
  float[0] = value
  const x = bits[0]!
  const sign = (x >>> 16) & 0x8000
  const exponent = (x >>> 23) & 0xff
  const mantissa = x & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0)
  const e = exponent - 127 + 15
  if (e >= 31) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    const full = mantissa | 0x800000
    const shift = 14 - e
    let half = full >>> shift
    const rest = full & ((1 << shift) - 1)
    const middle = 1 << (shift - 1)
    if (rest > middle || (rest === middle && (half & 1) === 1)) half++
    return sign | half
  }
  let half = (e << 10) | (mantissa >>> 13)
  const rest = mantissa & 0x1fff
  // a carry out of the mantissa moves into the exponent, which is the right rounding
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++
  return sign | half
}

/** The value of IEEE binary16 bits. */
export const fromHalf = (half: number): number => {
  const sign = (half & 0x8000) !== 0 ? -1 : 1
  const exponent = (half >>> 10) & 0x1f
  const mantissa = half & 0x3ff
  if (exponent === 0) return sign * mantissa * 2 ** -24
  if (exponent === 31) return mantissa !== 0 ? NaN : sign * Infinity
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15)
}
