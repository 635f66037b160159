/**
 * The local model as `Llm`: `complete` and `stream` generate on a free sequence of the
 * request's context (the base one, or its LoRA adapter's) and queue when all are busy.
 * @since 0.1.0
 */
import { Completion } from "@hasten/core"
import type { CompletionRequest, Llm, LlmError } from "@hasten/core"
import { Effect, Queue, Stream } from "effect"
import * as ModelPool from "../ModelPool.js"
import type { LoadedModel } from "./loadedModel.js"
import { failure, provider } from "./localErrors.js"
import type { Prepare } from "./localPrompt.js"
import * as LoraAdapter from "./loraAdapter.js"
import { generationOptions } from "./samplingOptions.js"

const finishReasonOf = (stopReason: string): Completion.FinishReason => {
  switch (stopReason) {
    case "maxTokens":
      return "length"
    case "eogToken":
    case "stopGenerationTrigger":
    case "customStopTrigger":
      return "stop"
    default:
      return "unknown"
  }
}

/** The `Llm` service and the count of tokens it has generated (for `LocalModel.status`). */
export interface LocalLlm {
  readonly service: Llm.LlmService
  readonly generatedTokens: () => number
}

/** The `Llm` over a loaded model. */
export const make = Effect.fnUntraced(function*(loaded: LoadedModel, prepare: Prepare) {
  const { id } = loaded
  const { LlamaCompletion } = yield* Effect.promise(() => import("node-llama-cpp"))
  const contextFor = LoraAdapter.make(loaded)
  const defaultTemperature = loaded.options.defaultTemperature ?? 0.8
  const modelMemory = { model: id, ...loaded.memory }
  let generatedTokens = 0

  /**
   * Runs one generation on a free sequence of the request's context; `onText` receives
   * each text delta with the tokens generated since the previous one.
   */
  const generate = (
    request: CompletionRequest.CompletionRequest,
    onText: (text: string, tokens: number) => void
  ) =>
    Effect.scoped(Effect.gen(function*() {
      const context = yield* contextFor(request)
      const prepared = yield* prepare(request, context.context.contextSize)
      if (request.maxTokens === 0) return { prepared, outputTokens: 0, stopReason: "maxTokens", text: "", queueWaitMillis: 0 }
      const clock = yield* Effect.clockWith(Effect.succeed)
      const waitStart = clock.currentTimeMillisUnsafe()
      const slot = yield* ModelPool.acquireSlot(context)
      const queueWaitMillis = clock.currentTimeMillisUnsafe() - waitStart
      let outputTokens = 0
      let pendingTokens = 0
      const result = yield* Effect.tryPromise({
        try: (signal) => {
          const completion = new LlamaCompletion({ contextSequence: slot.sequence, autoDisposeSequence: false })
          const run = completion.generateCompletionWithMeta(prepared.tokens, {
            ...generationOptions(request, prepared, defaultTemperature),
            signal,
            onToken: (tokens) => {
              generatedTokens += tokens.length
              outputTokens += tokens.length
              pendingTokens += tokens.length
            },
            onTextChunk: (text) => {
              if (text.length === 0) return
              const tokens = pendingTokens
              pendingTokens = 0
              onText(text, tokens)
            }
          }).finally(() => completion.dispose({ disposeSequence: false }))
          slot.pending = run
          return run
        },
        catch: failure("generation failed")
      })
      if (pendingTokens > 0) onText("", pendingTokens)
      return { prepared, outputTokens, stopReason: result.metadata.stopReason, text: result.response, queueWaitMillis }
    }))

  const complete = Effect.fn("Local.complete")(function*(request: CompletionRequest.CompletionRequest) {
    const clock = yield* Effect.clockWith(Effect.succeed)
    const start = clock.currentTimeMillisUnsafe()
    let firstToken: number | undefined
    const result = yield* generate(request, () => {
      if (firstToken === undefined) firstToken = clock.currentTimeMillisUnsafe()
    })
    const end = clock.currentTimeMillisUnsafe()
    return new Completion.Completion({
      text: result.text,
      finishReason: finishReasonOf(result.stopReason),
      usage: { inputTokens: result.prepared.inputTokens, outputTokens: result.outputTokens },
      model: request.model.length > 0 ? request.model : id,
      provider,
      timing: firstToken === undefined ? { start, end } : { start, firstToken, end },
      // how long the request waited for a free sequence (perf-logger reads it)
      facts: { queueWaitMillis: result.queueWaitMillis, modelMemory }
    })
  })

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.callback<Completion.CompletionChunk, LlmError.LlmError>((queue) =>
      generate(request, (text, tokens) => {
        Queue.offerUnsafe(queue, new Completion.CompletionChunk({ text, tokens }))
      }).pipe(
        Effect.tap((result) =>
          Effect.sync(() => {
            Queue.offerUnsafe(
              queue,
              new Completion.CompletionChunk({
                text: "",
                finishReason: finishReasonOf(result.stopReason),
                usage: { inputTokens: result.prepared.inputTokens, outputTokens: result.outputTokens },
                model: request.model.length > 0 ? request.model : id,
                facts: { queueWaitMillis: result.queueWaitMillis, modelMemory }
              })
            )
            Queue.endUnsafe(queue)
          })
        ),
        Effect.catch((error) => Queue.fail(queue, error)),
        Effect.forkScoped
      )
    )

  const llm: LocalLlm = { service: { name: provider, complete, stream }, generatedTokens: () => generatedTokens }
  return llm
})
