/**
 * The canonical request key: a stable SHA-256 over every field that changes a
 * completion's output. Two requests share a key exactly when a deterministic backend
 * would answer them the same way. An omitted temperature is not 0.
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import type { CompletionRequest } from "./CompletionRequest.js"

/** What besides the request goes into a key. @category models @since 0.1.0 */
export interface KeyOptions {
  /** The provider name (`Llm.name`): the same model id on two providers differs. */
  readonly provider: string
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
  providerOptions: request.providerOptions,
  trial: request.trial
})

/**
 * The request key: hex SHA-256 of `{ v, namespace, provider, request fields }`.
 * @category constructors @since 0.1.0
 */
export const make = (request: CompletionRequest, options: KeyOptions): string =>
  createHash("sha256")
    .update(canonicalJson({
      v: options.version ?? 1,
      namespace: options.namespace ?? "default",
      provider: options.provider,
      request: keyFields(request)
    }))
    .digest("hex")

/**
 * Whether a request is deterministic: temperature 0, or a seed given. Only these are
 * cached by default.
 * @category predicates @since 0.1.0
 */
export const isDeterministic = (request: CompletionRequest): boolean =>
  request.temperature === 0 || request.seed !== undefined
