/**
 * Anthropic's Messages API as an `Llm`, through the official `@anthropic-ai/sdk`:
 * system-prompt extraction, streaming, usage with prompt-cache read and write tokens,
 * 529 as `Overloaded` and the `anthropic-ratelimit-*` headers on every completion.
 * @since 0.1.0
 */
import AnthropicClient, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "@anthropic-ai/sdk"
import type { Message, MessageCreateParamsNonStreaming, MessageParam, RawMessageStreamEvent } from "@anthropic-ai/sdk/resources/messages"
import { Completion, CompletionRequest, FieldSupport, Llm, LlmError, RateLimitHeaders, RateLimitPolicy } from "@hasten/core"
import { Context, Effect, Layer, Redacted, Result, Stream } from "effect"
import type * as Scope from "effect/Scope"
import * as Remote from "./internal/remote.js"
import type { ProviderError } from "./ProviderError.js"

/** The provider name used in `Llm.name`, errors and cache keys. @category models @since 0.1.0 */
export const providerName = "anthropic"

/** Options for {@link layer} and {@link make}. @category models @since 0.1.0 */
export interface Options {
  /** The API key (`ANTHROPIC_API_KEY` in {@link layerConfig}). */
  readonly apiKey: Redacted.Redacted<string>
  /** Default model when a request's `model` is empty. */
  readonly model?: string | undefined
  /** Base URL (`https://api.anthropic.com` by default). */
  readonly baseURL?: string | undefined
  /** Per-request timeout in milliseconds. */
  readonly timeout?: number | undefined
  /** `max_tokens` when a request sets none: Anthropic requires one (default 1024). */
  readonly defaultMaxTokens?: number | undefined
  /** Extra headers on every request (`anthropic-beta`, gateway headers). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** A custom `fetch`. */
  readonly fetch?: typeof globalThis.fetch | undefined
  /**
   * Marks the system prompt as a prompt-cache breakpoint (`cache_control: ephemeral`), so
   * repeated calls with the same system prompt read it from Anthropic's cache.
   */
  readonly promptCaching?: boolean | undefined
}

const noPenalties = "Anthropic's Messages API has no repetition penalties"

/**
 * How Anthropic treats every request field — the mapping `toBody` applies and
 * `complete`/`stream` check, and the providers README's table.
 * @category utils @since 0.3.0
 */
export const fieldSupport: FieldSupport.FieldSupport = {
  model: FieldSupport.mapped("`model`"),
  messages: FieldSupport.mapped("`messages`; system messages joined into `system`"),
  prompt: FieldSupport.mapped("one user message"),
  maxTokens: FieldSupport.mapped("`max_tokens` (default `defaultMaxTokens`, 1024)"),
  temperature: FieldSupport.param("temperature"),
  topP: FieldSupport.param("top_p"),
  topK: FieldSupport.param("top_k"),
  seed: FieldSupport.refused(
    "Anthropic's Messages API has no sampling seed",
    (_, request) => request.temperature === 0,
    "with `temperature: 0` (greedy: a seed changes nothing)"
  ),
  stop: FieldSupport.param("stop_sequences"),
  adapter: FieldSupport.refused("Anthropic serves no LoRA adapters"),
  responseFormat: FieldSupport.mapped(
    "a forced tool (`tools` + `tool_choice`) whose `input_schema` is the schema; the tool's input is the completion text"
  ),
  repeatPenalty: FieldSupport.refused(noPenalties),
  frequencyPenalty: FieldSupport.refused(noPenalties),
  presencePenalty: FieldSupport.refused(noPenalties),
  penaltyWindow: FieldSupport.refused(noPenalties),
  logprobs: FieldSupport.refused("Anthropic's Messages API returns no log probabilities"),
  topLogprobs: FieldSupport.refused("Anthropic's Messages API returns no log probabilities"),
  contextOverflow: FieldSupport.refused(
    "an HTTP API fails an oversized prompt itself (ContextLengthExceeded); truncate it before sending",
    FieldSupport.onlyErrorOverflow,
    "`error`"
  ),
  providerOptions: FieldSupport.mapped("spread onto the body last"),
  trial: FieldSupport.identity("cache key only")
}

/**
 * Checks a request against {@link fieldSupport}, and a JSON schema against what a tool's
 * `input_schema` can be (an object).
 */
const check = (request: CompletionRequest.CompletionRequest): Effect.Effect<void, LlmError.LlmError> => {
  const format = request.responseFormat
  if (format?.type === "json" && format.schema !== undefined && format.schema.type !== undefined && format.schema.type !== "object") {
    return Effect.fail(
      LlmError.unsupportedField(
        providerName,
        "responseFormat",
        `JSON output goes through a tool whose input must be an object; the schema's type is ${JSON.stringify(format.schema.type)}`
      )
    )
  }
  return FieldSupport.check(providerName, fieldSupport, request)
}

/** The name of the forced tool a JSON `responseFormat` becomes. */
const toolName = (format: CompletionRequest.ResponseFormat & { type: "json" }): string =>
  (format.name ?? "response").replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64) || "response"

/** The Messages API body a request maps to (exported for tests and debugging). @category utils @since 0.1.0 */
export const toBody = (
  request: CompletionRequest.CompletionRequest,
  options: Pick<Options, "model" | "defaultMaxTokens" | "promptCaching"> = {}
): MessageCreateParamsNonStreaming => {
  const system: Array<string> = []
  const messages: Array<MessageParam> = []
  for (const message of request.messages) {
    if (message.role === "system") system.push(message.content)
    else messages.push({ role: message.role, content: message.content })
  }
  if (messages.length === 0 && request.prompt !== undefined) messages.push({ role: "user", content: request.prompt })
  return {
    model: request.model.length > 0 ? request.model : options.model ?? "",
    max_tokens: request.maxTokens ?? options.defaultMaxTokens ?? 1024,
    messages,
    ...(system.length > 0
      ? {
        system: options.promptCaching === true
          ? [{ type: "text" as const, text: system.join("\n\n"), cache_control: { type: "ephemeral" as const } }]
          : system.join("\n\n")
      }
      : {}),
    ...FieldSupport.params(fieldSupport, request),
    ...(request.responseFormat?.type === "json"
      ? {
        tools: [{
          name: toolName(request.responseFormat),
          description: "Answer by calling this tool with the response as its input.",
          input_schema: request.responseFormat.schema ?? { type: "object" }
        }],
        tool_choice: { type: "tool", name: toolName(request.responseFormat) }
      }
      : {}),
    ...request.providerOptions
  } as MessageCreateParamsNonStreaming
}

/** Maps an Anthropic stop reason onto core's finish reason. @category utils @since 0.1.0 */
export const finishReason = (reason: string | null | undefined): Completion.FinishReason => {
  switch (reason) {
    case "end_turn":
    case "stop_sequence":
    case "pause_turn":
      return "stop"
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return "tool_calls"
    case "refusal":
      return "content_filter"
    default:
      return "unknown"
  }
}

interface AnthropicUsage {
  readonly input_tokens?: number | null
  readonly output_tokens?: number | null
  readonly cache_read_input_tokens?: number | null
  readonly cache_creation_input_tokens?: number | null
}

const toUsage = (usage: AnthropicUsage): Completion.Usage => {
  const cacheRead = usage.cache_read_input_tokens ?? 0
  const cacheWrite = usage.cache_creation_input_tokens ?? 0
  return {
    // Anthropic reports uncached input separately from cache reads and writes
    inputTokens: (usage.input_tokens ?? 0) + cacheRead + cacheWrite,
    outputTokens: usage.output_tokens ?? 0,
    ...(cacheRead > 0 ? { cachedInputTokens: cacheRead } : {}),
    ...(cacheWrite > 0 ? { cacheWriteInputTokens: cacheWrite } : {})
  }
}

/**
 * Maps anything `@anthropic-ai/sdk` throws onto `LlmError`: 529 / `overloaded_error` to
 * `Overloaded`, 429 to `RateLimited` (scope from the `anthropic-ratelimit-*` headers),
 * "prompt is too long" to `ContextLengthExceeded`, timeouts and connection failures.
 * @category errors @since 0.1.0
 */
export const mapError = (
  error: unknown,
  options: { readonly secrets?: ReadonlyArray<string>; readonly now?: number } = {}
): LlmError.LlmError => {
  const secrets = options.secrets ?? []
  if (error instanceof APIConnectionTimeoutError) {
    return LlmError.make(providerName, new LlmError.Timeout({ description: Remote.scrub(error.message, secrets) }))
  }
  if (error instanceof APIUserAbortError) {
    return LlmError.make(providerName, new LlmError.Transport({ description: "request aborted" }))
  }
  if (error instanceof APIConnectionError) {
    return LlmError.make(providerName, new LlmError.Transport({ description: Remote.describeConnectionError(error, secrets) }))
  }
  if (error instanceof APIError && typeof error.status === "number") {
    return Remote.fromHttpError(
      providerName,
      {
        status: error.status,
        message: error.apiMessage ?? error.message,
        headers: error.headers,
        type: error.type
      },
      secrets,
      options.now ?? Date.now()
    )
  }
  if (error instanceof APIError) {
    // an `error` event inside an SSE stream (Anthropic sends overloads this way mid-stream)
    const description = Remote.scrub(error.apiMessage ?? error.message, secrets)
    return LlmError.make(
      providerName,
      error.type === "overloaded_error"
        ? new LlmError.Overloaded({ description })
        : error.type === "rate_limit_error"
        ? new LlmError.RateLimited({ scope: "unknown", description })
        : new LlmError.ServerError({ status: 500, description })
    )
  }
  if (error instanceof Error && /terminated|ECONNRESET|socket|other side closed/i.test(`${error.message} ${String(error.cause)}`)) {
    return LlmError.make(providerName, new LlmError.Transport({ description: Remote.describeConnectionError(error, secrets) }))
  }
  return Remote.unexpected(providerName, error, secrets)
}

const abortOnRelease: Effect.Effect<AbortController, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => new AbortController()),
  (controller) => Effect.sync(() => controller.abort())
)

/**
 * Builds the `Llm` service over an Anthropic client.
 * @category constructors @since 0.1.0
 */
export const make = (options: Options): Llm.LlmService => {
  const secrets = Remote.secretsOf(options.apiKey)
  const client = new AnthropicClient({
    apiKey: Redacted.value(options.apiKey),
    authToken: null,
    baseURL: options.baseURL ?? "https://api.anthropic.com",
    ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    ...(options.headers !== undefined ? { defaultHeaders: options.headers } : {}),
    ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
    maxRetries: 0
  })
  const catchError = (error: unknown) => mapError(error, { secrets, now: Date.now() })

  const complete = Effect.fn("Anthropic.complete")(function*(request: CompletionRequest.CompletionRequest) {
    yield* check(request)
    const start = yield* Remote.now
    const { data, response } = yield* Effect.tryPromise({
      try: (signal): Promise<{ data: Message; response: Response }> =>
        client.messages.create(toBody(request, options), { signal }).withResponse(),
      catch: catchError
    })
    const end = yield* Remote.now
    const rateLimit = RateLimitHeaders.parse(response.headers, end)
    const parts: Array<string> = []
    if (!Array.isArray(data?.content)) {
      return yield* LlmError.make(
        providerName,
        new LlmError.BadResponse({
          description: `expected a message with content blocks, got ${JSON.stringify(data)?.slice(0, 200)}`
        })
      )
    }
    const json = request.responseFormat?.type === "json"
    for (const block of data.content) {
      if (block.type === "text" && !json) parts.push(block.text)
      // JSON output: the forced tool's input is the answer
      else if (block.type === "tool_use" && json) parts.push(JSON.stringify(block.input))
    }
    return new Completion.Completion({
      text: parts.join(""),
      finishReason: json && data.stop_reason === "tool_use" ? "stop" : finishReason(data.stop_reason),
      usage: toUsage(data.usage),
      model: data.model || request.model,
      provider: providerName,
      timing: { start, firstToken: end, end },
      ...(rateLimit !== undefined ? { rateLimit } : {})
    })
  })

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.gen(function*() {
      yield* check(request)
      const json = request.responseFormat?.type === "json"
      const controller = yield* abortOnRelease
      const { data, response } = yield* Effect.tryPromise({
        try: (): Promise<{ data: AsyncIterable<RawMessageStreamEvent>; response: Response }> =>
          client.messages.create({ ...toBody(request, options), stream: true }, { signal: controller.signal }).withResponse(),
        catch: catchError
      })
      let rateLimit = RateLimitHeaders.parse(response.headers, yield* Remote.now)
      let model = request.model
      let startUsage: AnthropicUsage = {}
      return Stream.fromAsyncIterable(data, catchError).pipe(
        Stream.filterMap((event) => {
          switch (event.type) {
            case "message_start": {
              startUsage = event.message.usage
              model = event.message.model
              return emit(new Completion.CompletionChunk({ text: "", model, ...takeRateLimit() }))
            }
            case "content_block_delta":
              return event.delta.type === "text_delta" && !json
                ? emit(new Completion.CompletionChunk({ text: event.delta.text, ...takeRateLimit() }))
                : event.delta.type === "input_json_delta" && json
                ? emit(new Completion.CompletionChunk({ text: event.delta.partial_json, ...takeRateLimit() }))
                : skip
            case "message_delta": {
              // message_delta's usage is cumulative; input counts may only be on message_start
              const usage = toUsage({
                input_tokens: event.usage.input_tokens ?? startUsage.input_tokens ?? null,
                output_tokens: event.usage.output_tokens,
                cache_read_input_tokens: event.usage.cache_read_input_tokens ?? startUsage.cache_read_input_tokens ?? null,
                cache_creation_input_tokens: event.usage.cache_creation_input_tokens ??
                  startUsage.cache_creation_input_tokens ?? null
              })
              return emit(
                new Completion.CompletionChunk({
                  text: "",
                  model,
                  finishReason: json && event.delta.stop_reason === "tool_use" ? "stop" : finishReason(event.delta.stop_reason),
                  usage,
                  ...takeRateLimit()
                })
              )
            }
            default:
              return skip
          }
        })
      )
      function takeRateLimit(): { rateLimit?: RateLimitHeaders.RateLimitInfo } {
        if (rateLimit === undefined) return {}
        const out = { rateLimit }
        rateLimit = undefined
        return out
      }
    }))

  return {
    name: providerName,
    complete,
    stream,
    endpoint: (options.baseURL ?? "https://api.anthropic.com").replace(/\/+$/, ""),
    rateLimitPolicy: {
      ...RateLimitPolicy.anthropic,
      defaultMaxTokens: options.defaultMaxTokens ?? RateLimitPolicy.anthropic.defaultMaxTokens
    }
  }
}

const emit = (chunk: Completion.CompletionChunk): Result.Result<Completion.CompletionChunk, void> => Result.succeed(chunk)
const skip: Result.Result<Completion.CompletionChunk, void> = Result.fail(undefined)

/**
 * `Llm` backed by Anthropic's Messages API.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Llm.Llm> => Layer.syncContext(() => Context.make(Llm.Llm, make(options)))

/**
 * Like {@link layer}, reading `ANTHROPIC_API_KEY` (required, as `Redacted`) and
 * `ANTHROPIC_BASE_URL` (optional) from `effect` Config. Explicit options win; a missing
 * key fails at layer construction with a message naming the variable.
 * @category layers @since 0.1.0
 */
export const layerConfig = (
  options: Partial<Options> = {}
): Layer.Layer<Llm.Llm, ProviderError> =>
  Layer.unwrap(Effect.gen(function*() {
    const apiKey = yield* Remote.requiredKey(
      providerName,
      "ANTHROPIC_API_KEY",
      options.apiKey,
      "set it to your Anthropic API key, or pass `apiKey` to Anthropic.layer"
    )
    const baseURL = yield* Remote.optionalString("ANTHROPIC_BASE_URL", options.baseURL)
    return layer({ ...options, apiKey, ...(baseURL !== undefined ? { baseURL } : {}) })
  }))

/** The error a `layerConfig` fails with (reason `ProviderConfigError` when the environment lacks a key). @category errors @since 0.2.0 */
export { ProviderConfigError, ProviderError } from "./ProviderError.js"
