import { afterAll, assert, describe, it } from "@effect/vitest"
import { SyntheticModel, TestkitError } from "@hasten/testkit"
import { gguf } from "@huggingface/gguf"
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { open } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

const folder = mkdtempSync(join(tmpdir(), "hasten-synthetic-"))
afterAll(() => rmSync(folder, { recursive: true, force: true }))

/** Small enough to write in milliseconds; two layers, grouped-query attention. */
const small: SyntheticModel.Shape = { embedding: 128, layers: 2, heads: 4, headsKv: 2, feedForward: 96, contextLength: 512 }

/** IEEE binary16 at `at`, little-endian. */
const half = (bytes: Buffer, at: number): number => {
  const bits = bytes.readUInt16LE(at)
  const exponent = (bits >>> 10) & 0x1f
  const magnitude = exponent === 0 ? (bits & 0x3ff) * 2 ** -24 : (1 + (bits & 0x3ff) / 1024) * 2 ** (exponent - 15)
  return (bits & 0x8000) !== 0 ? -magnitude : magnitude
}

const parse = (path: string) => gguf(path, { typedMetadata: true, allowLocalFile: true })

/** The bytes of a tensor's data. */
const tensorData = async (path: string, name: string, length: number) => {
  const { tensorInfos, tensorDataOffset } = await parse(path)
  const info = tensorInfos.find((tensor) => tensor.name === name)!
  const file = await open(path)
  const data = Buffer.alloc(length)
  await file.read(data, 0, length, Number(tensorDataOffset + info.offset))
  await file.close()
  return data
}

describe("SyntheticModel.write", () => {
  it("writes a llama GGUF that @huggingface/gguf reads back: hyperparameters, the donor's tokenizer, tensor layout", async () => {
    const path = join(folder, "small.gguf")
    const file = await SyntheticModel.write({ shape: small, seed: 7, path })
    const model = await parse(path)
    const donor = await parse(SyntheticModel.donorPath())
    const metadata = model.typedMetadata
    assert.strictEqual(metadata["general.architecture"]?.value, "llama")
    assert.strictEqual(metadata["general.file_type"]?.value, 7)
    assert.strictEqual(metadata["llama.embedding_length"]?.value, 128)
    assert.strictEqual(metadata["llama.block_count"]?.value, 2)
    assert.strictEqual(metadata["llama.feed_forward_length"]?.value, 96)
    assert.strictEqual(metadata["llama.attention.head_count"]?.value, 4)
    assert.strictEqual(metadata["llama.attention.head_count_kv"]?.value, 2)
    assert.strictEqual(metadata["llama.rope.dimension_count"]?.value, 32)
    assert.strictEqual(metadata["llama.context_length"]?.value, 512)
    assert.strictEqual(metadata["llama.vocab_size"]?.value, 32000)
    const tokenizerKeys = Object.keys(donor.typedMetadata).filter((key) => key.startsWith("tokenizer."))
    assert.isAbove(tokenizerKeys.length, 5)
    for (const key of tokenizerKeys) assert.deepStrictEqual(metadata[key], donor.typedMetadata[key], key)

    const tensors = new Map(model.tensorInfos.map((tensor) => [tensor.name, tensor]))
    assert.strictEqual(tensors.size, 3 + 9 * 2)
    const dims = (name: string) => tensors.get(name)!.shape.map(Number)
    assert.deepStrictEqual(dims("token_embd.weight"), [128, 32000])
    assert.deepStrictEqual(dims("output.weight"), [128, 32000])
    assert.deepStrictEqual(dims("blk.1.attn_q.weight"), [128, 128])
    assert.deepStrictEqual(dims("blk.1.attn_k.weight"), [128, 64])
    assert.deepStrictEqual(dims("blk.1.attn_v.weight"), [128, 64])
    assert.deepStrictEqual(dims("blk.1.ffn_down.weight"), [96, 128])
    assert.deepStrictEqual(dims("blk.1.ffn_gate.weight"), [128, 96])
    assert.strictEqual(tensors.get("blk.0.attn_q.weight")!.dtype, 8) // Q8_0
    assert.strictEqual(tensors.get("blk.0.attn_norm.weight")!.dtype, 0) // F32
    assert.strictEqual(tensors.get("output_norm.weight")!.dtype, 0)
    for (const tensor of model.tensorInfos) assert.strictEqual(Number(tensor.offset) % 32, 0, tensor.name)
    assert.strictEqual(Number(model.tensorDataOffset) % 32, 0)
    assert.strictEqual(readFileSync(path).length, file.bytes)
    assert.strictEqual(readFileSync(`${path}.sha256`, "utf8"), `${file.sha256}  small.gguf\n`)
  })

  it("is deterministic: the same options give the same bytes (pinned; a change needs a new format version)", async () => {
    const first = await SyntheticModel.write({ shape: small, seed: 7, path: join(folder, "a.gguf") })
    const second = await SyntheticModel.write({ shape: small, seed: 7, path: join(folder, "b.gguf") })
    const other = await SyntheticModel.write({ shape: small, seed: 8, path: join(folder, "c.gguf") })
    assert.strictEqual(first.sha256, second.sha256)
    assert.notStrictEqual(first.sha256, other.sha256)
    assert.strictEqual(first.sha256, "653594ea8eb15cb5022da9328b441fb79f0fa6c26180f50d136076b0cb0bb8a2")
  })

  it("writes F16 weights holding the Q8_0 file's values", async () => {
    const q8 = join(folder, "q8.gguf")
    const f16 = join(folder, "f16.gguf")
    await SyntheticModel.write({ shape: small, seed: 3, path: q8 })
    const file = await SyntheticModel.write({ shape: small, seed: 3, quantization: "F16", path: f16 })
    const { typedMetadata, tensorInfos } = await parse(f16)
    assert.strictEqual(typedMetadata["general.file_type"]?.value, 1)
    assert.strictEqual(tensorInfos.find((tensor) => tensor.name === "blk.0.ffn_up.weight")!.dtype, 1)
    // the first Q8_0 block of a weight (f16 scale, 32 int8) against the first 32 F16 values
    const block = await tensorData(q8, "blk.0.ffn_up.weight", 34)
    const halves = await tensorData(f16, "blk.0.ffn_up.weight", 64)
    const scale = half(block, 0)
    for (let i = 0; i < 32; i++) {
      const expected = block.readInt8(2 + i) * scale
      assert.approximately(half(halves, 2 * i), expected, Math.abs(expected) / 1000 + 1e-7)
    }
    assert.isAbove(file.bytes, 2 * file.parameters)
  })

  it("never lets greedy pick unknown, control (BOS, EOS) or byte tokens: their output rows are zero", async () => {
    const path = join(folder, "rows.gguf")
    await SyntheticModel.write({ shape: small, seed: 1, path })
    const rowBytes = (128 / 32) * 34
    const rows = await tensorData(path, "output.weight", 260 * rowBytes)
    for (const token of [0, 1, 2, 3, 258]) {
      assert.isTrue(rows.subarray(token * rowBytes, (token + 1) * rowBytes).every((byte) => byte === 0), `token ${token}`)
    }
    assert.isFalse(rows.subarray(259 * rowBytes, 260 * rowBytes).every((byte) => byte === 0))
  })

  it("fails with a TestkitError naming the field for a bad shape", async () => {
    const error = await SyntheticModel.write({ shape: { ...small, embedding: 100 }, path: join(folder, "bad.gguf") }).then(
      () => undefined,
      (cause: unknown) => cause
    )
    assert.instanceOf(error, TestkitError.TestkitError)
    assert.strictEqual((error as TestkitError.TestkitError).reason._tag, "SyntheticModelError")
    assert.include((error as TestkitError.TestkitError).message, "shape.embedding must be a multiple of 32")
    assert.throws(() => SyntheticModel.fileName({ shape: "7B" as SyntheticModel.ShapeName }), /unknown shape "7B"/)
  })
})

describe("SyntheticModel.ensure", () => {
  it("generates into the cache folder once, reuses the file while its hash matches its sidecar, regenerates otherwise", async () => {
    const cacheDir = join(folder, "cache")
    const first = await SyntheticModel.ensure({ shape: small, cacheDir })
    assert.strictEqual(first.path, join(cacheDir, SyntheticModel.fileName({ shape: small })))
    assert.isFalse(first.reused)
    const second = await SyntheticModel.ensure({ shape: small, cacheDir })
    assert.isTrue(second.reused)
    assert.strictEqual(second.sha256, first.sha256)
    assert.strictEqual(second.bytes, first.bytes)
    assert.strictEqual(second.parameters, first.parameters)
    const bytes = readFileSync(first.path)
    bytes[bytes.length - 40] ^= 1
    writeFileSync(first.path, bytes)
    const third = await SyntheticModel.ensure({ shape: small, cacheDir })
    assert.isFalse(third.reused)
    assert.strictEqual(third.sha256, first.sha256)
  })

  it("names files by shape, quantization, seed and format version", () => {
    assert.strictEqual(SyntheticModel.fileName({ shape: "15M" }), "hasten-synthetic-15M-Q8_0-seed0-v3.gguf")
    assert.strictEqual(
      SyntheticModel.fileName({ shape: "110M", quantization: "F16", seed: 3 }),
      "hasten-synthetic-110M-F16-seed3-v3.gguf"
    )
    assert.strictEqual(
      SyntheticModel.fileName({ shape: small, draft: 32 }),
      "hasten-synthetic-d128-l2-h4-kv2-f96-c512-draft32-Q8_0-seed0-v3.gguf"
    )
  })
})

describe("SyntheticModel with node-llama-cpp (15M)", () => {
  const cacheDir = join(folder, "llama")
  const load = async () => {
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error })
    const { target, draft } = await SyntheticModel.pair({ target: "15M", cacheDir })
    return { llama, target, draft }
  }

  it("loads, tokenizes with the Llama 2 vocabulary and takes greedy steps that never end the text", { timeout: 60_000 }, async () => {
    const { llama, target } = await load()
    assert.strictEqual(target.parameters, 24_407_712)
    // every machine writes the same bytes
    assert.strictEqual(target.sha256, "33ba56b4c4c87e8692b70537a6e20ed9d5d2779d06c5716cf4f95fa8ec60b7e9")
    const model = await llama.loadModel({ modelPath: target.path, gpuLayers: 0 })
    try {
      const prompt = model.tokenize("Once upon a time")
      assert.deepStrictEqual(prompt, [9038, 2501, 263, 931] as Array<Token>)
      const context = await model.createContext({ contextSize: 256, threads: 1 })
      const tokens: Array<Token> = []
      for await (const token of context.getSequence().evaluate([model.tokens.bos!, ...prompt], { temperature: 0 })) {
        tokens.push(token)
        if (tokens.length === 64) break
      }
      assert.strictEqual(tokens.length, 64)
      assert.isTrue(tokens.every((token) => token > 258 && !model.isEogToken(token)))
      assert.isAbove(new Set(tokens).size, 32) // it does not loop on a few tokens
      await context.dispose()
    } finally {
      await model.dispose()
    }
  })

  it("pairs a draft that agrees with the target's greedy next token most of the time, not always; the target's logits are peaked", {
    timeout: 60_000
  }, async () => {
    const { llama, target, draft } = await load()
    const targetModel = await llama.loadModel({ modelPath: target.path, gpuLayers: 0 })
    const draftModel = await llama.loadModel({ modelPath: draft.path, gpuLayers: 0 })
    try {
      const input = [targetModel.tokens.bos!, ...targetModel.tokenize("Once upon a time, there was")]
      const targetContext = await targetModel.createContext({ contextSize: 256, threads: 1 })
      const text: Array<Token> = []
      for await (const token of targetContext.getSequence().evaluate(input, { temperature: 0 })) {
        text.push(token)
        if (text.length === 96) break
      }
      const draftContext = await draftModel.createContext({ contextSize: 256, threads: 1 })
      const along = [...input, ...text.slice(0, -1)]
      const batched = async (context: typeof draftContext) => {
        const results = await context.getSequence().controlledEvaluate(
          along.map((token, index) =>
            index >= input.length - 1 ? [token, { generateNext: { token: true, options: { temperature: 0 } } }] : token
          )
        )
        return results.slice(input.length - 1).map((result) => result?.next?.token)
      }
      const guesses = await batched(draftContext)
      const acceptance = guesses.filter((token, index) => token === text[index]).length / text.length
      assert.isAbove(acceptance, 0.6)
      assert.isBelow(acceptance, 0.8)
      // peaked logits: the target evaluating its own text in one batch picks the same greedy tokens
      const again = await targetModel.createContext({ contextSize: 256, threads: 1 })
      assert.deepStrictEqual(await batched(again), text)
      await again.dispose()
      await targetContext.dispose()
      await draftContext.dispose()
    } finally {
      await targetModel.dispose()
      await draftModel.dispose()
    }
  })
})
