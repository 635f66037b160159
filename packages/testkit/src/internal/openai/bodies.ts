/**
 * Response bodies shared by the routes and by batch lines: usage and a chat completion.
 * @since 0.1.0
 */
import type { Generated } from "../engine/generation.js"

/** OpenAI's `usage` object of a chat completion. */
export const usageOf = (inputTokens: number, outputTokens: number) => ({
  prompt_tokens: inputTokens,
  completion_tokens: outputTokens,
  total_tokens: inputTokens + outputTokens,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 }
})

/** Now in epoch seconds, as `created` fields are. */
export const seconds = () => Math.floor(Date.now() / 1000)

/** The JSON body of a finished chat completion. */
export const chatCompletionBody = (id: string, model: string, input: number, generated: Generated) => ({
  id,
  object: "chat.completion",
  created: seconds(),
  model,
  choices: [{
    index: 0,
    message: { role: "assistant", content: generated.text, refusal: null, annotations: [] },
    logprobs: null,
    finish_reason: generated.finishReason
  }],
  usage: usageOf(input, generated.tokens.length),
  service_tier: "default",
  system_fingerprint: "fp_hasten_sim"
})
