/**
 * Synthetic llama models at real sizes for timing local inference: deterministic GGUF
 * files with the shapes of the llama2.c TinyStories models (or any other), the Llama 2
 * vocabulary of a donor file, and seeded weights — meaningless text, realistic cost.
 * Their logits are peaked like a trained model's (each token's output row is aligned with
 * the embedding of the token it follows), so batched and one-token greedy evaluation agree.
 * Draft/target pairs share part of their embeddings and output head, and their successors
 * differ on 25% of tokens, so a draft's greedy guesses are accepted about 70–75% of the time.
 * @since 0.2.0
 */
import { createHash } from "node:crypto"
import { createReadStream, existsSync } from "node:fs"
import { mkdir, readFile, rename, stat, writeFile as writeTextFile } from "node:fs/promises"
import { basename, dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { type Donor, formatVersion, parameterCount, type Spec, writeFile } from "./internal/syntheticWeights.js"
import { SyntheticModelError, TestkitError } from "./TestkitError.js"

export { SyntheticModelError, TestkitError } from "./TestkitError.js"

/**
 * A llama model shape. `headsKv` defaults to `heads` (no grouped-query attention) and
 * `contextLength` to 2048. `embedding` and `feedForward` must be multiples of 32 (Q8_0
 * blocks), and `embedding / heads` even (RoPE).
 * @category models @since 0.2.0
 */
export interface Shape {
  readonly embedding: number
  readonly layers: number
  readonly heads: number
  readonly headsKv?: number | undefined
  readonly feedForward: number
  readonly contextLength?: number | undefined
}

/**
 * The llama2.c TinyStories shapes (`15M`, `42M`, `110M`; with the 32,000-token vocabulary
 * and an untied output head they hold 24M, 59M and 134M parameters) and `4M`, the default
 * draft: one layer of width 64, whose cost is almost all its output head.
 * @category models @since 0.2.0
 */
export const shapes = {
  "4M": { embedding: 64, layers: 1, heads: 1, feedForward: 192 },
  "15M": { embedding: 288, layers: 6, heads: 6, feedForward: 768 },
  "42M": { embedding: 512, layers: 8, heads: 8, feedForward: 1376 },
  "110M": { embedding: 768, layers: 12, heads: 12, feedForward: 2048 }
} as const satisfies Record<string, Shape>

/** A shape with its defaults filled in. @category models @since 0.2.0 */
export type ResolvedShape = { readonly [K in keyof Shape]-?: number }

/** A named shape. @category models @since 0.2.0 */
export type ShapeName = keyof typeof shapes

/** Weight type of the matrices (norms are always F32). @category models @since 0.2.0 */
export type Quantization = "Q8_0" | "F16"

/** What a model file is made of. @category models @since 0.2.0 */
export interface Options {
  readonly shape: ShapeName | Shape
  /** Default `Q8_0`. */
  readonly quantization?: Quantization | undefined
  /** Seeds every weight; default 0. */
  readonly seed?: number | undefined
  /**
   * Width of the draft this model can be paired with (the draft's `embedding`): the first
   * `draft` coordinates of the embeddings and output head are the draft's. Default 64 (the
   * `4M` shape); `pair` sets it from its draft.
   */
  readonly draft?: number | undefined
  /** The donor of the tokenizer; default `llama-2-tiny-random.gguf` in `HASTEN_MODELS_DIR` or the nearest `shared/models`. */
  readonly donor?: string | undefined
}

/** Where `ensure` and `pair` keep files. @category models @since 0.2.0 */
export interface CacheOptions {
  /** Default: env `HASTEN_CACHE_DIR`, else `node_modules/.cache/hasten/models` under the cwd. */
  readonly cacheDir?: string | undefined
}

/** A written (or reused) model file. @category models @since 0.2.0 */
export interface ModelFile {
  readonly path: string
  readonly sha256: string
  readonly bytes: number
  readonly parameters: number
  readonly shape: ResolvedShape
  readonly quantization: Quantization
  readonly seed: number
  /** True when `ensure` found the file in the cache with its recorded hash. */
  readonly reused: boolean
  /** Time spent generating (0 when reused). */
  readonly millis: number
}

/** A draft and its target. @category models @since 0.2.0 */
export interface Pair {
  readonly target: ModelFile
  readonly draft: ModelFile
}

/** The donor file's name and its sha256 (the file in `shared/models`). @category models @since 0.2.0 */
export const donorFile = {
  name: "llama-2-tiny-random.gguf",
  sha256: "81f226c62d28ed4a1a9b9fa080fcd9f0cc40e0f9d5680036583ff98fbcd035cb"
} as const

const fail = (description: string): never => {
  throw new TestkitError({ reason: new SyntheticModelError({ description }) })
}

const resolveShape = (shape: ShapeName | Shape): ResolvedShape => {
  const given: Shape | undefined = typeof shape === "string" ? shapes[shape] : shape
  if (given === undefined) return fail(`unknown shape "${String(shape)}" (known: ${Object.keys(shapes).join(", ")})`)
  const resolved = {
    embedding: given.embedding,
    layers: given.layers,
    heads: given.heads,
    headsKv: given.headsKv ?? given.heads,
    feedForward: given.feedForward,
    contextLength: given.contextLength ?? 2048
  }
  for (const [key, value] of Object.entries(resolved)) {
    if (!Number.isInteger(value) || value < 1) fail(`shape.${key} must be a positive integer, got ${value}`)
  }
  if (resolved.embedding % 32 !== 0) fail(`shape.embedding must be a multiple of 32, got ${resolved.embedding}`)
  if (resolved.feedForward % 32 !== 0) fail(`shape.feedForward must be a multiple of 32, got ${resolved.feedForward}`)
  if (resolved.embedding % resolved.heads !== 0 || (resolved.embedding / resolved.heads) % 2 !== 0) {
    fail(`shape.embedding / shape.heads must be an even integer, got ${resolved.embedding} / ${resolved.heads}`)
  }
  if (resolved.heads % resolved.headsKv !== 0) fail(`shape.heads must be a multiple of shape.headsKv`)
  return resolved
}

const toSpec = (options: Options): Spec => {
  const shape = resolveShape(options.shape)
  const draft = options.draft ?? shapes["4M"].embedding
  if (!Number.isInteger(draft) || draft < 32 || draft % 32 !== 0) fail(`draft must be a positive multiple of 32, got ${draft}`)
  const seed = options.seed ?? 0
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) fail(`seed must be an integer in [0, 2^32), got ${seed}`)
  const quantization = options.quantization ?? "Q8_0"
  if (quantization !== "Q8_0" && quantization !== "F16") fail(`quantization must be Q8_0 or F16, got ${String(quantization)}`)
  return { shape, shared: Math.min(draft, shape.embedding), quantization, seed }
}

const shapeLabel = (spec: Spec): string => {
  const { shape } = spec
  const named = Object.entries(shapes).find(([, known]) =>
    known.embedding === shape.embedding && known.layers === shape.layers && known.heads === shape.heads &&
    shape.headsKv === shape.heads && known.feedForward === shape.feedForward && shape.contextLength === 2048
  )
  const base = named !== undefined
    ? named[0]
    : `d${shape.embedding}-l${shape.layers}-h${shape.heads}-kv${shape.headsKv}-f${shape.feedForward}-c${shape.contextLength}`
  return spec.shared === shape.embedding || spec.shared === 64 ? base : `${base}-draft${spec.shared}`
}

/**
 * The file name for the options: shape, quantization, seed and format version, e.g.
 * `hasten-synthetic-15M-Q8_0-seed0-v3.gguf`.
 * @category constructors @since 0.2.0
 */
export const fileName = (options: Options): string => {
  const spec = toSpec(options)
  return `hasten-synthetic-${shapeLabel(spec)}-${spec.quantization}-seed${spec.seed}-v${formatVersion}.gguf`
}

/** The cache folder: `HASTEN_CACHE_DIR`, else `node_modules/.cache/hasten/models` under the cwd. @category constructors @since 0.2.0 */
export const cacheDir = (options: CacheOptions = {}): string =>
  resolve(options.cacheDir ?? process.env.HASTEN_CACHE_DIR ?? join("node_modules", ".cache", "hasten", "models"))

/** Folders to look for the donor in: `HASTEN_MODELS_DIR`, then `shared/models` above the cwd and this module. */
const donorCandidates = (): Array<string> => {
  const folders: Array<string> = []
  const explicit = process.env.HASTEN_MODELS_DIR
  if (explicit !== undefined && explicit.length > 0) folders.push(resolve(explicit))
  for (const start of [process.cwd(), dirname(fileURLToPath(import.meta.url))]) {
    let dir = resolve(start)
    for (;;) {
      const candidate = join(dir, "shared", "models")
      if (!folders.includes(candidate)) folders.push(candidate)
      const parent = dirname(dir)
      if (parent === dir) break
      dir = parent
    }
  }
  return folders.map((folder) => join(folder, donorFile.name))
}

/**
 * The tokenizer donor's path: `HASTEN_MODELS_DIR`, else the nearest `shared/models` above
 * the cwd or this module. Throws a `TestkitError` when it is in neither.
 * @category constructors @since 0.2.0
 */
export const donorPath = (): string => {
  const found = donorCandidates().find((candidate) => existsSync(candidate))
  return found ?? fail(`${donorFile.name} not found (set HASTEN_MODELS_DIR or pass donor; looked in ${donorCandidates().join(", ")})`)
}

const sha256File = (path: string): Promise<string> =>
  new Promise((done, reject) => {
    const digest = createHash("sha256")
    createReadStream(path).on("data", (data) => digest.update(data)).on("error", reject).on("end", () => done(digest.digest("hex")))
  })

const donors = new Map<string, Promise<Donor>>()

/**
 * Reads the donor's tokenizer with `@huggingface/gguf`; the file must be the known one
 * (its sha256 is checked), so every machine writes the same bytes.
 */
const loadDonor = async (path?: string): Promise<Donor> => {
  const found = resolve(path ?? donorPath())
  let donor = donors.get(found)
  if (donor === undefined) {
    donor = (async () => {
      const actual = await sha256File(found)
      if (actual !== donorFile.sha256) fail(`${found} is not the known ${donorFile.name} (sha256 ${actual}, expected ${donorFile.sha256})`)
      const { gguf } = await import("@huggingface/gguf")
      const { typedMetadata } = await gguf(found, { typedMetadata: true, allowLocalFile: true })
      const tokenizer: Donor["tokenizer"] = {}
      for (const [key, entry] of Object.entries(typedMetadata)) {
        if (key.startsWith("tokenizer.")) tokenizer[key] = entry as Donor["tokenizer"][string]
      }
      const tokenTypes = typedMetadata["tokenizer.ggml.token_type"]?.value
      if (!Array.isArray(tokenTypes)) return fail(`${found} has no tokenizer.ggml.token_type`)
      return { tokenizer, tokenTypes: tokenTypes as Array<number> }
    })()
    donor.catch(() => donors.delete(found))
    donors.set(found, donor)
  }
  return donor
}

const toModelFile = (
  spec: Spec,
  path: string,
  written: { sha256: string; bytes: number; parameters: number },
  reused: boolean,
  millis: number
): ModelFile => ({
  path,
  sha256: written.sha256,
  bytes: written.bytes,
  parameters: written.parameters,
  shape: spec.shape,
  quantization: spec.quantization,
  seed: spec.seed,
  reused,
  millis
})

/**
 * Writes the model to `path` (replacing any file there) and a `<path>.sha256` sidecar in
 * `sha256sum` format. The same options give the same bytes on every machine.
 * @category constructors @since 0.2.0
 */
export const write = async (options: Options & { readonly path: string }): Promise<ModelFile> => {
  const spec = toSpec(options)
  const donor = await loadDonor(options.donor)
  const path = resolve(options.path)
  await mkdir(dirname(path), { recursive: true })
  const started = performance.now()
  const written = await writeFile(spec, `hasten-synthetic-${shapeLabel(spec)}`, donor, path)
  const millis = performance.now() - started
  const sidecar = `${path}.sha256`
  await writeTextFile(`${sidecar}.${process.pid}.tmp`, `${written.sha256}  ${basename(path)}\n`)
  await rename(`${sidecar}.${process.pid}.tmp`, sidecar)
  return toModelFile(spec, path, written, false, millis)
}

/**
 * The model's file in the cache folder: reused when it is there and its sha256 matches
 * its sidecar, generated (and recorded) otherwise.
 * @category constructors @since 0.2.0
 */
export const ensure = async (options: Options & CacheOptions): Promise<ModelFile> => {
  const spec = toSpec(options)
  const path = join(cacheDir(options), fileName(options))
  const recorded = await readFile(`${path}.sha256`, "utf8").then((text) => text.split(/\s+/)[0], () => undefined)
  if (recorded !== undefined && existsSync(path)) {
    const actual = await sha256File(path)
    if (actual === recorded) {
      const { size } = await stat(path)
      return toModelFile(spec, path, { sha256: actual, bytes: size, parameters: parameterCount(spec, 32000) }, true, 0)
    }
  }
  return write({ ...options, path })
}

/**
 * A target of the given shape and a draft (default `4M`) that shares its embeddings' and
 * output head's first `draft.embedding` coordinates, both from the cache (see `ensure`).
 * @category constructors @since 0.2.0
 */
export const pair = async (
  options: Omit<Options, "shape" | "draft"> & CacheOptions & {
    readonly target: ShapeName | Shape
    readonly draft?: ShapeName | Shape | undefined
  }
): Promise<Pair> => {
  const draftShape = resolveShape(options.draft ?? "4M")
  const { target: targetShape, draft: _draft, ...common } = options
  const draft = await ensure({ ...common, shape: draftShape, draft: draftShape.embedding })
  const target = await ensure({ ...common, shape: targetShape, draft: draftShape.embedding })
  return { target, draft }
}
