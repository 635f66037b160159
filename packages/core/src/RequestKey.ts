/**
 * The canonical request key: a stable SHA-256 over every field that changes a
 * completion's output. Two requests share a key exactly when a deterministic backend
 * would answer them the same way. An omitted temperature is not 0.
 * @since 0.1.0
 */
import { hash } from "node:crypto"
import type { CompletionRequest } from "./CompletionRequest.js"

/** What besides the request goes into a key. @category models @since 0.1.0 */
export interface KeyOptions {
  /** The provider name (`Llm.name`): the same model id on two providers differs. */
  readonly provider: string
  /**
   * The endpoint's identity (`Llm.endpoint`: a base URL, a deployment): two compatible
   * servers serving the same model id under one provider name differ. Omitted: not part
   * of the key (keys written before endpoints were known stay valid).
   */
  readonly endpoint?: string | undefined
  /** Separates users of one store (an app, an experiment). Default `"default"`. */
  readonly namespace?: string
  /** Bump to invalidate every entry written under an older version. Default `1`. */
  readonly version?: number
}

/**
 * Serializes a JSON value with object keys sorted at every depth and `undefined`
 * members dropped, so equal values serialize identically whatever their key order.
 * @category utils @since 0.1.0
 */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) return JSON.stringify(String(value))
    return JSON.stringify(value) ?? "null"
  }
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? "null" : canonicalJson(item))).join(",")}]`
  const entries = Object.keys(value)
    .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
  return `{${entries.join(",")}}`
}

/** The output-affecting fields of a request, in a fixed, explicit list. @category utils @since 0.1.0 */
export const keyFields = (request: CompletionRequest): Record<string, unknown> => ({
  model: request.model,
  messages: request.messages.map((message) => ({ role: message.role, content: message.content })),
  prompt: request.prompt,
  maxTokens: request.maxTokens,
  // `temperature` absent and `temperature: 0` must differ: record presence explicitly.
  temperature: request.temperature === undefined ? { default: true } : { value: request.temperature },
  topP: request.topP,
  topK: request.topK,
  seed: request.seed,
  stop: request.stop,
  adapter: request.adapter,
  responseFormat: request.responseFormat,
  repeatPenalty: request.repeatPenalty,
  frequencyPenalty: request.frequencyPenalty,
  presencePenalty: request.presencePenalty,
  penaltyWindow: request.penaltyWindow,
  // `logprobs: false` asks for the same output as no `logprobs`
  logprobs: request.logprobs === true ? true : undefined,
  topLogprobs: request.topLogprobs,
  contextOverflow: request.contextOverflow,
  providerOptions: request.providerOptions,
  trial: request.trial
})

const json = JSON.stringify

/**
 * The canonical text a key hashes: exactly `canonicalJson({ v, endpoint, namespace,
 * provider, request: keyFields(request) })`, written directly in its (sorted) field order because
 * the cache computes it on every hit. A test pins it to the generic form.
 * @category utils @since 0.1.0
 */
export const keyText = (request: CompletionRequest, options: KeyOptions): string => {
  let out = options.endpoint === undefined ? "{" : `{"endpoint":${json(options.endpoint)},`
  out += `"namespace":${json(options.namespace ?? "default")},"provider":${json(options.provider)},"request":{`
  let first = true
  const field = (name: string, value: string | undefined) => {
    if (value === undefined) return
    out += first ? `"${name}":${value}` : `,"${name}":${value}`
    first = false
  }
  const number = (value: number | undefined) => (value === undefined ? undefined : canonicalJson(value))
  field("adapter", request.adapter === undefined ? undefined : json(request.adapter))
  field("contextOverflow", request.contextOverflow === undefined ? undefined : json(request.contextOverflow))
  field("frequencyPenalty", number(request.frequencyPenalty))
  field("logprobs", request.logprobs === true ? "true" : undefined)
  field("maxTokens", number(request.maxTokens))
  let messages = "["
  for (let i = 0; i < request.messages.length; i++) {
    const message = request.messages[i]!
    messages += `${i === 0 ? "" : ","}{"content":${json(message.content)},"role":${json(message.role)}}`
  }
  field("messages", messages + "]")
  field("model", json(request.model))
  field("penaltyWindow", number(request.penaltyWindow))
  field("presencePenalty", number(request.presencePenalty))
  field("prompt", request.prompt === undefined ? undefined : json(request.prompt))
  field("providerOptions", request.providerOptions === undefined ? undefined : canonicalJson(request.providerOptions))
  field("repeatPenalty", number(request.repeatPenalty))
  field("responseFormat", request.responseFormat === undefined ? undefined : canonicalJson(request.responseFormat))
  field("seed", number(request.seed))
  field("stop", request.stop === undefined ? undefined : canonicalJson(request.stop))
  field("temperature", request.temperature === undefined ? `{"default":true}` : `{"value":${canonicalJson(request.temperature)}}`)
  field("topK", number(request.topK))
  field("topLogprobs", number(request.topLogprobs))
  field("topP", number(request.topP))
  field("trial", number(request.trial))
  return `${out}},"v":${canonicalJson(options.version ?? 1)}}`
}

/**
 * The request key: hex SHA-256 of `{ v, endpoint, namespace, provider, request fields }` in
 * canonical JSON (see {@link keyText}).
 * @category constructors @since 0.1.0
 */
export const make = (request: CompletionRequest, options: KeyOptions): string => hash("sha256", keyText(request, options), "hex")

/**
 * Whether a request is deterministic: temperature 0, or a seed given. Only these are
 * cached by default.
 * @category predicates @since 0.1.0
 */
export const isDeterministic = (request: CompletionRequest): boolean => request.temperature === 0 || request.seed !== undefined
