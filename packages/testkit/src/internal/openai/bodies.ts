/**
 * Response bodies shared by the routes and by batch lines: usage and a chat completion.
 * @since 0.1.0
 */
import type { Generated } from "../engine/generation.js"
import { hash } from "../random.js"

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

/** What a request asked for in log probabilities: none (`undefined`), or the alternatives per position. */
export type LogprobRequest = { readonly top: number } | undefined

const bytesOf = (token: string): Array<number> => [...Buffer.from(token, "utf8")]

/**
 * A deterministic log probability for `token` at `position`: a function of both, in
 * (-2, 0], so the same answer always carries the same numbers.
 */
export const tokenLogprob = (token: string, position: number): number => -(hash("logprob", token, position) % 2000) / 1000

/**
 * The `top_logprobs` of one position: the generated token first, then `top - 1`
 * alternatives (`<alt1>`, …) each less likely than the one before.
 */
const topOf = (token: string, logprob: number, top: number) =>
  Array.from({ length: top }, (_, index) => {
    const alternative = index === 0 ? token : `<alt${index}>`
    return { token: alternative, logprob: index === 0 ? logprob : logprob - index, bytes: bytesOf(alternative) }
  })

/** A chat choice's `logprobs.content` for `tokens` starting at `position`, OpenAI's shape. */
export const chatLogprobs = (tokens: ReadonlyArray<string>, request: LogprobRequest, position = 0) =>
  request === undefined ? null : {
    content: tokens.map((token, index) => {
      const logprob = tokenLogprob(token, position + index)
      return { token, logprob, bytes: bytesOf(token), top_logprobs: topOf(token, logprob, request.top) }
    }),
    refusal: null
  }

/** A legacy text completion's `logprobs` (`tokens`, `token_logprobs`, `top_logprobs` maps, `text_offset`). */
export const textLogprobs = (tokens: ReadonlyArray<string>, request: LogprobRequest, position = 0, offset = 0) => {
  if (request === undefined) return null
  const textOffset: Array<number> = []
  let at = offset
  for (const token of tokens) {
    textOffset.push(at)
    at += token.length
  }
  const logprobs = tokens.map((token, index) => tokenLogprob(token, position + index))
  return {
    tokens: [...tokens],
    token_logprobs: logprobs,
    top_logprobs: request.top === 0
      ? null
      : tokens.map((token, index) =>
        Object.fromEntries(topOf(token, logprobs[index]!, request.top).map((entry) => [entry.token, entry.logprob]))
      ),
    text_offset: textOffset
  }
}

/** The JSON body of a finished chat completion. */
export const chatCompletionBody = (id: string, model: string, input: number, generated: Generated, logprobs?: LogprobRequest) => ({
  id,
  object: "chat.completion",
  created: seconds(),
  model,
  choices: [{
    index: 0,
    message: { role: "assistant", content: generated.text, refusal: null, annotations: [] },
    logprobs: chatLogprobs(generated.tokens, logprobs),
    finish_reason: generated.finishReason
  }],
  usage: usageOf(input, generated.tokens.length),
  service_tier: "default",
  system_fingerprint: "fp_hasten_sim"
})
