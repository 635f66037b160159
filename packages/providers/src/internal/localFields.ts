/**
 * How the local provider treats every request field, and the check `complete`/`stream`
 * run before generating: a field is honoured or refused, never dropped.
 * @since 0.3.0
 */
import { FieldSupport } from "@hasten/core"

/** Every request field on a local model (node-llama-cpp). */
export const fieldSupport: FieldSupport.FieldSupport = {
  model: FieldSupport.identity("the layer serves one model; the id is reported back"),
  messages: FieldSupport.mapped("the model's chat template (`chatTemplate`), or plain text"),
  prompt: FieldSupport.mapped("raw tokens, no chat template"),
  maxTokens: FieldSupport.param("maxTokens"),
  temperature: FieldSupport.param("temperature", "default `defaultTemperature`, 0.8"),
  topP: FieldSupport.param("topP"),
  topK: FieldSupport.param("topK"),
  seed: FieldSupport.param("seed"),
  stop: FieldSupport.mapped("`customStopTriggers`"),
  adapter: FieldSupport.mapped("a context with the LoRA adapter applied (`adapters` option)"),
  responseFormat: FieldSupport.mapped("a JSON grammar (the schema's grammar when one is given)"),
  repeatPenalty: FieldSupport.mapped("`repeatPenalty.penalty`"),
  frequencyPenalty: FieldSupport.mapped("`repeatPenalty.frequencyPenalty`"),
  presencePenalty: FieldSupport.mapped("`repeatPenalty.presencePenalty`"),
  penaltyWindow: FieldSupport.mapped("`repeatPenalty.lastTokens` (default 64)"),
  logprobs: FieldSupport.mapped("log-softmax of the model's logits at each generated position"),
  topLogprobs: FieldSupport.mapped("the most likely tokens at each generated position"),
  contextOverflow: FieldSupport.mapped("`error`, `truncate` or `shift` (default: the layer's `contextOverflow`, else `error`)"),
  providerOptions: FieldSupport.refused("the local provider has no provider-specific options"),
  trial: FieldSupport.identity("cache key only")
}
