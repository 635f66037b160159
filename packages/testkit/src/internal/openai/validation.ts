/**
 * Request validation the way OpenAI does it: each problem names the offending field
 * (`param`) in OpenAI's wording. Chat, text-completion sampling fields, and embeddings.
 * @since 0.1.0
 */
import type { ResponderMessage } from "../../SimulatorOptions.js"
import { isObject } from "../engine/http.js"
import { countAll, countTokens } from "../tokens.js"

/** A problem with one field: its name and what is wrong. */
export interface Problem {
  readonly param: string
  readonly message: string
}

const contentText = (content: unknown, param: string): string | Problem => {
  if (content === null || content === undefined) return ""
  if (typeof content === "string") return content
  if (Array.isArray(content)) {
    const parts: Array<string> = []
    for (let i = 0; i < content.length; i++) {
      const part: unknown = content[i]
      if (!isObject(part) || typeof part.type !== "string") {
        return { param: `${param}[${i}]`, message: `Invalid value for '${param}[${i}]': expected an object with a 'type'.` }
      }
      if (part.type === "text") {
        if (typeof part.text !== "string") {
          return { param: `${param}[${i}].text`, message: `Invalid type for '${param}[${i}].text': expected a string.` }
        }
        parts.push(part.text)
      }
    }
    return parts.join("")
  }
  return { param, message: `Invalid type for '${param}': expected a string or an array of content parts, but got ${typeof content}.` }
}

const roles = new Set(["system", "developer", "user", "assistant", "tool", "function"])

/** The sampling fields shared by chat and text completions. */
export interface Sampling {
  readonly model: string
  readonly maxTokens: number | undefined
  readonly temperature: number | undefined
  readonly stop: ReadonlyArray<string> | undefined
  readonly stream: boolean
  readonly includeUsage: boolean
  /** Log probabilities asked for: `undefined` for none, else the alternatives per position. */
  readonly logprobs: { readonly top: number } | undefined
}

const optionalInteger = (body: Record<string, unknown>, name: string, minimum: number): number | undefined | Problem => {
  const value = body[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !Number.isInteger(value)) {
    return { param: name, message: `Invalid type for '${name}': expected an integer, but got ${JSON.stringify(value)}.` }
  }
  if (value < minimum) {
    return {
      param: name,
      message: `Invalid '${name}': integer below minimum value. Expected a value >= ${minimum}, but got ${value} instead.`
    }
  }
  return value
}

export const isProblem = (value: unknown): value is Problem =>
  isObject(value) && typeof value.param === "string" && typeof value.message === "string"

/** Chat's `logprobs: true` + `top_logprobs` (0–20), validated as OpenAI does. */
const chatLogprobs = (body: Record<string, unknown>): Sampling["logprobs"] | Problem => {
  const flag = body.logprobs
  if (flag !== undefined && flag !== null && typeof flag !== "boolean") {
    return { param: "logprobs", message: `Invalid type for 'logprobs': expected a boolean, but got ${JSON.stringify(flag)}.` }
  }
  const top = optionalInteger(body, "top_logprobs", 0)
  if (isProblem(top)) return top
  if (top !== undefined && top > 20) {
    return {
      param: "top_logprobs",
      message: `Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got ${top} instead.`
    }
  }
  if (top !== undefined && flag !== true) {
    return {
      param: "top_logprobs",
      message: "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used."
    }
  }
  return flag === true ? { top: top ?? 0 } : undefined
}

/** The legacy completions' `logprobs: n` (0–5 alternatives). */
const textLogprobs = (body: Record<string, unknown>): Sampling["logprobs"] | Problem => {
  const top = optionalInteger(body, "logprobs", 0)
  if (isProblem(top)) return top
  if (top !== undefined && top > 5) {
    return { param: "logprobs", message: `Invalid 'logprobs': integer above maximum value. Expected a value <= 5, but got ${top} instead.` }
  }
  return top === undefined ? undefined : { top }
}

export const sampling = (body: Record<string, unknown>, maxNames: ReadonlyArray<string>, chat = false): Sampling | Problem => {
  if (typeof body.model !== "string" || body.model.length === 0) {
    return {
      param: "model",
      message: body.model === undefined ? "you must provide a model parameter" : "Invalid type for 'model': expected a non-empty string."
    }
  }
  let maxTokens: number | undefined
  for (const name of maxNames) {
    const value = optionalInteger(body, name, 1)
    if (isProblem(value)) return value
    if (value !== undefined) maxTokens = value
  }
  const temperature = body.temperature
  if (temperature !== undefined && temperature !== null && (typeof temperature !== "number" || temperature < 0 || temperature > 2)) {
    return {
      param: "temperature",
      message: `Invalid 'temperature': expected a number between 0 and 2, but got ${JSON.stringify(temperature)}.`
    }
  }
  let stop: ReadonlyArray<string> | undefined
  if (typeof body.stop === "string") stop = [body.stop]
  else if (Array.isArray(body.stop) && body.stop.every((item) => typeof item === "string")) stop = body.stop as Array<string>
  else if (body.stop !== undefined && body.stop !== null) {
    return { param: "stop", message: "Invalid type for 'stop': expected a string or an array of strings." }
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") {
    return { param: "stream", message: `Invalid type for 'stream': expected a boolean, but got ${JSON.stringify(body.stream)}.` }
  }
  const n = optionalInteger(body, "n", 1)
  if (isProblem(n)) return n
  if (n !== undefined && n > 1) return { param: "n", message: "The simulator supports n = 1 only." }
  const streamOptions = body.stream_options
  const includeUsage = isObject(streamOptions) && streamOptions.include_usage === true
  const logprobs = chat ? chatLogprobs(body) : textLogprobs(body)
  if (isProblem(logprobs)) return logprobs
  return {
    model: body.model,
    maxTokens,
    temperature: typeof temperature === "number" ? temperature : undefined,
    stop,
    stream: body.stream === true,
    includeUsage,
    logprobs
  }
}

/** A validated chat request. */
export interface ChatInput extends Sampling {
  readonly messages: ReadonlyArray<ResponderMessage>
  readonly inputTokens: number
}

/** Validates a chat completion body the way OpenAI does, naming the offending field. */
export const validateChat = (body: unknown): ChatInput | Problem => {
  if (!isObject(body)) return { param: "body", message: "The request body must be a JSON object." }
  const common = sampling(body, ["max_tokens", "max_completion_tokens"], true)
  if (isProblem(common)) return common
  if (!Array.isArray(body.messages)) {
    return {
      param: "messages",
      message: body.messages === undefined ? "Missing required parameter: 'messages'." : "Invalid type for 'messages': expected an array."
    }
  }
  if (body.messages.length === 0) {
    return {
      param: "messages",
      message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."
    }
  }
  const messages: Array<ResponderMessage> = []
  for (let i = 0; i < body.messages.length; i++) {
    const message: unknown = body.messages[i]
    if (!isObject(message)) return { param: `messages[${i}]`, message: `Invalid type for 'messages[${i}]': expected an object.` }
    if (typeof message.role !== "string" || !roles.has(message.role)) {
      return {
        param: `messages[${i}].role`,
        message: `Invalid value: '${
          String(message.role)
        }'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool', and 'function'.`
      }
    }
    const content = contentText(message.content, `messages[${i}].content`)
    if (isProblem(content)) return content
    messages.push({ role: message.role === "developer" ? "system" : message.role, content })
  }
  return { ...common, messages, inputTokens: countAll(messages.map((message) => message.content)) }
}

/** A validated embeddings request. */
export interface EmbeddingInput {
  readonly model: string
  readonly texts: ReadonlyArray<string>
  readonly inputTokens: number
  readonly dimensions: number | undefined
  readonly base64: boolean
}

const isTokenArray = (value: unknown): value is Array<number> =>
  Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === "number" && Number.isInteger(item))

/** Validates an embeddings body: `input` is a string, strings, tokens or token arrays. */
export const validateEmbeddings = (body: unknown): EmbeddingInput | Problem => {
  if (!isObject(body)) return { param: "body", message: "The request body must be a JSON object." }
  if (typeof body.model !== "string" || body.model.length === 0) return { param: "model", message: "you must provide a model parameter" }
  const input = body.input
  let texts: Array<string>
  let inputTokens: number
  if (typeof input === "string") {
    texts = [input]
    inputTokens = countTokens(input)
  } else if (isTokenArray(input)) {
    texts = [input.join(",")]
    inputTokens = input.length
  } else if (Array.isArray(input) && input.length > 0 && input.every((item) => typeof item === "string")) {
    texts = input as Array<string>
    inputTokens = countAll(texts)
  } else if (Array.isArray(input) && input.length > 0 && input.every(isTokenArray)) {
    texts = (input as Array<Array<number>>).map((tokens) => tokens.join(","))
    inputTokens = (input as Array<Array<number>>).reduce((sum, tokens) => sum + tokens.length, 0)
  } else {
    return {
      param: "input",
      message: input === undefined
        ? "Missing required parameter: 'input'."
        : "Invalid 'input': expected a non-empty string, array of strings, array of tokens, or array of token arrays."
    }
  }
  if (texts.some((text) => text.length === 0)) return { param: "input", message: "'$.input' is invalid: inputs must not be empty strings." }
  const dimensions = optionalInteger(body, "dimensions", 1)
  if (isProblem(dimensions)) return dimensions
  const format = body.encoding_format
  if (format !== undefined && format !== null && format !== "float" && format !== "base64") {
    return {
      param: "encoding_format",
      message: `Invalid value for 'encoding_format': expected 'float' or 'base64', but got ${JSON.stringify(format)}.`
    }
  }
  return { model: body.model, texts, inputTokens, dimensions, base64: format === "base64" }
}
