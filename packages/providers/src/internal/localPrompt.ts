/**
 * What a request evaluates on a local model: its prompt tokens (the raw `prompt`, the
 * messages through the model's chat template, or the messages as plain text), its stop
 * triggers and its JSON grammar, fitted to the context size by the request's
 * `contextOverflow` strategy (`error`, `truncate`, `shift`).
 * @since 0.1.0
 */
import { LlmError } from "@hasten/core"
import type { CompletionRequest } from "@hasten/core"
import { Effect } from "effect"
import type { ChatHistoryItem, ChatWrapper, LlamaGrammar, Token } from "node-llama-cpp"
import * as JsonGrammar from "./jsonGrammar.js"
import type { LoadedModel } from "./loadedModel.js"
import { provider } from "./localErrors.js"

/** A request ready to generate from. */
export interface Prepared {
  readonly tokens: Array<Token>
  /** Prompt tokens evaluated, the BOS token included. */
  readonly inputTokens: number
  readonly stopTriggers: Array<string | ReadonlyArray<string | Token>>
  readonly grammar: LlamaGrammar | undefined
  /** The overflow strategy in force (the request's, else the layer's, else `error`). */
  readonly overflow: CompletionRequest.ContextOverflow
  /** Prompt tokens `truncate` dropped so the prompt fits (0 otherwise). */
  readonly droppedTokens: number
}

/** Prepares a request for a sequence of `sequenceSize` tokens; fails when prompt and `maxTokens` do not fit its strategy. */
export type Prepare = (
  request: CompletionRequest.CompletionRequest,
  sequenceSize: number
) => Effect.Effect<Prepared, LlmError.LlmError>

/** The prompt builder of a loaded model (its chat template chosen by `options.chatTemplate`). */
export const make = Effect.fnUntraced(function*(loaded: LoadedModel) {
  const { bos, model, options, prependBos, sanitize } = loaded
  const { resolveChatWrapper } = yield* Effect.promise(() => import("node-llama-cpp"))
  const chatWrapper: ChatWrapper | undefined = options.chatTemplate === undefined || options.chatTemplate === "auto"
    ? (loaded.hasChatTemplate ? resolveChatWrapper(model) : undefined)
    : options.chatTemplate === "none"
    ? undefined
    : options.chatTemplate
  const grammarFor = JsonGrammar.make(loaded.llama)

  const isRaw = (request: CompletionRequest.CompletionRequest) => request.prompt !== undefined && request.prompt.length > 0

  const promptTokens = (
    request: CompletionRequest.CompletionRequest,
    messages: ReadonlyArray<CompletionRequest.Message> = request.messages
  ): { tokens: Array<Token>; stop: Array<string> } => {
    if (isRaw(request)) {
      return { tokens: model.tokenize(sanitize(request.prompt!), false), stop: [] }
    }
    if (chatWrapper !== undefined) {
      const history: Array<ChatHistoryItem> = messages.map((message): ChatHistoryItem =>
        message.role === "system"
          ? { type: "system", text: sanitize(message.content) }
          : message.role === "user"
          ? { type: "user", text: sanitize(message.content) }
          : { type: "model", response: [sanitize(message.content)] }
      )
      history.push({ type: "model", response: [] })
      const state = chatWrapper.generateContextState({ chatHistory: history })
      const tokens = state.contextText.tokenize(model.tokenizer)
      if (bos !== undefined && tokens[0] === bos) tokens.shift()
      return { tokens, stop: state.stopGenerationTriggers.map((trigger) => trigger.toString()) }
    }
    return { tokens: model.tokenize(sanitize(messages.map((message) => message.content).join("\n")), false), stop: [] }
  }

  const bosCount = prependBos ? 1 : 0

  const exceeded = (request: CompletionRequest.CompletionRequest, inputTokens: number, sequenceSize: number, hint: string) =>
    LlmError.make(
      provider,
      new LlmError.ContextLengthExceeded({
        description: `context_length_exceeded: the prompt has ${inputTokens} tokens${
          request.maxTokens !== undefined ? ` and maxTokens is ${request.maxTokens}` : ""
        }, more than the context size of ${sequenceSize} tokens${hint}`,
        promptTokens: inputTokens,
        contextSize: sequenceSize,
        ...(request.maxTokens !== undefined ? { maxTokens: request.maxTokens } : {})
      })
    )

  /**
   * `truncate`: the prompt within `budget` tokens (BOS included). A raw prompt keeps its
   * last tokens; a chat keeps its system messages and drops the oldest other turns, one at
   * a time, keeping at least the last one. `undefined` when even that does not fit.
   */
  const truncate = (request: CompletionRequest.CompletionRequest, tokens: Array<Token>, stop: Array<string>, budget: number) => {
    if (isRaw(request)) return budget - bosCount >= 1 ? { tokens: tokens.slice(tokens.length - (budget - bosCount)), stop } : undefined
    const turns = request.messages.filter((message) => message.role !== "system")
    for (let drop = 1; drop < turns.length; drop++) {
      const kept = new Set(turns.slice(drop))
      const fitted = promptTokens(request, request.messages.filter((message) => message.role === "system" || kept.has(message)))
      if (fitted.tokens.length + bosCount <= budget) return fitted
    }
    return undefined
  }

  const prepare: Prepare = (request, sequenceSize) =>
    Effect.gen(function*() {
      const overflow = request.contextOverflow ?? options.contextOverflow ?? "error"
      let { stop, tokens } = promptTokens(request)
      let inputTokens = tokens.length + bosCount
      let droppedTokens = 0
      const reserved = request.maxTokens ?? 1
      if (overflow === "shift") {
        // the output may run past the window; the prompt itself must fit with room for a token
        if (inputTokens + 1 > sequenceSize) {
          return yield* exceeded(
            request,
            inputTokens,
            sequenceSize,
            "; contextOverflow: \"shift\" lets the output run past the window, not the prompt: use \"truncate\""
          )
        }
      } else if (inputTokens + reserved > sequenceSize) {
        if (overflow === "error") {
          return yield* exceeded(request, inputTokens, sequenceSize, "; set contextOverflow to \"truncate\" or \"shift\" to fit it")
        }
        const fitted = truncate(request, tokens, stop, sequenceSize - reserved)
        if (fitted === undefined) {
          return yield* exceeded(
            request,
            inputTokens,
            sequenceSize,
            isRaw(request) ? "; maxTokens leaves no room for the prompt" : "; the system prompt and the last turn alone do not fit"
          )
        }
        droppedTokens = inputTokens - (fitted.tokens.length + bosCount)
        tokens = fitted.tokens
        stop = fitted.stop
        inputTokens = tokens.length + bosCount
      }
      const grammar = yield* grammarFor(request)
      const prepared: Prepared = {
        tokens,
        inputTokens,
        stopTriggers: [...stop, ...(request.stop ?? []).map(sanitize)],
        grammar,
        overflow,
        droppedTokens
      }
      return prepared
    })

  return prepare
})
