/**
 * Replicate's language models as an `Llm`, through the official `replicate` SDK:
 * `Prefer: wait` predictions with a capped exponential polling fallback, streamed output
 * collected without per-token copying, and the prediction cancelled whenever the caller
 * gives up (interruption or timeout), so nothing keeps running and billing.
 * @since 0.1.0
 */
import { Completion, CompletionRequest, FieldSupport, Llm, LlmError, RateLimitHeaders, RateLimitPolicy } from "@hasten/core"
import { Context, Duration, Effect, Exit, Layer, Redacted, Stream } from "effect"
import ReplicateClient from "replicate"
import type { Prediction } from "replicate"
import * as Remote from "./internal/remote.js"
import * as Sse from "./internal/sse.js"
import type { ProviderError } from "./ProviderError.js"

/** The provider name used in `Llm.name`, errors and cache keys. @category models @since 0.1.0 */
export const providerName = "replicate"

/** Polling backoff after a `Prefer: wait` request returned before the prediction finished. @category models @since 0.1.0 */
export interface PollOptions {
  /** First delay (default 250 ms). */
  readonly initial?: Duration.Input | undefined
  /** Growth factor per poll (default 2). */
  readonly factor?: number | undefined
  /** Upper bound on one delay (default 5 s). */
  readonly max?: Duration.Input | undefined
}

/** Options for {@link layer} and {@link make}. @category models @since 0.1.0 */
export interface Options {
  /** The API token (`REPLICATE_API_TOKEN` in {@link layerConfig}). */
  readonly apiToken: Redacted.Redacted<string>
  /** Default model (`owner/name` or `owner/name:version`) when a request's `model` is empty. */
  readonly model?: string | undefined
  /** Base URL (`https://api.replicate.com/v1` by default). */
  readonly baseUrl?: string | undefined
  /** Seconds the create request asks the server to hold it (`Prefer: wait=n`, 1–60; default 60). */
  readonly preferWaitSeconds?: number | undefined
  /** Polling backoff when the prediction outlives `Prefer: wait`. */
  readonly poll?: PollOptions | undefined
  /** Gives up on a call or a whole stream after this long, cancelling the prediction and failing with `Timeout`. */
  readonly timeout?: Duration.Input | undefined
  /** A custom `fetch`. */
  readonly fetch?: typeof globalThis.fetch | undefined
  /**
   * How the rate limiter counts calls to this endpoint (default `RateLimitPolicy.replicate`:
   * Replicate's documented 600 predictions created per minute, no token budget). Declare
   * another for a proxy with its own limits, or a simulator with scaled windows.
   */
  readonly rateLimitPolicy?: RateLimitPolicy.RateLimitPolicy | undefined
}

/** Which max-token input a model family takes. @category utils @since 0.1.0 */
export const maxTokensInput = (model: string): "max_tokens" | "max_new_tokens" =>
  /llama-2|mistral|mixtral|codellama|vicuna|falcon/i.test(model) ? "max_new_tokens" : "max_tokens"

const isLlama3 = (model: string): boolean => /meta-llama-3|llama-3\.\d|llama3/i.test(model)

const llama3Template = (messages: ReadonlyArray<CompletionRequest.Message>): string => {
  const parts: Array<string> = ["<|begin_of_text|>"]
  for (const message of messages) {
    parts.push(`<|start_header_id|>${message.role}<|end_header_id|>\n\n${message.content}<|eot_id|>`)
  }
  parts.push("<|start_header_id|>assistant<|end_header_id|>\n\n")
  return parts.join("")
}

/**
 * The request fields whose input depends on the model, with the input names that carry
 * them, first match wins: a request that sets one is checked against the model's OpenAPI
 * input schema (fetched once per model) and refused when the model declares none of them.
 * @category utils @since 0.3.0
 */
export const modelInputs = {
  topK: ["top_k"],
  seed: ["seed"],
  stop: ["stop_sequences"],
  frequencyPenalty: ["frequency_penalty"],
  presencePenalty: ["presence_penalty"],
  repeatPenalty: ["repetition_penalty", "repeat_penalty"],
  penaltyWindow: ["repeat_last_n"],
  responseFormat: ["json_schema"],
  adapter: ["lora_weights"]
} as const satisfies Partial<Record<CompletionRequest.Field, ReadonlyArray<string>>>

type ModelInputField = keyof typeof modelInputs

const bySchema = (field: ModelInputField, note?: string) =>
  FieldSupport.mapped(
    `${modelInputs[field].map((name) => `\`${name}\``).join(" or ")}${
      note !== undefined ? ` (${note})` : ""
    }, when the model's input schema has it; else refused`
  )

/**
 * How Replicate treats every request field — the mapping `toInput` applies and
 * `complete`/`stream` check (with the model's input schema), and the providers README's table.
 * @category utils @since 0.3.0
 */
export const fieldSupport: FieldSupport.FieldSupport = {
  model: FieldSupport.mapped("the model (`owner/name`) or version (`owner/name:version`) predicted"),
  messages: FieldSupport.mapped("`prompt` + `system_prompt`; a multi-turn Llama 3 chat through its chat template"),
  prompt: FieldSupport.mapped("`prompt`"),
  maxTokens: FieldSupport.mapped("`max_tokens` (Llama 3 and most) or `max_new_tokens` (Llama 2, Mistral, Mixtral)"),
  temperature: FieldSupport.param("temperature"),
  topP: FieldSupport.param("top_p"),
  topK: bySchema("topK"),
  seed: bySchema("seed"),
  stop: bySchema("stop", "comma separated"),
  adapter: bySchema("adapter", "the adapter's weights URL"),
  responseFormat: bySchema("responseFormat", "the JSON schema as text; `text` needs nothing"),
  repeatPenalty: bySchema("repeatPenalty"),
  frequencyPenalty: bySchema("frequencyPenalty"),
  presencePenalty: bySchema("presencePenalty"),
  penaltyWindow: bySchema("penaltyWindow"),
  logprobs: FieldSupport.refused("Replicate predictions return no log probabilities"),
  topLogprobs: FieldSupport.refused("Replicate predictions return no log probabilities"),
  contextOverflow: FieldSupport.refused(
    "a prediction fails an oversized prompt itself; truncate it before sending",
    FieldSupport.onlyErrorOverflow,
    "`error`"
  ),
  providerOptions: FieldSupport.mapped("merged into the input last"),
  trial: FieldSupport.identity("cache key only")
}

const isSet = (request: CompletionRequest.CompletionRequest, field: ModelInputField): boolean => {
  const value = request[field]
  if (value === undefined) return false
  if (field === "stop") return (value as ReadonlyArray<string>).length > 0
  if (field === "responseFormat") return (value as CompletionRequest.ResponseFormat).type === "json"
  return true
}

/** The request's fields that need the model's input schema. @category utils @since 0.3.0 */
export const schemaFields = (request: CompletionRequest.CompletionRequest): Array<ModelInputField> =>
  (Object.keys(modelInputs) as Array<ModelInputField>).filter((field) => isSet(request, field))

/**
 * The first of `fields` the model's declared inputs cannot carry, as an `InvalidRequest`
 * naming the field, the provider and the model; `undefined` when all can.
 * @category utils @since 0.3.0
 */
export const schemaRefusal = (
  model: string,
  fields: ReadonlyArray<ModelInputField>,
  declared: ReadonlySet<string>
): LlmError.LlmError | undefined => {
  for (const field of fields) {
    const names: ReadonlyArray<string> = modelInputs[field]
    if (!names.some((name) => declared.has(name))) {
      return LlmError.unsupportedField(
        providerName,
        field,
        `${model}'s input schema has no ${names.map((name) => `\`${name}\``).join(" or ")}`
      )
    }
  }
  return undefined
}

/**
 * The prediction input a request maps to, for the common Replicate LLMs (Llama 2/3,
 * Mistral, Mixtral, …): `prompt`, `system_prompt`, `max_tokens` or `max_new_tokens`,
 * `temperature`, `top_p`, `top_k`, `seed`, `stop_sequences` (comma separated), penalties;
 * `providerOptions` last. A multi-turn Llama 3 chat is rendered with its chat template
 * (and `prompt_template: "{prompt}"`); other multi-turn chats become a `role: content` transcript.
 * @category utils @since 0.1.0
 */
export const toInput = (
  request: CompletionRequest.CompletionRequest,
  model: string,
  declared?: ReadonlySet<string>
): Record<string, unknown> => {
  const nameOf = (field: ModelInputField): string => {
    const names: ReadonlyArray<string> = modelInputs[field]
    return (declared === undefined ? undefined : names.find((name) => declared.has(name))) ?? names[0]!
  }
  const system = request.messages.filter((message) => message.role === "system").map((message) => message.content)
  const turns = request.messages.filter((message) => message.role !== "system")
  const input: Record<string, unknown> = {}
  if (request.prompt !== undefined && request.prompt.length > 0 && turns.length === 0) {
    input.prompt = request.prompt
    if (system.length > 0) input.system_prompt = system.join("\n\n")
  } else if (turns.length === 1 && turns[0]!.role === "user") {
    input.prompt = turns[0]!.content
    if (system.length > 0) input.system_prompt = system.join("\n\n")
  } else if (isLlama3(model)) {
    input.prompt = llama3Template(request.messages)
    input.prompt_template = "{prompt}"
  } else {
    input.prompt = `${turns.map((message) => `${message.role}: ${message.content}`).join("\n")}\nassistant:`
    if (system.length > 0) input.system_prompt = system.join("\n\n")
  }
  if (request.maxTokens !== undefined) input[maxTokensInput(model)] = request.maxTokens
  if (request.temperature !== undefined) input.temperature = request.temperature
  if (request.topP !== undefined) input.top_p = request.topP
  if (request.topK !== undefined) input[nameOf("topK")] = request.topK
  if (request.seed !== undefined) input[nameOf("seed")] = request.seed
  if (request.stop !== undefined && request.stop.length > 0) input[nameOf("stop")] = request.stop.join(",")
  if (request.presencePenalty !== undefined) input[nameOf("presencePenalty")] = request.presencePenalty
  if (request.frequencyPenalty !== undefined) input[nameOf("frequencyPenalty")] = request.frequencyPenalty
  if (request.repeatPenalty !== undefined) input[nameOf("repeatPenalty")] = request.repeatPenalty
  if (request.penaltyWindow !== undefined) input[nameOf("penaltyWindow")] = request.penaltyWindow
  if (request.adapter !== undefined) input[nameOf("adapter")] = request.adapter
  if (request.responseFormat?.type === "json") {
    input[nameOf("responseFormat")] = JSON.stringify(request.responseFormat.schema ?? { type: "object" })
  }
  return { ...input, ...request.providerOptions }
}

/**
 * The polling delays in milliseconds: `initial`, then times `factor`, capped at `max`.
 * @category utils @since 0.1.0
 */
export const pollDelay = (attempt: number, options: PollOptions = {}): number => {
  const initial = Duration.toMillis(Duration.fromInputUnsafe(options.initial ?? 250))
  const max = Duration.toMillis(Duration.fromInputUnsafe(options.max ?? 5000))
  return Math.min(max, initial * Math.pow(options.factor ?? 2, attempt))
}

/**
 * Joins a prediction's output once: LLMs on Replicate return an array of tokens.
 * @category utils @since 0.1.0
 */
export const joinOutput = (output: unknown): string =>
  output === undefined || output === null
    ? ""
    : Array.isArray(output)
    ? output.join("")
    : typeof output === "string"
    ? output
    : JSON.stringify(output)

/** Replicate does not say why generation stopped: reaching `maxTokens` (by the model's own count) means `length`. */
const finishReasonOf = (request: CompletionRequest.CompletionRequest, usage: Completion.Usage): Completion.FinishReason =>
  request.maxTokens !== undefined && usage.estimated !== true && usage.outputTokens >= request.maxTokens ? "length" : "stop"

const terminal = (status: string): boolean => status === "succeeded" || status === "failed" || status === "canceled" || status === "aborted"

/**
 * A `fetch` that lets every HTTP attempt reach the network once. The `replicate` SDK
 * retries 429s (and 5xx on GET) and connection errors up to five times on its own; Hasten
 * has one retry layer, so a repeated attempt with the same request replays the first
 * outcome without touching the network.
 * @category utils @since 0.1.0
 */
export const singleAttemptFetch = (base: typeof globalThis.fetch = globalThis.fetch): typeof globalThis.fetch => {
  const replays = new WeakMap<object, () => Promise<Response>>()
  return async (input, init) => {
    if (init === undefined || init === null) return base(input, init)
    const replay = replays.get(init)
    if (replay !== undefined) return replay()
    try {
      const response = await base(input, init)
      if (response.status !== 429 && response.status < 500) return response
      const body = await response.arrayBuffer()
      // a Response body can be read once: every replay gets a fresh copy
      const copy = () => new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers })
      replays.set(init, async () => copy())
      return copy()
    } catch (error) {
      replays.set(init, () => Promise.reject(error))
      throw error
    }
  }
}

interface ApiErrorLike extends Error {
  readonly response: Response
}

const isApiError = (error: unknown): error is ApiErrorLike =>
  error instanceof Error && error.name === "ApiError" && (error as { response?: unknown }).response instanceof Response

/** `Request to … failed with status 429 Too Many Requests: {"detail":"…"}.` → `detail`. */
const apiErrorMessage = (error: ApiErrorLike): string => {
  const match = /failed with status [^:]*:\s*([\s\S]*?)\.?$/.exec(error.message)
  const body = match?.[1] ?? error.message
  try {
    const parsed = JSON.parse(body) as { detail?: unknown; title?: unknown; error?: unknown }
    const detail = parsed.detail ?? parsed.error ?? parsed.title
    if (typeof detail === "string") return detail
  } catch {
    // not JSON
  }
  return body
}

/**
 * Maps anything the `replicate` SDK throws onto `LlmError`: HTTP statuses through core's
 * classification (402 is an exhausted quota), connection failures to `Transport`.
 * @category errors @since 0.1.0
 */
export const mapError = (
  error: unknown,
  options: { readonly secrets?: ReadonlyArray<string>; readonly now?: number } = {}
): LlmError.LlmError => {
  const secrets = options.secrets ?? []
  if (LlmError.isLlmError(error)) return error
  if (isApiError(error)) {
    return Remote.fromHttpError(
      providerName,
      {
        status: error.response.status,
        message: apiErrorMessage(error),
        headers: error.response.headers
      },
      secrets,
      options.now ?? Date.now()
    )
  }
  if (error instanceof Error && (error.name === "TimeoutError")) {
    return LlmError.make(providerName, new LlmError.Timeout({ description: Remote.scrub(error.message, secrets) }))
  }
  if (
    error instanceof TypeError ||
    (error instanceof Error && /fetch failed|terminated|ECONNRESET|socket|ECONNREFUSED/i.test(`${error.message} ${String(error.cause)}`))
  ) {
    return LlmError.make(providerName, new LlmError.Transport({ description: Remote.describeConnectionError(error, secrets) }))
  }
  return Remote.unexpected(providerName, error, secrets)
}

/** The Replicate `Llm` plus the bookkeeping its layer waits for on shutdown. @category models @since 0.1.0 */
export interface ReplicateLlm extends Llm.LlmService {
  /** Cancellations still in flight for predictions whose creation outlived the caller. */
  readonly pendingCancellations: () => Promise<void>
}

const splitModel = (model: string): { readonly model: string } | { readonly version: string } => {
  const colon = model.indexOf(":")
  return colon === -1 ? { model } : { version: model.slice(colon + 1) }
}

/**
 * Builds the Replicate `Llm` over a `replicate` client.
 * @category constructors @since 0.1.0
 */
export const make = (options: Options): ReplicateLlm => {
  const secrets = Remote.secretsOf(options.apiToken)
  const client = new ReplicateClient({
    auth: Redacted.value(options.apiToken),
    baseUrl: options.baseUrl ?? "https://api.replicate.com/v1",
    fetch: singleAttemptFetch(options.fetch ?? globalThis.fetch),
    useFileOutput: false
  })
  const catchError = (error: unknown) => mapError(error, { secrets, now: Date.now() })
  const preferWait = Math.max(1, Math.min(60, Math.round(options.preferWaitSeconds ?? 60)))
  const pending = new Set<Promise<unknown>>()

  /** Cancels a prediction; never fails (a finished prediction cannot be cancelled, which is fine). */
  const cancel = (id: string): Effect.Effect<void> =>
    Effect.tryPromise((signal) => client.predictions.cancel(id, { signal })).pipe(
      Effect.timeout("10 seconds"),
      Effect.ignore
    )

  /**
   * Creates a prediction. If the caller gives up while the create request is still held
   * by `Prefer: wait`, the request is left to finish (aborting it would lose the
   * prediction id) and the prediction is cancelled the moment its id arrives.
   */
  const create = (model: string, input: Record<string, unknown>, wait: boolean) =>
    Effect.callback<Prediction, LlmError.LlmError>((resume, signal) => {
      const promise = client.predictions.create(
        {
          ...splitModel(model),
          input,
          ...(wait ? { wait: preferWait } : {})
        } as Parameters<typeof client.predictions.create>[0]
      )
      const settled = promise.then(
        async (prediction) => {
          if (!signal.aborted) return resume(Effect.succeed(prediction))
          if (prediction.id !== undefined && !terminal(prediction.status)) {
            await client.predictions.cancel(prediction.id).catch(() => undefined)
          }
        },
        (error: unknown) => {
          if (!signal.aborted) resume(Effect.fail(catchError(error)))
        }
      )
      signal.addEventListener("abort", () => {
        // the layer's finalizer waits for this create-then-cancel to finish
        pending.add(settled)
        void settled.finally(() => pending.delete(settled))
      }, { once: true })
    })

  const poll = (initial: Prediction) =>
    Effect.gen(function*() {
      let prediction = initial
      let attempt = 0
      while (!terminal(prediction.status)) {
        yield* Effect.sleep(pollDelay(attempt++, options.poll))
        prediction = yield* Effect.tryPromise({
          try: (signal) => client.predictions.get(prediction.id, { signal }),
          catch: catchError
        })
      }
      return { prediction, polls: attempt }
    })

  /** Runs `effect` with the prediction cancelled unless it reached a terminal status. */
  const cancelUnlessDone = <A, E>(id: string, isDone: () => boolean, effect: Effect.Effect<A, E>) =>
    Effect.onExit(effect, (exit) => Exit.isSuccess(exit) || isDone() ? Effect.void : cancel(id))

  const timedOut = (timeout: Duration.Input) =>
    Effect.fail(LlmError.make(
      providerName,
      new LlmError.Timeout({
        description: `no result within ${Duration.format(Duration.fromInputUnsafe(timeout))}; the prediction was cancelled`
      })
    ))

  const withTimeout = <A>(effect: Effect.Effect<A, LlmError.LlmError>): Effect.Effect<A, LlmError.LlmError> =>
    options.timeout === undefined
      ? effect
      : effect.pipe(Effect.timeoutOrElse({ duration: options.timeout, orElse: () => timedOut(options.timeout!) }))

  const withStreamTimeout = <A>(stream: Stream.Stream<A, LlmError.LlmError>): Stream.Stream<A, LlmError.LlmError> =>
    options.timeout === undefined
      ? stream
      : stream.pipe(Stream.interruptWhen(Effect.andThen(Effect.sleep(options.timeout), timedOut(options.timeout))))

  const finish = (prediction: Prediction): Effect.Effect<Prediction, LlmError.LlmError> => {
    if (prediction.status === "succeeded") return Effect.succeed(prediction)
    const detail = prediction.error === undefined || prediction.error === null ? "" : `: ${String(prediction.error)}`
    return Effect.fail(LlmError.make(
      providerName,
      prediction.status === "failed"
        ? new LlmError.ServerError({ status: 500, description: Remote.scrub(`prediction ${prediction.id} failed${detail}`, secrets) })
        : new LlmError.BadResponse({ description: `prediction ${prediction.id} was ${prediction.status}` })
    ))
  }

  const usageOf = (
    request: CompletionRequest.CompletionRequest,
    prediction: Prediction | undefined,
    text: () => string
  ): Effect.Effect<Completion.Usage> => {
    const metrics = prediction?.metrics as { input_token_count?: unknown; output_token_count?: unknown } | undefined
    if (typeof metrics?.input_token_count === "number" && typeof metrics.output_token_count === "number") {
      return Effect.succeed({ inputTokens: metrics.input_token_count, outputTokens: metrics.output_token_count })
    }
    return Effect.promise(async () => {
      const { countTokens } = await import("gpt-tokenizer")
      return {
        inputTokens: countTokens(CompletionRequest.promptText(request)),
        outputTokens: countTokens(text()),
        estimated: true
      }
    })
  }

  const modelOf = (request: CompletionRequest.CompletionRequest): Effect.Effect<string, LlmError.LlmError> => {
    const model = request.model.length > 0 ? request.model : options.model ?? ""
    return /^[^/\s:]+\/[^/\s:]+(:[0-9a-f]+)?$/i.test(model)
      ? Effect.succeed(model)
      : Effect.fail(LlmError.make(
        providerName,
        new LlmError.InvalidRequest({
          description: `Replicate models are named "owner/name" or "owner/name:version", got ${JSON.stringify(model)}`
        })
      ))
  }

  const schemas = new Map<string, Promise<ReadonlySet<string>>>()

  /** The input names the model's OpenAPI schema declares, fetched once per model (a failed fetch is retried next time). */
  const declaredInputs = (model: string): Effect.Effect<ReadonlySet<string>, LlmError.LlmError> =>
    Effect.tryPromise({
      try: () => {
        let pending = schemas.get(model)
        if (pending === undefined) {
          const [owner = "", rest = ""] = model.split("/")
          const [name = "", version] = rest.split(":")
          pending = (version === undefined
            ? client.models.get(owner, name).then((found) => found.latest_version?.openapi_schema)
            : client.models.versions.get(owner, name, version).then((found) => found.openapi_schema))
            .then((schema) => {
              const properties = (schema as { components?: { schemas?: { Input?: { properties?: object } } } } | undefined)
                ?.components?.schemas?.Input?.properties
              return new Set(Object.keys(properties ?? {}))
            })
          schemas.set(model, pending)
          pending.catch(() => schemas.delete(model))
        }
        return pending
      },
      catch: catchError
    })

  /**
   * The input of a request after its checks: fields Replicate never honours are refused;
   * fields that depend on the model are checked against its input schema.
   */
  const inputOf = (request: CompletionRequest.CompletionRequest, model: string) =>
    Effect.gen(function*() {
      yield* FieldSupport.check(providerName, fieldSupport, request)
      const fields = schemaFields(request)
      if (fields.length === 0) return toInput(request, model)
      const declared = yield* declaredInputs(model)
      const refusal = schemaRefusal(model, fields, declared)
      if (refusal !== undefined) return yield* refusal
      return toInput(request, model, declared)
    })

  const complete = Effect.fn("Replicate.complete")(function*(request: CompletionRequest.CompletionRequest) {
    const start = yield* Remote.now
    const model = yield* modelOf(request)
    const created = yield* create(model, yield* inputOf(request, model), true)
    let done = terminal(created.status)
    const { polls, prediction } = yield* cancelUnlessDone(
      created.id,
      () => done,
      Effect.tap(poll(created), () => Effect.sync(() => done = true))
    )
    const finished = yield* finish(prediction)
    const end = yield* Remote.now
    const text = joinOutput(finished.output)
    const usage = yield* usageOf(request, finished, () => text)
    return new Completion.Completion({
      text,
      finishReason: finishReasonOf(request, usage),
      usage,
      model,
      provider: providerName,
      timing: { start, firstToken: end, end },
      facts: { predictionId: finished.id, polls }
    })
  }, (effect) => withTimeout(effect))

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    withStreamTimeout(Stream.unwrap(Effect.gen(function*() {
      const model = yield* modelOf(request)
      const created = yield* create(model, yield* inputOf(request, model), false)
      const state = { done: terminal(created.status) }
      yield* Effect.addFinalizer(() => state.done ? Effect.void : cancel(created.id))
      const url = created.urls?.stream
      if (url === undefined) {
        // the model cannot stream: poll it to the end and emit one chunk
        const { prediction } = yield* poll(created)
        state.done = true
        const finished = yield* finish(prediction)
        const text = joinOutput(finished.output)
        const usage = yield* usageOf(request, finished, () => text)
        return Stream.make(new Completion.CompletionChunk({ text, finishReason: finishReasonOf(request, usage), usage, model }))
      }
      const controller = yield* Effect.acquireRelease(
        Effect.sync(() => new AbortController()),
        (controller) => Effect.sync(() => controller.abort())
      )
      const response = yield* Effect.tryPromise({
        try: () => client.fetch(url, { headers: { Accept: "text/event-stream" }, signal: controller.signal }),
        catch: catchError
      })
      if (!response.ok || response.body === null) {
        const body = yield* Effect.promise(() => response.text().catch(() => ""))
        return yield* Remote.fromHttpError(
          providerName,
          {
            status: response.status,
            message: body,
            headers: response.headers
          },
          secrets,
          yield* Remote.now
        )
      }
      const rateLimit = RateLimitHeaders.parse(response.headers, yield* Remote.now)
      const parts: Array<string> = []
      const events = Sse.events(response.body, catchError).pipe(
        Stream.takeUntil((event) => event.event === "done" || event.event === "error"),
        Stream.mapEffect((event) => {
          if (event.event === "error") {
            state.done = true
            return Effect.fail(LlmError.make(
              providerName,
              new LlmError.ServerError({
                status: 500,
                description: Remote.scrub(`prediction ${created.id} failed: ${event.data}`, secrets)
              })
            ))
          }
          if (event.event === "done") {
            state.done = true
            return Effect.succeed(undefined)
          }
          if (event.event !== "output") return Effect.succeed(undefined)
          parts.push(event.data)
          return Effect.succeed(new Completion.CompletionChunk({ text: event.data }))
        }),
        Stream.filter((chunk): chunk is Completion.CompletionChunk => chunk !== undefined)
      )
      const last = Effect.gen(function*() {
        if (!state.done) {
          // the stream closed without `done`: the connection was cut
          return yield* LlmError.make(
            providerName,
            new LlmError.Transport({
              description: `prediction ${created.id} stream ended before completion`
            })
          )
        }
        const final = yield* Effect.tryPromise({
          try: (signal) => client.predictions.get(created.id, { signal }),
          catch: catchError
        }).pipe(Effect.orElseSucceed(() => undefined))
        const usage = yield* usageOf(request, final, () => parts.join(""))
        return new Completion.CompletionChunk({
          text: "",
          finishReason: final?.status === "canceled" ? "error" : finishReasonOf(request, usage),
          usage,
          model,
          facts: { predictionId: created.id },
          ...(rateLimit !== undefined ? { rateLimit } : {})
        })
      })
      return Stream.concat(events, Stream.fromEffect(last))
    })))

  return {
    name: providerName,
    complete,
    stream,
    rateLimitPolicy: options.rateLimitPolicy ?? RateLimitPolicy.replicate,
    endpoint: (options.baseUrl ?? "https://api.replicate.com/v1").replace(/\/+$/, ""),
    pendingCancellations: () => Promise.allSettled(pending).then(() => undefined)
  }
}

/**
 * `Llm` backed by Replicate. Closing the layer waits for cancellations still in flight.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<Llm.Llm> =>
  Layer.effectContext(Effect.gen(function*() {
    const llm = make(options)
    yield* Effect.addFinalizer(() => Effect.promise(() => llm.pendingCancellations()).pipe(Effect.timeout("30 seconds"), Effect.ignore))
    return Context.make(Llm.Llm, llm)
  }))

/**
 * Like {@link layer}, reading `REPLICATE_API_TOKEN` (required, as `Redacted`) and
 * `REPLICATE_BASE_URL` (optional) from `effect` Config. Explicit options win; a missing
 * token fails at layer construction with a message naming the variable.
 * @category layers @since 0.1.0
 */
export const layerConfig = (options: Partial<Options> = {}): Layer.Layer<Llm.Llm, ProviderError> =>
  Layer.unwrap(Effect.gen(function*() {
    const apiToken = yield* Remote.requiredKey(
      providerName,
      "REPLICATE_API_TOKEN",
      options.apiToken,
      "set it to your Replicate API token, or pass `apiToken` to Replicate.layer"
    )
    const baseUrl = yield* Remote.optionalString("REPLICATE_BASE_URL", options.baseUrl)
    return layer({ ...options, apiToken, ...(baseUrl !== undefined ? { baseUrl } : {}) })
  }))

/** The error a `layerConfig` fails with (reason `ProviderConfigError` when the environment lacks a key). @category errors @since 0.2.0 */
export { ProviderConfigError, ProviderError } from "./ProviderError.js"
