/**
 * Fake `Llm` and `Embedder` layers for users' unit tests: a scripted `Llm` that records
 * its calls, answers from a list or a function, sleeps through Effect's `Clock` (so
 * `TestClock` drives it) and fails chosen calls; and a hashing `Embedder`. Token counts
 * use the simulators' tokenizer, and default answers equal the simulators' defaults.
 * @since 0.1.0
 */
import { Completion, type CompletionRequest, Embedder, Llm, LlmError } from "@hasten/core"
import { Clock, Duration, Effect, Layer, Stream } from "effect"
import { shape } from "./internal/engine/generation.js"
import { defaultResponder } from "./internal/engine/responder.js"
import { embeddingVector } from "./internal/openai/embeddings.js"
import { countTokens } from "./internal/tokens.js"

/** One recorded call to a fake. @category models @since 0.1.0 */
export interface LlmCall {
  /** 0-based index over all calls to this fake. */
  readonly index: number
  readonly method: "complete" | "stream"
  readonly request: CompletionRequest.CompletionRequest
  /** Epoch milliseconds from Effect's `Clock` when the call started. */
  readonly at: number
}

/** What a scripted answer may be. @category models @since 0.1.0 */
export type Answer = string | Effect.Effect<string, LlmError.LlmError>

/** The script of a fake `Llm`. @category models @since 0.1.0 */
export interface LlmOptions {
  /** Provider name reported in completions and errors (default `"fake"`). */
  readonly name?: string
  /** Answers used in call order; the last one repeats once the list runs out. */
  readonly responses?: ReadonlyArray<string>
  /** Computes an answer; wins over `responses`. Default: the simulators' deterministic sentence. */
  readonly respond?: (request: CompletionRequest.CompletionRequest, call: LlmCall) => Answer
  /** Slept (through `Clock`) before the first token of every call. */
  readonly latency?: Duration.Input | ((request: CompletionRequest.CompletionRequest, call: LlmCall) => Duration.Input)
  /** Slept between streamed tokens (and, summed, in `complete`). */
  readonly perTokenLatency?: Duration.Input
  /** Calls that fail: by call index, or a function returning a reason (or `undefined` to answer). */
  readonly failWith?:
    | Readonly<Record<number, LlmError.LlmErrorReason>>
    | ((request: CompletionRequest.CompletionRequest, call: LlmCall) => LlmError.LlmErrorReason | undefined)
}

/** A fake `Llm`, its layer and the calls it has seen. @category models @since 0.1.0 */
export interface FakeLlm {
  readonly service: Llm.LlmService
  readonly layer: Layer.Layer<Llm.Llm>
  /** Every call so far, oldest first (a live array). */
  readonly calls: ReadonlyArray<LlmCall>
}

const promptOf = (request: CompletionRequest.CompletionRequest): string =>
  request.prompt !== undefined && request.prompt.length > 0 ? request.prompt : request.messages.map((message) => message.content).join("\n")

/**
 * A scripted `Llm`. `complete` and `stream` share the script, the call counter and the
 * recorded calls; the stream emits one chunk per simulator token.
 * @category constructors @since 0.1.0
 */
export const llm = (options: LlmOptions = {}): FakeLlm => {
  const name = options.name ?? "fake"
  const calls: Array<LlmCall> = []
  const perToken = options.perTokenLatency === undefined ? Duration.zero : Duration.fromInputUnsafe(options.perTokenLatency)

  const begin = (method: LlmCall["method"], request: CompletionRequest.CompletionRequest) =>
    Effect.gen(function*() {
      const at = yield* Clock.currentTimeMillis
      const call: LlmCall = { index: calls.length, method, request, at }
      calls.push(call)
      const failWith = options.failWith
      const reason = typeof failWith === "function" ? failWith(request, call) : failWith?.[call.index]
      const latency = typeof options.latency === "function" ? options.latency(request, call) : options.latency
      if (latency !== undefined) yield* Effect.sleep(latency)
      if (reason !== undefined) return yield* Effect.fail(LlmError.make(name, reason))
      const answer: Answer = options.respond !== undefined
        ? options.respond(request, call)
        : options.responses !== undefined && options.responses.length > 0
        ? options.responses[Math.min(call.index, options.responses.length - 1)]!
        : defaultResponder({
          api: "openai",
          route: "fake",
          model: request.model,
          messages: request.messages,
          ...(request.prompt !== undefined ? { prompt: request.prompt } : {}),
          body: request
        }) as string
      const text = typeof answer === "string" ? answer : yield* answer
      const generated = shape(text, request.maxTokens, request.stop)
      const usage: Completion.Usage = { inputTokens: countTokens(promptOf(request)), outputTokens: generated.tokens.length }
      return { generated, usage, start: at }
    })

  const complete = (request: CompletionRequest.CompletionRequest) =>
    Effect.gen(function*() {
      const { generated, start, usage } = yield* begin("complete", request)
      const firstToken = yield* Clock.currentTimeMillis
      if (generated.tokens.length > 1 && Duration.isPositive(perToken)) {
        yield* Effect.sleep(Duration.times(perToken, generated.tokens.length - 1))
      }
      const end = yield* Clock.currentTimeMillis
      return new Completion.Completion({
        text: generated.text,
        finishReason: generated.finishReason,
        usage,
        model: request.model,
        provider: name,
        timing: { start, firstToken, end }
      })
    })

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.map(begin("stream", request), ({ generated, usage }) => {
      const last = generated.tokens.length - 1
      const chunks = generated.tokens.length === 0 ? [""] : generated.tokens
      return Stream.fromIterable(chunks.map((token, index) => ({ token, index }))).pipe(
        Stream.mapEffect(({ index, token }) =>
          Effect.as(
            index > 0 && Duration.isPositive(perToken) ? Effect.sleep(perToken) : Effect.void,
            new Completion.CompletionChunk({
              text: token,
              tokens: token.length === 0 ? 0 : 1,
              ...(index >= last ? { finishReason: generated.finishReason, usage, model: request.model } : {})
            })
          )
        )
      )
    }))

  const service: Llm.LlmService = { name, complete, stream }
  return { service, layer: Layer.succeed(Llm.Llm, service), calls }
}

/**
 * The layer of a scripted `Llm`, when the recorded calls are not needed.
 * @category layers @since 0.1.0
 */
export const layerLlm = (options: LlmOptions = {}): Layer.Layer<Llm.Llm> => llm(options).layer

/** Options of the hashing `Embedder`. @category models @since 0.1.0 */
export interface EmbedderOptions {
  readonly name?: string
  /** Default model (default `"text-embedding-3-small"`). */
  readonly model?: string
  /** Vector length when a call sets no `dimensions` (default 16, like the simulator). */
  readonly dimensions?: number
  /** Slept (through `Clock`) before every call. */
  readonly latency?: Duration.Input
  /** Calls that fail, by 0-based call index. */
  readonly failWith?: Readonly<Record<number, LlmError.LlmErrorReason>>
}

/** One recorded embedding call. @category models @since 0.1.0 */
export interface EmbedCall {
  readonly index: number
  readonly texts: ReadonlyArray<string>
  readonly options: Embedder.EmbedOptions | undefined
}

/** A fake `Embedder`, its layer and its calls. @category models @since 0.1.0 */
export interface FakeEmbedder {
  readonly service: Embedder.EmbedderService
  readonly layer: Layer.Layer<Embedder.Embedder>
  readonly calls: ReadonlyArray<EmbedCall>
}

/**
 * A hashing `Embedder`: unit vectors hashed from model and text, identical to the
 * simulator's `/v1/embeddings` vectors for the same model and dimensions.
 * @category constructors @since 0.1.0
 */
export const embedder = (options: EmbedderOptions = {}): FakeEmbedder => {
  const name = options.name ?? "fake"
  const model = options.model ?? "text-embedding-3-small"
  const calls: Array<EmbedCall> = []
  const service: Embedder.EmbedderService = {
    name,
    model,
    embed: (texts, embedOptions) =>
      Effect.gen(function*() {
        const call: EmbedCall = { index: calls.length, texts, options: embedOptions }
        calls.push(call)
        if (options.latency !== undefined) yield* Effect.sleep(options.latency)
        const reason = options.failWith?.[call.index]
        if (reason !== undefined) return yield* Effect.fail(LlmError.make(name, reason))
        const chosen = embedOptions?.model ?? model
        const dimensions = embedOptions?.dimensions ?? options.dimensions ?? 16
        return {
          vectors: texts.map((text) => embeddingVector(chosen, text, dimensions)),
          model: chosen,
          usage: { inputTokens: texts.reduce((sum, text) => sum + countTokens(text), 0) }
        }
      })
  }
  return { service, layer: Layer.succeed(Embedder.Embedder, service), calls }
}

/**
 * The layer of a hashing `Embedder`, when the recorded calls are not needed.
 * @category layers @since 0.1.0
 */
export const layerEmbedder = (options: EmbedderOptions = {}): Layer.Layer<Embedder.Embedder> => embedder(options).layer
