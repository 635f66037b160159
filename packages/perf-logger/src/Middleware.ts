/**
 * The measuring middleware: an `Llm` from an `Llm` that times every `complete` and `stream`
 * call (latency, TTFT, inter-token latency, tokens, errors, cache, retries, batches,
 * speculative statistics), hands the call's event to the `PerfLogger` recorder, updates the
 * exported metrics and (when a tracer exports them) opens a `gen_ai` client span per call.
 * @since 0.1.0
 */
import type { Completion, CompletionRequest } from "@hasten/core"
import { Facts, Llm, LlmError } from "@hasten/core"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { instrumentsFor } from "./internal/instruments.js"
import { nowMs, round3 } from "./internal/time.js"
import type { PerfLoggerService } from "./Recorder.js"
import { PerfLogger } from "./Recorder.js"
import type { CallEvent, SpeculativeStats } from "./RunLog.js"
import { CurrentStage } from "./Stage.js"

const speculativeStats = (facts: Facts.Speculative): SpeculativeStats => ({
  acceptanceRate: facts.acceptanceRate,
  ...(facts.meanAcceptedLength !== undefined ? { meanAcceptedLength: facts.meanAcceptedLength } : {}),
  ...(facts.perPosition !== undefined ? { perPosition: facts.perPosition } : {}),
  ...(facts.targetEvaluations !== undefined ? { targetEvaluations: facts.targetEvaluations } : {})
})

/**
 * The facts to record for a call: those it returned, with those the layers above passed
 * down merged over them (as the caller sees them). A cache hit's own facts describe the call
 * that filled the cache, so only the facts from above count for it.
 */
const recordedFacts = (returned: Facts.Facts | undefined, cached: boolean | undefined, above: Facts.Facts): Facts.Facts =>
  returned === undefined || cached === true ? above : Facts.merge(returned, above)

/** The error class of a failed call: the `LlmError` reason tag, `Interrupted`, or `Defect`. */
const errorClass = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error)) {
    const value = error.value
    if (LlmError.isLlmError(value)) return value.reason._tag
    if (typeof value === "object" && value !== null && "_tag" in value) return String((value as { _tag: unknown })._tag)
    return "Error"
  }
  return Cause.hasInterruptsOnly(cause) ? "Interrupted" : "Defect"
}

interface Outcome {
  readonly op: "complete" | "stream"
  readonly provider: string
  readonly request: CompletionRequest.CompletionRequest
  readonly stage: string | undefined
  readonly start: number
  readonly latencyMs: number
  readonly error: string | undefined
  readonly responseModel: string | undefined
  readonly finishReason: string | undefined
  readonly usage: Completion.Usage | undefined
  readonly cached: boolean | undefined
  /** The facts the completion (or the stream's chunks) carried, and those passed down from above. */
  readonly facts: Facts.Facts
  readonly ttftMs: number | undefined
  readonly itlMs: ReadonlyArray<number> | undefined
  readonly chunkGapsMs: ReadonlyArray<number> | undefined
  readonly chunks: number | undefined
  readonly outputTokens: number | undefined
  readonly tokensEstimated: boolean
}

const toEvent = (outcome: Outcome): CallEvent => {
  const facts = outcome.facts
  const usage = outcome.usage
  const event: { -readonly [K in keyof CallEvent]: CallEvent[K] } = {
    type: "call",
    op: outcome.op,
    provider: outcome.provider,
    model: outcome.request.model,
    start: round3(outcome.start),
    latencyMs: round3(outcome.latencyMs),
    ok: outcome.error === undefined
  }
  if (outcome.responseModel !== undefined && outcome.responseModel !== outcome.request.model) {
    event.responseModel = outcome.responseModel
  }
  if (outcome.stage !== undefined) event.stage = outcome.stage
  if (outcome.error !== undefined) event.error = outcome.error
  if (outcome.finishReason !== undefined) event.finishReason = outcome.finishReason
  if (outcome.cached !== undefined) event.cached = outcome.cached
  if (outcome.ttftMs !== undefined) event.ttftMs = round3(outcome.ttftMs)
  if (outcome.itlMs !== undefined && outcome.itlMs.length > 0) event.itlMs = outcome.itlMs.map(round3)
  if (outcome.chunks !== undefined) event.chunks = outcome.chunks
  if (usage !== undefined) event.inputTokens = usage.inputTokens
  const outputTokens = outcome.outputTokens ?? usage?.outputTokens
  if (outputTokens !== undefined) event.outputTokens = outputTokens
  if (usage?.cachedInputTokens !== undefined) event.cachedInputTokens = usage.cachedInputTokens
  if (outcome.tokensEstimated || usage?.estimated === true) event.tokensEstimated = true
  if (facts.retries !== undefined) event.retries = facts.retries
  if (facts.rateLimitWaitMillis !== undefined) event.rateLimitWaitMs = facts.rateLimitWaitMillis
  if (facts.backoffMillis !== undefined) event.backoffMs = facts.backoffMillis
  if (facts.timeouts !== undefined) event.timeouts = facts.timeouts
  if (facts.batchSize !== undefined) event.batchSize = facts.batchSize
  if (facts.queueWaitMillis !== undefined) event.queueWaitMs = facts.queueWaitMillis
  if (facts.speculative !== undefined) event.speculative = speculativeStats(facts.speculative)
  return event
}

const updateMetrics = (event: CallEvent, chunkGapsMs: ReadonlyArray<number> | undefined, context: Context.Context<never>): void => {
  const instruments = instrumentsFor(
    "chat",
    event.provider,
    event.model,
    event.responseModel,
    event.stage,
    event.error,
    event.cached === true
  )
  instruments.requests.updateUnsafe(1, context)
  instruments.duration.updateUnsafe(event.latencyMs / 1000, context)
  if (!event.ok) return
  if (event.inputTokens !== undefined) instruments.input.updateUnsafe(event.inputTokens, context)
  if (event.outputTokens !== undefined) instruments.output.updateUnsafe(event.outputTokens, context)
  if (event.ttftMs !== undefined && event.op === "stream") instruments.ttft.updateUnsafe(event.ttftMs / 1000, context)
  if (chunkGapsMs !== undefined) { for (const gap of chunkGapsMs) instruments.chunk.updateUnsafe(gap / 1000, context) }
  if (event.retries !== undefined) instruments.retries.updateUnsafe(event.retries, context)
  if (event.rateLimitWaitMs !== undefined) instruments.wait.updateUnsafe(event.rateLimitWaitMs / 1000, context)
  if (event.batchSize !== undefined) instruments.batch.updateUnsafe(event.batchSize, context)
  if (event.speculative !== undefined) instruments.acceptance.updateUnsafe(event.speculative.acceptanceRate, context)
}

const requestAttributes = (provider: string, request: CompletionRequest.CompletionRequest): Record<string, unknown> => {
  const attributes: Record<string, unknown> = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": provider,
    "gen_ai.system": provider,
    "gen_ai.request.model": request.model
  }
  if (request.maxTokens !== undefined) attributes["gen_ai.request.max_tokens"] = request.maxTokens
  if (request.temperature !== undefined) attributes["gen_ai.request.temperature"] = request.temperature
  if (request.topP !== undefined) attributes["gen_ai.request.top_p"] = request.topP
  if (request.seed !== undefined) attributes["gen_ai.request.seed"] = request.seed
  return attributes
}

const setResponseAttributes = (span: Tracer.Span, event: CallEvent): void => {
  span.attribute("gen_ai.response.model", event.responseModel ?? event.model)
  if (event.inputTokens !== undefined) span.attribute("gen_ai.usage.input_tokens", event.inputTokens)
  if (event.outputTokens !== undefined) span.attribute("gen_ai.usage.output_tokens", event.outputTokens)
  if (event.finishReason !== undefined) span.attribute("gen_ai.response.finish_reasons", [event.finishReason])
  if (event.error !== undefined) span.attribute("error.type", event.error)
  if (event.cached === true) span.attribute("hasten.cache.hit", true)
  if (event.stage !== undefined) span.attribute("hasten.stage", event.stage)
  if (event.ttftMs !== undefined) span.attribute("hasten.ttft_ms", event.ttftMs)
}

/** Spans are opened when asked for, or (`"auto"`) when a tracer that exports them is installed. */
const wantsSpan = (spans: boolean | "auto", context: Context.Context<never>): boolean =>
  spans === "auto" ? Context.get(context, Tracer.Tracer) !== Tracer.nativeTracer : spans

/**
 * Wraps an `Llm` so every `complete` and `stream` call is measured and recorded.
 * @category constructors @since 0.1.0
 */
export const wrap = (inner: Llm.LlmService, recorder: PerfLoggerService): Llm.LlmService => {
  /** The memory last recorded per local model: a `model_memory` event when it is new or changed. */
  const memories = new Map<string, Facts.ModelMemory>()
  const noteMemory = (memory: Facts.ModelMemory | undefined, t: number) => {
    if (memory === undefined) return
    const last = memories.get(memory.model)
    if (
      last === memory || (last !== undefined && last.weightsBytes === memory.weightsBytes && last.kvCacheBytes === memory.kvCacheBytes &&
        last.computeBytes === memory.computeBytes && last.sequences === memory.sequences && last.contextSize === memory.contextSize)
    ) return
    memories.set(memory.model, memory)
    recorder.recordUnsafe({ type: "model_memory", t: round3(t), ...memory })
  }
  /** The call's event (and its metric updates), built once the call has returned. */
  const completeEvent = (
    request: CompletionRequest.CompletionRequest,
    stage: string | undefined,
    start: number,
    latencyMs: number,
    context: Context.Context<never>,
    above: Facts.Facts,
    exit: Exit.Exit<Completion.Completion, unknown>
  ): CallEvent => {
    let outcome: Outcome
    if (Exit.isSuccess(exit)) {
      const completion = exit.value
      const timing = completion.timing
      outcome = {
        op: "complete",
        provider: completion.provider,
        request,
        stage,
        start,
        latencyMs,
        error: undefined,
        responseModel: completion.model,
        finishReason: completion.finishReason,
        usage: completion.usage,
        cached: completion.cached,
        facts: recordedFacts(completion.facts, completion.cached, above),
        ttftMs: timing.firstToken !== undefined && timing.firstToken < timing.end ? timing.firstToken - timing.start : undefined,
        itlMs: undefined,
        chunkGapsMs: undefined,
        chunks: undefined,
        outputTokens: undefined,
        tokensEstimated: false
      }
    } else {
      outcome = {
        op: "complete",
        provider: inner.name,
        request,
        stage,
        start,
        latencyMs,
        error: errorClass(exit.cause),
        responseModel: undefined,
        finishReason: undefined,
        usage: undefined,
        cached: undefined,
        facts: above,
        ttftMs: undefined,
        itlMs: undefined,
        chunkGapsMs: undefined,
        chunks: undefined,
        outputTokens: undefined,
        tokensEstimated: false
      }
    }
    const event = toEvent(outcome)
    if (recorder.metrics) updateMetrics(event, undefined, context)
    return event
  }

  // `Effect.withSpan` rather than `Effect.fn`: the same "PerfLogger.complete" span, without
  // the per-call stack capture `Effect.fn` does (the largest cost of measuring a fast call).
  /** Times `inner.complete` in the fiber's `context`; the event is built later (group commit). */
  const measured = (request: CompletionRequest.CompletionRequest, context: Context.Context<never>, withSpan: boolean) => {
    const clock = Context.get(context, Clock.Clock)
    const stage = Context.get(context, CurrentStage)
    // facts the layers above know about this call (the batcher's batch size and queue wait)
    const above = Context.get(context, Facts.CurrentFacts)
    const start = nowMs(clock)
    // The exit callback records synchronously and returns the shared `Effect.void`: no
    // per-call `Effect.sync` on the measured path.
    return Effect.onExit(inner.complete(request), (exit) => {
      const latencyMs = nowMs(clock) - start
      if (Exit.isSuccess(exit) && exit.value.cached !== true) noteMemory(exit.value.facts?.modelMemory, start + latencyMs)
      const span = withSpan ? Context.getOrUndefined(context, Tracer.ParentSpan) : undefined
      if (span !== undefined && span._tag === "Span") {
        // the span ends right after this: its attributes need the event now
        const event = completeEvent(request, stage, start, latencyMs, context, above, exit)
        setResponseAttributes(span, event)
        recorder.recordUnsafe(event)
      } else {
        recorder.recordLazyUnsafe(() => completeEvent(request, stage, start, latencyMs, context, above, exit))
      }
      return Effect.void
    })
  }
  const complete = (request: CompletionRequest.CompletionRequest): Effect.Effect<Completion.Completion, LlmError.LlmError> =>
    Effect.contextWith((context: Context.Context<never>) =>
      wantsSpan(recorder.spans, context)
        ? Effect.withSpan(
          Effect.contextWith((inSpan: Context.Context<never>) => measured(request, inSpan, true)),
          "PerfLogger.complete",
          { kind: "client", attributes: requestAttributes(inner.name, request), captureStackTrace: false }
        )
        : measured(request, context, false)
    )

  const stream = (request: CompletionRequest.CompletionRequest): Stream.Stream<Completion.CompletionChunk, LlmError.LlmError> =>
    Stream.unwrap(Effect.gen(function*() {
      const clock = yield* Clock.Clock
      const stage = yield* CurrentStage
      const above = yield* Facts.CurrentFacts
      const context = yield* Effect.context<never>()
      const span = wantsSpan(recorder.spans, context)
        ? yield* Effect.makeSpan("PerfLogger.stream", { kind: "client", attributes: requestAttributes(inner.name, request) })
        : undefined
      const start = nowMs(clock)
      let first: number | undefined
      let last = 0
      let chunks = 0
      let countedTokens = 0
      let tokenChunks = 0
      const itl: Array<number> = []
      const gaps: Array<number> = []
      let usage: Completion.Usage | undefined
      let finishReason: string | undefined
      let model: string | undefined
      let cached: boolean | undefined
      let facts: Facts.Facts | undefined
      const onChunk = (chunk: Completion.CompletionChunk): void => {
        chunks++
        const tokens = chunk.tokens
        if (chunk.text.length > 0 || (tokens !== undefined && tokens > 0)) {
          const now = nowMs(clock)
          const count = tokens !== undefined && tokens > 0 ? tokens : 1
          countedTokens += count
          tokenChunks++
          if (first === undefined) {
            first = now
          } else {
            const gap = now - last
            gaps.push(gap)
            const perToken = gap / count
            for (let index = 0; index < count; index++) itl.push(perToken)
          }
          last = now
        }
        if (chunk.usage !== undefined) usage = chunk.usage
        if (chunk.finishReason !== undefined) finishReason = chunk.finishReason
        if (chunk.model !== undefined) model = chunk.model
        if (chunk.cached !== undefined) cached = chunk.cached
        if (chunk.facts !== undefined) facts = facts === undefined ? chunk.facts : Facts.merge(facts, chunk.facts)
      }
      const onExit = (exit: Exit.Exit<unknown, LlmError.LlmError>) =>
        Effect.sync(() => {
          const end = nowMs(clock)
          if (cached !== true) noteMemory(facts?.modelMemory, end)
          const build = (): CallEvent => {
            const error = Exit.isSuccess(exit) ? undefined : errorClass(exit.cause)
            const reported = usage?.outputTokens
            const event = toEvent({
              op: "stream",
              provider: inner.name,
              request,
              stage,
              start,
              latencyMs: end - start,
              error,
              responseModel: model,
              finishReason,
              usage,
              cached,
              facts: recordedFacts(facts, cached, above),
              ttftMs: first === undefined ? undefined : first - start,
              itlMs: itl,
              chunkGapsMs: gaps,
              chunks,
              outputTokens: reported ?? (tokenChunks > 0 ? countedTokens : undefined),
              tokensEstimated: reported === undefined && tokenChunks > 0
            })
            if (recorder.metrics) updateMetrics(event, gaps, context)
            return event
          }
          if (span !== undefined) {
            const event = build()
            setResponseAttributes(span, event)
            span.end(clock.currentTimeNanosUnsafe(), exit)
            recorder.recordUnsafe(event)
          } else {
            recorder.recordLazyUnsafe(build)
          }
        })
      const measuredStream = inner.stream(request).pipe(
        Stream.tap((chunk) => Effect.sync(() => onChunk(chunk))),
        Stream.onExit(onExit)
      )
      return span === undefined ? measuredStream : Stream.provideService(measuredStream, Tracer.ParentSpan, span)
    }))

  return { name: inner.name, complete, stream }
}

/**
 * The measuring middleware: needs the `Llm` below it and the {@link PerfLogger} recorder,
 * provides an `Llm` that records every call. Place it just above the provider (and the
 * rate limiter) to measure what goes upstream, or outermost to measure what the app sees.
 * @category layers @since 0.1.0
 */
export const layer: Layer.Layer<Llm.Llm, never, Llm.Llm | PerfLogger> = Llm.middleware((inner) =>
  Effect.map(Effect.service(PerfLogger), (recorder) => wrap(inner, recorder))
)
