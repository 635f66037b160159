/**
 * What a request evaluates on a local model: its prompt tokens (the raw `prompt`, the
 * messages through the model's chat template, or the messages as plain text), its stop
 * triggers and its JSON grammar, checked against the context size.
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
}

/** Prepares a request for a sequence of `sequenceSize` tokens; fails when prompt and `maxTokens` do not fit. */
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

  const promptTokens = (request: CompletionRequest.CompletionRequest): { tokens: Array<Token>; stop: Array<string> } => {
    if (request.prompt !== undefined && request.prompt.length > 0) {
      return { tokens: model.tokenize(sanitize(request.prompt), false), stop: [] }
    }
    if (chatWrapper !== undefined) {
      const history: Array<ChatHistoryItem> = request.messages.map((message): ChatHistoryItem =>
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
    return { tokens: model.tokenize(sanitize(request.messages.map((message) => message.content).join("\n")), false), stop: [] }
  }

  const prepare: Prepare = (request, sequenceSize) =>
    Effect.gen(function*() {
      const { stop, tokens } = promptTokens(request)
      const inputTokens = tokens.length + (prependBos ? 1 : 0)
      const needed = inputTokens + (request.maxTokens ?? 1)
      if (needed > sequenceSize) {
        return yield* LlmError.make(
          provider,
          new LlmError.ContextLengthExceeded({
            description: `the prompt has ${inputTokens} tokens${
              request.maxTokens !== undefined ? ` and maxTokens is ${request.maxTokens}` : ""
            }, more than the context size of ${sequenceSize} tokens`
          })
        )
      }
      const grammar = yield* grammarFor(request)
      const prepared: Prepared = { tokens, inputTokens, stopTriggers: [...stop, ...(request.stop ?? []).map(sanitize)], grammar }
      return prepared
    })

  return prepare
})
