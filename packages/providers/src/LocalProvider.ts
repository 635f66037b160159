/**
 * A local GGUF model (node-llama-cpp, llama.cpp) as Hasten's `Llm`, `Embedder` and
 * `TokenModel`. The model is loaded once through the `ModelPool`; concurrent requests run
 * on the sequences of one context and queue when all are busy.
 *
 * This module assembles the layer; the concepts it re-exports live beside it:
 * `LocalOptions` (settings), `LocalModelFile` (finding the model file) and `LocalModel`
 * (the loaded model as a service). The services themselves are built in `internal/`
 * (`localLlm`, `localEmbedder`, `localTokenModel`, with the prompt, JSON grammar,
 * sampling options and LoRA adapters each in its own file).
 * @since 0.1.0
 */
import { Embedder, Llm, TokenModel } from "@hasten/core"
import type { LlmError } from "@hasten/core"
import { Context, Effect, Layer, Queue } from "effect"
import type * as Scope from "effect/Scope"
import * as LoadedModel from "./internal/loadedModel.js"
import * as LocalEmbedder from "./internal/localEmbedder.js"
import * as LocalLlm from "./internal/localLlm.js"
import * as LocalPrompt from "./internal/localPrompt.js"
import * as LocalTokenModel from "./internal/localTokenModel.js"
import { LocalModel } from "./LocalModel.js"
import type { LocalModelService } from "./LocalModel.js"
import type { Options } from "./LocalOptions.js"
import * as ModelPool from "./ModelPool.js"

/** The loaded local model as a service. @category services @since 0.1.0 */
export { LocalModel } from "./LocalModel.js"
/** The `LocalModel` service's shape and its status. @category models @since 0.1.0 */
export type { LocalModelService, Status } from "./LocalModel.js"
/** Finding a model file: `resolveModelPath`, `modelFolders` and their options. @category models @since 0.1.0 */
export { modelFolders, resolveModelPath } from "./LocalModelFile.js"
/** Where and how to look for a model file. @category models @since 0.1.0 */
export type { ResolveOptions } from "./LocalModelFile.js"
/** Settings of a local model. @category models @since 0.1.0 */
export type { Options } from "./LocalOptions.js"
/**
 * How the local provider treats every request field (the providers README's table):
 * everything maps onto node-llama-cpp except `providerOptions`, which is refused.
 * @category utils @since 0.3.0
 */
export { fieldSupport } from "./internal/localFields.js"

/**
 * Builds the services over a pooled model. Requires a `ModelPool`; {@link layer} provides
 * the default one.
 * @category constructors @since 0.1.0
 */
export const make: (
  options?: Options | undefined
) => Effect.Effect<
  Context.Context<Llm.Llm | Embedder.Embedder | TokenModel.TokenModel | LocalModel>,
  LlmError.LlmError,
  Scope.Scope | ModelPool.ModelPool
> = Effect.fnUntraced(function*(options: Options = {}) {
  const loaded = yield* LoadedModel.load(options)
  const prepare = yield* LocalPrompt.make(loaded)
  // one continuous batch per base context: `Llm`'s greedy requests and `TokenModel`'s greedy runs step together
  const stepper = yield* LocalLlm.makeStepper(loaded)
  const llm = yield* LocalLlm.make(loaded, prepare, stepper)
  const { base, id, model, modelPath, vocabularySize, hasChatTemplate } = loaded

  const localModel: LocalModelService = {
    id,
    modelPath,
    status: Effect.sync(() => ({
      id,
      modelPath,
      contextSize: base.context.contextSize,
      sequences: base.total,
      freeSequences: Queue.sizeUnsafe(base.free),
      trainContextSize: model.trainContextSize,
      vocabularySize,
      hasChatTemplate,
      generatedTokens: llm.generatedTokens(),
      memory: {
        weightsBytes: loaded.memory.weightsBytes,
        kvCacheBytes: loaded.memory.kvCacheBytes,
        computeBytes: loaded.memory.computeBytes
      }
    })),
    countPromptTokens: (request) => Effect.map(prepare(request, Number.MAX_SAFE_INTEGER), (prepared) => prepared.inputTokens)
  }

  return Context.make(Llm.Llm, llm.service).pipe(
    Context.add(Embedder.Embedder, LocalEmbedder.make(loaded)),
    Context.add(TokenModel.TokenModel, LocalTokenModel.make(loaded, prepare, stepper)),
    Context.add(LocalModel, localModel)
  )
})

/**
 * Local model services over a `ModelPool` you provide (share one pool between several
 * layers, or give it your own idle TTL).
 * @category layers @since 0.1.0
 */
export const layerWithPool = (
  options: Options = {}
): Layer.Layer<Llm.Llm | Embedder.Embedder | TokenModel.TokenModel | LocalModel, LlmError.LlmError, ModelPool.ModelPool> =>
  Layer.effectContext(make(options))

/**
 * `Llm` (name `"local"`), `Embedder`, `TokenModel` and `LocalModel` over one GGUF model,
 * loaded once through the default `ModelPool` and released when the layer's scope closes.
 * @category layers @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Llm.Llm | Embedder.Embedder | TokenModel.TokenModel | LocalModel, LlmError.LlmError> =>
  layerWithPool(options).pipe(Layer.provide(ModelPool.layerDefault))
