/**
 * How a request's sampling fields become node-llama-cpp generation options: temperature
 * (the layer's default when omitted), top-k/top-p, seed, `maxTokens`, the repeat, frequency
 * and presence penalties, the JSON grammar and the stop triggers.
 * @since 0.1.0
 */
import type { CompletionRequest } from "@hasten/core"
import type { Prepared } from "./localPrompt.js"

/**
 * The options of one generation. Penalties are off (`repeatPenalty: false`) unless the
 * request sets one to a non-neutral value; the context shifts only under `contextOverflow: "shift"`.
 */
export const generationOptions = (request: CompletionRequest.CompletionRequest, prepared: Prepared, defaultTemperature: number) => {
  const penalized = (request.repeatPenalty !== undefined && request.repeatPenalty !== 1) ||
    (request.frequencyPenalty !== undefined && request.frequencyPenalty !== 0) ||
    (request.presencePenalty !== undefined && request.presencePenalty !== 0)
  return {
    temperature: request.temperature ?? defaultTemperature,
    ...(request.topK !== undefined ? { topK: request.topK } : {}),
    ...(request.topP !== undefined ? { topP: request.topP } : {}),
    ...(request.seed !== undefined ? { seed: request.seed } : {}),
    ...(request.maxTokens !== undefined ? { maxTokens: request.maxTokens } : {}),
    repeatPenalty: penalized
      ? {
        penalty: request.repeatPenalty ?? 1,
        frequencyPenalty: request.frequencyPenalty ?? 0,
        presencePenalty: request.presencePenalty ?? 0,
        lastTokens: request.penaltyWindow ?? 64
      }
      : false as const,
    ...(prepared.grammar !== undefined ? { grammar: prepared.grammar } : {}),
    ...(prepared.stopTriggers.length > 0 ? { customStopTriggers: prepared.stopTriggers } : {}),
    disableContextShift: prepared.overflow !== "shift"
  }
}
