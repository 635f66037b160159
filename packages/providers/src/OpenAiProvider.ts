/**
 * OpenAI, and every OpenAI-compatible server (vLLM, llama.cpp server, Ollama, Groq,
 * Together, Cerebras) by `baseURL`, as an `Llm` and an `Embedder`, through the official
 * `openai` SDK. SDK retries are off: Hasten has exactly one retry layer (`rate-limit`).
 * @since 0.1.0
 */
import { Completion, CompletionRequest, Embedder, FieldSupport, Llm, LlmError, RateLimitHeaders, RateLimitPolicy } from "@hasten/core"
import { Context, Effect, Layer, Redacted, Stream } from "effect"
import type * as Scope from "effect/Scope"
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai"
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessageParam
} from "openai/resources/chat/completions"
import type { Completion as TextCompletion, CompletionCreateParamsNonStreaming } from "openai/resources/completions"
import * as Remote from "./internal/remote.js"
import type { ProviderError } from "./ProviderError.js"

/** The provider name used in `Llm.name`, errors and cache keys. @category models @since 0.1.0 */
export const providerName = "openai"

/**
 * Which server speaks at the endpoint, deciding the parameters beyond OpenAI's own that it
 * is sent: `openai` (the default: OpenAI's API, and any server not declared), `vllm`
 * (`top_k`, `repetition_penalty`, LoRA adapters as model names), `llama.cpp` (llama-server:
 * `top_k`, `repeat_penalty`, `repeat_last_n`), `ollama` (its OpenAI-compatible `/v1`, which
 * reads OpenAI's fields only). A field the endpoint cannot take is refused with
 * `InvalidRequest`, never dropped.
 * @category models @since 0.3.0
 */
export type Compat = "openai" | "vllm" | "llama.cpp" | "ollama"

/** Every {@link Compat}, in the order the providers README lists them. @category models @since 0.3.0 */
export const compats: ReadonlyArray<Compat> = ["openai", "vllm", "llama.cpp", "ollama"]

const overflow = FieldSupport.refused(
  "an HTTP API fails an oversized prompt itself (ContextLengthExceeded); truncate or shift it before sending",
  FieldSupport.onlyErrorOverflow,
  "`error`"
)

/**
 * How an endpoint of kind `compat` treats every request field — the mapping `toChatBody`
 * applies and `complete`/`stream` check, and the providers README's table.
 * @category utils @since 0.3.0
 */
export const fieldSupport = (compat: Compat = "openai"): FieldSupport.FieldSupport => {
  const server = compat === "openai"
    ? "OpenAI's API"
    : compat === "ollama"
    ? "Ollama's OpenAI-compatible API (`/v1`)"
    : compat === "vllm"
    ? "vLLM"
    : "llama-server"
  return {
    model: FieldSupport.mapped("`model`"),
    messages: FieldSupport.mapped("`messages`"),
    prompt: FieldSupport.mapped("`prompt` on `/v1/completions`"),
    maxTokens: FieldSupport.mapped("`max_completion_tokens` (api.openai.com) or `max_tokens`"),
    temperature: FieldSupport.param("temperature"),
    topP: FieldSupport.param("top_p"),
    topK: compat === "vllm" || compat === "llama.cpp"
      ? FieldSupport.param("top_k")
      : FieldSupport.refused(`${server} takes no top-k parameter`),
    seed: FieldSupport.param("seed"),
    stop: FieldSupport.param("stop"),
    adapter: compat === "vllm"
      ? FieldSupport.mapped("`model` (vLLM serves each LoRA adapter as a model: `--lora-modules name=path`)")
      : compat === "llama.cpp"
      ? FieldSupport.refused("llama-server selects adapters by numeric id: pass `providerOptions: { lora: [{ id, scale }] }`")
      : compat === "ollama"
      ? FieldSupport.refused("Ollama builds adapters into a model (Modelfile `ADAPTER`): name that model in `model`")
      : FieldSupport.refused("OpenAI serves fine-tunes as model ids: name the fine-tuned model in `model`"),
    responseFormat: FieldSupport.mapped("`response_format` (`json_schema` strict, or `json_object`)"),
    repeatPenalty: compat === "vllm"
      ? FieldSupport.param("repetition_penalty")
      : compat === "llama.cpp"
      ? FieldSupport.param("repeat_penalty")
      : FieldSupport.refused(`${server} takes no repeat penalty: use frequencyPenalty or presencePenalty`),
    frequencyPenalty: FieldSupport.param("frequency_penalty"),
    presencePenalty: FieldSupport.param("presence_penalty"),
    penaltyWindow: compat === "llama.cpp"
      ? FieldSupport.param("repeat_last_n")
      : FieldSupport.refused(`${server} takes no penalty window: its penalties look at the whole output`),
    logprobs: FieldSupport.mapped("`logprobs` (chat), `logprobs: n` (`/v1/completions`)"),
    topLogprobs: FieldSupport.mapped("`top_logprobs` (chat), `logprobs: n` (`/v1/completions`, at most 5)"),
    contextOverflow: overflow,
    providerOptions: FieldSupport.mapped("spread onto the body last"),
    trial: FieldSupport.identity("cache key only")
  }
}

/** Options for {@link layer} and {@link make}. @category models @since 0.1.0 */
export interface Options {
  /** Default model when a request's `model` is empty. */
  readonly model?: string | undefined
  /** Default embedding model (`text-embedding-3-small`). */
  readonly embeddingModel?: string | undefined
  /** The API key. Required by api.openai.com; OpenAI-compatible servers may not need one. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** Base URL of the API (`https://api.openai.com/v1` by default), e.g. `http://localhost:8000/v1` for vLLM. */
  readonly baseURL?: string | undefined
  /** Per-request timeout in milliseconds (SDK default: 10 minutes). */
  readonly timeout?: number | undefined
  /**
   * Which field carries `maxTokens`: `max_completion_tokens` (OpenAI's current name, the
   * default for api.openai.com) or `max_tokens` (the default when `baseURL` is set, which
   * every OpenAI-compatible server understands).
   */
  readonly maxTokensField?: "max_tokens" | "max_completion_tokens" | undefined
  /** The `Llm.name` (default `openai`); give OpenAI-compatible servers their own name. */
  readonly name?: string | undefined
  /** Extra headers on every request (organization, project, gateway headers). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** A custom `fetch` (proxies, tests). */
  readonly fetch?: typeof globalThis.fetch | undefined
  /**
   * How the endpoint admits and counts calls, for `@hasten/rate-limit`: OpenAI's own
   * accounting (`RateLimitPolicy.openAi`) for api.openai.com; for any other `baseURL`
   * no provider budget (`RateLimitPolicy.none`: only configured budgets apply). Set
   * `RateLimitPolicy.openAi` for a server that limits and charges as OpenAI does (Azure
   * OpenAI, a gateway, the testkit simulator), so budgets are learnt from its headers.
   */
  readonly rateLimitPolicy?: RateLimitPolicy.RateLimitPolicy | undefined
  /**
   * Which server the endpoint is (see {@link Compat}; default `openai`): it decides which
   * request fields beyond OpenAI's are sent, and under which names, and which are refused.
   */
  readonly compat?: Compat | undefined
}

/**
 * The endpoint's identity (`Llm.endpoint`): its base URL without a trailing slash.
 * @category utils @since 0.3.0
 */
export const endpointOf = (options: Pick<Options, "baseURL">): string =>
  (options.baseURL ?? "https://api.openai.com/v1").replace(/\/+$/, "")

/**
 * The rate-limit policy an endpoint gets when none is given: OpenAI's for api.openai.com
 * (or no `baseURL`), none for other servers.
 * @category utils @since 0.2.0
 */
export const policyFor = (options: Pick<Options, "baseURL" | "rateLimitPolicy">): RateLimitPolicy.RateLimitPolicy => {
  if (options.rateLimitPolicy !== undefined) return options.rateLimitPolicy
  if (options.baseURL === undefined) return RateLimitPolicy.openAi
  try {
    return new URL(options.baseURL).hostname === "api.openai.com" ? RateLimitPolicy.openAi : RateLimitPolicy.none
  } catch {
    return RateLimitPolicy.none
  }
}

/** The chat-completions body a request maps to (exported for tests and debugging). @category utils @since 0.1.0 */
export const toChatBody = (
  request: CompletionRequest.CompletionRequest,
  options: Pick<Options, "model" | "maxTokensField" | "baseURL" | "compat"> = {}
): ChatCompletionCreateParamsNonStreaming => {
  const maxTokensField = options.maxTokensField ?? (options.baseURL === undefined ? "max_completion_tokens" : "max_tokens")
  const messages: Array<ChatCompletionMessageParam> = request.messages.map((message) => ({
    role: message.role,
    content: message.content
  }))
  if (messages.length === 0 && request.prompt !== undefined) messages.push({ role: "user", content: request.prompt })
  return {
    model: modelOf(request, options),
    messages,
    ...(request.maxTokens !== undefined ? { [maxTokensField]: request.maxTokens } : {}),
    ...FieldSupport.params(fieldSupport(options.compat), request),
    ...(request.logprobs === true
      ? { logprobs: true, ...(request.topLogprobs !== undefined ? { top_logprobs: request.topLogprobs } : {}) }
      : {}),
    ...(request.responseFormat?.type === "json"
      ? {
        response_format: request.responseFormat.schema !== undefined
          ? {
            type: "json_schema" as const,
            json_schema: {
              name: request.responseFormat.name ?? "response",
              schema: request.responseFormat.schema,
              strict: true
            }
          }
          : { type: "json_object" as const }
      }
      : {}),
    ...request.providerOptions
  } as ChatCompletionCreateParamsNonStreaming
}

/** The legacy text-completions body for a raw `prompt` request. @category utils @since 0.1.0 */
export const toCompletionBody = (
  request: CompletionRequest.CompletionRequest,
  options: Pick<Options, "model" | "compat"> = {}
): CompletionCreateParamsNonStreaming =>
  ({
    model: modelOf(request, options),
    prompt: request.prompt ?? "",
    ...(request.maxTokens !== undefined ? { max_tokens: request.maxTokens } : {}),
    ...FieldSupport.params(fieldSupport(options.compat), request),
    ...(request.logprobs === true ? { logprobs: Math.min(5, request.topLogprobs ?? 0) } : {}),
    ...request.providerOptions
  }) as CompletionCreateParamsNonStreaming

/** The model sent: vLLM serves a LoRA adapter as a model of its own name. */
const modelOf = (request: CompletionRequest.CompletionRequest, options: Pick<Options, "model" | "compat">): string =>
  options.compat === "vllm" && request.adapter !== undefined
    ? request.adapter
    : request.model.length > 0
    ? request.model
    : options.model ?? ""

interface WireLogprob {
  readonly token: string
  readonly logprob: number
  readonly bytes?: ReadonlyArray<number> | null
  readonly top_logprobs?: ReadonlyArray<{ token: string; logprob: number; bytes?: ReadonlyArray<number> | null }> | null
}

interface WireTextLogprobs {
  readonly tokens?: ReadonlyArray<string> | null
  readonly token_logprobs?: ReadonlyArray<number | null> | null
  readonly top_logprobs?: ReadonlyArray<Record<string, number> | null> | null
}

/**
 * Core's per-token logprobs from a chat choice's `logprobs` (`content`) or a legacy text
 * choice's (`tokens`, `token_logprobs`, `top_logprobs` maps); `undefined` when absent.
 * @category utils @since 0.3.0
 */
export const toLogprobs = (logprobs: unknown): Array<Completion.TokenLogprob> | undefined => {
  if (logprobs === null || typeof logprobs !== "object") return undefined
  const chat = (logprobs as { content?: ReadonlyArray<WireLogprob> | null }).content
  if (Array.isArray(chat)) {
    return chat.map((entry: WireLogprob) => ({
      token: entry.token,
      logprob: entry.logprob,
      ...(entry.bytes !== undefined && entry.bytes !== null ? { bytes: [...entry.bytes] } : {}),
      ...(entry.top_logprobs !== undefined && entry.top_logprobs !== null
        ? {
          topLogprobs: entry.top_logprobs.map((top) => ({
            token: top.token,
            logprob: top.logprob,
            ...(top.bytes !== undefined && top.bytes !== null ? { bytes: [...top.bytes] } : {})
          }))
        }
        : {})
    }))
  }
  const text = logprobs as WireTextLogprobs
  if (!Array.isArray(text.tokens)) return undefined
  return text.tokens.map((token, index) => {
    const top = text.top_logprobs?.[index]
    return {
      token,
      logprob: text.token_logprobs?.[index] ?? Number.NEGATIVE_INFINITY,
      ...(top !== undefined && top !== null
        ? { topLogprobs: Object.entries(top).map(([alternative, logprob]) => ({ token: alternative, logprob })) }
        : {})
    }
  })
}

const isRawPrompt = (request: CompletionRequest.CompletionRequest): boolean =>
  request.messages.length === 0 && request.prompt !== undefined && request.prompt.length > 0

/** Maps an OpenAI finish reason onto core's. @category utils @since 0.1.0 */
export const finishReason = (reason: string | null | undefined): Completion.FinishReason => {
  switch (reason) {
    case "stop":
      return "stop"
    case "length":
      return "length"
    case "content_filter":
      return "content_filter"
    case "tool_calls":
    case "function_call":
      return "tool_calls"
    default:
      return "unknown"
  }
}

const toUsage = (usage: ChatCompletion["usage"] | null | undefined): Completion.Usage | undefined => {
  if (usage === undefined || usage === null) return undefined
  const cached = usage.prompt_tokens_details?.cached_tokens
  return {
    inputTokens: usage.prompt_tokens,
    outputTokens: usage.completion_tokens,
    ...(cached !== undefined && cached !== null && cached > 0 ? { cachedInputTokens: cached } : {})
  }
}

/**
 * Maps anything the `openai` SDK throws onto `LlmError`: HTTP statuses through core's
 * classification (with retry-after and the rate-limit scope from the headers),
 * `APIConnectionTimeoutError` to `Timeout`, other connection failures to `Transport`.
 * Secrets in messages are replaced with `[redacted]`.
 * @category errors @since 0.1.0
 */
export const mapError = (
  error: unknown,
  options: { readonly provider?: string; readonly secrets?: ReadonlyArray<string>; readonly now?: number } = {}
): LlmError.LlmError => {
  const provider = options.provider ?? providerName
  const secrets = options.secrets ?? []
  if (error instanceof APIConnectionTimeoutError) {
    return LlmError.make(provider, new LlmError.Timeout({ description: Remote.scrub(error.message, secrets) }))
  }
  if (error instanceof APIUserAbortError) {
    return LlmError.make(provider, new LlmError.Transport({ description: "request aborted" }))
  }
  if (error instanceof APIConnectionError) {
    return LlmError.make(provider, new LlmError.Transport({ description: Remote.describeConnectionError(error, secrets) }))
  }
  if (error instanceof APIError && typeof error.status === "number") {
    const body = error.error as { message?: unknown } | undefined
    const message = typeof body?.message === "string" ? body.message : error.message
    return Remote.fromHttpError(
      provider,
      {
        status: error.status,
        message,
        headers: error.headers,
        code: error.code,
        type: error.type
      },
      secrets,
      options.now ?? Date.now()
    )
  }
  if (error instanceof APIError) {
    // an `error` event inside an SSE stream: the server failed after it had answered 200
    return LlmError.make(provider, new LlmError.ServerError({ status: 500, description: Remote.scrub(error.message, secrets) }))
  }
  if (error instanceof Error && /terminated|ECONNRESET|socket|other side closed/i.test(describe(error))) {
    // a connection reset in the middle of a streamed body surfaces from undici as a plain TypeError
    return LlmError.make(provider, new LlmError.Transport({ description: Remote.describeConnectionError(error, secrets) }))
  }
  return Remote.unexpected(provider, error, secrets)
}

const describe = (error: Error): string => `${error.message} ${error.cause instanceof Error ? error.cause.message : ""}`

/**
 * Builds the `Llm` and `Embedder` services over an `openai` client.
 * @category constructors @since 0.1.0
 */
export const make = (options: Options = {}): { readonly llm: Llm.LlmService; readonly embedder: Embedder.EmbedderService } => {
  const name = options.name ?? providerName
  const secrets = Remote.secretsOf(options.apiKey)
  const client = new OpenAI({
    // OpenAI-compatible servers often take any key; the SDK insists on one
    apiKey: options.apiKey !== undefined ? Redacted.value(options.apiKey) : "not-needed",
    ...(options.baseURL !== undefined ? { baseURL: options.baseURL } : { baseURL: "https://api.openai.com/v1" }),
    ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    ...(options.headers !== undefined ? { defaultHeaders: options.headers } : {}),
    ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
    maxRetries: 0
  })

  const catchError = (error: unknown) => mapError(error, { provider: name, secrets, now: Date.now() })

  const support = fieldSupport(options.compat)
  const endpoint = endpointOf(options)
  const check = (request: CompletionRequest.CompletionRequest) =>
    isRawPrompt(request) && request.logprobs === true && (request.topLogprobs ?? 0) > 5
      ? Effect.fail(LlmError.unsupportedField(name, "topLogprobs", "`/v1/completions` (a raw `prompt`) returns at most 5 alternatives"))
      : FieldSupport.check(name, support, request)

  /** A completion that was asked for logprobs and came back without them: the endpoint ignored the field. */
  const ensureLogprobs = (request: CompletionRequest.CompletionRequest, completion: Completion.Completion) =>
    request.logprobs === true && completion.logprobs === undefined && completion.text.length > 0
      ? missingLogprobs(name)
      : Effect.succeed(completion)

  const complete = Effect.fn("OpenAi.complete")(function*(request: CompletionRequest.CompletionRequest) {
    yield* check(request)
    const start = yield* Remote.now
    if (isRawPrompt(request)) {
      const { data, response } = yield* Effect.tryPromise({
        try: (signal) => client.completions.create(toCompletionBody(request, options), { signal }).withResponse(),
        catch: catchError
      })
      const end = yield* Remote.now
      if (!Array.isArray(data?.choices) || data.choices.length === 0) return yield* badShape(name, data)
      return yield* ensureLogprobs(
        request,
        buildCompletion(name, request, data, response, start, end, data.choices[0]?.text ?? "", data.choices[0]?.logprobs)
      )
    }
    const { data, response } = yield* Effect.tryPromise({
      try: (signal) => client.chat.completions.create(toChatBody(request, options), { signal }).withResponse(),
      catch: catchError
    })
    const end = yield* Remote.now
    if (!Array.isArray(data?.choices) || data.choices.length === 0) return yield* badShape(name, data)
    return yield* ensureLogprobs(
      request,
      buildCompletion(name, request, data, response, start, end, data.choices[0]?.message?.content ?? "", data.choices[0]?.logprobs)
    )
  })

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.gen(function*() {
      yield* check(request)
      const controller = yield* abortOnRelease
      const { data, response } = yield* Effect.tryPromise({
        try: (): Promise<{ data: AsyncIterable<ChatCompletionChunk | TextCompletion>; response: Response }> =>
          isRawPrompt(request)
            ? client.completions.create(
              { ...toCompletionBody(request, options), stream: true, stream_options: { include_usage: true } },
              { signal: controller.signal }
            ).withResponse()
            : client.chat.completions.create(
              { ...toChatBody(request, options), stream: true, stream_options: { include_usage: true } },
              { signal: controller.signal }
            ).withResponse(),
        catch: catchError
      })
      const rateLimit = RateLimitHeaders.parse(response.headers, yield* Remote.now)
      let first = true
      let sawText = false
      let sawLogprobs = false
      const chunks = Stream.fromAsyncIterable(data, catchError).pipe(
        Stream.map((chunk) => {
          const out = toChunk(chunk, first ? rateLimit : undefined)
          first = false
          if (out.text.length > 0) sawText = true
          if (out.logprobs !== undefined) sawLogprobs = true
          return out
        })
      )
      if (request.logprobs !== true) return chunks
      // as in `complete`: an endpoint that ignored `logprobs` fails instead of dropping them
      return Stream.concat(
        chunks,
        Stream.fromEffect(Effect.suspend(() => sawText && !sawLogprobs ? missingLogprobs(name) : Effect.void)).pipe(Stream.drain)
      )
    }))

  const embed = Effect.fn("OpenAi.embed")(function*(texts: ReadonlyArray<string>, embedOptions?: Embedder.EmbedOptions) {
    const model = embedOptions?.model ?? options.embeddingModel ?? "text-embedding-3-small"
    if (texts.length === 0) return { vectors: [], model, usage: { inputTokens: 0 } }
    const data = yield* Effect.tryPromise({
      try: (signal) =>
        client.embeddings.create({
          model,
          input: [...texts],
          encoding_format: "float",
          ...(embedOptions?.dimensions !== undefined ? { dimensions: embedOptions.dimensions } : {})
        }, { signal }),
      catch: catchError
    })
    // Filled with `undefined` (not a sparse array, whose holes `some` would skip), so an index
    // the response leaves out is reported below.
    const vectors: Array<ReadonlyArray<number>> = Array.from({ length: texts.length })
    for (const item of data.data) vectors[item.index] = item.embedding
    if (vectors.some((vector) => vector === undefined) || data.data.length !== texts.length) {
      return yield* LlmError.make(
        name,
        new LlmError.BadResponse({
          description: `expected ${texts.length} embeddings, got ${data.data.length}`
        })
      )
    }
    return { vectors, model: data.model, usage: { inputTokens: data.usage?.prompt_tokens ?? 0 } }
  })

  return {
    llm: { name, complete, stream, rateLimitPolicy: policyFor(options), endpoint },
    embedder: { name, model: options.embeddingModel ?? "text-embedding-3-small", embed }
  }
}

/** An `AbortController` aborted when the surrounding scope closes (stream end or interruption). @internal */
const abortOnRelease: Effect.Effect<AbortController, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => new AbortController()),
  (controller) => Effect.sync(() => controller.abort())
)

const missingLogprobs = (name: string) =>
  Effect.fail(LlmError.make(
    name,
    new LlmError.BadResponse({ description: "the request asked for logprobs and the endpoint returned none" })
  ))

const badShape = (name: string, data: unknown) =>
  Effect.fail(LlmError.make(
    name,
    new LlmError.BadResponse({
      description: `expected a completion with choices, got ${JSON.stringify(data)?.slice(0, 200)}`
    })
  ))

const toChunk = (
  chunk: ChatCompletionChunk | TextCompletion,
  rateLimit: RateLimitHeaders.RateLimitInfo | undefined
): Completion.CompletionChunk => {
  const choice = chunk.choices?.[0] as
    | { delta?: { content?: string | null }; text?: string; finish_reason?: string | null; logprobs?: unknown }
    | undefined
  const text = choice?.delta?.content ?? choice?.text ?? ""
  const usage = toUsage(chunk.usage)
  const logprobs = toLogprobs(choice?.logprobs)
  return new Completion.CompletionChunk({
    text,
    ...(logprobs !== undefined && logprobs.length > 0 ? { logprobs } : {}),
    ...(chunk.model ? { model: chunk.model } : {}),
    ...(choice?.finish_reason ? { finishReason: finishReason(choice.finish_reason) } : {}),
    ...(usage !== undefined ? { usage } : {}),
    ...(rateLimit !== undefined ? { rateLimit } : {})
  })
}

const buildCompletion = (
  name: string,
  request: CompletionRequest.CompletionRequest,
  data: ChatCompletion | TextCompletion,
  response: Response,
  start: number,
  end: number,
  text: string,
  wireLogprobs: unknown
): Completion.Completion => {
  const rateLimit = RateLimitHeaders.parse(response.headers, end)
  const logprobs = request.logprobs === true ? toLogprobs(wireLogprobs) : undefined
  return new Completion.Completion({
    text,
    finishReason: finishReason(data.choices[0]?.finish_reason),
    usage: toUsage(data.usage) ?? { inputTokens: 0, outputTokens: 0, estimated: true },
    model: data.model || request.model,
    provider: name,
    timing: { start, firstToken: end, end },
    ...(rateLimit !== undefined ? { rateLimit } : {}),
    ...(logprobs !== undefined ? { logprobs } : {})
  })
}

/**
 * `Llm` and `Embedder` backed by OpenAI or an OpenAI-compatible server.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Llm.Llm | Embedder.Embedder> =>
  Layer.syncContext(() => {
    const { embedder, llm } = make(options)
    return Context.make(Llm.Llm, llm).pipe(Context.add(Embedder.Embedder, embedder))
  })

/**
 * Like {@link layer}, reading `OPENAI_API_KEY` (required, as `Redacted`) and
 * `OPENAI_BASE_URL` (optional) from `effect` Config. Explicit options win; a missing key
 * fails at layer construction with a message naming the variable.
 * @category layers @since 0.1.0
 */
export const layerConfig = (options: Options = {}): Layer.Layer<Llm.Llm | Embedder.Embedder, ProviderError> =>
  Layer.unwrap(Effect.gen(function*() {
    const apiKey = yield* Remote.requiredKey(
      options.name ?? providerName,
      "OPENAI_API_KEY",
      options.apiKey,
      "set it to your OpenAI API key, or pass `apiKey` to OpenAi.layer"
    )
    const baseURL = yield* Remote.optionalString("OPENAI_BASE_URL", options.baseURL)
    return layer({ ...options, apiKey, ...(baseURL !== undefined ? { baseURL } : {}) })
  }))

/** The error a `layerConfig` fails with (reason `ProviderConfigError` when the environment lacks a key). @category errors @since 0.2.0 */
export { ProviderConfigError, ProviderError } from "./ProviderError.js"
