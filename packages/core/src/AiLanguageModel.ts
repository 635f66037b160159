/**
 * Exposes any Hasten `Llm` as the `LanguageModel` service of `effect/ai`, so Effect AI
 * code (`LanguageModel.generateText`, `generateObject`, `streamText`) runs on Hasten
 * providers and through Hasten middleware (cache, rate limits, metrics).
 * Text in, text out: tool calls are not supported and fail with a clear error.
 * @since 0.1.0
 */
import { Duration, Effect, Layer, Result, Stream } from "effect"
import { AiError, LanguageModel, type Prompt, type Response } from "effect/ai"
import type { Completion, FinishReason, Usage } from "./Completion.js"
import * as CompletionRequest from "./CompletionRequest.js"
import { Llm } from "./Llm.js"
import type { LlmError } from "./LlmError.js"

/** Options for {@link make}. @category models @since 0.1.0 */
export interface Options {
  /** The model id sent in every request. */
  readonly model: string
  /** Fields applied to every request (e.g. `{ temperature: 0, maxTokens: 256 }`). */
  readonly defaults?: Omit<CompletionRequest.CompletionRequestInput, "model" | "messages" | "prompt">
}

const finishReason = (reason: FinishReason): Response.FinishReason => {
  switch (reason) {
    case "content_filter":
      return "content-filter"
    case "tool_calls":
      return "tool-calls"
    default:
      return reason
  }
}

const usage = (value: Usage): typeof Response.Usage.Encoded => ({
  inputTokens: {
    total: value.inputTokens,
    uncached: value.inputTokens - (value.cachedInputTokens ?? 0),
    ...(value.cachedInputTokens !== undefined ? { cacheRead: value.cachedInputTokens } : {}),
    ...(value.cacheWriteInputTokens !== undefined ? { cacheWrite: value.cacheWriteInputTokens } : {})
  },
  outputTokens: { total: value.outputTokens, text: value.outputTokens }
})

/**
 * Maps an `LlmError` to the `AiError` reason `effect/ai` callers expect.
 * @category errors @since 0.1.0
 */
export const toAiError = (error: LlmError, method: string): AiError.AiError => {
  const reason = error.reason
  const description = `${error.provider}: ${reason.description}`
  const aiReason = (() => {
    switch (reason._tag) {
      case "RateLimited":
        return reason.scope === "quota"
          ? new AiError.QuotaExhaustedError({})
          : new AiError.RateLimitError(
            reason.retryAfterMillis !== undefined ? { retryAfter: Duration.millis(reason.retryAfterMillis) } : {}
          )
      case "Overloaded":
      case "ServerError":
        return new AiError.InternalProviderError({ description })
      case "Timeout":
      case "Transport":
        return new AiError.NetworkError({ reason: "TransportError", method, url: error.provider, description })
      case "Unauthorized":
        return new AiError.AuthenticationError({ kind: "Unknown", description })
      case "InvalidRequest":
      case "ContextLengthExceeded":
        return new AiError.InvalidRequestError({ description })
      case "BadResponse":
        return new AiError.InvalidResponseError({ description })
    }
  })()
  return AiError.make({ module: "Hasten", method, reason: aiReason })
}

const invalid = (method: string, description: string) =>
  AiError.make({ module: "Hasten", method, reason: new AiError.InvalidUserInputError({ description }) })

const messageText = (message: Prompt.Message, method: string): Effect.Effect<CompletionRequest.Message, AiError.AiError> => {
  if (message.role === "system") return Effect.succeed({ role: "system", content: message.content })
  if (message.role === "tool") return Effect.fail(invalid(method, "tool messages are not supported by the Hasten adapter"))
  const texts: Array<string> = []
  for (const part of message.content) {
    if (part.type === "text") texts.push(part.text)
    else if (part.type === "reasoning") continue
    else return Effect.fail(invalid(method, `${part.type} parts are not supported by the Hasten adapter`))
  }
  return Effect.succeed({ role: message.role, content: texts.join("") })
}

/**
 * Builds the `CompletionRequest` for a `LanguageModel` call.
 * @category constructors @since 0.1.0
 */
export const toRequest = (
  options: Options,
  provider: LanguageModel.ProviderOptions,
  method: string
): Effect.Effect<CompletionRequest.CompletionRequest, AiError.AiError> =>
  Effect.gen(function*() {
    if (provider.tools.length > 0) return yield* invalid(method, "tools are not supported by the Hasten adapter")
    const messages = yield* Effect.forEach(provider.prompt.content, (message) => messageText(message, method))
    const format = provider.responseFormat
    const responseFormat: CompletionRequest.ResponseFormat | undefined = format.type === "json"
      ? {
        type: "json",
        name: format.objectName,
        schema: LanguageModel.defaultCodecTransformer(format.schema as never).jsonSchema as Record<string, unknown>
      }
      : undefined
    return yield* CompletionRequest.make({
      ...options.defaults,
      model: options.model,
      messages,
      ...(responseFormat !== undefined ? { responseFormat } : {})
    }).pipe(Effect.mapError((error) => invalid(method, error.message)))
  })

const textParts = (completion: Completion): Array<Response.PartEncoded> => [
  { type: "text", text: completion.text },
  { type: "finish", reason: finishReason(completion.finishReason), usage: usage(completion.usage) }
]

/**
 * A `LanguageModel` backed by the current `Llm`.
 * @category constructors @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<LanguageModel.LanguageModel, never, Llm> =>
  Effect.gen(function*() {
    const llm = yield* Effect.service(Llm)
    return yield* LanguageModel.make({
      generateText: (provider) =>
        toRequest(options, provider, "generateText").pipe(
          Effect.flatMap((request) => Effect.mapError(llm.complete(request), (error) => toAiError(error, "generateText"))),
          Effect.map(textParts)
        ),
      streamText: (provider) =>
        Stream.unwrap(Effect.map(toRequest(options, provider, "streamText"), (request) => {
          let reason: Response.FinishReason = "unknown"
          let total: Usage = { inputTokens: 0, outputTokens: 0 }
          const deltas = llm.stream(request).pipe(
            Stream.mapError((error) => toAiError(error, "streamText")),
            Stream.filterMap((chunk) => {
              if (chunk.finishReason !== undefined) reason = finishReason(chunk.finishReason)
              if (chunk.usage !== undefined) total = chunk.usage
              return chunk.text.length > 0
                ? Result.succeed<Response.StreamPartEncoded>({ type: "text-delta", id: "0", delta: chunk.text })
                : Result.failVoid
            })
          )
          return Stream.concat(
            Stream.make<Array<Response.StreamPartEncoded>>({ type: "text-start", id: "0" }),
            Stream.concat(
              deltas,
              Stream.suspend(() =>
                Stream.make<Array<Response.StreamPartEncoded>>(
                  { type: "text-end", id: "0" },
                  { type: "finish", reason, usage: usage(total) }
                )
              )
            )
          )
        }))
    })
  })

/**
 * Provides `effect/ai`'s `LanguageModel` from the `Llm` below it.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<LanguageModel.LanguageModel, never, Llm> =>
  Layer.effect(LanguageModel.LanguageModel, make(options))
