/**
 * Writes a tiny LoRA adapter GGUF for stories260K (`output.weight`, rank 2, seeded random
 * weights): enough to change the model's output, so adapter switching can be tested on a
 * real file without committing one.
 */
import * as Fs from "node:fs"

const u32 = (value: number) => {
  const buffer = Buffer.alloc(4)
  buffer.writeUInt32LE(value)
  return buffer
}
const u64 = (value: number) => {
  const buffer = Buffer.alloc(8)
  buffer.writeBigUInt64LE(BigInt(value))
  return buffer
}
const f32 = (value: number) => {
  const buffer = Buffer.alloc(4)
  buffer.writeFloatLE(value)
  return buffer
}
const string = (value: string) => Buffer.concat([u64(Buffer.byteLength(value)), Buffer.from(value)])
const STRING = 8
const FLOAT32 = 6
const kv = (key: string, type: number, value: Buffer) => Buffer.concat([string(key), u32(type), value])

/** Writes the adapter to `path`. `strength` scales the random weights. */
export const writeLoraAdapter = (path: string, options: { readonly seed?: number; readonly strength?: number } = {}): void => {
  const hidden = 64
  const vocabulary = 512
  const rank = 2
  let state = options.seed ?? 42
  const random = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state / 0xffffffff - 0.5
  }
  const strength = options.strength ?? 8
  const tensors = [
    { name: "output.weight.lora_a", dims: [hidden, rank] },
    { name: "output.weight.lora_b", dims: [rank, vocabulary] }
  ].map((tensor) => {
    const count = tensor.dims[0]! * tensor.dims[1]!
    const data = Buffer.alloc(count * 4)
    for (let i = 0; i < count; i++) data.writeFloatLE(random() * strength, i * 4)
    return { ...tensor, data }
  })
  const metadata = [
    kv("general.architecture", STRING, string("llama")),
    kv("general.type", STRING, string("adapter")),
    kv("adapter.type", STRING, string("lora")),
    kv("adapter.lora.alpha", FLOAT32, f32(rank))
  ]
  const alignment = 32
  const pad = (length: number) => (alignment - (length % alignment)) % alignment
  let offset = 0
  const infos: Array<Buffer> = []
  for (const tensor of tensors) {
    infos.push(Buffer.concat([string(tensor.name), u32(tensor.dims.length), ...tensor.dims.map(u64), u32(0), u64(offset)]))
    offset += tensor.data.length + pad(tensor.data.length)
  }
  const header = Buffer.concat([Buffer.from("GGUF"), u32(3), u64(tensors.length), u64(metadata.length), ...metadata, ...infos])
  const parts: Array<Buffer> = [header, Buffer.alloc(pad(header.length))]
  for (const tensor of tensors) parts.push(tensor.data, Buffer.alloc(pad(tensor.data.length)))
  Fs.writeFileSync(path, Buffer.concat(parts))
}
