/**
 * What a model call generates: the responder's text cut at stop sequences and at
 * `max_tokens`, as tokens, with the finish reason.
 * @since 0.1.0
 */
import { tokenize } from "../tokens.js"

/** A generated answer, cut at `max_tokens` and stop sequences. */
export interface Generated {
  readonly tokens: ReadonlyArray<string>
  readonly text: string
  readonly finishReason: "stop" | "length"
  readonly stopSequence?: string
}

/** Cuts a responder's text at the first stop sequence and at `maxTokens`. */
export const shape = (raw: string, maxTokens: number | undefined, stop: ReadonlyArray<string> | undefined): Generated => {
  let text = raw
  let stopSequence: string | undefined
  for (const sequence of stop ?? []) {
    if (sequence.length === 0) continue
    const at = text.indexOf(sequence)
    if (at >= 0) {
      text = text.slice(0, at)
      stopSequence = sequence
    }
  }
  let tokens = tokenize(text)
  let finishReason: "stop" | "length" = "stop"
  if (maxTokens !== undefined && tokens.length > maxTokens) {
    tokens = tokens.slice(0, maxTokens)
    finishReason = "length"
    stopSequence = undefined
  }
  return { tokens, text: tokens.join(""), finishReason, ...(stopSequence !== undefined ? { stopSequence } : {}) }
}
