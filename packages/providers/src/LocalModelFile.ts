/**
 * Where a local model file comes from: a path, a name looked up in `HASTEN_MODELS_DIR` or
 * the nearest `shared/models` folder, or an `hf:` URI downloaded into a cache folder.
 * @since 0.1.0
 */
import type { LlmError } from "@hasten/core"
import { Config, Effect, Option } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { errorMessage, failure, invalid } from "./internal/localErrors.js"
import { ancestors, isFile, sha256File } from "./internal/localFiles.js"

/** Where and how to look for a model file. @category models @since 0.1.0 */
export interface ResolveOptions {
  /** A folder searched before `shared/models` (default: env `HASTEN_MODELS_DIR`). */
  readonly modelsDir?: string | undefined
  /** Where `hf:` downloads go (default: env `HASTEN_CACHE_DIR`, else `~/.cache/hasten/models`). */
  readonly cacheDir?: string | undefined
  /** Expected sha256 (hex) of the file; checked after resolving. */
  readonly sha256?: string | undefined
  /** Whether an `hf:` URI may be downloaded when not cached (default true; false = offline). */
  readonly download?: boolean | undefined
  /** Folders to start the upward `shared/models` search from (default: cwd and this module's folder). */
  readonly searchFrom?: ReadonlyArray<string> | undefined
}

const howToProvide = "Provide a model: set HASTEN_MODEL to a .gguf path, put the file in a shared/models folder (or HASTEN_MODELS_DIR), " +
  "or pass an hf: URI (e.g. hf:ggml-org/models/tinyllamas/stories260K.gguf) to download it."

const moduleDir = (): string | undefined => {
  try {
    return Path.dirname(fileURLToPath(import.meta.url))
  } catch {
    return undefined
  }
}

/**
 * Candidate folders for model files: `modelsDir` / `HASTEN_MODELS_DIR`, then every
 * `shared/models` folder found walking up from the cwd and from this module's location
 * (in a fresh clone, `shared/` sits beside the repository).
 * @category models @since 0.1.0
 */
export const modelFolders = (options: ResolveOptions = {}): Array<string> => {
  const folders: Array<string> = []
  const explicit = options.modelsDir ?? process.env.HASTEN_MODELS_DIR
  if (explicit !== undefined && explicit.length > 0) folders.push(Path.resolve(explicit))
  const starts = options.searchFrom ?? [process.cwd(), ...(moduleDir() !== undefined ? [moduleDir()!] : [])]
  for (const start of starts) {
    for (const dir of ancestors(start)) {
      const candidate = Path.join(dir, "shared", "models")
      if (!folders.includes(candidate) && Fs.existsSync(candidate)) folders.push(candidate)
    }
  }
  return folders
}

/**
 * Resolves a model name, path or `hf:` URI to a local file: an existing path as given; a
 * bare name in `HASTEN_MODELS_DIR` or the nearest `shared/models` (`.gguf` optional); an
 * `hf:` URI through node-llama-cpp's `resolveModelFile` into the cache dir. With no name,
 * `HASTEN_MODEL` is used. Fails with an `InvalidRequest` `LlmError` that says how to
 * provide a model.
 * @category constructors @since 0.1.0
 */
export const resolveModelPath = (
  nameOrPath?: string | undefined,
  options: ResolveOptions = {}
): Effect.Effect<string, LlmError.LlmError> =>
  Effect.gen(function*() {
    const fromEnv = yield* Config.option(Config.String("HASTEN_MODEL")).pipe(Effect.orElseSucceed(() => Option.none<string>()))
    const name = nameOrPath ?? Option.getOrUndefined(fromEnv)
    if (name === undefined || name.trim().length === 0) {
      return yield* invalid(`no model given (option \`model\` is empty and HASTEN_MODEL is not set). ${howToProvide}`)
    }
    const resolved = yield* name.startsWith("hf:") || /^https?:\/\//.test(name)
      ? download(name, options)
      : Effect.suspend(() => {
        if (isFile(name)) return Effect.succeed(Path.resolve(name))
        const base = Path.basename(name)
        const names = base.endsWith(".gguf") ? [base] : [base, `${base}.gguf`]
        const folders = modelFolders(options)
        for (const folder of folders) {
          for (const file of names) {
            const candidate = Path.join(folder, file)
            if (isFile(candidate)) return Effect.succeed(candidate)
          }
        }
        return Effect.fail(invalid(
          `model not found: "${name}" (looked for ${names.join(" / ")} as a path and in ${
            folders.length > 0 ? folders.join(", ") : "no shared/models folder (none found above the cwd)"
          }). ${howToProvide}`
        ))
      })
    if (options.sha256 !== undefined) {
      const actual = yield* Effect.tryPromise({ try: () => sha256File(resolved), catch: failure(`could not read ${resolved}`) })
      if (actual.toLowerCase() !== options.sha256.toLowerCase()) {
        return yield* invalid(`sha256 mismatch for ${resolved}: expected ${options.sha256}, got ${actual}`)
      }
    }
    return resolved
  })

const download = (uri: string, options: ResolveOptions): Effect.Effect<string, LlmError.LlmError> =>
  Effect.tryPromise({
    try: async (signal) => {
      const { resolveModelFile } = await import("node-llama-cpp")
      const directory = options.cacheDir ?? process.env.HASTEN_CACHE_DIR ?? Path.join(Os.homedir(), ".cache", "hasten", "models")
      return await resolveModelFile(uri, {
        directory,
        download: options.download === false ? false : "auto",
        cli: process.stderr.isTTY === true,
        signal
      })
    },
    catch: (cause) =>
      invalid(
        `could not resolve ${uri}${options.download === false ? " (downloads disabled)" : ""}: ${errorMessage(cause)}. ${howToProvide}`
      )
  })
