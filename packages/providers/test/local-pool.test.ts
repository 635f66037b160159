import { assert, describe, it } from "@effect/vitest"
import { CompletionRequest, Llm } from "@hasten/core"
import { Local, ModelPool } from "@hasten/providers/local"
import { Effect, Exit, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { writeLoraAdapter } from "./local-lora-fixture.js"

// waits (event-loop turns, not time) for an asynchronous release to finish
const settled = <A>(read: Effect.Effect<A>, done: (value: A) => boolean) =>
  Effect.gen(function*() {
    let value = yield* read
    for (let i = 0; i < 500 && !done(value); i++) {
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      value = yield* read
    }
    return value
  })

const request = (extra: Partial<CompletionRequest.CompletionRequestInput> = {}) =>
  CompletionRequest.makeUnsafe({ model: "stories260K", messages: [], prompt: "Once upon a time", temperature: 0, maxTokens: 8, ...extra })

describe("Local.resolveModelPath", () => {
  it.effect("finds a bare name in the nearest shared/models, with or without .gguf", () =>
    Effect.gen(function*() {
      const withExtension = yield* Local.resolveModelPath("stories260K.gguf")
      const bare = yield* Local.resolveModelPath("stories260K")
      assert.strictEqual(withExtension, bare)
      assert.match(withExtension, /shared[/\\]models[/\\]stories260K\.gguf$/)
      assert.isTrue(Fs.existsSync(withExtension))
    }))

  it.effect("an explicit path wins; HASTEN_MODELS_DIR is searched first", () =>
    Effect.gen(function*() {
      const real = yield* Local.resolveModelPath("stories260K.gguf")
      assert.strictEqual(yield* Local.resolveModelPath(real), real)
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-models-"))
      Fs.symlinkSync(real, Path.join(dir, "mine.gguf"))
      assert.strictEqual(yield* Local.resolveModelPath("mine", { modelsDir: dir }), Path.join(dir, "mine.gguf"))
      Fs.rmSync(dir, { recursive: true })
    }))

  it.effect("a missing model fails with a typed error that says how to provide one", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Local.resolveModelPath("no-such-model.gguf"))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.match(error.message, /model not found: "no-such-model\.gguf"/)
      assert.match(error.message, /HASTEN_MODEL/)
      assert.match(error.message, /shared\/models/)
      assert.match(error.message, /hf:/)
      const nowhere = yield* Effect.flip(Local.resolveModelPath("no-such-model", { searchFrom: [Os.tmpdir()] }))
      assert.match(nowhere.message, /no shared\/models folder/)
    }))

  it.effect("an hf: URI offline (downloads disabled, not cached) fails clearly", () =>
    Effect.gen(function*() {
      const cacheDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-cache-"))
      const error = yield* Effect.flip(
        Local.resolveModelPath("hf:ggml-org/models/tinyllamas/stories260K.gguf", { cacheDir, download: false })
      )
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.match(error.message, /could not resolve hf:ggml-org/)
      assert.match(error.message, /HASTEN_MODEL/)
      Fs.rmSync(cacheDir, { recursive: true })
    }))

  it.effect("checks the sha256 when one is given", () =>
    Effect.gen(function*() {
      const ok = yield* Local.resolveModelPath("stories260K.gguf", {
        sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
      })
      assert.match(ok, /stories260K\.gguf$/)
      const error = yield* Effect.flip(Local.resolveModelPath("stories260K.gguf", { sha256: "00".repeat(32) }))
      assert.match(error.message, /sha256 mismatch/)
    }))

  it.effect("the layer fails to build with the same error when the model is missing", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Layer.build(Local.layer({ model: "missing-model.gguf" })).pipe(Effect.scoped))
      assert.isTrue(Exit.isFailure(exit))
      assert.match(String(Exit.isFailure(exit) ? exit.cause : ""), /model not found/)
    }))
})

describe("ModelPool", () => {
  it.effect("two local layers in one build share one model load and one context", () =>
    Effect.gen(function*() {
      const options = { model: "stories260K.gguf", contextSize: 128 }
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Layer.mergeAll(Local.layerWithPool(options), Local.layerWithPool(options)).pipe(
          Layer.provideMerge(ModelPool.layer())
        ),
        scope
      )
      const pool = context.mapUnsafe.get(ModelPool.ModelPool.key) as ModelPool.ModelPoolService
      const stats = yield* pool.stats
      assert.strictEqual(stats.modelLoads, 1)
      assert.strictEqual(stats.contextLoads, 1)
      yield* Scope.close(scope, Exit.void)
      const after = yield* pool.stats
      assert.strictEqual(after.modelReleases, 1)
      assert.strictEqual(after.contextReleases, 1)
    }))

  it.effect("keeps a released model warm for the idle TTL, then evicts it", () =>
    Effect.gen(function*() {
      const pool = yield* ModelPool.make({ idleTimeToLive: "1 minute" })
      const modelPath = yield* Local.resolveModelPath("stories260K.gguf")
      const key = { modelPath, contextSize: 128, sequences: 1, threads: 1, gpu: false }
      yield* Effect.scoped(pool.context(key))
      let stats = yield* pool.stats
      assert.strictEqual(stats.modelLoads, 1)
      assert.deepStrictEqual(stats.contexts.map((entry) => entry.refCount), [0])
      // a second user within the TTL reuses the warm entries
      yield* Effect.scoped(pool.context(key))
      stats = yield* pool.stats
      assert.strictEqual(stats.modelLoads, 1)
      assert.strictEqual(stats.contextLoads, 1)
      yield* TestClock.adjust("59 seconds")
      assert.strictEqual((yield* pool.stats).contextReleases, 0)
      yield* TestClock.adjust("1 second")
      stats = yield* settled(pool.stats, (stats) => stats.contextReleases === 1)
      assert.strictEqual(stats.contextReleases, 1)
      assert.strictEqual(stats.contexts.length, 0)
      assert.strictEqual(stats.modelReleases, 0)
      yield* TestClock.adjust("1 minute")
      stats = yield* settled(pool.stats, (stats) => stats.modelReleases === 1)
      assert.strictEqual(stats.modelReleases, 1)
      assert.strictEqual(stats.models.length, 0)
    }))

  it.effect("cleanup releases idle entries now and leaves ones in use alone", () =>
    Effect.gen(function*() {
      const pool = yield* ModelPool.make({ idleTimeToLive: "1 hour" })
      const modelPath = yield* Local.resolveModelPath("stories260K.gguf")
      const other = yield* Local.resolveModelPath("TinyStories-656K-Q8_0.gguf")
      const held = yield* Scope.make()
      yield* Scope.provide(held)(pool.context({ modelPath, contextSize: 128, sequences: 1, threads: 1, gpu: false }))
      yield* Effect.scoped(pool.model(other, false))
      assert.strictEqual((yield* pool.stats).modelLoads, 2)
      const released = yield* pool.cleanup
      assert.strictEqual(released, 1)
      const stats = yield* pool.stats
      assert.deepStrictEqual(stats.models.map((entry) => entry.modelPath), [modelPath])
      assert.strictEqual(stats.contexts.length, 1)
      yield* Scope.close(held, Exit.void)
      assert.strictEqual(yield* pool.cleanup, 2)
      assert.strictEqual((yield* pool.stats).models.length, 0)
    }))

  it.effect("contexts are keyed by adapter; a missing adapter file is a clear error and reloads nothing", () =>
    Effect.gen(function*() {
      const pool = yield* ModelPool.make()
      const modelPath = yield* Local.resolveModelPath("stories260K.gguf")
      const key = { modelPath, contextSize: 128, sequences: 1, threads: 1, gpu: false }
      yield* Effect.scoped(pool.context(key))
      const error = yield* Effect.flip(Effect.scoped(pool.context({ ...key, adapter: "/nonexistent/lora.gguf" })))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.match(error.message, /LoRA adapter file not found: \/nonexistent\/lora\.gguf/)
      const stats = yield* pool.stats
      assert.strictEqual(stats.modelLoads, 1)
      assert.strictEqual(stats.adapterLoads, 0)
    }))

  it.effect("a request naming a missing adapter fails clearly and the base model keeps serving", () =>
    Effect.gen(function*() {
      const llm = yield* Llm.Llm
      const error = yield* Effect.flip(llm.complete(request({ adapter: "missing-lora.gguf" })))
      assert.strictEqual(error.reason._tag, "InvalidRequest")
      assert.match(error.message, /LoRA adapter file not found: "missing-lora\.gguf"/)
      const ok = yield* llm.complete(request())
      assert.isTrue(ok.text.startsWith(", there was"))
      assert.strictEqual((yield* ModelPool.stats).modelLoads, 1)
    }).pipe(Effect.provide(Local.layerWithPool({ model: "stories260K", contextSize: 128 }).pipe(Layer.provideMerge(ModelPool.layer())))))

  it.effect("switches LoRA adapters per request on the one loaded base model", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "hasten-lora-"))
      const first = Path.join(dir, "first.gguf")
      const second = Path.join(dir, "second.gguf")
      writeLoraAdapter(first, { seed: 1 })
      writeLoraAdapter(second, { seed: 2 })
      const llm = yield* Llm.Llm
      const base = yield* llm.complete(request({ maxTokens: 12 }))
      assert.isTrue(base.text.startsWith(", there was a little girl named Lily."))
      const adapted = yield* llm.complete(request({ maxTokens: 12, adapter: first }))
      const again = yield* llm.complete(request({ maxTokens: 12, adapter: first }))
      const other = yield* llm.complete(request({ maxTokens: 12, adapter: second }))
      const baseAfter = yield* llm.complete(request({ maxTokens: 12 }))
      assert.notStrictEqual(adapted.text, base.text)
      assert.strictEqual(again.text, adapted.text)
      assert.notStrictEqual(other.text, adapted.text)
      assert.strictEqual(baseAfter.text, base.text)
      const stats = yield* ModelPool.stats
      assert.strictEqual(stats.modelLoads, 1)
      assert.strictEqual(stats.adapterLoads, 2)
      // the base context plus one context per adapter, reused by the repeated request
      assert.strictEqual(stats.contextLoads, 3)
      Fs.rmSync(dir, { recursive: true })
    }).pipe(Effect.provide(Local.layerWithPool({ model: "stories260K", contextSize: 128 }).pipe(Layer.provideMerge(ModelPool.layer())))))
})

describe("entry points", () => {
  const src = Path.resolve(Path.dirname(new URL(import.meta.url).pathname), "../src")
  /** Bare packages a module imports statically at runtime, following relative imports (type-only imports excluded). */
  const runtimeImports = (entry: string): Array<string> => {
    const seen = new Set<string>()
    const packages = new Set<string>()
    const visit = (file: string) => {
      if (seen.has(file)) return
      seen.add(file)
      const text = Fs.readFileSync(file, "utf8")
      for (const match of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+"([^"]+)"/gm)) {
        const specifier = match[1]!
        if (specifier.startsWith(".")) visit(Path.join(Path.dirname(file), specifier.replace(/\.js$/, ".ts")))
        else if (!specifier.startsWith("node:")) {
          packages.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!)
        }
      }
    }
    visit(Path.join(src, entry))
    return [...packages].sort()
  }

  it("local loads node-llama-cpp lazily: importing it needs only effect and core", () => {
    assert.deepStrictEqual(runtimeImports("local.ts"), ["@hasten/core", "effect"])
    assert.match(Fs.readFileSync(Path.join(src, "ModelPool.ts"), "utf8"), /await import\("node-llama-cpp"\)/)
  })
})

describe("ModelPool.defaultFlashAttention", () => {
  it("is on from an embedding width of 512 (the 42M shape and up), off below and when unknown", () => {
    const model = (embedding_length?: number) => ({
      fileInfo: { architectureMetadata: embedding_length === undefined ? {} : { embedding_length } }
    })
    assert.isTrue(ModelPool.defaultFlashAttention(model(512)))
    assert.isTrue(ModelPool.defaultFlashAttention(model(768)))
    assert.isFalse(ModelPool.defaultFlashAttention(model(288)))
    assert.isFalse(ModelPool.defaultFlashAttention(model(64)))
    assert.isFalse(ModelPool.defaultFlashAttention(model()))
  })
})
