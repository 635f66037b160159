/**
 * A small fake upstream `Llm` and `Embedder` that count their calls, with optional
 * latency (Effect.sleep, so TestClock drives it) and scripted failures.
 */
import { Completion, type CompletionRequest, Embedder, type Facts, Llm, LlmError } from "@hasten/core"
import { Clock, type Duration, Effect, Layer, Stream } from "effect"

/** One of every kind of fact the layers below a cache report, to check they survive storage. */
export const upstreamFacts: Facts.Facts = {
  retries: 1,
  rateLimitWaitMillis: 12.5,
  backoffMillis: 250,
  timeouts: 0,
  queueWaitMillis: 3,
  speculative: { drafter: "ngram", acceptanceRate: 0.5, perPosition: [0.75, 0.25], targetEvaluations: 4 },
  endpoint: "a",
  routerAttempts: 1,
  predictionId: "p-1",
  polls: 2
}

export interface FakeOptions {
  /** Delay before `complete` answers and between stream chunks. */
  readonly latency?: Duration.Input | undefined
  /** How many stream chunks the answer is split into (default 3). */
  readonly chunks?: number | undefined
  /** Fail the first N calls (complete and stream) with a ServerError. */
  readonly failFirst?: number | undefined
  /** Fail a stream after emitting this many chunks. */
  readonly failStreamAfter?: number | undefined
}

export interface Counting {
  readonly layer: Layer.Layer<Llm.Llm>
  readonly service: Llm.LlmService
  completeCalls: number
  streamCalls: number
  /** Streams that ran to their terminal chunk. */
  streamsFinished: number
  /** Streams interrupted before their terminal chunk. */
  streamsInterrupted: number
}

export const answer = (request: CompletionRequest.CompletionRequest): string =>
  `answer to ${request.messages.at(-1)?.content ?? request.prompt ?? ""} (t=${request.temperature ?? "default"}, trial ${
    request.trial ?? 0
  })`

export const makeCounting = (options: FakeOptions = {}): Counting => {
  const pieces = options.chunks ?? 3
  let failures = options.failFirst ?? 0
  const sleep = options.latency === undefined ? Effect.void : Effect.sleep(options.latency)
  const maybeFail = Effect.suspend(() => {
    if (failures <= 0) return Effect.void
    failures--
    return Effect.fail(LlmError.make("fake", new LlmError.ServerError({ status: 500, description: "scripted failure" })))
  })
  const counting: Counting = {
    layer: undefined as never,
    service: undefined as never,
    completeCalls: 0,
    streamCalls: 0,
    streamsFinished: 0,
    streamsInterrupted: 0
  }
  const complete = (request: CompletionRequest.CompletionRequest) =>
    Effect.gen(function*() {
      counting.completeCalls++
      const start = yield* Clock.currentTimeMillis
      yield* sleep
      yield* maybeFail
      const end = yield* Clock.currentTimeMillis
      const text = answer(request)
      return new Completion.Completion({
        text,
        finishReason: "stop",
        usage: { inputTokens: 7, outputTokens: text.split(" ").length },
        model: request.model,
        provider: "fake",
        timing: { start, firstToken: end, end },
        facts: upstreamFacts,
        metadata: { upstream: true }
      })
    })
  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.sync(() => {
      counting.streamCalls++
      const text = answer(request)
      const size = Math.ceil(text.length / pieces)
      const parts = Array.from({ length: pieces }, (_, index) => text.slice(index * size, (index + 1) * size))
      let finished = false
      return Stream.fromIterable(parts.map((part, index) => [part, index] as const)).pipe(
        Stream.mapEffect(([part, index]) =>
          Effect.gen(function*() {
            if (index > 0) yield* sleep
            if (index === 0) yield* maybeFail
            if (options.failStreamAfter !== undefined && index >= options.failStreamAfter) {
              return yield* Effect.fail(LlmError.make("fake", new LlmError.Transport({ description: "connection reset mid-stream" })))
            }
            const last = index === pieces - 1
            if (last) finished = true
            return new Completion.CompletionChunk({
              text: part,
              tokens: 1,
              ...(last
                ? {
                  finishReason: "stop" as const,
                  usage: { inputTokens: 7, outputTokens: pieces },
                  model: request.model,
                  facts: upstreamFacts
                }
                : {})
            })
          })
        ),
        Stream.onExit(() =>
          Effect.sync(() => {
            if (finished) counting.streamsFinished++
            else counting.streamsInterrupted++
          })
        )
      )
    }))
  const service = Llm.Llm.of({ name: "fake", complete, stream })
  Object.assign(counting, { service, layer: Layer.succeed(Llm.Llm, service) })
  return counting
}

export interface CountingEmbedder {
  readonly layer: Layer.Layer<Embedder.Embedder>
  readonly batches: Array<ReadonlyArray<string>>
}

export const makeCountingEmbedder = (latency?: Duration.Input): CountingEmbedder => {
  const batches: Array<ReadonlyArray<string>> = []
  const service: Embedder.EmbedderService = {
    name: "fake",
    model: "fake-embed",
    embed: (texts, options) =>
      Effect.andThen(
        latency === undefined ? Effect.void : Effect.sleep(latency),
        Effect.sync(() => {
          batches.push(texts)
          return {
            vectors: texts.map((text) => Embedder.hashVector(text, options?.dimensions ?? 4)),
            model: options?.model ?? "fake-embed",
            usage: { inputTokens: texts.length }
          }
        })
      )
  }
  return { layer: Layer.succeed(Embedder.Embedder, service), batches }
}
