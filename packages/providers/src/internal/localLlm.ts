/**
 * The local model as `Llm`: `complete` and `stream` generate on a free sequence of the
 * request's context (the base one, or its LoRA adapter's) and queue when all are busy.
 * @since 0.1.0
 */
import { Completion, FieldSupport, LlmError } from "@hasten/core"
import type { CompletionRequest, Facts, Llm } from "@hasten/core"
import { Effect, Queue, Stream } from "effect"
import type { LlamaContext, LlamaContextSequence, Token } from "node-llama-cpp"
import * as ModelPool from "../ModelPool.js"
import * as BatchStepper from "./batchStepper.js"
import type { LoadedModel } from "./loadedModel.js"
import { failure, provider } from "./localErrors.js"
import { fieldSupport } from "./localFields.js"
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

/**
 * Log probabilities of `generated` after `prefix` (BOS included when the model uses one):
 * the sequence is cleared and `prefix + generated` evaluated in one pass, with the raw
 * logits at every position that predicts a generated token, so each entry is the exact
 * log-softmax of the model's logits (temperature 1, before any sampling option).
 */
export const logprobsOf = async (
  loaded: LoadedModel,
  sequence: LlamaContextSequence,
  prefix: ReadonlyArray<Token>,
  generated: ReadonlyArray<Token>,
  top: number
): Promise<Array<Completion.TokenLogprob>> => {
  if (generated.length === 0) return []
  await sequence.clearHistory()
  const input = [...prefix, ...generated.slice(0, -1)]
  const first = prefix.length - 1
  const results = await sequence.controlledEvaluate(
    input.map((token, index) => index >= first ? [token, { generateNext: { logits: true } }] as const : token)
  )
  const text = (token: Token, index: number) =>
    loaded.model.detokenize([token], false, index === 0 ? prefix.slice(-4) : generated.slice(Math.max(0, index - 4), index))
  const entry = (token: Token, logprob: number, index: number) => {
    const piece = text(token, index)
    return { token: piece, logprob, bytes: [...Buffer.from(piece, "utf8")] }
  }
  return generated.map((token, index) => {
    const logits = results[first + index]?.next?.logits
    if (logits === undefined) throw new Error(`no logits at generated position ${index}`)
    let max = -Infinity
    for (const value of logits.values()) if (value > max) max = value
    let sum = 0
    for (const value of logits.values()) sum += Math.exp(value - max)
    const normalizer = max + Math.log(sum)
    const chosen = entry(token, (logits.get(token) ?? -Infinity) - normalizer, index)
    if (top === 0) return chosen
    const best = [...logits.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
    return { ...chosen, topLogprobs: best.map(([alternative, logit]) => entry(alternative, logit - normalizer, index)) }
  })
}

/** The `Llm` service and the count of tokens it has generated (for `LocalModel.status`). */
export interface LocalLlm {
  readonly service: Llm.LlmService
  readonly generatedTokens: () => number
}

/** What a generation reports in `facts`: the queue wait, and what the overflow strategy did. */
const factsOf = (
  result: {
    readonly queueWaitMillis: number
    readonly prepared: { readonly droppedTokens: number; readonly overflow: string; readonly inputTokens: number }
    readonly outputTokens: number
    readonly contextSize: number
  }
): Facts.Facts => ({
  queueWaitMillis: result.queueWaitMillis,
  ...(result.prepared.droppedTokens > 0 ? { droppedPromptTokens: result.prepared.droppedTokens } : {}),
  ...(result.prepared.overflow === "shift"
    ? { contextShifted: result.prepared.inputTokens + result.outputTokens > result.contextSize }
    : {})
})

/** The engine of each live context, and how many `Local` layers use it. */
const engines = new WeakMap<LlamaContext, { readonly stepper: BatchStepper.Stepper; users: number }>()

/**
 * The continuous batch of the base context (`leanGreedy`, default on), shared by the `Llm`'s
 * greedy requests and the `TokenModel`'s greedy runs, and by every `Local` layer on the same
 * pooled context (so their greedy work steps together); `undefined` when off or when this
 * node-llama-cpp lacks an internal it needs. Freed when its last layer's scope closes.
 */
export const makeStepper = Effect.fnUntraced(function*(loaded: LoadedModel) {
  if (loaded.options.leanGreedy === false) return undefined
  const context = loaded.base.context
  const locks = yield* Effect.promise(() => import("lifecycle-utils"))
  return yield* Effect.acquireRelease(
    Effect.sync(() => {
      let engine = engines.get(context)
      if (engine === undefined) {
        const stepper = BatchStepper.make(context, locks)
        if (stepper === undefined) return undefined
        engine = { stepper, users: 0 }
        engines.set(context, engine)
      }
      engine.users++
      return engine.stepper
    }),
    (stepper) =>
      Effect.sync(() => {
        const engine = engines.get(context)
        if (stepper === undefined || engine?.stepper !== stepper) return
        engine.users--
        if (engine.users === 0) {
          engines.delete(context)
          stepper.dispose()
        }
      })
  )
})

/** The `Llm` over a loaded model, its greedy requests on `stepper` (see {@link makeStepper}). */
export const make = Effect.fnUntraced(function*(loaded: LoadedModel, prepare: Prepare, stepper: BatchStepper.Stepper | undefined) {
  const { id } = loaded
  const { LlamaCompletion } = yield* Effect.promise(() => import("node-llama-cpp"))
  const contextFor = LoraAdapter.make(loaded)
  const defaultTemperature = loaded.options.defaultTemperature ?? 0.8
  const modelMemory = { model: id, ...loaded.memory }
  let generatedCount = 0

  /**
   * Whether a request can run in the stepper: greedy, penalties (if any) that only lower a
   * repeated token's value, and nothing only `LlamaCompletion`'s own sampling does.
   */
  const leanEligible = (
    request: CompletionRequest.CompletionRequest,
    prepared: { readonly grammar: unknown; readonly overflow: string },
    options: ReturnType<typeof generationOptions>
  ) =>
    stepper !== undefined && options.temperature === 0 &&
    (options.repeatPenalty === false || BatchStepper.penaltiesSupported(options.repeatPenalty)) &&
    prepared.grammar === undefined &&
    prepared.overflow !== "shift" && options.disableContextShift && request.logprobs !== true &&
    (request.adapter === undefined || request.adapter.length === 0)

  /**
   * Runs one generation on a free sequence of the request's context; `onText` receives
   * each text delta with the tokens generated since the previous one.
   */
  const generate = (
    request: CompletionRequest.CompletionRequest,
    onText: (text: string, tokens: number) => void
  ) =>
    Effect.scoped(Effect.gen(function*() {
      yield* FieldSupport.check(provider, fieldSupport, request)
      if (request.logprobs === true && (request.contextOverflow ?? loaded.options.contextOverflow) === "shift") {
        return yield* LlmError.unsupportedField(
          provider,
          "logprobs",
          "log probabilities need the prompt and the output in one context window, which contextOverflow: \"shift\" gives up"
        )
      }
      const context = yield* contextFor(request)
      const contextSize = context.context.contextSize
      const prepared = yield* prepare(request, contextSize)
      if (request.maxTokens === 0) {
        return {
          prepared,
          outputTokens: 0,
          stopReason: "maxTokens",
          text: "",
          queueWaitMillis: 0,
          logprobs: request.logprobs === true ? [] : undefined,
          contextSize
        }
      }
      const clock = yield* Effect.clockWith(Effect.succeed)
      const waitStart = clock.currentTimeMillisUnsafe()
      const slot = yield* ModelPool.acquireSlot(context)
      const queueWaitMillis = clock.currentTimeMillisUnsafe() - waitStart
      let outputTokens = 0
      let pendingTokens = 0
      const generatedTokens: Array<Token> = []
      const options = generationOptions(request, prepared, defaultTemperature)
      const lean = context === loaded.base && leanEligible(request, prepared, options)
      const result = yield* Effect.tryPromise({
        try: (signal) => {
          const run = (async () => {
            const contextSequence = (lean ? await stepper!.lean(slot.sequence) : undefined) ?? slot.sequence
            const completion = new LlamaCompletion({ contextSequence, autoDisposeSequence: false })
            return completion.generateCompletionWithMeta(prepared.tokens, {
              ...options,
              signal,
              onToken: (tokens) => {
                if (request.logprobs === true) { for (const token of tokens) generatedTokens.push(token) }
                generatedCount += tokens.length
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
          })()
          slot.pending = run
          return run
        },
        catch: failure("generation failed")
      })
      if (pendingTokens > 0) onText("", pendingTokens)
      let logprobs: Array<Completion.TokenLogprob> | undefined
      if (request.logprobs === true) {
        const prefix = loaded.prependBos && loaded.bos !== undefined ? [loaded.bos, ...prepared.tokens] : prepared.tokens
        logprobs = yield* Effect.tryPromise({
          try: () => {
            const run = logprobsOf(loaded, slot.sequence, prefix, generatedTokens, request.topLogprobs ?? 0)
            slot.pending = run
            return run
          },
          catch: failure("computing logprobs failed")
        })
      }
      return {
        prepared,
        outputTokens,
        stopReason: result.metadata.stopReason,
        text: result.response,
        queueWaitMillis,
        logprobs,
        contextSize
      }
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
      facts: { ...factsOf(result), modelMemory },
      ...(result.logprobs !== undefined ? { logprobs: result.logprobs } : {})
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
                facts: { ...factsOf(result), modelMemory },
                // computed once the output is known: all on the last chunk
                ...(result.logprobs !== undefined ? { logprobs: result.logprobs } : {})
              })
            )
            Queue.endUnsafe(queue)
          })
        ),
        Effect.catch((error) => Queue.fail(queue, error)),
        Effect.forkScoped
      )
    )

  const llm: LocalLlm = {
    service: { name: provider, complete, stream, endpoint: `local:${loaded.id}` },
    generatedTokens: () => generatedCount
  }
  return llm
})
