/**
 * A local OpenAI-compatible HTTP server (node:http) over any Hasten `Llm` and `Embedder`:
 * `/v1/chat/completions` (JSON and SSE with `include_usage`), `/v1/completions`,
 * `/v1/embeddings`, `/v1/models`, with OpenAI-shaped errors. Any OpenAI SDK or tool can
 * talk to a local model through it.
 * @since 0.1.0
 */
import { Boundary, Completion, CompletionRequest, Embedder, Llm, LlmError } from "@hasten/core"
import { Cause, Context, Effect, Exit, Layer, Option, Schema, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { LocalModel } from "./LocalModel.js"
import * as LocalProvider from "./LocalProvider.js"
import { HttpError, InvalidOptions, ProviderError, Usage } from "./ProviderError.js"

/** Server settings. @category models @since 0.1.0 */
export interface Options {
  /** TCP port; 0 picks a free one. Default 8080. */
  readonly port?: number | undefined
  /** Interface to bind. Default 127.0.0.1. */
  readonly host?: string | undefined
  /**
   * Model ids the server answers for; others get 404 `model_not_found`. Default: the
   * `LocalModel` id when a local model is provided, otherwise any model is accepted.
   */
  readonly models?: ReadonlyArray<string> | undefined
  /** Largest accepted request body. Default 4 MiB. */
  readonly maxBodyBytes?: number | undefined
}

/** A running server. @category models @since 0.1.0 */
export interface ServerService {
  /** `http://host:port` */
  readonly url: string
  /** `${url}/v1`, the `baseURL` for OpenAI SDKs. */
  readonly baseUrl: string
  readonly port: number
  readonly host: string
  /** Requests answered so far. */
  readonly requests: () => number
}

/**
 * The running OpenAI-compatible server.
 * @category services @since 0.1.0
 */
export class Server extends Context.Service<Server, ServerService>()("@hasten/providers/Server") {}

/** An HTTP error in OpenAI's shape (a reason of `ProviderError`). @category errors @since 0.1.0 */
export { HttpError, ProviderError } from "./ProviderError.js"

const failure = (status: number, description: string, type: string, code: string | null = null, param: string | null = null): HttpError =>
  new HttpError({ status, description, type, code, param })

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
    case "RateLimited":
      return failure(
        429,
        message,
        reason.scope === "quota" ? "insufficient_quota" : "rate_limit_exceeded",
        reason.scope === "quota" ? "insufficient_quota" : "rate_limit_exceeded"
      )
    case "Overloaded":
      return failure(503, message, "server_error", "overloaded")
    case "Timeout":
      return failure(504, message, "server_error", "timeout")
    case "Unauthorized":
      return failure(401, message, "authentication_error", null)
    default:
      return failure(500, `${reason._tag}: ${message}`, "server_error", null)
  }
}

type Json = Record<string, unknown>

const isRecord = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)

const optional = Schema.optionalKey
const Num = optional(Schema.NullOr(Schema.Finite))

/** The sampling fields of a chat or text completion body. */
const SamplingBody = Schema.Struct({
  max_completion_tokens: Num,
  max_tokens: Num,
  temperature: Num,
  top_p: Num,
  top_k: Num,
  seed: Num,
  stop: optional(Schema.NullOr(Schema.Union([Schema.String, Schema.Array(Schema.String)]))),
  frequency_penalty: Num,
  presence_penalty: Num,
  repeat_penalty: Num,
  repeat_last_n: Num,
  penalty_window: Num,
  n: Num,
  response_format: optional(Schema.NullOr(Schema.Union([
    Schema.Struct({ type: Schema.Literals(["text", "json_object"]) }),
    Schema.Struct({
      type: Schema.Literal("json_schema"),
      json_schema: Schema.Struct({ name: optional(Schema.String), schema: Schema.Record(Schema.String, Schema.Unknown) })
    })
  ]))),
  stream: optional(Schema.NullOr(Schema.Boolean)),
  stream_options: optional(Schema.NullOr(Schema.Struct({ include_usage: optional(Schema.Boolean) })))
})
type SamplingBody = typeof SamplingBody.Type

const TextPart = Schema.Struct({ type: Schema.Literal("text"), text: Schema.String })

/** A `/v1/chat/completions` body. */
const ChatBody = Schema.Struct({
  ...SamplingBody.fields,
  messages: Schema.NonEmptyArray(Schema.Struct({
    role: Schema.Literals(["system", "developer", "user", "assistant"]),
    content: optional(Schema.NullOr(Schema.Union([Schema.String, Schema.Array(TextPart)])))
  }))
})

/** A `/v1/completions` body: one prompt per request. */
const CompletionsBody = Schema.Struct({
  ...SamplingBody.fields,
  prompt: Schema.Union([Schema.String, Schema.Tuple([Schema.String])])
})

/** A `/v1/embeddings` body. */
const EmbeddingsBody = Schema.Struct({
  input: Schema.Union([Schema.String, Schema.NonEmptyArray(Schema.String)]),
  encoding_format: optional(Schema.NullOr(Schema.Literals(["float", "base64"]))),
  dimensions: Num
})

/** Decodes a body with `schema`; a bad body is a 400 whose message names every bad field and whose `param` is the first. */
const decodeBody = <S extends Schema.Codec<any, any, never, never>>(schema: S) => {
  const decode = Boundary.decoder(schema)
  return (body: Json): S["Type"] => {
    const decoded = decode(body)
    if (decoded._tag === "Success") return decoded.value
    throw badRequest(Boundary.formatProblems(decoded.problems), decoded.problems[0]?.field || null)
  }
}
const decodeChat = decodeBody(ChatBody)
const decodeCompletions = decodeBody(CompletionsBody)
const decodeEmbeddings = decodeBody(EmbeddingsBody)

const contentOf = (content: typeof ChatBody.Type["messages"][number]["content"]): string =>
  content === undefined || content === null ? "" : typeof content === "string" ? content : content.map((part) => part.text).join("")

const samplingOf = (body: SamplingBody): Partial<CompletionRequest.CompletionRequestInput> => {
  const value = (field: keyof SamplingBody) => {
    const number = body[field]
    return typeof number === "number" ? number : undefined
  }
  const fields: Record<string, unknown> = {
    maxTokens: value("max_completion_tokens") ?? value("max_tokens"),
    temperature: value("temperature"),
    topP: value("top_p"),
    topK: value("top_k"),
    seed: value("seed"),
    stop: typeof body.stop === "string" ? [body.stop] : body.stop ?? undefined,
    frequencyPenalty: value("frequency_penalty"),
    presencePenalty: value("presence_penalty"),
    repeatPenalty: value("repeat_penalty"),
    penaltyWindow: value("repeat_last_n") ?? value("penalty_window")
  }
  const format = body.response_format
  if (format?.type === "json_object") fields.responseFormat = { type: "json" }
  else if (format?.type === "json_schema") {
    const schema = format.json_schema
    fields.responseFormat = { type: "json", schema: schema.schema, ...(schema.name !== undefined ? { name: schema.name } : {}) }
  }
  const n = value("n")
  if (n !== undefined && n !== 1) throw badRequest("only n=1 is supported", "n")
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Partial<
    CompletionRequest.CompletionRequestInput
  >
}

const finishReasonOf = (reason: Completion.FinishReason | undefined): string =>
  reason === "length" ? "length" : reason === "content_filter" ? "content_filter" : reason === "tool_calls" ? "tool_calls" : "stop"

const readBody = (request: Http.IncomingMessage, limit: number): Promise<string> =>
  new Promise((resolve, reject) => {
    const parts: Array<Buffer> = []
    let size = 0
    request.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        reject(failure(413, `request body larger than ${limit} bytes`, "invalid_request_error"))
        request.destroy()
        return
      }
      parts.push(chunk)
    })
    request.on("end", () => resolve(Buffer.concat(parts).toString("utf8")))
    request.on("error", reject)
  })

const toBase64 = (vector: ReadonlyArray<number>): string => Buffer.from(new Float32Array(vector).buffer).toString("base64")

/**
 * Starts the server in the current scope over the `Llm` (and `Embedder`, when provided).
 * @category constructors @since 0.1.0
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const services = yield* Effect.context<Llm.Llm>()
  const llm = yield* Llm.Llm
  const embedder = Option.getOrUndefined(yield* Effect.serviceOption(Embedder.Embedder))
  const local = Option.getOrUndefined(yield* Effect.serviceOption(LocalModel))
  const models: ReadonlyArray<string> | undefined = options.models ?? (local !== undefined ? [local.id] : undefined)
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024
  const clock = yield* Effect.clockWith(Effect.succeed)
  let requests = 0

  const checkModel = (body: Json): string => {
    const model = body.model
    if (typeof model !== "string" || model.length === 0) throw badRequest("'model' is required and must be a string", "model")
    if (models !== undefined && !models.includes(model) && !models.includes(model.replace(/\.gguf$/i, ""))) {
      throw failure(404, `The model '${model}' does not exist`, "invalid_request_error", "model_not_found", "model")
    }
    return model
  }

  const toRequest = (input: CompletionRequest.CompletionRequestInput): Effect.Effect<CompletionRequest.CompletionRequest, HttpError> =>
    CompletionRequest.make(input).pipe(Effect.mapError((error) => badRequest(error.message)))

  const run = <A>(effect: Effect.Effect<A, HttpError | LlmError.LlmError, Llm.Llm>, response: Http.ServerResponse) =>
    new Promise<A>((resolve, reject) => {
      const fiber = Effect.runForkWith(services)(effect)
      const onClose = () => {
        if (!response.writableFinished) fiber.interruptUnsafe()
      }
      response.on("close", onClose)
      fiber.addObserver((exit) => {
        response.off("close", onClose)
        if (Exit.isSuccess(exit)) resolve(exit.value)
        else {
          const error = Cause.findErrorOption(exit.cause)
          reject(Option.isSome(error) ? error.value : new Error(Cause.pretty(exit.cause)))
        }
      })
    })

  const sendJson = (response: Http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body)
    response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
    response.end(text)
  }

  const usageOf = (usage: Completion.Usage) => ({
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens
  })

  /** Streams SSE events; an error before the first event is answered as JSON with its status. */
  const streamSse = (
    response: Http.ServerResponse,
    request: CompletionRequest.CompletionRequest,
    events: {
      readonly first?: () => Json
      readonly delta: (chunk: Completion.CompletionChunk) => Json | undefined
      readonly last: (finishReason: Completion.FinishReason | undefined) => Json
      readonly usage: ((usage: Completion.Usage) => Json) | undefined
    }
  ) => {
    let started = false
    let finishReason: Completion.FinishReason | undefined
    let usage: Completion.Usage | undefined
    const write = (event: Json | string) => {
      if (!started) {
        response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" })
        started = true
        if (events.first !== undefined) response.write(`data: ${JSON.stringify(events.first())}\n\n`)
      }
      response.write(`data: ${typeof event === "string" ? event : JSON.stringify(event)}\n\n`)
    }
    return run(
      Stream.runForEach(llm.stream(request), (chunk) =>
        Effect.sync(() => {
          if (chunk.finishReason !== undefined) finishReason = chunk.finishReason
          if (chunk.usage !== undefined) usage = chunk.usage
          const event = events.delta(chunk)
          if (event !== undefined) write(event)
        })),
      response
    ).then(() => {
      write(events.last(finishReason))
      if (events.usage !== undefined) write(events.usage(usage ?? Completion.emptyUsage))
      write("[DONE]")
      response.end()
    }, (error: unknown) => {
      if (!started) throw error
      const httpError = error instanceof LlmError.LlmError ? fromLlmError(error) : failure(500, String(error), "server_error")
      response.write(`data: ${httpError.body()}\n\n`)
      response.end()
    })
  }

  const chatCompletions = async (json: Json, response: Http.ServerResponse) => {
    const model = checkModel(json)
    const body = decodeChat(json)
    const messages = body.messages.map((message) => ({
      role: message.role === "developer" ? "system" as const : message.role,
      content: contentOf(message.content)
    }))
    const request = await run(toRequest({ model, messages, ...samplingOf(body) }), response)
    const id = `chatcmpl-${Crypto.randomUUID()}`
    const created = Math.floor(clock.currentTimeMillisUnsafe() / 1000)
    if (body.stream === true) {
      const includeUsage = body.stream_options?.include_usage === true
      const frame = (choices: Array<unknown>, extra: Json = {}) => ({
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices,
        ...extra
      })
      return streamSse(response, request, {
        first: () => frame([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]),
        delta: (chunk) =>
          chunk.text.length > 0 ? frame([{ index: 0, delta: { content: chunk.text }, logprobs: null, finish_reason: null }]) : undefined,
        last: (reason) => frame([{ index: 0, delta: {}, logprobs: null, finish_reason: finishReasonOf(reason) }]),
        usage: includeUsage ? (usage) => frame([], { usage: usageOf(usage) }) : undefined
      })
    }
    const completion = await run(llm.complete(request), response)
    sendJson(response, 200, {
      id,
      object: "chat.completion",
      created,
      model,
      choices: [{
        index: 0,
        message: { role: "assistant", content: completion.text, refusal: null },
        logprobs: null,
        finish_reason: finishReasonOf(completion.finishReason)
      }],
      usage: usageOf(completion.usage)
    })
  }

  const completions = async (json: Json, response: Http.ServerResponse) => {
    const model = checkModel(json)
    const body = decodeCompletions(json)
    const prompt = typeof body.prompt === "string" ? body.prompt : body.prompt[0]
    if (prompt.length === 0) throw badRequest("prompt: must be a non-empty string (one prompt per request)", "prompt")
    const sampling = samplingOf(body)
    const request = await run(toRequest({ model, messages: [], prompt, maxTokens: 16, ...sampling }), response)
    const id = `cmpl-${Crypto.randomUUID()}`
    const created = Math.floor(clock.currentTimeMillisUnsafe() / 1000)
    if (body.stream === true) {
      const includeUsage = body.stream_options?.include_usage === true
      const frame = (choices: Array<unknown>, extra: Json = {}) => ({ id, object: "text_completion", created, model, choices, ...extra })
      return streamSse(response, request, {
        delta: (chunk) => chunk.text.length > 0 ? frame([{ index: 0, text: chunk.text, logprobs: null, finish_reason: null }]) : undefined,
        last: (reason) => frame([{ index: 0, text: "", logprobs: null, finish_reason: finishReasonOf(reason) }]),
        usage: includeUsage ? (usage) => frame([], { usage: usageOf(usage) }) : undefined
      })
    }
    const completion = await run(llm.complete(request), response)
    sendJson(response, 200, {
      id,
      object: "text_completion",
      created,
      model,
      choices: [{ index: 0, text: completion.text, logprobs: null, finish_reason: finishReasonOf(completion.finishReason) }],
      usage: usageOf(completion.usage)
    })
  }

  const embeddings = async (json: Json, response: Http.ServerResponse) => {
    if (embedder === undefined) throw failure(404, "this server has no embedding model", "invalid_request_error", "model_not_found")
    const model = checkModel(json)
    const body = decodeEmbeddings(json)
    const input = typeof body.input === "string" ? [body.input] : body.input
    const format = body.encoding_format ?? "float"
    const dimensions = typeof body.dimensions === "number" ? body.dimensions : undefined
    const result = await run(embedder.embed(input as Array<string>, dimensions !== undefined ? { dimensions } : {}), response)
    sendJson(response, 200, {
      object: "list",
      data: result.vectors.map((vector, index) => ({
        object: "embedding",
        index,
        embedding: format === "base64" ? toBase64(vector) : vector
      })),
      model,
      usage: { prompt_tokens: result.usage.inputTokens, total_tokens: result.usage.inputTokens }
    })
  }

  const modelObject = (id: string) => ({ id, object: "model", created: 0, owned_by: "hasten" })

  const handle = async (request: Http.IncomingMessage, response: Http.ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://localhost")
    const path = url.pathname.replace(/\/+$/, "")
    if (request.method === "GET" && path === "/v1/models") {
      return sendJson(response, 200, { object: "list", data: (models ?? []).map(modelObject) })
    }
    if (request.method === "GET" && path.startsWith("/v1/models/")) {
      const id = decodeURIComponent(path.slice("/v1/models/".length))
      if (models !== undefined && !models.includes(id)) {
        throw failure(404, `The model '${id}' does not exist`, "invalid_request_error", "model_not_found", "model")
      }
      return sendJson(response, 200, modelObject(id))
    }
    const route = path === "/v1/chat/completions"
      ? chatCompletions
      : path === "/v1/completions"
      ? completions
      : path === "/v1/embeddings"
      ? embeddings
      : undefined
    if (route === undefined) throw failure(404, `unknown route ${request.method} ${path}`, "invalid_request_error", "not_found")
    if (request.method !== "POST") throw failure(405, `${request.method} is not allowed on ${path}`, "invalid_request_error")
    const text = await readBody(request, maxBodyBytes)
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      throw badRequest("the request body is not valid JSON")
    }
    if (!isRecord(body)) throw badRequest("the request body must be a JSON object")
    await route(body, response)
  }

  const server = Http.createServer((request, response) => {
    requests++
    handle(request, response).catch((error: unknown) => {
      const httpError = error instanceof HttpError
        ? error
        : error instanceof LlmError.LlmError
        ? fromLlmError(error)
        : failure(500, error instanceof Error ? error.message : String(error), "server_error")
      if (response.headersSent) {
        response.end()
        return
      }
      const text = httpError.body()
      response.writeHead(httpError.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
      response.end(text)
    })
  })

  // Longer than clients' idle keep-alive (undici: 4 s): the client closes idle sockets first,
  // so a reused socket never races a server-side close (ECONNRESET under load).
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000

  const host = options.host ?? "127.0.0.1"
  const address = yield* Effect.acquireRelease(
    Effect.callback<AddressInfo, LlmError.LlmError>((resume) => {
      const onError = (error: Error) =>
        resume(
          Effect.fail(
            LlmError.make(
              "local",
              new LlmError.Transport({ description: `cannot listen on ${host}:${options.port ?? 8080}: ${error.message}` })
            )
          )
        )
      server.once("error", onError)
      server.listen(options.port ?? 8080, host, () => {
        server.off("error", onError)
        resume(Effect.succeed(server.address() as AddressInfo))
      })
    }),
    () =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address
  const url = `http://${urlHost}:${address.port}`
  return Server.of({ url, baseUrl: `${url}/v1`, port: address.port, host: address.address, requests: () => requests })
})

/**
 * The server as a scoped layer over the `Llm` (and the `Embedder` / `LocalModel` when
 * present): listening once built, closed with the scope.
 * @category layers @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Server, LlmError.LlmError, Llm.Llm> => Layer.effect(Server, make(options))

/** Options of the `hasten-serve` command line. @category models @since 0.1.0 */
export interface CliOptions {
  readonly model: string | undefined
  readonly port: number
  readonly host: string
  readonly sequences: number
  readonly threads: number
  readonly contextSize: number | undefined
  readonly gpu: boolean
  readonly id: string | undefined
}

/** Usage text of `hasten-serve`. @category constructors @since 0.1.0 */
export const usage = `hasten-serve: an OpenAI-compatible server over a local GGUF model

  hasten-serve --model stories260K.gguf [--port 8080] [--host 127.0.0.1] [--sequences 4]
               [--threads 1] [--context-size 2048] [--gpu] [--id my-model]

  --model          a .gguf path, a name in shared/models or HASTEN_MODELS_DIR, or an hf: URI
                   (default: env HASTEN_MODEL)
  --sequences      parallel requests served without queueing (default 1)
  --port 0         picks a free port; the first stdout line is {"url": ...} once listening`

const invalidOption = (option: string, description: string): ProviderError =>
  new ProviderError({ reason: new InvalidOptions({ option, description }) })

/** The flags of `hasten-serve`, each with its decoder. */
const flags = {
  model: Boundary.Flag.string({ short: "m" }),
  port: Boundary.Flag.integer(0, { short: "p" }),
  host: Boundary.Flag.string(),
  sequences: Boundary.Flag.integer(1, { short: "s" }),
  threads: Boundary.Flag.integer(0, { short: "t" }),
  "context-size": Boundary.Flag.integer(16, { short: "c" }),
  gpu: Boundary.Flag.boolean(),
  id: Boundary.Flag.string(),
  help: Boundary.Flag.boolean({ short: "h" })
}

/**
 * Parses `hasten-serve` arguments; throws a `ProviderError` whose reason is
 * `InvalidOptions` naming the bad flag, or `Usage` (the usage text) for `--help`.
 * @category constructors @since 0.1.0
 */
export const parseCli = (argv: ReadonlyArray<string>): CliOptions => {
  const parsed = Boundary.parseFlags(argv, flags)
  if (parsed._tag === "Failure") throw invalidOption(parsed.problem.flag, parsed.problem.message)
  const values = parsed.flags.values
  if (values.help === true) throw new ProviderError({ reason: new Usage({ description: usage }) })
  return {
    model: values.model,
    port: values.port ?? 8080,
    host: values.host ?? "127.0.0.1",
    sequences: values.sequences ?? 1,
    threads: values.threads ?? 1,
    contextSize: values["context-size"],
    gpu: values.gpu === true,
    id: values.id
  }
}

/**
 * Runs the server over `Local.layer` until interrupted, calling `onListening` with the
 * server's address once it accepts connections.
 * @category constructors @since 0.1.0
 */
export const serve = (
  options: CliOptions,
  onListening: (info: { readonly url: string; readonly baseUrl: string; readonly model: string; readonly sequences: number }) => void
): Effect.Effect<never, LlmError.LlmError> =>
  Effect.gen(function*() {
    const server = yield* Server
    const local = yield* LocalModel
    onListening({ url: server.url, baseUrl: server.baseUrl, model: local.id, sequences: options.sequences })
    return yield* Effect.never
  }).pipe(
    Effect.provide(
      layer({ port: options.port, host: options.host }).pipe(
        Layer.provideMerge(LocalProvider.layer({
          model: options.model,
          sequences: options.sequences,
          threads: options.threads,
          gpu: options.gpu,
          ...(options.contextSize !== undefined ? { contextSize: options.contextSize } : {}),
          ...(options.id !== undefined ? { id: options.id } : {})
        }))
      )
    )
  )
