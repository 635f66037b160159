/**
 * Strict decoding of OpenAI request bodies (`/v1/chat/completions`, `/v1/completions`,
 * `/v1/embeddings`): every field is checked as OpenAI checks it (types, ranges, `n`, `stop`
 * ≤ 4, `logit_bias`, `response_format`, `stream_options` only with `stream`), and a field the
 * served model cannot honour is a 400 whose `param` names it, never silently dropped.
 * Hand-written rather than a `Schema` decode: it runs on every request and answers with
 * OpenAI's own messages and codes.
 * @since 0.1.0
 */
import type { CompletionRequest } from "@hasten/core"
import { HttpError } from "./ServerError.js"

/**
 * What a served model can honour beyond the common fields. A request field outside these is
 * a 400 naming it.
 * @category models @since 0.1.0
 */
export interface Capabilities {
  /** llama.cpp-style extensions: `top_k`, `repeat_penalty`, `repeat_last_n` (local models). */
  readonly samplingExtensions: boolean
  /** OpenAI fields forwarded verbatim to an OpenAI-compatible upstream (`logit_bias`, `user`). */
  readonly passthrough: ReadonlySet<string>
  /**
   * Token log-probabilities (`logprobs`, `top_logprobs`). No backend reports them yet: when
   * core's `Completion` carries them, set this for the providers that fill them and the
   * decoded call's `logprobs` reaches the request (see {@link LogprobsRequest}).
   */
  readonly logprobs: boolean
  /** Tool calling (`tools`, `tool_choice`, tool messages). Not supported by any backend yet. */
  readonly tools: boolean
  /** `/v1/embeddings` for this model. */
  readonly embeddings: boolean
  /** Common OpenAI fields the backend cannot honour (Anthropic: `seed`, `frequency_penalty`, …): set ⇒ 400 naming them. */
  readonly unsupported: ReadonlySet<string>
}

/** A local model: extensions honoured, nothing passed through. @category models @since 0.1.0 */
export const localCapabilities: Capabilities = {
  samplingExtensions: true,
  passthrough: new Set(),
  logprobs: true,
  tools: false,
  embeddings: true,
  unsupported: new Set()
}

/**
 * An OpenAI-compatible upstream: `logit_bias` and `user` are forwarded. Also the default
 * for a served `Llm` that declares nothing, so `logprobs` is refused (an arbitrary `Llm` may
 * ignore it); the gateway serves OpenAI upstreams with {@link openAiUpstreamCapabilities}.
 * @category models @since 0.1.0
 */
export const upstreamCapabilities: Capabilities = {
  samplingExtensions: false,
  passthrough: new Set(["logit_bias", "user"]),
  logprobs: false,
  tools: false,
  embeddings: false,
  unsupported: new Set()
}

/** An upstream through `@hasten/providers`' OpenAI provider, which requests and parses log-probabilities. @category models @since 0.3.0 */
export const openAiUpstreamCapabilities: Capabilities = { ...upstreamCapabilities, logprobs: true }

/** Anthropic through its SDK: no seed, penalties or logit bias. @category models @since 0.1.0 */
export const anthropicCapabilities: Capabilities = {
  samplingExtensions: false,
  passthrough: new Set(),
  logprobs: false,
  tools: false,
  embeddings: false,
  unsupported: new Set(["seed", "frequency_penalty", "presence_penalty"])
}

/**
 * What several backends behind one id (a router) can all honour.
 * @category models @since 0.1.0
 */
export const intersect = (all: ReadonlyArray<Capabilities>): Capabilities =>
  all.reduce((a, b) => ({
    samplingExtensions: a.samplingExtensions && b.samplingExtensions,
    passthrough: new Set([...a.passthrough].filter((field) => b.passthrough.has(field))),
    logprobs: a.logprobs && b.logprobs,
    tools: a.tools && b.tools,
    embeddings: a.embeddings && b.embeddings,
    unsupported: new Set([...a.unsupported, ...b.unsupported])
  }))

/** The log-probabilities a call asked for (only decoded when the model's capabilities allow it). @category models @since 0.1.0 */
export interface LogprobsRequest {
  /** Alternatives per position (`top_logprobs` for chat, `logprobs` for text completions). */
  readonly top: number
}

/** A decoded chat or text completion call. @category models @since 0.1.0 */
export interface CompletionCall {
  readonly kind: "chat" | "text"
  readonly model: string
  /** The fields of the core `CompletionRequest`. */
  readonly request: CompletionRequest.CompletionRequestInput
  readonly stream: boolean
  readonly includeUsage: boolean
  readonly logprobs: LogprobsRequest | undefined
}

/** A decoded embeddings call. @category models @since 0.1.0 */
export interface EmbeddingsCall {
  readonly model: string
  readonly input: ReadonlyArray<string>
  readonly format: "float" | "base64"
  readonly dimensions: number | undefined
}

type Json = Record<string, unknown>

const invalid = (message: string, param: string | null, code: string | null): HttpError =>
  new HttpError({ status: 400, description: message, type: "invalid_request_error", param, code })

const typeName = (value: unknown): string =>
  value === null
    ? "null"
    : Array.isArray(value)
    ? "an array"
    : typeof value === "object"
    ? "an object"
    : typeof value === "string"
    ? "a string"
    : typeof value === "boolean"
    ? "a boolean"
    : typeof value === "number"
    ? Number.isInteger(value) ? "an integer" : "a decimal"
    : typeof value

const wrongType = (param: string, expected: string, value: unknown): HttpError =>
  invalid(`Invalid type for '${param}': expected ${expected}, but got ${typeName(value)} instead.`, param, "invalid_type")

/** A field a model cannot honour: 400 `unsupported_parameter` naming it. @category errors @since 0.1.0 */
export const unsupported = (param: string, model: string): HttpError =>
  invalid(
    `Unsupported parameter: '${param}' is not supported with model '${model}' on this server.`,
    param,
    "unsupported_parameter"
  )

const unsupportedValue = (param: string, message: string): HttpError =>
  invalid(`Unsupported value: '${param}' ${message}`, param, "unsupported_value")

const isRecord = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

const number = (
  body: Json,
  param: string,
  range: { readonly min?: number; readonly max?: number; readonly integer?: boolean }
): number | undefined => {
  const value = body[param]
  if (value === undefined || value === null) return undefined
  const integer = range.integer === true
  if (typeof value !== "number" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw wrongType(param, integer ? "an integer" : "a decimal", value)
  }
  const kind = integer ? "integer" : "decimal"
  if (range.min !== undefined && value < range.min) {
    throw invalid(
      `Invalid '${param}': ${kind} below minimum value. Expected a value >= ${range.min}, but got ${value} instead.`,
      param,
      `${kind}_below_min_value`
    )
  }
  if (range.max !== undefined && value > range.max) {
    throw invalid(
      `Invalid '${param}': ${kind} above maximum value. Expected a value <= ${range.max}, but got ${value} instead.`,
      param,
      `${kind}_above_max_value`
    )
  }
  return value
}

const boolean = (body: Json, param: string): boolean | undefined => {
  const value = body[param]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "boolean") throw wrongType(param, "a boolean", value)
  return value
}

const string = (body: Json, param: string): string | undefined => {
  const value = body[param]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "string") throw wrongType(param, "a string", value)
  return value
}

const modelOf = (body: Json): string => {
  const model = body.model
  if (model === undefined || model === null) throw invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
  if (typeof model !== "string") throw wrongType("model", "a string", model)
  if (model.length === 0) throw invalid("Invalid 'model': empty string.", "model", "empty_string")
  return model
}

/** Reads the `model` field alone, so the server can find the model's capabilities before decoding the rest. @category decoding @since 0.1.0 */
export const readModel = (body: Json): string | HttpError => {
  try {
    return modelOf(body)
  } catch (error) {
    if (error instanceof HttpError) return error
    throw error
  }
}

const stopOf = (body: Json): ReadonlyArray<string> | undefined => {
  const value = body.stop
  if (value === undefined || value === null) return undefined
  if (typeof value === "string") return [value]
  if (!Array.isArray(value)) throw wrongType("stop", "a string or an array of strings", value)
  if (value.length > 4) {
    throw invalid(
      `Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length ${value.length} instead.`,
      "stop",
      "array_above_max_length"
    )
  }
  for (let index = 0; index < value.length; index++) {
    if (typeof value[index] !== "string") throw wrongType(`stop[${index}]`, "a string", value[index])
  }
  return value as Array<string>
}

const logitBiasOf = (body: Json): Json | undefined => {
  const value = body.logit_bias
  if (value === undefined || value === null) return undefined
  if (!isRecord(value)) throw wrongType("logit_bias", "an object", value)
  for (const key in value) {
    if (!/^\d+$/.test(key)) {
      throw invalid(`Invalid key in 'logit_bias': ${key}. Keys must be token ids (integers).`, "logit_bias", "invalid_value")
    }
    const bias = value[key]
    if (typeof bias !== "number" || !Number.isFinite(bias)) throw wrongType(`logit_bias.${key}`, "a number", bias)
    if (bias < -100 || bias > 100) {
      throw invalid(
        `Invalid 'logit_bias.${key}': Expected a value between -100 and 100, but got ${bias} instead.`,
        "logit_bias",
        "invalid_value"
      )
    }
  }
  return value
}

const responseFormatOf = (body: Json): CompletionRequest.CompletionRequestInput["responseFormat"] => {
  const value = body.response_format
  if (value === undefined || value === null) return undefined
  if (!isRecord(value)) throw wrongType("response_format", "an object", value)
  switch (value.type) {
    case "text":
      return undefined
    case "json_object":
      return { type: "json" }
    case "json_schema": {
      const schema = value.json_schema
      if (!isRecord(schema)) {
        throw invalid(
          "Missing required parameter: 'response_format.json_schema'.",
          "response_format.json_schema",
          "missing_required_parameter"
        )
      }
      const name = schema.name
      if (typeof name !== "string") {
        throw name === undefined
          ? invalid(
            "Missing required parameter: 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
            "missing_required_parameter"
          )
          : wrongType("response_format.json_schema.name", "a string", name)
      }
      if (!/^[a-zA-Z0-9_-]{1,64}$/.test(name)) {
        throw invalid(
          "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters.",
          "response_format.json_schema.name",
          "invalid_value"
        )
      }
      if (schema.schema !== undefined && schema.schema !== null && !isRecord(schema.schema)) {
        throw wrongType("response_format.json_schema.schema", "an object", schema.schema)
      }
      if (schema.strict !== undefined && schema.strict !== null && typeof schema.strict !== "boolean") {
        throw wrongType("response_format.json_schema.strict", "a boolean", schema.strict)
      }
      return isRecord(schema.schema) ? { type: "json", name, schema: schema.schema } : { type: "json", name }
    }
    default:
      throw invalid(
        `Invalid value: ${JSON.stringify(value.type)}. Supported values are: 'text', 'json_object', and 'json_schema'.`,
        "response_format.type",
        "invalid_value"
      )
  }
}

const streamOptionsOf = (body: Json, stream: boolean): boolean => {
  const value = body.stream_options
  if (value === undefined || value === null) return false
  if (!stream) {
    throw invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", "invalid_value")
  }
  if (!isRecord(value)) throw wrongType("stream_options", "an object", value)
  for (const key in value) {
    if (key !== "include_usage" && key !== "include_obfuscation") {
      throw invalid(`Unrecognized request argument supplied: stream_options.${key}`, `stream_options.${key}`, "unknown_parameter")
    }
  }
  const include = value.include_usage
  if (include !== undefined && include !== null && typeof include !== "boolean") {
    throw wrongType("stream_options.include_usage", "a boolean", include)
  }
  return include === true
}

const nOf = (body: Json): void => {
  const n = number(body, "n", { min: 1, max: 128, integer: true })
  if (n !== undefined && n !== 1) throw unsupportedValue("n", "must be 1 on this server (one choice per request).")
}

/** Fields OpenAI accepts that only describe the caller (no effect on the output). */
const informational = new Set(["metadata", "safety_identifier", "prompt_cache_key", "service_tier", "store"])

/** Fields of the chat API this server knows; anything else is `unknown_parameter`. */
const chatFields = new Set([
  "model",
  "messages",
  "frequency_penalty",
  "presence_penalty",
  "logit_bias",
  "logprobs",
  "top_logprobs",
  "max_tokens",
  "max_completion_tokens",
  "n",
  "response_format",
  "seed",
  "stop",
  "stream",
  "stream_options",
  "temperature",
  "top_p",
  "user",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "functions",
  "function_call",
  "audio",
  "modalities",
  "prediction",
  "reasoning_effort",
  "verbosity",
  "web_search_options",
  "top_k",
  "repeat_penalty",
  "repeat_last_n",
  ...informational
])

const textFields = new Set([
  "model",
  "prompt",
  "best_of",
  "echo",
  "frequency_penalty",
  "presence_penalty",
  "logit_bias",
  "logprobs",
  "max_tokens",
  "n",
  "seed",
  "stop",
  "stream",
  "stream_options",
  "suffix",
  "temperature",
  "top_p",
  "user",
  "top_k",
  "repeat_penalty",
  "repeat_last_n"
])

const isSet = (value: unknown): boolean => value !== undefined && value !== null

/** Known fields no backend can honour yet (tools and friends); set ⇒ 400 naming the field. */
const toolFields = ["tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"] as const
const unsupportedChatFields = ["audio", "modalities", "prediction", "reasoning_effort", "verbosity", "web_search_options"] as const

const checkKnown = (body: Json, known: ReadonlySet<string>): void => {
  for (const key in body) {
    if (!known.has(key)) throw invalid(`Unrecognized request argument supplied: ${key}`, key, "unknown_parameter")
  }
}

const checkInformational = (body: Json): void => {
  if (body.store === true) throw unsupportedValue("store", "must be false on this server (completions are not stored).")
  if (isSet(body.store) && typeof body.store !== "boolean") throw wrongType("store", "a boolean", body.store)
  if (isSet(body.metadata) && !isRecord(body.metadata)) throw wrongType("metadata", "an object", body.metadata)
  for (const param of ["safety_identifier", "prompt_cache_key", "service_tier"]) string(body, param)
}

/** The sampling fields common to both completion APIs, onto the core request. */
const sampling = (body: Json, model: string, capabilities: Capabilities, fields: Record<string, unknown>): void => {
  fields.temperature = number(body, "temperature", { min: 0, max: 2 })
  fields.topP = number(body, "top_p", { min: 0, max: 1 })
  fields.frequencyPenalty = number(body, "frequency_penalty", { min: -2, max: 2 })
  fields.presencePenalty = number(body, "presence_penalty", { min: -2, max: 2 })
  fields.seed = number(body, "seed", { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, integer: true })
  fields.stop = stopOf(body)
  nOf(body)
  if (capabilities.unsupported.size > 0) {
    for (const param of capabilities.unsupported) if (isSet(body[param])) throw unsupported(param, model)
  }
  const providerOptions: Record<string, unknown> = {}
  const bias = logitBiasOf(body)
  if (bias !== undefined && Object.keys(bias).length > 0) {
    if (!capabilities.passthrough.has("logit_bias")) throw unsupported("logit_bias", model)
    providerOptions.logit_bias = bias
  }
  const user = string(body, "user")
  if (user !== undefined && capabilities.passthrough.has("user")) providerOptions.user = user
  for (
    const [param, key, range] of [
      ["top_k", "topK", { min: 0, integer: true }],
      ["repeat_penalty", "repeatPenalty", { min: 0 }],
      ["repeat_last_n", "penaltyWindow", { min: 0, integer: true }]
    ] as const
  ) {
    const value = number(body, param, range)
    if (value === undefined) continue
    if (!capabilities.samplingExtensions) throw unsupported(param, model)
    fields[key] = value
  }
  if (Object.keys(providerOptions).length > 0) fields.providerOptions = providerOptions
}

const defined = (fields: Record<string, unknown>): CompletionRequest.CompletionRequestInput => {
  for (const key in fields) if (fields[key] === undefined) delete fields[key]
  return fields as unknown as CompletionRequest.CompletionRequestInput
}

const contentOf = (content: unknown, index: number): string => {
  if (content === undefined || content === null) return ""
  if (typeof content === "string") return content
  if (!Array.isArray(content)) throw wrongType(`messages[${index}].content`, "a string or an array of content parts", content)
  let text = ""
  for (let part = 0; part < content.length; part++) {
    const item = content[part]
    const param = `messages[${index}].content[${part}]`
    if (!isRecord(item)) throw wrongType(param, "an object", item)
    if (item.type !== "text") {
      throw item.type === "image_url" || item.type === "input_audio" || item.type === "file" || item.type === "refusal"
        ? unsupportedValue(`${param}.type`, `${JSON.stringify(item.type)} content is not supported on this server; only 'text'.`)
        : invalid(
          `Invalid value: ${JSON.stringify(item.type)}. Supported values are: 'text', 'image_url', 'input_audio', 'refusal', and 'file'.`,
          `${param}.type`,
          "invalid_value"
        )
    }
    if (typeof item.text !== "string") throw wrongType(`${param}.text`, "a string", item.text)
    text += item.text
  }
  return text
}

const messagesOf = (body: Json, model: string, capabilities: Capabilities) => {
  const value = body.messages
  if (value === undefined || value === null) {
    throw invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
  }
  if (!Array.isArray(value)) throw wrongType("messages", "an array", value)
  if (value.length === 0) {
    throw invalid(
      "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      "messages",
      "empty_array"
    )
  }
  const messages: Array<{ role: "system" | "user" | "assistant"; content: string }> = []
  for (let index = 0; index < value.length; index++) {
    const message = value[index]
    if (!isRecord(message)) throw wrongType(`messages[${index}]`, "an object", message)
    const role = message.role
    if (role === undefined) {
      throw invalid(`Missing required parameter: 'messages[${index}].role'.`, `messages[${index}].role`, "missing_required_parameter")
    }
    if (role === "tool" || role === "function") {
      if (!capabilities.tools) throw unsupported(`messages[${index}].role`, model)
    } else if (role !== "system" && role !== "developer" && role !== "user" && role !== "assistant") {
      throw invalid(
        `Invalid value: ${JSON.stringify(role)}. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`,
        `messages[${index}].role`,
        "invalid_value"
      )
    }
    for (const key in message) {
      if (key === "role" || key === "content") continue
      if (key === "tool_calls" || key === "function_call" || key === "tool_call_id") {
        if (isSet(message[key]) && !capabilities.tools) throw unsupported(`messages[${index}].${key}`, model)
        continue
      }
      if (key === "name" || key === "refusal" || key === "audio") {
        if (isSet(message[key])) throw unsupported(`messages[${index}].${key}`, model)
        continue
      }
      throw invalid(
        `Unrecognized request argument supplied: messages[${index}].${key}`,
        `messages[${index}].${key}`,
        "unknown_parameter"
      )
    }
    if (role !== "assistant" && (message.content === undefined || message.content === null)) {
      throw invalid(
        `Missing required parameter: 'messages[${index}].content'.`,
        `messages[${index}].content`,
        "missing_required_parameter"
      )
    }
    messages.push({
      role: role === "developer" ? "system" : role as "system" | "user" | "assistant",
      content: contentOf(message.content, index)
    })
  }
  return messages
}

const maxTokensOf = (body: Json, param: "max_tokens" | "max_completion_tokens"): number | undefined =>
  number(body, param, { min: 1, integer: true })

const attempt = <A>(decode: () => A): A | HttpError => {
  try {
    return decode()
  } catch (error) {
    if (error instanceof HttpError) return error
    throw error
  }
}

/**
 * Decodes a `/v1/chat/completions` body for a model with `capabilities`; the first problem
 * is returned as a 400 `HttpError` whose `param` names the field.
 * @category decoding @since 0.1.0
 */
export const decodeChat = (body: Json, capabilities: Capabilities): CompletionCall | HttpError =>
  attempt(() => {
    checkKnown(body, chatFields)
    const model = modelOf(body)
    const messages = messagesOf(body, model, capabilities)
    for (const param of toolFields) if (isSet(body[param]) && !capabilities.tools) throw unsupported(param, model)
    for (const param of unsupportedChatFields) if (isSet(body[param])) throw unsupported(param, model)
    checkInformational(body)
    const logprobs = boolean(body, "logprobs")
    const top = number(body, "top_logprobs", { min: 0, max: 20, integer: true })
    if (top !== undefined && logprobs !== true) {
      throw invalid("Invalid value for 'top_logprobs': 'logprobs' must be set to true.", "top_logprobs", "invalid_value")
    }
    if (logprobs === true && !capabilities.logprobs) throw unsupported("logprobs", model)
    const fields: Record<string, unknown> = {
      model,
      messages,
      maxTokens: maxTokensOf(body, "max_completion_tokens") ?? maxTokensOf(body, "max_tokens"),
      responseFormat: responseFormatOf(body)
    }
    sampling(body, model, capabilities, fields)
    if (logprobs === true) {
      fields.logprobs = true
      if (top !== undefined && top > 0) fields.topLogprobs = top
    }
    const stream = boolean(body, "stream") === true
    const includeUsage = streamOptionsOf(body, stream)
    return {
      kind: "chat" as const,
      model,
      request: defined(fields),
      stream,
      includeUsage,
      logprobs: logprobs === true ? { top: top ?? 0 } : undefined
    }
  })

/**
 * Decodes a `/v1/completions` body (one string prompt per request); `max_tokens` defaults
 * to 16 as OpenAI's does.
 * @category decoding @since 0.1.0
 */
export const decodeText = (body: Json, capabilities: Capabilities): CompletionCall | HttpError =>
  attempt(() => {
    checkKnown(body, textFields)
    const model = modelOf(body)
    let prompt = body.prompt
    if (prompt === undefined || prompt === null) {
      throw invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    }
    if (Array.isArray(prompt)) {
      if (prompt.length !== 1 || typeof prompt[0] !== "string") {
        throw unsupportedValue("prompt", "must be one string on this server (no batches of prompts, no token arrays).")
      }
      prompt = prompt[0]
    }
    if (typeof prompt !== "string") throw wrongType("prompt", "a string", prompt)
    if (prompt.length === 0) throw invalid("Invalid 'prompt': empty string.", "prompt", "empty_string")
    const bestOf = number(body, "best_of", { min: 0, max: 20, integer: true })
    if (bestOf !== undefined && bestOf !== 1) throw unsupportedValue("best_of", "must be 1 on this server.")
    if (boolean(body, "echo") === true) throw unsupported("echo", model)
    if (string(body, "suffix") !== undefined) throw unsupported("suffix", model)
    const logprobs = number(body, "logprobs", { min: 0, max: 5, integer: true })
    if (logprobs !== undefined && !capabilities.logprobs) throw unsupported("logprobs", model)
    const fields: Record<string, unknown> = { model, messages: [], prompt, maxTokens: maxTokensOf(body, "max_tokens") ?? 16 }
    sampling(body, model, capabilities, fields)
    // `/v1/completions`' `logprobs: n` is the token's log-probability plus n alternatives
    if (logprobs !== undefined) {
      fields.logprobs = true
      if (logprobs > 0) fields.topLogprobs = logprobs
    }
    const stream = boolean(body, "stream") === true
    const includeUsage = streamOptionsOf(body, stream)
    return {
      kind: "text" as const,
      model,
      request: defined(fields),
      stream,
      includeUsage,
      logprobs: logprobs !== undefined ? { top: logprobs } : undefined
    }
  })

const embeddingFields = new Set(["model", "input", "encoding_format", "dimensions", "user"])

/**
 * Decodes a `/v1/embeddings` body: a string or a non-empty array of strings (token arrays
 * are a 400 naming `input`).
 * @category decoding @since 0.1.0
 */
export const decodeEmbeddings = (body: Json): EmbeddingsCall | HttpError =>
  attempt(() => {
    checkKnown(body, embeddingFields)
    const model = modelOf(body)
    const value = body.input
    if (value === undefined || value === null) throw invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    let input: ReadonlyArray<string>
    if (typeof value === "string") input = [value]
    else if (Array.isArray(value)) {
      if (value.length === 0) {
        throw invalid(
          "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
          "input",
          "empty_array"
        )
      }
      if (value.length > 2048) {
        throw invalid(
          `Invalid 'input': array too long. Expected an array with maximum length 2048, but got an array with length ${value.length} instead.`,
          "input",
          "array_above_max_length"
        )
      }
      for (let index = 0; index < value.length; index++) {
        if (typeof value[index] !== "string") {
          throw unsupportedValue(`input[${index}]`, "must be a string on this server (token arrays are not supported).")
        }
      }
      input = value as Array<string>
    } else throw wrongType("input", "a string or an array of strings", value)
    const format = string(body, "encoding_format")
    if (format !== undefined && format !== "float" && format !== "base64") {
      throw invalid(
        `Invalid value: ${JSON.stringify(format)}. Supported values are: 'float' and 'base64'.`,
        "encoding_format",
        "invalid_value"
      )
    }
    string(body, "user")
    return {
      model,
      input,
      format: format === "base64" ? "base64" as const : "float" as const,
      dimensions: number(body, "dimensions", { min: 1, integer: true })
    }
  })
