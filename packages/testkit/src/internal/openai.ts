/**
 * The simulated OpenAI API: chat completions, completions, embeddings, models, files
 * and batches, with OpenAI's error bodies and `x-ratelimit-*` headers.
 * @since 0.1.0
 */
import { hashVector } from "@hasten/core/Embedder"
import type { ResponderMessage, ResponderRequest } from "../SimulatorOptions.js"
import { admitCall } from "./engine/admission.js"
import { runCall } from "./engine/call.js"
import { formatDuration } from "./engine/duration.js"
import type { Engine } from "./engine/engine.js"
import { type Generated, shape } from "./engine/generation.js"
import { countStatus, isObject, parseJson, readBody, sendJson } from "./engine/http.js"
import { paceTokens, waitWhole } from "./engine/pacing.js"
import type { LimitState } from "./engine/rateLimiter.js"
import type { Route, RouteContext } from "./engine/route.js"
import { startSse, writeSse } from "./engine/sse.js"
import type { ErrorKind, Vendor } from "./engine/vendor.js"
import { countAll, countTokens } from "./tokens.js"

const errorTypes: Record<ErrorKind, { status: number; type: string; code: string | null }> = {
  invalid_request: { status: 400, type: "invalid_request_error", code: null },
  authentication: { status: 401, type: "invalid_request_error", code: "invalid_api_key" },
  not_found: { status: 404, type: "invalid_request_error", code: null },
  requests: { status: 429, type: "requests", code: "rate_limit_exceeded" },
  tokens: { status: 429, type: "tokens", code: "rate_limit_exceeded" },
  concurrency: { status: 429, type: "concurrency", code: "rate_limit_exceeded" },
  quota: { status: 429, type: "insufficient_quota", code: "insufficient_quota" },
  server: { status: 500, type: "server_error", code: null },
  overloaded: { status: 503, type: "server_error", code: null }
}

/** OpenAI's error body: `{ error: { message, type, param, code } }`. */
export const vendor: Vendor = {
  api: "openai",
  error: (kind, message) => {
    const { code, status, type } = errorTypes[kind]
    return { status, body: { error: { message, type, param: null, code } } }
  },
  rateHeaders: (state: LimitState) => {
    const headers: Record<string, string> = {}
    if (state.limitRequests !== undefined) {
      headers["x-ratelimit-limit-requests"] = String(state.limitRequests)
      headers["x-ratelimit-remaining-requests"] = String(state.remainingRequests ?? 0)
      headers["x-ratelimit-reset-requests"] = formatDuration(state.resetRequestsMs ?? 0)
    }
    if (state.limitTokens !== undefined) {
      headers["x-ratelimit-limit-tokens"] = String(state.limitTokens)
      headers["x-ratelimit-remaining-tokens"] = String(state.remainingTokens ?? 0)
      headers["x-ratelimit-reset-tokens"] = formatDuration(state.resetTokensMs ?? 0)
    }
    return headers
  }
}

const invalid = (context: RouteContext, message: string, param: string | null = null): void => {
  sendJson(context.engine, context.response, 400, {
    error: { message, type: "invalid_request_error", param, code: null }
  }, commonHeaders(context))
}

const commonHeaders = (context: RouteContext, state?: LimitState): Record<string, string> => ({
  "x-request-id": context.engine.id("req_"),
  "openai-processing-ms": "1",
  ...vendor.rateHeaders(state ?? context.engine.state(context.key || undefined), Date.now())
})

/** A problem with one field: its name and what is wrong. */
interface Problem {
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
        if (typeof part.text !== "string") return { param: `${param}[${i}].text`, message: `Invalid type for '${param}[${i}].text': expected a string.` }
        parts.push(part.text)
      }
    }
    return parts.join("")
  }
  return { param, message: `Invalid type for '${param}': expected a string or an array of content parts, but got ${typeof content}.` }
}

const roles = new Set(["system", "developer", "user", "assistant", "tool", "function"])

/** The sampling fields shared by chat and text completions. */
interface Sampling {
  readonly model: string
  readonly maxTokens: number | undefined
  readonly temperature: number | undefined
  readonly stop: ReadonlyArray<string> | undefined
  readonly stream: boolean
  readonly includeUsage: boolean
}

const optionalInteger = (body: Record<string, unknown>, name: string, minimum: number): number | undefined | Problem => {
  const value = body[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !Number.isInteger(value)) return { param: name, message: `Invalid type for '${name}': expected an integer, but got ${JSON.stringify(value)}.` }
  if (value < minimum) return { param: name, message: `Invalid '${name}': integer below minimum value. Expected a value >= ${minimum}, but got ${value} instead.` }
  return value
}

const isProblem = (value: unknown): value is Problem => isObject(value) && typeof value.param === "string" && typeof value.message === "string"

const sampling = (body: Record<string, unknown>, maxNames: ReadonlyArray<string>): Sampling | Problem => {
  if (typeof body.model !== "string" || body.model.length === 0) {
    return { param: "model", message: body.model === undefined ? "you must provide a model parameter" : "Invalid type for 'model': expected a non-empty string." }
  }
  let maxTokens: number | undefined
  for (const name of maxNames) {
    const value = optionalInteger(body, name, 1)
    if (isProblem(value)) return value
    if (value !== undefined) maxTokens = value
  }
  const temperature = body.temperature
  if (temperature !== undefined && temperature !== null && (typeof temperature !== "number" || temperature < 0 || temperature > 2)) {
    return { param: "temperature", message: `Invalid 'temperature': expected a number between 0 and 2, but got ${JSON.stringify(temperature)}.` }
  }
  let stop: ReadonlyArray<string> | undefined
  if (typeof body.stop === "string") stop = [body.stop]
  else if (Array.isArray(body.stop) && body.stop.every((item) => typeof item === "string")) stop = body.stop as Array<string>
  else if (body.stop !== undefined && body.stop !== null) return { param: "stop", message: "Invalid type for 'stop': expected a string or an array of strings." }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") {
    return { param: "stream", message: `Invalid type for 'stream': expected a boolean, but got ${JSON.stringify(body.stream)}.` }
  }
  const n = optionalInteger(body, "n", 1)
  if (isProblem(n)) return n
  if (n !== undefined && n > 1) return { param: "n", message: "The simulator supports n = 1 only." }
  const streamOptions = body.stream_options
  const includeUsage = isObject(streamOptions) && streamOptions.include_usage === true
  return {
    model: body.model,
    maxTokens,
    temperature: typeof temperature === "number" ? temperature : undefined,
    stop,
    stream: body.stream === true,
    includeUsage
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
  const common = sampling(body, ["max_tokens", "max_completion_tokens"])
  if (isProblem(common)) return common
  if (!Array.isArray(body.messages)) {
    return { param: "messages", message: body.messages === undefined ? "Missing required parameter: 'messages'." : "Invalid type for 'messages': expected an array." }
  }
  if (body.messages.length === 0) return { param: "messages", message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead." }
  const messages: Array<ResponderMessage> = []
  for (let i = 0; i < body.messages.length; i++) {
    const message: unknown = body.messages[i]
    if (!isObject(message)) return { param: `messages[${i}]`, message: `Invalid type for 'messages[${i}]': expected an object.` }
    if (typeof message.role !== "string" || !roles.has(message.role)) {
      return { param: `messages[${i}].role`, message: `Invalid value: '${String(message.role)}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool', and 'function'.` }
    }
    const content = contentText(message.content, `messages[${i}].content`)
    if (isProblem(content)) return content
    messages.push({ role: message.role === "developer" ? "system" : message.role, content })
  }
  return { ...common, messages, inputTokens: countAll(messages.map((message) => message.content)) }
}

const usageOf = (inputTokens: number, outputTokens: number) => ({
  prompt_tokens: inputTokens,
  completion_tokens: outputTokens,
  total_tokens: inputTokens + outputTokens,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 }
})

const seconds = () => Math.floor(Date.now() / 1000)

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

const responderRequest = (context: RouteContext, input: ChatInput | (Sampling & { prompt: string }), body: unknown): ResponderRequest => ({
  api: "openai",
  route: context.route,
  model: input.model,
  messages: "messages" in input ? input.messages : [],
  ...("prompt" in input ? { prompt: input.prompt } : {}),
  ...(input.maxTokens !== undefined ? { maxTokens: input.maxTokens } : {}),
  ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
  ...(input.stop !== undefined ? { stop: input.stop } : {}),
  body
})

const readJson = async (context: RouteContext): Promise<unknown | undefined> => {
  const parsed = parseJson(await readBody(context.request))
  if (!parsed.ok) {
    invalid(context, `We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.) ${parsed.message}`)
    return undefined
  }
  return parsed.value
}

const chatCompletions = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  const input = validateChat(body)
  if (isProblem(input)) return invalid(context, input.message, input.param)
  const call = await runCall(context, vendor, {
    inputTokens: input.inputTokens,
    maxTokens: input.maxTokens,
    responderRequest: responderRequest(context, input, body)
  })
  if (call === undefined) return
  const { engine, response } = context
  const id = engine.id("chatcmpl-")
  const headers = commonHeaders(context, call.admission.state)
  if (!input.stream) {
    if (!(await waitWhole(engine, response, call))) return
    return sendJson(engine, response, 200, chatCompletionBody(id, input.model, input.inputTokens, call.generated), headers)
  }
  const created = seconds()
  const chunk = (delta: Record<string, unknown>, finishReason: string | null) => ({
    id,
    object: "chat.completion.chunk",
    created,
    model: input.model,
    service_tier: "default",
    system_fingerprint: "fp_hasten_sim",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(input.includeUsage ? { usage: null } : {})
  })
  startSse(engine, response, headers)
  writeSse(response, JSON.stringify(chunk({ role: "assistant", content: "", refusal: null }, null)))
  const finished = await paceTokens(engine, response, call, (token) => writeSse(response, JSON.stringify(chunk({ content: token }, null))))
  if (!finished) return
  writeSse(response, JSON.stringify(chunk({}, call.generated.finishReason)))
  if (input.includeUsage) {
    writeSse(response, JSON.stringify({ ...chunk({}, null), choices: [], usage: usageOf(input.inputTokens, call.generated.tokens.length) }))
  }
  writeSse(response, "[DONE]")
  response.end()
}

const completions = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  if (!isObject(body)) return invalid(context, "The request body must be a JSON object.", "body")
  const common = sampling(body, ["max_tokens"])
  if (isProblem(common)) return invalid(context, common.message, common.param)
  const promptValue = body.prompt
  const prompt = typeof promptValue === "string"
    ? promptValue
    : Array.isArray(promptValue) && promptValue.length === 1 && typeof promptValue[0] === "string"
    ? promptValue[0]
    : undefined
  if (prompt === undefined) {
    return invalid(context, promptValue === undefined ? "Missing required parameter: 'prompt'." : "Invalid type for 'prompt': expected a string.", "prompt")
  }
  // The legacy endpoint defaults to 16 output tokens.
  const maxTokens = common.maxTokens ?? 16
  const input = { ...common, maxTokens, prompt }
  const inputTokens = countTokens(prompt)
  const call = await runCall(context, vendor, { inputTokens, maxTokens, responderRequest: responderRequest(context, input, body) })
  if (call === undefined) return
  const { engine, response } = context
  const id = engine.id("cmpl-")
  const headers = commonHeaders(context, call.admission.state)
  const created = seconds()
  const choice = (text: string, finishReason: string | null) => ({ text, index: 0, logprobs: null, finish_reason: finishReason })
  if (!common.stream) {
    if (!(await waitWhole(engine, response, call))) return
    return sendJson(engine, response, 200, {
      id,
      object: "text_completion",
      created,
      model: common.model,
      choices: [choice(call.generated.text, call.generated.finishReason)],
      usage: { prompt_tokens: inputTokens, completion_tokens: call.generated.tokens.length, total_tokens: inputTokens + call.generated.tokens.length }
    }, headers)
  }
  const chunk = (choices: Array<unknown>, usage: unknown = null) => ({
    id,
    object: "text_completion",
    created,
    model: common.model,
    choices,
    ...(common.includeUsage ? { usage } : {})
  })
  startSse(engine, response, headers)
  const finished = await paceTokens(engine, response, call, (token) => writeSse(response, JSON.stringify(chunk([choice(token, null)]))))
  if (!finished) return
  writeSse(response, JSON.stringify(chunk([choice("", call.generated.finishReason)])))
  if (common.includeUsage) {
    writeSse(response, JSON.stringify(chunk([], { prompt_tokens: inputTokens, completion_tokens: call.generated.tokens.length, total_tokens: inputTokens + call.generated.tokens.length })))
  }
  writeSse(response, "[DONE]")
  response.end()
}

/** A validated embeddings request. */
interface EmbeddingInput {
  readonly model: string
  readonly texts: ReadonlyArray<string>
  readonly inputTokens: number
  readonly dimensions: number | undefined
  readonly base64: boolean
}

const isTokenArray = (value: unknown): value is Array<number> => Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === "number" && Number.isInteger(item))

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
    return { param: "encoding_format", message: `Invalid value for 'encoding_format': expected 'float' or 'base64', but got ${JSON.stringify(format)}.` }
  }
  return { model: body.model, texts, inputTokens, dimensions, base64: format === "base64" }
}

/** The same vector every time for the same text, model and dimensions. */
export const embeddingVector = (model: string, text: string, dimensions: number): Array<number> => hashVector(`${model}\u0000${text}`, dimensions)

const toBase64 = (vector: ReadonlyArray<number>): string => Buffer.from(new Float32Array(vector).buffer).toString("base64")

const embeddings = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  const input = validateEmbeddings(body)
  if (isProblem(input)) return invalid(context, input.message, input.param)
  const { engine, response } = context
  const call = admitEmbedding(context, input.inputTokens)
  if (call === undefined) return
  await engine.sleep(call.ttftMs)
  if (response.destroyed || engine.closed) return
  if (call.cut) return void response.socket?.destroy()
  const dimensions = input.dimensions ?? engine.options.embeddingDimensions ?? 16
  sendJson(engine, response, 200, {
    object: "list",
    data: input.texts.map((text, index) => {
      const vector = embeddingVector(input.model, text, dimensions)
      return { object: "embedding", index, embedding: input.base64 ? toBase64(vector) : vector }
    }),
    model: input.model,
    usage: { prompt_tokens: input.inputTokens, total_tokens: input.inputTokens }
  }, commonHeaders(context, call.state))
}

/** Embeddings reserve their input tokens only. */
const admitEmbedding = (context: RouteContext, inputTokens: number) => {
  const index = context.engine.nextCall()
  const admission = admitCall(context.engine, vendor, context.response, {
    key: context.key,
    route: context.route,
    inputTokens,
    reservedTokens: inputTokens,
    index
  })
  if (admission === undefined) return undefined
  return { state: admission.state, ttftMs: context.engine.latency(index).ttftMs, cut: admission.cut === true }
}

const modelIds = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small", "text-embedding-3-large"]

const modelObject = (id: string) => ({ id, object: "model", created: 1_700_000_000, owned_by: "hasten-simulator" })

const listModels = async (context: RouteContext): Promise<void> => {
  sendJson(context.engine, context.response, 200, { object: "list", data: modelIds.map(modelObject) }, commonHeaders(context))
}

const getModel = async (context: RouteContext): Promise<void> => {
  sendJson(context.engine, context.response, 200, modelObject(context.params[0]!), commonHeaders(context))
}

// ---------------------------------------------------------------------------------------
// Files and batches
// ---------------------------------------------------------------------------------------

interface StoredFile {
  readonly meta: {
    readonly id: string
    readonly object: "file"
    readonly bytes: number
    readonly created_at: number
    readonly filename: string
    readonly purpose: string
    readonly status: "processed"
    readonly status_details: null
    readonly expires_at: null
  }
  readonly content: Buffer
}

interface BatchLine {
  readonly custom_id: string
  readonly body: unknown
}

interface BatchResult {
  readonly customId: string
  readonly ok: boolean
  readonly line: string
}

interface Batch {
  readonly id: string
  readonly endpoint: string
  readonly inputFileId: string
  readonly metadata: unknown
  readonly createdAt: number
  readonly lines: ReadonlyArray<BatchLine>
  readonly failure?: { readonly code: string; readonly message: string; readonly line: number | null; readonly param: string | null }
  results?: ReadonlyArray<BatchResult>
  cancelledAt?: number
  terminal?: { status: string; at: number; outputFileId: string | null; errorFileId: string | null; completed: number; failed: number }
}

/** Files and batches of one simulator. */
export interface BatchStore {
  readonly files: Map<string, StoredFile>
  readonly batches: Map<string, Batch>
}

const stores = new WeakMap<Engine, BatchStore>()
const storeOf = (engine: Engine): BatchStore => {
  let store = stores.get(engine)
  if (store === undefined) {
    store = { files: new Map(), batches: new Map() }
    stores.set(engine, store)
  }
  return store
}

const saveFile = (engine: Engine, filename: string, purpose: string, content: Buffer): StoredFile => {
  const file: StoredFile = {
    meta: {
      id: engine.id("file-"),
      object: "file",
      bytes: content.length,
      created_at: seconds(),
      filename,
      purpose,
      status: "processed",
      status_details: null,
      expires_at: null
    },
    content
  }
  storeOf(engine).files.set(file.meta.id, file)
  return file
}

const notFound = (context: RouteContext, message: string): void =>
  sendJson(context.engine, context.response, 404, { error: { message, type: "invalid_request_error", param: null, code: null } }, commonHeaders(context))

const uploadFile = async (context: RouteContext): Promise<void> => {
  const body = await readBody(context.request)
  const contentType = context.request.headers["content-type"] ?? ""
  if (!contentType.startsWith("multipart/form-data")) {
    return invalid(context, "Invalid Content-Type header: expected multipart/form-data.", "file")
  }
  let form: FormData
  try {
    form = await new Request("http://simulator/upload", { method: "POST", headers: { "content-type": contentType }, body: new Uint8Array(body) }).formData()
  } catch (error) {
    return invalid(context, `Could not parse the multipart body: ${(error as Error).message}`, "file")
  }
  const purpose = form.get("purpose")
  const file = form.get("file")
  if (typeof purpose !== "string") return invalid(context, "Missing required parameter: 'purpose'.", "purpose")
  if (!["batch", "fine-tune", "assistants", "vision", "user_data", "evals"].includes(purpose)) {
    return invalid(context, `Invalid value for 'purpose': ${purpose}.`, "purpose")
  }
  if (file === null || typeof file === "string") return invalid(context, "Missing required parameter: 'file'.", "file")
  const content = Buffer.from(await file.arrayBuffer())
  const saved = saveFile(context.engine, file.name || "upload.jsonl", purpose, content)
  sendJson(context.engine, context.response, 200, saved.meta, commonHeaders(context))
}

const listFiles = async (context: RouteContext): Promise<void> => {
  const purpose = context.url.searchParams.get("purpose")
  const data = [...storeOf(context.engine).files.values()]
    .filter((file) => purpose === null || file.meta.purpose === purpose)
    .map((file) => file.meta)
  sendJson(context.engine, context.response, 200, { object: "list", data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null }, commonHeaders(context))
}

const getFile = async (context: RouteContext): Promise<void> => {
  const file = storeOf(context.engine).files.get(context.params[0]!)
  if (file === undefined) return notFound(context, `No such File object: ${context.params[0]}`)
  sendJson(context.engine, context.response, 200, file.meta, commonHeaders(context))
}

const fileContent = async (context: RouteContext): Promise<void> => {
  const file = storeOf(context.engine).files.get(context.params[0]!)
  if (file === undefined) return notFound(context, `No such File object: ${context.params[0]}`)
  countStatus(context.engine, 200)
  context.response.writeHead(200, { ...commonHeaders(context), "content-type": "application/octet-stream", "content-length": file.content.length })
  context.response.end(file.content)
}

const deleteFile = async (context: RouteContext): Promise<void> => {
  const id = context.params[0]!
  const deleted = storeOf(context.engine).files.delete(id)
  if (!deleted) return notFound(context, `No such File object: ${id}`)
  sendJson(context.engine, context.response, 200, { id, object: "file", deleted: true }, commonHeaders(context))
}

const batchEndpoints = new Set(["/v1/chat/completions", "/v1/embeddings", "/v1/completions"])

const parseBatchLines = (
  content: Buffer,
  endpoint: string
): { lines: Array<BatchLine> } | { failure: NonNullable<Batch["failure"]> } => {
  const lines: Array<BatchLine> = []
  const seen = new Set<string>()
  const texts = content.toString("utf8").split("\n")
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i]!.trim()
    if (text.length === 0) continue
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return { failure: { code: "invalid_json_line", message: `This line is not parseable as valid JSON.`, line: i + 1, param: null } }
    }
    if (!isObject(value) || typeof value.custom_id !== "string") {
      return { failure: { code: "missing_required_parameter", message: "Missing required parameter: 'custom_id'.", line: i + 1, param: "custom_id" } }
    }
    if (seen.has(value.custom_id)) {
      return { failure: { code: "duplicate_custom_id", message: `The custom_id '${value.custom_id}' is used more than once.`, line: i + 1, param: "custom_id" } }
    }
    seen.add(value.custom_id)
    if (value.method !== "POST") {
      return { failure: { code: "invalid_request", message: "The 'method' of every line must be POST.", line: i + 1, param: "method" } }
    }
    if (value.url !== endpoint) {
      return { failure: { code: "mismatched_endpoint", message: `The url '${String(value.url)}' does not match the batch endpoint '${endpoint}'.`, line: i + 1, param: "url" } }
    }
    lines.push({ custom_id: value.custom_id, body: value.body })
  }
  if (lines.length === 0) return { failure: { code: "empty_file", message: "The input file has no requests.", line: null, param: null } }
  return { lines }
}

const runBatchLine = async (engine: Engine, endpoint: string, line: BatchLine): Promise<BatchResult> => {
  const requestId = engine.id("req_")
  const lineId = engine.id("batch_req_")
  const failed = (problem: Problem): BatchResult => ({
    customId: line.custom_id,
    ok: false,
    line: JSON.stringify({
      id: lineId,
      custom_id: line.custom_id,
      response: { status_code: 400, request_id: requestId, body: { error: { message: problem.message, type: "invalid_request_error", param: problem.param, code: null } } },
      error: null
    })
  })
  const succeeded = (body: unknown): BatchResult => ({
    customId: line.custom_id,
    ok: true,
    line: JSON.stringify({ id: lineId, custom_id: line.custom_id, response: { status_code: 200, request_id: requestId, body }, error: null })
  })
  if (endpoint === "/v1/embeddings") {
    const input = validateEmbeddings(line.body)
    if (isProblem(input)) return failed(input)
    const dimensions = input.dimensions ?? engine.options.embeddingDimensions ?? 16
    return succeeded({
      object: "list",
      data: input.texts.map((text, index) => ({ object: "embedding", index, embedding: embeddingVector(input.model, text, dimensions) })),
      model: input.model,
      usage: { prompt_tokens: input.inputTokens, total_tokens: input.inputTokens }
    })
  }
  if (endpoint === "/v1/completions") {
    const body = line.body
    if (!isObject(body) || typeof body.prompt !== "string") return failed({ param: "prompt", message: "Missing required parameter: 'prompt'." })
    const common = sampling(body, ["max_tokens"])
    if (isProblem(common)) return failed(common)
    const maxTokens = common.maxTokens ?? 16
    const raw = await engine.responder({ api: "openai", route: "POST /v1/completions", model: common.model, messages: [], prompt: body.prompt, maxTokens, body })
    const generated = shape(raw, maxTokens, common.stop)
    const inputTokens = countTokens(body.prompt)
    engine.counters.outputTokens += generated.tokens.length
    return succeeded({
      id: engine.id("cmpl-"),
      object: "text_completion",
      created: seconds(),
      model: common.model,
      choices: [{ text: generated.text, index: 0, logprobs: null, finish_reason: generated.finishReason }],
      usage: { prompt_tokens: inputTokens, completion_tokens: generated.tokens.length, total_tokens: inputTokens + generated.tokens.length }
    })
  }
  const input = validateChat(line.body)
  if (isProblem(input)) return failed(input)
  const raw = await engine.responder({
    api: "openai",
    route: "POST /v1/chat/completions",
    model: input.model,
    messages: input.messages,
    ...(input.maxTokens !== undefined ? { maxTokens: input.maxTokens } : {}),
    ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
    ...(input.stop !== undefined ? { stop: input.stop } : {}),
    body: line.body
  })
  const generated = shape(raw, input.maxTokens, input.stop)
  engine.counters.outputTokens += generated.tokens.length
  return succeeded(chatCompletionBody(engine.id("chatcmpl-"), input.model, input.inputTokens, generated))
}

const batchTiming = (engine: Engine) => {
  const options = engine.options.batch
  return {
    validatingMs: options?.validatingMs ?? 20,
    perRequestMs: options?.perRequestMs ?? 2,
    finalizingMs: options?.finalizingMs ?? 20,
    expiresAfterMs: options?.expiresAfterMs ?? 24 * 3_600_000
  }
}

const toSeconds = (ms: number) => Math.floor(ms / 1000)

/** Advances a batch to where the clock says it is, and renders it. */
const renderBatch = (engine: Engine, batch: Batch, at: number) => {
  const timing = batchTiming(engine)
  const total = batch.lines.length
  const inProgressAt = batch.createdAt + timing.validatingMs
  const processingEnd = inProgressAt + timing.perRequestMs * total
  const expiresAt = batch.createdAt + timing.expiresAfterMs
  const processedBy = (instant: number) =>
    instant < inProgressAt ? 0 : timing.perRequestMs <= 0 ? total : Math.min(total, Math.floor((instant - inProgressAt) / timing.perRequestMs))
  const base = {
    id: batch.id,
    object: "batch",
    endpoint: batch.endpoint,
    model: null,
    errors: null as unknown,
    input_file_id: batch.inputFileId,
    completion_window: "24h",
    status: "validating",
    output_file_id: null as string | null,
    error_file_id: null as string | null,
    created_at: toSeconds(batch.createdAt),
    in_progress_at: null as number | null,
    expires_at: toSeconds(expiresAt),
    finalizing_at: null as number | null,
    completed_at: null as number | null,
    failed_at: null as number | null,
    expired_at: null as number | null,
    cancelling_at: null as number | null,
    cancelled_at: null as number | null,
    request_counts: { total: batch.failure === undefined ? total : 0, completed: 0, failed: 0 },
    metadata: batch.metadata ?? null,
    usage: null
  }
  if (batch.failure !== undefined) {
    if (at < inProgressAt) return base
    return {
      ...base,
      status: "failed",
      failed_at: toSeconds(inProgressAt),
      errors: { object: "list", data: [batch.failure] }
    }
  }
  const finish = (status: string, atInstant: number, processed: number, reason: { code: string; message: string } | undefined) => {
    if (batch.terminal === undefined) {
      const results = batch.results!
      const done = results.slice(0, processed)
      const outputs = done.filter((result) => result.ok).map((result) => result.line)
      const errors = done.filter((result) => !result.ok).map((result) => result.line)
      if (reason !== undefined) {
        for (const line of batch.lines.slice(processed)) {
          errors.push(JSON.stringify({ id: engine.id("batch_req_"), custom_id: line.custom_id, response: null, error: reason }))
        }
      }
      const outputFileId = outputs.length > 0 ? saveFile(engine, `${batch.id}_output.jsonl`, "batch_output", Buffer.from(outputs.join("\n") + "\n")).meta.id : null
      const errorFileId = errors.length > 0 ? saveFile(engine, `${batch.id}_error.jsonl`, "batch_output", Buffer.from(errors.join("\n") + "\n")).meta.id : null
      batch.terminal = { status, at: atInstant, outputFileId, errorFileId, completed: outputs.length, failed: errors.length }
    }
    const terminal = batch.terminal
    return {
      ...base,
      status: terminal.status,
      in_progress_at: toSeconds(inProgressAt),
      output_file_id: terminal.outputFileId,
      error_file_id: terminal.errorFileId,
      request_counts: { total, completed: terminal.completed, failed: terminal.failed }
    }
  }
  if (batch.cancelledAt !== undefined) {
    const cancelledAt = batch.cancelledAt
    if (at < cancelledAt + timing.finalizingMs || batch.results === undefined) {
      return { ...base, status: "cancelling", in_progress_at: at >= inProgressAt ? toSeconds(inProgressAt) : null, cancelling_at: toSeconds(cancelledAt) }
    }
    return {
      ...finish("cancelled", cancelledAt + timing.finalizingMs, processedBy(cancelledAt), undefined),
      cancelling_at: toSeconds(cancelledAt),
      cancelled_at: toSeconds(cancelledAt + timing.finalizingMs)
    }
  }
  if (at < inProgressAt) return base
  if (processingEnd > expiresAt && at >= expiresAt && batch.results !== undefined) {
    return {
      ...finish("expired", expiresAt, processedBy(expiresAt), {
        code: "batch_expired",
        message: "This request could not be executed before the completion window expired."
      }),
      expired_at: toSeconds(expiresAt)
    }
  }
  const processed = processedBy(Math.min(at, expiresAt))
  if (at < processingEnd || processingEnd > expiresAt || batch.results === undefined) {
    const completed = batch.results === undefined ? 0 : batch.results.slice(0, processed).filter((result) => result.ok).length
    return {
      ...base,
      status: at >= processingEnd && processingEnd <= expiresAt ? "finalizing" : "in_progress",
      in_progress_at: toSeconds(inProgressAt),
      request_counts: { total, completed, failed: Math.min(processed, batch.results?.length ?? 0) - completed }
    }
  }
  if (at < processingEnd + timing.finalizingMs) {
    return { ...base, status: "finalizing", in_progress_at: toSeconds(inProgressAt), finalizing_at: toSeconds(processingEnd) }
  }
  return {
    ...finish("completed", processingEnd + timing.finalizingMs, total, undefined),
    finalizing_at: toSeconds(processingEnd),
    completed_at: toSeconds(processingEnd + timing.finalizingMs)
  }
}

const createBatch = async (context: RouteContext): Promise<void> => {
  const body = await readJson(context)
  if (body === undefined) return
  if (!isObject(body)) return invalid(context, "The request body must be a JSON object.", "body")
  if (typeof body.input_file_id !== "string") return invalid(context, "Missing required parameter: 'input_file_id'.", "input_file_id")
  if (typeof body.endpoint !== "string" || !batchEndpoints.has(body.endpoint)) {
    return invalid(context, `Invalid value for 'endpoint': expected one of /v1/chat/completions, /v1/embeddings, /v1/completions.`, "endpoint")
  }
  if (body.completion_window !== "24h") return invalid(context, "Invalid value for 'completion_window': only '24h' is supported.", "completion_window")
  const { engine } = context
  const file = storeOf(engine).files.get(body.input_file_id)
  if (file === undefined) return invalid(context, `Invalid 'input_file_id': no file with id '${body.input_file_id}'.`, "input_file_id")
  if (file.meta.purpose !== "batch") return invalid(context, `Invalid 'input_file_id': the file's purpose must be 'batch', not '${file.meta.purpose}'.`, "input_file_id")
  const parsed = parseBatchLines(file.content, body.endpoint)
  const batch: Batch = {
    id: engine.id("batch_"),
    endpoint: body.endpoint,
    inputFileId: body.input_file_id,
    metadata: body.metadata,
    createdAt: Date.now(),
    lines: "lines" in parsed ? parsed.lines : [],
    ...("failure" in parsed ? { failure: parsed.failure } : {})
  }
  storeOf(engine).batches.set(batch.id, batch)
  if (batch.failure === undefined) {
    const endpoint = batch.endpoint
    void (async () => {
      const results: Array<BatchResult> = []
      for (const line of batch.lines) {
        try {
          results.push(await runBatchLine(engine, endpoint, line))
        } catch (error) {
          results.push({
            customId: line.custom_id,
            ok: false,
            line: JSON.stringify({ id: engine.id("batch_req_"), custom_id: line.custom_id, response: null, error: { code: "server_error", message: String(error) } })
          })
        }
      }
      batch.results = results
    })()
  }
  sendJson(engine, context.response, 200, renderBatch(engine, batch, batch.createdAt), commonHeaders(context))
}

const getBatch = async (context: RouteContext): Promise<void> => {
  const batch = storeOf(context.engine).batches.get(context.params[0]!)
  if (batch === undefined) return notFound(context, `No batch found with id '${context.params[0]}'.`)
  sendJson(context.engine, context.response, 200, renderBatch(context.engine, batch, Date.now()), commonHeaders(context))
}

const cancelBatch = async (context: RouteContext): Promise<void> => {
  const { engine } = context
  const batch = storeOf(engine).batches.get(context.params[0]!)
  if (batch === undefined) return notFound(context, `No batch found with id '${context.params[0]}'.`)
  const at = Date.now()
  const current = renderBatch(engine, batch, at)
  if (!["validating", "in_progress", "finalizing"].includes(current.status)) {
    return invalid(context, `Cannot cancel a batch with status '${current.status}'.`, null)
  }
  if (batch.cancelledAt === undefined) {
    batch.cancelledAt = at
    engine.counters.cancellations += 1
  }
  sendJson(engine, context.response, 200, renderBatch(engine, batch, at), commonHeaders(context))
}

const listBatches = async (context: RouteContext): Promise<void> => {
  const { engine } = context
  const limit = Math.min(100, Math.max(1, Number(context.url.searchParams.get("limit") ?? 20) || 20))
  const after = context.url.searchParams.get("after")
  const all = [...storeOf(engine).batches.values()].reverse()
  const start = after === null ? 0 : all.findIndex((batch) => batch.id === after) + 1
  const page = all.slice(start, start + limit)
  const at = Date.now()
  const data = page.map((batch) => renderBatch(engine, batch, at))
  sendJson(engine, context.response, 200, {
    object: "list",
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: start + limit < all.length
  }, commonHeaders(context))
}

const route = (method: string, path: string, handle: Route["handle"]): Route => ({
  method,
  pattern: new RegExp(`^${path.replace(/:[a-z]+/g, "([^/]+)")}$`),
  name: `${method} ${path}`,
  vendor,
  handle
})

/** Every OpenAI route the simulator serves. */
export const routes: ReadonlyArray<Route> = [
  route("POST", "/v1/chat/completions", chatCompletions),
  route("POST", "/v1/completions", completions),
  route("POST", "/v1/embeddings", embeddings),
  route("GET", "/v1/models", listModels),
  route("GET", "/v1/models/:id", getModel),
  route("POST", "/v1/files", uploadFile),
  route("GET", "/v1/files", listFiles),
  route("GET", "/v1/files/:id", getFile),
  route("GET", "/v1/files/:id/content", fileContent),
  route("DELETE", "/v1/files/:id", deleteFile),
  route("POST", "/v1/batches", createBatch),
  route("GET", "/v1/batches", listBatches),
  route("GET", "/v1/batches/:id", getBatch),
  route("POST", "/v1/batches/:id/cancel", cancelBatch)
]
