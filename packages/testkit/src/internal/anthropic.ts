/**
 * The simulated Anthropic Messages API: JSON and streamed messages, prompt-cache usage
 * (`cache_control` blocks), Anthropic's error bodies and `anthropic-ratelimit-*` headers.
 * @since 0.1.0
 */
import type { ResponderMessage } from "../SimulatorOptions.js"
import { runCall } from "./engine/call.js"
import type { Engine } from "./engine/engine.js"
import { isObject, parseJson, readBody, sendJson } from "./engine/http.js"
import { paceTokens, waitWhole } from "./engine/pacing.js"
import type { LimitState } from "./engine/rateLimiter.js"
import type { Route, RouteContext } from "./engine/route.js"
import { startSse, writeSse } from "./engine/sse.js"
import type { ErrorKind, Vendor } from "./engine/vendor.js"
import { hash } from "./random.js"
import { countTokens } from "./tokens.js"

const errorTypes: Record<ErrorKind, { status: number; type: string }> = {
  invalid_request: { status: 400, type: "invalid_request_error" },
  authentication: { status: 401, type: "authentication_error" },
  not_found: { status: 404, type: "not_found_error" },
  requests: { status: 429, type: "rate_limit_error" },
  tokens: { status: 429, type: "rate_limit_error" },
  concurrency: { status: 429, type: "rate_limit_error" },
  // Anthropic reports an exhausted credit balance as a 400, not a 429.
  quota: { status: 400, type: "invalid_request_error" },
  server: { status: 500, type: "api_error" },
  overloaded: { status: 529, type: "overloaded_error" }
}

/** Anthropic's error body: `{ type: "error", error: { type, message } }`. */
export const vendor: Vendor = {
  api: "anthropic",
  error: (kind, message) => {
    const { status, type } = errorTypes[kind]
    const text = kind === "quota"
      ? "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
      : kind === "overloaded"
      ? "Overloaded"
      : message
    return { status, body: { type: "error", error: { type, message: text } } }
  },
  rateHeaders: (state: LimitState, now: number) => {
    const headers: Record<string, string> = {}
    const instant = (ms: number | undefined) => new Date(now + (ms ?? 0)).toISOString()
    if (state.limitRequests !== undefined) {
      headers["anthropic-ratelimit-requests-limit"] = String(state.limitRequests)
      headers["anthropic-ratelimit-requests-remaining"] = String(state.remainingRequests ?? 0)
      headers["anthropic-ratelimit-requests-reset"] = instant(state.resetRequestsMs)
    }
    if (state.limitTokens !== undefined) {
      headers["anthropic-ratelimit-tokens-limit"] = String(state.limitTokens)
      headers["anthropic-ratelimit-tokens-remaining"] = String(state.remainingTokens ?? 0)
      headers["anthropic-ratelimit-tokens-reset"] = instant(state.resetTokensMs)
      headers["anthropic-ratelimit-input-tokens-limit"] = String(state.limitTokens)
      headers["anthropic-ratelimit-input-tokens-remaining"] = String(state.remainingTokens ?? 0)
      headers["anthropic-ratelimit-input-tokens-reset"] = instant(state.resetTokensMs)
    }
    return headers
  }
}

const headersOf = (context: RouteContext, state?: LimitState): Record<string, string> => ({
  "request-id": context.engine.id("req_"),
  ...vendor.rateHeaders(state ?? context.engine.state(context.key || undefined), Date.now())
})

const invalid = (context: RouteContext, message: string): void =>
  sendJson(context.engine, context.response, 400, { type: "error", error: { type: "invalid_request_error", message } }, headersOf(context))

interface Block {
  readonly text: string
  readonly cached: boolean
}

/** A validated Messages request. */
interface MessagesInput {
  readonly model: string
  readonly maxTokens: number
  readonly messages: ReadonlyArray<ResponderMessage>
  readonly blocks: ReadonlyArray<Block>
  readonly stop: ReadonlyArray<string> | undefined
  readonly temperature: number | undefined
  readonly stream: boolean
  /** The tool `tool_choice: { type: "tool", name }` forces: the answer is its `tool_use` input. */
  readonly forcedTool: string | undefined
}

const blocksOf = (content: unknown, path: string): Array<Block> | string => {
  if (typeof content === "string") return [{ text: content, cached: false }]
  if (!Array.isArray(content)) return `${path}: Input should be a valid string or a list of content blocks`
  const blocks: Array<Block> = []
  for (let i = 0; i < content.length; i++) {
    const block: unknown = content[i]
    if (!isObject(block) || typeof block.type !== "string") return `${path}.${i}: Input should be a valid content block with a 'type'`
    if (block.type === "text" && typeof block.text !== "string") return `${path}.${i}.text: Field required`
    const text = block.type === "text"
      ? (block.text as string)
      : block.type === "tool_result" && typeof block.content === "string"
      ? block.content
      : ""
    blocks.push({ text, cached: isObject(block.cache_control) })
  }
  return blocks
}

/** Validates a Messages body, naming the offending field as Anthropic does (`messages.0.role: …`). */
export const validateMessages = (body: unknown): MessagesInput | string => {
  if (!isObject(body)) return "The request body must be a JSON object."
  if (typeof body.model !== "string" || body.model.length === 0) {
    return body.model === undefined
      ? "model: Field required"
      : "model: Input should be a valid string"
  }
  if (body.max_tokens === undefined) return "max_tokens: Field required"
  if (typeof body.max_tokens !== "number" || !Number.isInteger(body.max_tokens)) return "max_tokens: Input should be a valid integer"
  if (body.max_tokens < 1) return "max_tokens: Input should be greater than or equal to 1"
  if (!Array.isArray(body.messages)) {
    return body.messages === undefined
      ? "messages: Field required"
      : "messages: Input should be a valid list"
  }
  if (body.messages.length === 0) return "messages: at least one message is required"
  const blocks: Array<Block> = []
  const messages: Array<ResponderMessage> = []
  if (body.system !== undefined) {
    const system = blocksOf(body.system, "system")
    if (typeof system === "string") return system
    blocks.push(...system)
    messages.push({ role: "system", content: system.map((block) => block.text).join("") })
  }
  for (let i = 0; i < body.messages.length; i++) {
    const message: unknown = body.messages[i]
    if (!isObject(message)) return `messages.${i}: Input should be a valid dictionary`
    if (message.role !== "user" && message.role !== "assistant") return `messages.${i}.role: Input should be 'user' or 'assistant'`
    const content = blocksOf(message.content, `messages.${i}.content`)
    if (typeof content === "string") return content
    blocks.push(...content)
    messages.push({ role: message.role, content: content.map((block) => block.text).join("") })
  }
  let stop: ReadonlyArray<string> | undefined
  if (body.stop_sequences !== undefined) {
    if (!Array.isArray(body.stop_sequences) || !body.stop_sequences.every((item) => typeof item === "string")) {
      return "stop_sequences: Input should be a valid list of strings"
    }
    stop = body.stop_sequences as Array<string>
  }
  if (body.temperature !== undefined && (typeof body.temperature !== "number" || body.temperature < 0 || body.temperature > 1)) {
    return "temperature: Input should be a number between 0 and 1"
  }
  if (body.stream !== undefined && typeof body.stream !== "boolean") return "stream: Input should be a valid boolean"
  const names = new Set<string>()
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return "tools: Input should be a valid list"
    for (let i = 0; i < body.tools.length; i++) {
      const tool: unknown = body.tools[i]
      if (!isObject(tool) || typeof tool.name !== "string") return `tools.${i}.name: Field required`
      if (!isObject(tool.input_schema)) return `tools.${i}.input_schema: Field required`
      names.add(tool.name)
    }
  }
  let forcedTool: string | undefined
  if (body.tool_choice !== undefined) {
    const choice = body.tool_choice
    if (!isObject(choice) || typeof choice.type !== "string") return "tool_choice: Input should be a valid dictionary"
    if (choice.type === "tool") {
      if (typeof choice.name !== "string" || !names.has(choice.name)) {
        return `tool_choice.name: Tool '${String(choice.name)}' not found in tools`
      }
      forcedTool = choice.name
    }
  }
  return {
    model: body.model,
    maxTokens: body.max_tokens,
    messages,
    blocks,
    stop,
    temperature: typeof body.temperature === "number" ? body.temperature : undefined,
    stream: body.stream === true,
    forcedTool
  }
}

const caches = new WeakMap<Engine, Set<number>>()

/** Splits input tokens into uncached, cache-write and cache-read parts, remembering prefixes per key and model. */
const cacheUsage = (engine: Engine, key: string, input: MessagesInput) => {
  const total = input.blocks.reduce((sum, block) => sum + countTokens(block.text), 0)
  const last = input.blocks.findLastIndex((block) => block.cached)
  if (last < 0) return { input_tokens: total, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, total }
  const prefixBlocks = input.blocks.slice(0, last + 1)
  const prefixTokens = prefixBlocks.reduce((sum, block) => sum + countTokens(block.text), 0)
  let cache = caches.get(engine)
  if (cache === undefined) {
    cache = new Set()
    caches.set(engine, cache)
  }
  const id = hash(key, input.model, ...prefixBlocks.map((block) => block.text))
  const hit = cache.has(id)
  cache.add(id)
  return {
    input_tokens: total - prefixTokens,
    cache_creation_input_tokens: hit ? 0 : prefixTokens,
    cache_read_input_tokens: hit ? prefixTokens : 0,
    total
  }
}

/** A tool's input from the responder's text: the JSON object it holds, else `{ "text": … }`. */
const toolInput = (text: string): Record<string, unknown> => {
  try {
    const value: unknown = JSON.parse(text)
    if (isObject(value)) return value
  } catch {
    // not JSON: wrapped below
  }
  return { text }
}

const stopReason = (finishReason: "stop" | "length", stopSequence: string | undefined) =>
  finishReason === "length" ? "max_tokens" : stopSequence !== undefined ? "stop_sequence" : "end_turn"

const messages = async (context: RouteContext): Promise<void> => {
  const parsed = parseJson(await readBody(context.request))
  if (!parsed.ok) return invalid(context, parsed.message)
  const body = parsed.value
  const input = validateMessages(body)
  if (typeof input === "string") return invalid(context, input)
  const { engine, response } = context
  const total = input.blocks.reduce((sum, block) => sum + countTokens(block.text), 0)
  const call = await runCall(context, vendor, {
    inputTokens: total,
    promptCharacters: input.blocks.reduce((sum, block) => sum + block.text.length, 0),
    maxTokens: input.maxTokens,
    responderRequest: {
      api: "anthropic",
      route: context.route,
      model: input.model,
      messages: input.messages,
      maxTokens: input.maxTokens,
      ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
      ...(input.stop !== undefined ? { stop: input.stop } : {}),
      body
    }
  })
  if (call === undefined) return
  const { total: _total, ...usage } = cacheUsage(engine, context.key, input)
  const id = engine.id("msg_")
  const headers = headersOf(context, call.admission.state)
  const generated = call.generated
  const tool = input.forcedTool
  // a forced tool answers with a tool_use block whose input is the responder's JSON text
  const reason = tool !== undefined && generated.finishReason !== "length"
    ? "tool_use"
    : stopReason(generated.finishReason, generated.stopSequence)
  const toolId = tool === undefined ? "" : engine.id("toolu_")
  if (!input.stream) {
    if (!(await waitWhole(engine, response, call))) return
    return sendJson(engine, response, 200, {
      id,
      type: "message",
      role: "assistant",
      model: input.model,
      content: tool === undefined
        ? [{ type: "text", text: generated.text }]
        : [{ type: "tool_use", id: toolId, name: tool, input: toolInput(generated.text) }],
      stop_reason: reason,
      stop_sequence: generated.stopSequence ?? null,
      usage: { ...usage, output_tokens: generated.tokens.length, service_tier: "standard" }
    }, headers)
  }
  startSse(engine, response, headers)
  const event = (type: string, data: Record<string, unknown>) => writeSse(response, JSON.stringify({ type, ...data }), type)
  event("message_start", {
    message: {
      id,
      type: "message",
      role: "assistant",
      model: input.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...usage, output_tokens: 1, service_tier: "standard" }
    }
  })
  event(
    "content_block_start",
    { index: 0, content_block: tool === undefined ? { type: "text", text: "" } : { type: "tool_use", id: toolId, name: tool, input: {} } }
  )
  event("ping", {})
  const finished = await paceTokens(
    engine,
    response,
    call,
    (token) =>
      event("content_block_delta", {
        index: 0,
        delta: tool === undefined ? { type: "text_delta", text: token } : { type: "input_json_delta", partial_json: token }
      })
  )
  if (!finished) return
  event("content_block_stop", { index: 0 })
  event("message_delta", {
    delta: { stop_reason: reason, stop_sequence: generated.stopSequence ?? null },
    usage: { output_tokens: generated.tokens.length }
  })
  event("message_stop", {})
  response.end()
}

const countTokensRoute = async (context: RouteContext): Promise<void> => {
  const parsed = parseJson(await readBody(context.request))
  if (!parsed.ok) return invalid(context, parsed.message)
  const body = parsed.value
  const input = validateMessages(isObject(body) ? { max_tokens: 1, ...body } : body)
  if (typeof input === "string") return invalid(context, input)
  const total = input.blocks.reduce((sum, block) => sum + countTokens(block.text), 0)
  sendJson(context.engine, context.response, 200, { input_tokens: total }, headersOf(context))
}

/** Every Anthropic route the simulator serves. */
export const routes: ReadonlyArray<Route> = [
  { method: "POST", pattern: /^\/v1\/messages$/, name: "POST /v1/messages", vendor, handle: messages },
  { method: "POST", pattern: /^\/v1\/messages\/count_tokens$/, name: "POST /v1/messages/count_tokens", vendor, handle: countTokensRoute }
]
