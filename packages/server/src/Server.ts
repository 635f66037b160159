/**
 * The OpenAI-compatible HTTP server (`node:http`) over any Hasten `Llm` stacks, one per
 * served model id: `/v1/chat/completions` and `/v1/completions` (JSON and SSE with
 * `include_usage`), `/v1/embeddings`, `/v1/models`, with strict OpenAI validation and
 * OpenAI-shaped errors; `/health`, `/ready` and `/metrics`; request ids, optional API keys,
 * a bounded queue (429 with `retry-after` when full) and a graceful drain on shutdown.
 * @since 0.1.0
 */
import { Completion, CompletionRequest, Embedder, Llm, LlmError } from "@hasten/core"
import { Cause, Context, Duration, Effect, Exit, Fiber, Layer, Option, Redacted, Scope, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as OpenAiRequest from "./OpenAiRequest.js"
import { HttpError, ServerError, StartError } from "./ServerError.js"
import { prometheusText, ServerMetrics } from "./ServerMetrics.js"

/**
 * One model id the server answers for, and the stack behind it. The layer must provide an
 * `Llm`; when it also provides an `Embedder`, `/v1/embeddings` is served for the id.
 * @category models @since 0.1.0
 */
export interface ServedModel<R = never> {
  /** The id clients send as `model` and `/v1/models` lists. */
  readonly id: string
  /** The stack, e.g. `Llm.stack(OpenAi.layer({ baseURL }), Cache.layer(), RateLimit.layer())`. Built once, when the server starts. */
  readonly layer: Layer.Layer<Llm.Llm, unknown, R>
  /** What the stack honours beyond the common fields (default: an OpenAI-compatible upstream's). */
  readonly capabilities?: OpenAiRequest.Capabilities | undefined
  /** `owned_by` in `/v1/models` (default `hasten`). */
  readonly ownedBy?: string | undefined
}

/** One answered request, for access logs. @category models @since 0.1.0 */
export interface RequestLog {
  readonly requestId: string
  readonly method: string
  readonly path: string
  readonly model: string | undefined
  readonly status: number
  readonly durationMs: number
}

/** Server settings. @category models @since 0.1.0 */
export interface Options<R = never> {
  /** The models served; ids must be unique. */
  readonly models: ReadonlyArray<ServedModel<R>>
  /** TCP port; 0 picks a free one. Default 8080. */
  readonly port?: number | undefined
  /** Interface to bind. Default 127.0.0.1. */
  readonly host?: string | undefined
  /** When set, every `/v1/*` request needs `Authorization: Bearer <one of these>` (401 otherwise). */
  readonly apiKeys?: ReadonlyArray<Redacted.Redacted<string>> | undefined
  /** Requests answered at once; more wait in the queue. Default 256. */
  readonly maxInFlight?: number | undefined
  /** Requests waiting for a slot; beyond it a request is answered 429 with `retry-after`. Default 1024. */
  readonly maxQueue?: number | undefined
  /** Largest accepted request body. Default 4 MiB. */
  readonly maxBodyBytes?: number | undefined
  /** How long shutdown waits for in-flight requests before closing their connections. Default 30 seconds. */
  readonly shutdownTimeout?: Duration.Input | undefined
  /** Called once per answered request (access log); secrets are never part of it. */
  readonly onRequest?: ((log: RequestLog) => void) | undefined
}

/** A running server. @category models @since 0.1.0 */
export interface ServerService {
  /** `http://host:port` */
  readonly url: string
  /** `${url}/v1`, the `baseURL` for OpenAI SDKs. */
  readonly baseUrl: string
  readonly port: number
  readonly host: string
  /** Requests received so far. */
  readonly requests: () => number
  /** The server's counters (also on `/metrics`). */
  readonly metrics: ServerMetrics
  /** Succeeds once every model's stack is built; fails with the first that could not be. */
  readonly ready: Effect.Effect<void, ServerError>
  /** Whether shutdown has begun (no new connections; in-flight requests finishing). */
  readonly draining: () => boolean
}

/**
 * The running OpenAI-compatible server.
 * @category services @since 0.1.0
 */
export class Server extends Context.Service<Server, ServerService>()("@hasten/server/Server") {}

const failure = (
  status: number,
  description: string,
  type: string,
  code: string | null = null,
  param: string | null = null,
  retryAfter?: number
): HttpError => new HttpError({ status, description, type, code, param, ...(retryAfter !== undefined ? { retryAfter } : {}) })

const badRequest = (message: string, param: string | null = null) => failure(400, message, "invalid_request_error", null, param)

/** Maps an `LlmError` to the status and body an OpenAI server would send. @category errors @since 0.1.0 */
export const fromLlmError = (error: LlmError.LlmError): HttpError => {
  const reason = error.reason
  const message = reason.description
  switch (reason._tag) {
    case "ContextLengthExceeded":
      return failure(400, message, "invalid_request_error", "context_length_exceeded", "messages")
    case "InvalidRequest":
      return failure(reason.status ?? 400, message, "invalid_request_error", null)
    case "RateLimited": {
      const quota = reason.scope === "quota"
      const seconds = reason.retryAfterMillis === undefined ? 1 : Math.max(1, Math.ceil(reason.retryAfterMillis / 1000))
      return failure(
        429,
        message,
        quota ? "insufficient_quota" : "rate_limit_exceeded",
        quota ? "insufficient_quota" : "rate_limit_exceeded",
        null,
        quota ? undefined : seconds
      )
    }
    case "Overloaded":
      return failure(503, message, "server_error", "overloaded", null, 1)
    case "Timeout":
      return failure(504, message, "server_error", "timeout")
    case "Unauthorized":
      // the upstream refused the server's key: a gateway problem, not the client's
      return failure(502, `upstream refused the request: ${message}`, "server_error", "upstream_unauthorized")
    default:
      return failure(502, `${reason._tag}: ${message}`, "server_error", "upstream_error")
  }
}

type Json = Record<string, unknown>

const finishReasonOf = (reason: Completion.FinishReason | undefined): string =>
  reason === "length" ? "length" : reason === "content_filter" ? "content_filter" : reason === "tool_calls" ? "tool_calls" : "stop"

const usageOf = (usage: Completion.Usage) => ({
  prompt_tokens: usage.inputTokens,
  completion_tokens: usage.outputTokens,
  total_tokens: usage.inputTokens + usage.outputTokens,
  ...(usage.cachedInputTokens !== undefined ? { prompt_tokens_details: { cached_tokens: usage.cachedInputTokens } } : {})
})

/**
 * The `logprobs` of a choice in OpenAI's shape: chat `{ content: [{ token, logprob, bytes,
 * top_logprobs }] }`, text completions `{ tokens, token_logprobs, top_logprobs, text_offset }`;
 * `null` when the call did not ask for them (a model that cannot give them refused the call).
 */
const logprobsOf = (call: OpenAiRequest.CompletionCall, completion: Completion.Completion | Completion.CompletionChunk): unknown => {
  if (call.logprobs === undefined) return null
  const entries = completion.logprobs ?? []
  const bytesOf = (token: string, bytes: ReadonlyArray<number> | undefined) => bytes ?? [...Buffer.from(token, "utf8")]
  if (call.kind === "chat") {
    return {
      content: entries.map((entry) => ({
        token: entry.token,
        logprob: entry.logprob,
        bytes: bytesOf(entry.token, entry.bytes),
        top_logprobs: (entry.topLogprobs ?? []).slice(0, call.logprobs!.top).map((top) => ({
          token: top.token,
          logprob: top.logprob,
          bytes: bytesOf(top.token, top.bytes)
        }))
      })),
      refusal: null
    }
  }
  let offset = 0
  const textOffset = entries.map((entry) => {
    const at = offset
    offset += entry.token.length
    return at
  })
  return {
    tokens: entries.map((entry) => entry.token),
    token_logprobs: entries.map((entry) => entry.logprob),
    top_logprobs: entries.map((entry) =>
      Object.fromEntries((entry.topLogprobs ?? []).slice(0, call.logprobs!.top).map((top) => [top.token, top.logprob]))
    ),
    text_offset: textOffset
  }
}

const toBase64 = (vector: ReadonlyArray<number>): string => Buffer.from(new Float32Array(vector).buffer).toString("base64")

const requestIdPattern = /^[\w.:@-]{1,128}$/

const knownRoutes: ReadonlySet<string> = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/embeddings",
  "/v1/models",
  "/health",
  "/ready",
  "/metrics"
])

/** A completion request that passed validation, with the model it is for. */
interface Validated {
  readonly entry: Entry
  readonly call: OpenAiRequest.CompletionCall
  readonly request: CompletionRequest.CompletionRequest
}

/** How many validated bodies are remembered, and the largest one remembered. */
const maxValidated = 1_024
const maxValidatedBytes = 16 * 1024

interface Loaded {
  readonly llm: Llm.LlmService
  readonly embedder: Embedder.EmbedderService | undefined
}

interface Entry {
  readonly id: string
  readonly capabilities: OpenAiRequest.Capabilities
  readonly ownedBy: string
  loaded: Loaded | undefined
  failed: string | undefined
}

/** Constant-time check of a presented bearer token against the configured keys (SHA-256 digests, `timingSafeEqual`). */
const keyChecker = (keys: ReadonlyArray<Redacted.Redacted<string>>) => {
  const digests = keys.map((key) => Crypto.createHash("sha256").update(Redacted.value(key)).digest())
  return (header: string | undefined): "missing" | "invalid" | "ok" => {
    if (header === undefined || !header.startsWith("Bearer ")) return "missing"
    const presented = Crypto.createHash("sha256").update(header.slice(7).trim()).digest()
    let ok = false
    // every key is compared, so the time does not tell which one (nearly) matched
    for (const digest of digests) ok = Crypto.timingSafeEqual(digest, presented) || ok
    return ok ? "ok" : "invalid"
  }
}

const modelObject = (entry: Entry) => ({ id: entry.id, object: "model", created: 0, owned_by: entry.ownedBy })

/**
 * Starts the server in the current scope. It listens at once (`/health` answers); each
 * model's stack is then built in the background, and `/ready` answers 200 once all are.
 * Closing the scope stops accepting connections, lets in-flight requests finish (up to
 * `shutdownTimeout`), then releases the stacks.
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*<R>(options: Options<R>) {
  const services = yield* Effect.context<R>()
  const runFork = Effect.runForkWith(services)
  const metrics = new ServerMetrics()
  const maxInFlight = options.maxInFlight ?? 256
  const maxQueue = options.maxQueue ?? 1024
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024
  const shutdownMillis = Duration.toMillis(Duration.fromInputUnsafe(options.shutdownTimeout ?? "30 seconds"))
  const checkKey = options.apiKeys !== undefined && options.apiKeys.length > 0 ? keyChecker(options.apiKeys) : undefined
  const onRequest = options.onRequest
  const clock = yield* Effect.clockWith(Effect.succeed)

  const entries = new Map<string, Entry>()
  for (const model of options.models) {
    if (entries.has(model.id)) {
      return yield* new ServerError({ reason: new StartError({ description: `model id "${model.id}" is served twice` }) })
    }
    entries.set(model.id, {
      id: model.id,
      capabilities: model.capabilities ?? OpenAiRequest.upstreamCapabilities,
      ownedBy: model.ownedBy ?? "hasten",
      loaded: undefined,
      failed: undefined
    })
  }
  metrics.modelsTotal = entries.size
  const lookup = (model: string): Entry | undefined => entries.get(model) ?? entries.get(model.replace(/\.gguf$/i, ""))

  // --- admission: at most maxInFlight at once, maxQueue waiting, 429 beyond ----------------
  const queue: Array<() => void> = []
  let draining = false
  let idle: (() => void) | undefined
  const release = () => {
    const next = queue.shift()
    if (next !== undefined) {
      metrics.queued = queue.length
      next()
      return
    }
    metrics.inFlight--
    if (metrics.inFlight === 0 && idle !== undefined) idle()
  }

  // --- one exchange: request id, timing, metrics, access log --------------------------------
  let received = 0
  const sequence = Crypto.randomBytes(4).toString("hex")

  class Exchange {
    readonly start = performance.now()
    readonly id: string
    model: string | undefined = undefined
    admitted = false
    done = false
    constructor(readonly request: Http.IncomingMessage, readonly response: Http.ServerResponse, readonly path: string) {
      const given = request.headers["x-request-id"]
      this.id = typeof given === "string" && requestIdPattern.test(given) ? given : `req_${sequence}${received.toString(36)}`
    }
    headers(extra: Http.OutgoingHttpHeaders): Http.OutgoingHttpHeaders {
      extra["x-request-id"] = this.id
      if (draining) extra.connection = "close"
      return extra
    }
    finish(status: number) {
      if (this.done) return
      this.done = true
      const seconds = (performance.now() - this.start) / 1000
      // labels only from a fixed set (served ids, known routes): client input never mints a series
      metrics.record(knownRoutes.has(this.path) ? this.path : "other", this.model ?? "", status, seconds)
      if (this.admitted) release()
      if (onRequest !== undefined) {
        onRequest({
          requestId: this.id,
          method: this.request.method ?? "GET",
          path: this.path,
          model: this.model,
          status,
          durationMs: seconds * 1000
        })
      }
    }
    json(status: number, body: unknown) {
      this.send(status, JSON.stringify(body))
    }
    /** Sends JSON text already serialised. */
    send(status: number, text: string) {
      this.response.writeHead(
        status,
        this.headers({ "content-type": "application/json", "content-length": Buffer.byteLength(text) })
      )
      this.response.end(text)
      this.finish(status)
    }
    error(error: HttpError) {
      if (this.response.headersSent) {
        this.response.end()
        this.finish(this.response.statusCode)
        return
      }
      const text = error.body()
      const headers: Http.OutgoingHttpHeaders = { "content-type": "application/json", "content-length": Buffer.byteLength(text) }
      if (error.retryAfter !== undefined) headers["retry-after"] = String(error.retryAfter)
      this.response.writeHead(error.status, this.headers(headers))
      this.response.end(text)
      if (error.status >= 500) {
        runFork(
          Effect.logWarning(`${error.status} ${this.path}: ${error.description}`).pipe(
            Effect.annotateLogs({ requestId: this.id, model: this.model ?? "" })
          )
        )
      }
      this.finish(error.status)
    }
  }

  /** A body route: its handler, and for completions the kind whose validated bodies are remembered. */
  interface Route {
    readonly kind: "chat" | "text" | undefined
    readonly handle: (exchange: Exchange, body: Json, text: string) => void
  }

  /** Runs `effect` for the exchange; interrupted when the client goes away. */
  const run = <A, E>(exchange: Exchange, effect: Effect.Effect<A, E>, onSuccess: (value: A) => void) => {
    const fiber = runFork(effect)
    const done = fiber.pollUnsafe()
    // finished at once (a cache hit): nothing to interrupt if the client goes away
    if (done !== undefined) return settle(exchange, done, onSuccess)
    const onClose = () => {
      if (!exchange.response.writableFinished) fiber.interruptUnsafe()
    }
    exchange.response.once("close", onClose)
    fiber.addObserver((exit) => {
      exchange.response.off("close", onClose)
      settle(exchange, exit, onSuccess)
    })
  }

  /** Answers the exchange with how its effect ended. */
  const settle = <A, E>(exchange: Exchange, exit: Exit.Exit<A, E>, onSuccess: (value: A) => void) => {
    if (Exit.isSuccess(exit)) return onSuccess(exit.value)
    if (exchange.response.destroyed) return exchange.finish(499)
    const error = Cause.findErrorOption(exit.cause)
    if (Option.isSome(error)) {
      const value = error.value as unknown
      return exchange.error(
        value instanceof HttpError
          ? value
          : LlmError.isLlmError(value)
          ? fromLlmError(value)
          : failure(500, String(value), "server_error")
      )
    }
    exchange.error(failure(500, Cause.pretty(exit.cause), "server_error"))
  }

  const created = () => Math.floor(clock.currentTimeMillisUnsafe() / 1000)

  const complete = (
    exchange: Exchange,
    call: OpenAiRequest.CompletionCall,
    loaded: Loaded,
    request: CompletionRequest.CompletionRequest
  ) => {
    const chat = call.kind === "chat"
    const id = `${chat ? "chatcmpl" : "cmpl"}-${exchange.id}`
    run(exchange, loaded.llm.complete(request), (completion) => {
      metrics.addTokens(exchange.model ?? call.model, completion.usage.inputTokens, completion.usage.outputTokens)
      if (call.logprobs !== undefined && completion.logprobs === undefined && completion.usage.outputTokens > 0) {
        // asked for and not given: an error, not an empty list
        return exchange.json(502, {
          error: { message: `model ${call.model} returned no logprobs`, type: "server_error", param: "logprobs", code: null }
        })
      }
      // `{"id":…,"object":…,"created":…,"model":…,` + the choices and usage, serialised once
      // per cached completion and shape of answer (a hit answers from the same object again)
      exchange.send(
        200,
        `{"id":${JSON.stringify(id)},"object":"${chat ? "chat.completion" : "text_completion"}","created":${created()},"model":${
          JSON.stringify(call.model)
        },${answerTail(call, completion)}`
      )
    })
  }

  /** `"choices":[…],"usage":{…}}` of a completion, kept for a cached one. */
  const answerTail = (call: OpenAiRequest.CompletionCall, completion: Completion.Completion): string => {
    const shape = `${call.kind}:${call.logprobs?.top ?? "-"}`
    const known = completion.cached === true ? tails.get(completion)?.get(shape) : undefined
    if (known !== undefined) return known
    const choice = call.kind === "chat"
      ? {
        index: 0,
        message: { role: "assistant", content: completion.text, refusal: null },
        logprobs: logprobsOf(call, completion),
        finish_reason: finishReasonOf(completion.finishReason)
      }
      : {
        index: 0,
        text: completion.text,
        logprobs: logprobsOf(call, completion),
        finish_reason: finishReasonOf(completion.finishReason)
      }
    const tail = JSON.stringify({ choices: [choice], usage: usageOf(completion.usage) }).slice(1)
    if (completion.cached === true) {
      let shapes = tails.get(completion)
      if (shapes === undefined) tails.set(completion, shapes = new Map())
      shapes.set(shape, tail)
    }
    return tail
  }
  const tails = new WeakMap<Completion.Completion, Map<string, string>>()

  const stream = (exchange: Exchange, call: OpenAiRequest.CompletionCall, loaded: Loaded, request: CompletionRequest.CompletionRequest) => {
    const chat = call.kind === "chat"
    const id = `${chat ? "chatcmpl" : "cmpl"}-${exchange.id}`
    const object = chat ? "chat.completion.chunk" : "text_completion"
    const stamp = created()
    const response = exchange.response
    let started = false
    let finishReason: Completion.FinishReason | undefined
    let usage: Completion.Usage | undefined
    const frame = (choices: Array<unknown>, extra?: Json) =>
      `data: ${JSON.stringify({ id, object, created: stamp, model: call.model, choices, ...extra })}\n\n`
    const start = () => {
      if (started) return
      started = true
      response.writeHead(
        200,
        exchange.headers({ "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" })
      )
      if (chat) response.write(frame([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]))
    }
    // a slow client slows the stream down (its socket buffer is full: wait for drain) instead of
    // the server buffering the whole completion for it
    const drained = Effect.callback<void>((resume) => {
      response.once("drain", () => resume(Effect.void))
    })
    const effect = Stream.runForEach(loaded.llm.stream(request), (chunk) =>
      Effect.suspend(() => {
        if (chunk.finishReason !== undefined) finishReason = chunk.finishReason
        if (chunk.usage !== undefined) usage = chunk.usage
        // a chunk with no text still carries what the client asked for (a local model's logprobs come last)
        if (chunk.text.length === 0 && (call.logprobs === undefined || (chunk.logprobs?.length ?? 0) === 0)) return Effect.void
        start()
        const flushed = response.write(frame([
          chat
            ? { index: 0, delta: { content: chunk.text }, logprobs: logprobsOf(call, chunk), finish_reason: null }
            : { index: 0, text: chunk.text, logprobs: logprobsOf(call, chunk), finish_reason: null }
        ]))
        return flushed ? Effect.void : drained
      }))
    const fiber = runFork(effect)
    const onClose = () => {
      if (!response.writableFinished) fiber.interruptUnsafe()
    }
    response.once("close", onClose)
    fiber.addObserver((exit) => {
      response.off("close", onClose)
      if (response.destroyed) return exchange.finish(499)
      if (Exit.isFailure(exit)) {
        const error = Cause.findErrorOption(exit.cause)
        const httpError = Option.isSome(error) && LlmError.isLlmError(error.value)
          ? fromLlmError(error.value)
          : failure(500, Cause.pretty(exit.cause), "server_error")
        if (!started) return exchange.error(httpError)
        // after the 200: OpenAI's in-stream error event, then the end of the stream
        response.end(`data: ${httpError.body()}\n\n`)
        return exchange.finish(200)
      }
      start()
      const final = usage ?? Completion.emptyUsage
      metrics.addTokens(exchange.model ?? call.model, final.inputTokens, final.outputTokens)
      let tail = frame([
        chat
          ? { index: 0, delta: {}, logprobs: null, finish_reason: finishReasonOf(finishReason) }
          : { index: 0, text: "", logprobs: null, finish_reason: finishReasonOf(finishReason) }
      ])
      if (call.includeUsage) tail += frame([], { usage: usageOf(final) })
      response.end(`${tail}data: [DONE]\n\n`)
      exchange.finish(200)
    })
  }

  const notFound = (model: string) =>
    failure(
      404,
      `The model '${model}' does not exist or you do not have access to it.`,
      "invalid_request_error",
      "model_not_found",
      "model"
    )

  /** The model's stack, or the error to answer when it is not there (yet). */
  const available = (entry: Entry): Loaded | HttpError =>
    entry.loaded ??
      (entry.failed !== undefined
        ? failure(503, `The model '${entry.id}' could not be loaded: ${entry.failed}`, "server_error", "model_unavailable")
        : failure(503, `The model '${entry.id}' is still loading.`, "server_error", "model_loading", null, 1))

  /** Waits for a slot (or answers 429), then runs `start`. */
  const admit = (exchange: Exchange, start: () => void) => {
    if (metrics.inFlight < maxInFlight) {
      metrics.inFlight++
      exchange.admitted = true
      return start()
    }
    if (queue.length >= maxQueue) {
      metrics.reject("queue_full")
      return exchange.error(
        failure(
          429,
          `The server is at capacity (${maxInFlight} requests running, ${maxQueue} queued). Retry after a moment.`,
          "rate_limit_exceeded",
          "server_overloaded",
          null,
          1
        )
      )
    }
    let cancelled = false
    const waiter = () => {
      // the slot passes from the finished request to this one (inFlight unchanged)
      exchange.admitted = true
      if (cancelled) return exchange.finish(499)
      start()
    }
    queue.push(waiter)
    metrics.queued = queue.length
    exchange.response.once("close", () => {
      if (exchange.admitted || exchange.response.writableFinished) return
      const index = queue.indexOf(waiter)
      if (index >= 0) {
        queue.splice(index, 1)
        metrics.queued = queue.length
        exchange.finish(499)
      } else cancelled = true
    })
  }

  // Validated completion requests by route and body text. Validation is a function of the
  // body and the served model alone, so an identical body (a repeated deterministic request:
  // typically a cache hit) skips parsing, validation and building the request; only bodies
  // that passed are kept, so a malformed one is always checked (and refused) again.
  const validated = new Map<string, Validated>()
  const remember = (key: string, value: Validated) => {
    if (validated.size >= maxValidated) validated.clear()
    validated.set(key, value)
  }
  const fromValidated = (exchange: Exchange, known: Validated) => {
    exchange.model = known.entry.id
    const loaded = available(known.entry)
    if (loaded instanceof HttpError) return exchange.error(loaded)
    admit(exchange, () => (known.call.stream ? stream : complete)(exchange, known.call, loaded, known.request))
  }

  const completion = (exchange: Exchange, body: Json, kind: "chat" | "text", text: string) => {
    const model = OpenAiRequest.readModel(body)
    if (model instanceof HttpError) return exchange.error(model)
    const entry = lookup(model)
    if (entry === undefined) return exchange.error(notFound(model))
    exchange.model = entry.id
    const call = kind === "chat" ? OpenAiRequest.decodeChat(body, entry.capabilities) : OpenAiRequest.decodeText(body, entry.capabilities)
    if (call instanceof HttpError) return exchange.error(call)
    const loaded = available(entry)
    if (loaded instanceof HttpError) return exchange.error(loaded)
    let request: CompletionRequest.CompletionRequest
    try {
      request = CompletionRequest.build(entry.id === model ? call.request : { ...call.request, model: entry.id })
    } catch (error) {
      return exchange.error(badRequest(error instanceof Error ? error.message : String(error)))
    }
    if (text.length <= maxValidatedBytes) remember(`${kind}\n${text}`, { entry, call, request })
    admit(exchange, () => (call.stream ? stream : complete)(exchange, call, loaded, request))
  }

  const embeddings = (exchange: Exchange, body: Json) => {
    const call = OpenAiRequest.decodeEmbeddings(body)
    if (call instanceof HttpError) return exchange.error(call)
    const entry = lookup(call.model)
    if (entry === undefined) return exchange.error(notFound(call.model))
    exchange.model = entry.id
    const loaded = available(entry)
    if (loaded instanceof HttpError) return exchange.error(loaded)
    const embedder = loaded.embedder
    if (embedder === undefined || !entry.capabilities.embeddings) {
      return exchange.error(
        failure(
          400,
          `The model '${call.model}' does not serve embeddings on this server.`,
          "invalid_request_error",
          "unsupported_model",
          "model"
        )
      )
    }
    admit(exchange, () =>
      run(
        exchange,
        embedder.embed(call.input, call.dimensions !== undefined ? { dimensions: call.dimensions } : {}),
        (result) => {
          metrics.addTokens(exchange.model ?? call.model, result.usage.inputTokens, 0)
          exchange.json(200, {
            object: "list",
            data: result.vectors.map((vector, index) => ({
              object: "embedding",
              index,
              embedding: call.format === "base64" ? toBase64(vector) : vector
            })),
            model: call.model,
            usage: { prompt_tokens: result.usage.inputTokens, total_tokens: result.usage.inputTokens }
          })
        }
      ))
  }

  const readiness = () => {
    const models = [...entries.values()].map((entry) => ({
      id: entry.id,
      state: entry.loaded !== undefined ? "ready" : entry.failed !== undefined ? "failed" : "loading",
      ...(entry.failed !== undefined ? { error: entry.failed } : {})
    }))
    const ready = !draining && models.every((model) => model.state === "ready")
    return { status: draining ? "draining" : ready ? "ready" : "not_ready", ready, models }
  }

  const withBody = (exchange: Exchange, route: Route) => {
    const request = exchange.request
    const length = Number(request.headers["content-length"])
    if (length > maxBodyBytes) {
      request.resume()
      return exchange.error(failure(413, `The request body is larger than ${maxBodyBytes} bytes.`, "invalid_request_error"))
    }
    const parts: Array<Buffer> = []
    let size = 0
    // a client that goes away mid-body: nothing to answer
    request.on("error", () => exchange.finish(499))
    request.on("data", (chunk: Buffer) => {
      if (exchange.done) return
      size += chunk.length
      if (size > maxBodyBytes) {
        parts.length = 0
        // the rest of the body is read and dropped; the connection closes after the answer
        exchange.response.shouldKeepAlive = false
        exchange.error(failure(413, `The request body is larger than ${maxBodyBytes} bytes.`, "invalid_request_error"))
        return
      }
      parts.push(chunk)
    })
    request.on("end", () => {
      if (exchange.done) return
      const text = parts.length === 1 ? parts[0]!.toString("utf8") : Buffer.concat(parts).toString("utf8")
      if (route.kind !== undefined) {
        const known = validated.get(`${route.kind}\n${text}`)
        if (known !== undefined) return fromValidated(exchange, known)
      }
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch {
        return exchange.error(
          badRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
          )
        )
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        return exchange.error(badRequest("The request body must be a JSON object."))
      }
      route.handle(exchange, body as Json, text)
    })
  }

  const apiRoutes: Record<string, Route> = {
    "/v1/chat/completions": { kind: "chat", handle: (exchange, body, text) => completion(exchange, body, "chat", text) },
    "/v1/completions": { kind: "text", handle: (exchange, body, text) => completion(exchange, body, "text", text) },
    "/v1/embeddings": { kind: undefined, handle: embeddings }
  }

  const handle = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
    received++
    const url = request.url ?? "/"
    const query = url.indexOf("?")
    let path = query >= 0 ? url.slice(0, query) : url
    if (path.length > 1 && path.endsWith("/")) path = path.replace(/\/+$/, "")
    const exchange = new Exchange(request, response, path)
    const method = request.method
    if (path === "/health" && method === "GET") return exchange.json(200, { status: "ok" })
    if (path === "/ready" && method === "GET") {
      const state = readiness()
      return exchange.json(state.ready ? 200 : 503, state)
    }
    if (path === "/metrics" && method === "GET") {
      return run(exchange, prometheusText(metrics), (text) => {
        response.writeHead(200, exchange.headers({ "content-type": "text/plain; version=0.0.4; charset=utf-8" }))
        response.end(text)
        exchange.finish(200)
      })
    }
    if (!path.startsWith("/v1/")) {
      request.resume()
      return exchange.error(failure(404, `Invalid URL (${method} ${path})`, "invalid_request_error", "unknown_url"))
    }
    if (checkKey !== undefined) {
      const verdict = checkKey(request.headers.authorization)
      if (verdict !== "ok") {
        request.resume()
        metrics.reject("unauthorized")
        return exchange.error(
          failure(
            401,
            verdict === "missing"
              ? "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
              : "Incorrect API key provided.",
            "invalid_request_error",
            "invalid_api_key"
          )
        )
      }
    }
    if (draining) {
      request.resume()
      metrics.reject("draining")
      return exchange.error(failure(503, "The server is shutting down.", "server_error", "shutting_down", null, 1))
    }
    if (method === "GET" && path === "/v1/models") {
      return exchange.json(200, { object: "list", data: [...entries.values()].map(modelObject) })
    }
    if (method === "GET" && path.startsWith("/v1/models/")) {
      const id = decodeURIComponent(path.slice("/v1/models/".length))
      const entry = lookup(id)
      return entry === undefined ? exchange.error(notFound(id)) : exchange.json(200, modelObject(entry))
    }
    const route = apiRoutes[path]
    if (route === undefined) {
      request.resume()
      return exchange.error(failure(404, `Invalid URL (${method} ${path})`, "invalid_request_error", "unknown_url"))
    }
    if (method !== "POST") {
      request.resume()
      return exchange.error(
        failure(405, `Method ${method} is not allowed on ${path}; use POST.`, "invalid_request_error", "method_not_allowed")
      )
    }
    withBody(exchange, route)
  }

  const server = Http.createServer(handle)
  // Longer than clients' idle keep-alive (undici: 4 s): the client closes idle sockets first,
  // so a reused socket never races a server-side close (ECONNRESET under load).
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000

  // --- the models' stacks: built in their own scope, released after the drain -------------
  const modelScope = yield* Scope.make()
  const loading = Effect.forEach(
    options.models,
    (model) =>
      Layer.buildWithScope(model.layer, modelScope).pipe(
        Effect.map((context) => {
          const entry = entries.get(model.id)!
          entry.loaded = {
            llm: Context.get(context, Llm.Llm),
            embedder: Option.getOrUndefined(Context.getOption(context as Context.Context<never>, Embedder.Embedder))
          }
          metrics.modelsReady++
        }),
        Effect.catchCause((cause) =>
          Effect.gen(function*() {
            const error = Cause.squash(cause)
            const description = error instanceof Error ? error.message : String(error)
            entries.get(model.id)!.failed = description
            yield* Effect.logError(`model ${model.id} could not be loaded: ${description}`)
            return yield* new ServerError({
              reason: new StartError({ description: `model ${model.id} could not be loaded: ${description}` })
            })
          })
        )
      ),
    { concurrency: "unbounded", discard: true }
  )

  const host = options.host ?? "127.0.0.1"
  const port = options.port ?? 8080
  const address = yield* Effect.callback<AddressInfo, ServerError>((resume) => {
    const onError = (error: Error) =>
      resume(
        Effect.fail(new ServerError({ reason: new StartError({ description: `cannot listen on ${host}:${port}: ${error.message}` }) }))
      )
    server.once("error", onError)
    server.listen(port, host, () => {
      server.off("error", onError)
      resume(Effect.succeed(server.address() as AddressInfo))
    })
  })

  const drain = () =>
    new Promise<void>((resolve) => {
      draining = true
      let closed = false
      const finish = () => {
        if (closed) return
        closed = true
        clearTimeout(timer)
        server.closeAllConnections()
        resolve()
      }
      const timer = setTimeout(finish, shutdownMillis)
      server.close()
      server.closeIdleConnections()
      if (metrics.inFlight === 0 && queue.length === 0) return finish()
      idle = () => {
        if (queue.length === 0) finish()
      }
    })

  yield* Effect.addFinalizer(() =>
    Effect.promise(drain).pipe(
      Effect.andThen(Scope.close(modelScope, Exit.void)),
      Effect.andThen(Effect.callback<void>((resume) => {
        if (!server.listening) return resume(Effect.void)
        server.close(() => resume(Effect.void))
      }))
    )
  )

  const loadFiber = yield* Effect.forkScoped(loading)
  const ready = Effect.asVoid(Fiber.join(loadFiber))

  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address
  const url = `http://${urlHost}:${address.port}`
  return Server.of({
    url,
    baseUrl: `${url}/v1`,
    port: address.port,
    host: address.address,
    requests: () => received,
    metrics,
    ready,
    draining: () => draining
  })
})

/**
 * The server as a scoped layer: listening once built (models load in the background; use
 * {@link layerReady} to wait for them), drained and closed with the scope.
 * @category layers @since 0.1.0
 */
export const layer = <R = never>(options: Options<R>): Layer.Layer<Server, ServerError, R> => Layer.effect(Server, make(options))

/**
 * Like {@link layer}, built only once every model's stack is built (fails with the first
 * that could not be): for tests and programs that call the server right away.
 * @category layers @since 0.1.0
 */
export const layerReady = <R = never>(options: Options<R>): Layer.Layer<Server, ServerError, R> =>
  Layer.effect(Server, Effect.tap(make(options), (server) => server.ready))

/** The error of this module and its reasons. @category errors @since 0.1.0 */
export { HttpError, ServerError } from "./ServerError.js"
